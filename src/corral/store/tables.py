"""Every table of corral, in one SQLAlchemy Core module; Alembic migrations follow it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    literal_column,
)
from sqlalchemy.sql.elements import ColumnClause

# Partial indexes serve a query only when its WHERE repeats their condition literally: a bound
# parameter in its place makes SQLite scan the whole table. Queries that rely on them use these.
QUEUED: ColumnClause[str] = literal_column("'queued'")
ACTIVE_STATES: tuple[ColumnClause[str], ...] = (
    literal_column("'leased'"),
    literal_column("'running'"),
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Times are float seconds since the epoch, taken from the store's clock (see engine.now_sql).

projects = Table(
    "projects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("allow_command", Boolean, nullable=False),
    Column("allow_task", Boolean, nullable=False),
    Column("allow_code", Boolean, nullable=False),
    # sandboxed code gets a network only when its job asks and its project allows it
    Column("allow_network", Boolean, nullable=False, server_default=false()),
    Column("created_at", Float, nullable=False),
)

workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("labels", JSON, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("allow", JSON, nullable=False),
    Column("draining", Boolean, nullable=False, default=False),
    Column("local", Boolean, nullable=False, default=False),
    Column("last_seen", Float, nullable=False),
    Column("joined_at", Float, nullable=False),
    # the process that joined last ("" when it did not say): a join from another one is a
    # restart, whose predecessor's leases can never be reported again
    Column("incarnation", String(64), nullable=False, server_default=""),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    # sha256 of the secret: the secret itself is shown once and never stored
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=True),
    Column("worker_id", Integer, ForeignKey("workers.id"), nullable=True),
    Column("name", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("schedule", String(16), nullable=False),
    Column("params", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    # jobs not yet ended: the run ends when this reaches zero, without scanning its jobs
    Column("pending", Integer, nullable=False),
    Column("submitted_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    # at most this many of the run's jobs leased or running at once (None: no limit)
    Column("max_parallel", Integer, nullable=True),
    # this many failed jobs stop the run: its waiting jobs end canceled (None: never)
    Column("max_failures", Integer, nullable=True),
    # a passed job of the run published key/values for later jobs: only then does a fleet
    # job's lease look them up
    Column("shared", Boolean, nullable=False, server_default=false()),
    Index(None, "project_id", "id"),
    Index(None, "name", "id"),
    # every lease asks whether a live run has a host schedule or a limit: few runs are live
    Index(None, "state"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("instance", String(128), nullable=False, default=""),
    Column("position", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("selector", JSON, nullable=False),
    Column("selector_size", Integer, nullable=False),
    Column("target_worker_id", Integer, ForeignKey("workers.id"), nullable=True),
    Column("needs", JSON, nullable=False),
    # does any job of the run need this one? if not, its end unblocks nothing (no query)
    Column("needed", Boolean, nullable=False, default=False),
    Column("when", String(16), nullable=False),
    Column("timeout", Float, nullable=True),
    Column("retries", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    # attempts since the job was last (re)submitted: what `retries` is measured against
    Column("tries", Integer, nullable=False, default=0),
    Column("current_attempt_id", Integer, nullable=True),
    Column("not_before", Float, nullable=False, default=0.0),
    Column("reason", Text, nullable=False, default=""),
    Column("exit_code", Integer, nullable=True),
    Column("worker_name", String(128), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    UniqueConstraint("run_id", "name", "instance"),
    # the lease query reads only queued jobs, oldest first
    Index(
        "ix_jobs_queue",
        "id",
        sqlite_where=Column("state") == "queued",
        postgresql_where=Column("state") == "queued",
    ),
    Index(None, "run_id", "position"),
)

# One row per label a job's selector needs: the lease query matches them against a worker's
# labels in SQL, so placement never loads jobs it cannot take.
job_selectors = Table(
    "job_selectors",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("pair", String(200), nullable=False),
    Index(None, "job_id"),
)

# One row per (job, name it needs): when a job ends, only the jobs that need it are looked at.
job_needs = Table(
    "job_needs",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("need", String(64), nullable=False),
    Index(None, "run_id", "need"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("worker_id", Integer, ForeignKey("workers.id"), nullable=False),
    Column("worker_name", String(128), nullable=False),
    Column("lease_token", String(64), nullable=False, unique=True),
    Column("lease_expires_at", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("leased_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("reason", Text, nullable=False, default=""),
    Column("resources", JSON, nullable=False),
    Column("log_bytes", Integer, nullable=False, default=0),
    Column("result", JSON, nullable=True),  # a task's return value
    Index(None, "job_id", "number"),
    Index(
        "ix_attempts_active",
        "lease_expires_at",
        sqlite_where=Column("state").in_(["leased", "running"]),
        postgresql_where=Column("state").in_(["leased", "running"]),
    ),
    Index(
        "ix_attempts_worker_active",
        "worker_id",
        sqlite_where=Column("state").in_(["leased", "running"]),
        postgresql_where=Column("state").in_(["leased", "running"]),
    ),
)

log_chunks = Table(
    "log_chunks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("attempt_id", Integer, ForeignKey("attempts.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("stream", String(8), nullable=False),
    Column("ts", Float, nullable=False),
    Column("data", Text, nullable=False),
    UniqueConstraint("attempt_id", "seq"),
)

# Objects are blobs named by their sha256; the bytes live in the object backend, not here.
objects = Table(
    "objects",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Knowing a hash grants nothing: a project reads an object only once it uploaded it or one of
# its jobs produced it.
object_grants = Table(
    "object_grants",
    metadata,
    Column("sha256", String(64), ForeignKey("objects.sha256"), nullable=False),
    Column("project_id", Integer, ForeignKey("projects.id"), nullable=False),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("sha256", "project_id"),
)

# What an attempt produced: declared output files, and stdout when the job asks for it.
attempt_outputs = Table(
    "attempt_outputs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("attempt_id", Integer, ForeignKey("attempts.id"), nullable=False),
    Column("name", String(1024), nullable=False),  # a relative path, or "stdout"
    Column("sha256", String(64), ForeignKey("objects.sha256"), nullable=False),
    Column("size", BigInteger, nullable=False),
    UniqueConstraint("attempt_id", "name"),
)
