"""objects, their grants to projects, attempt outputs, task results, network policy

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "objects",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_objects")),
    )
    op.create_table(
        "object_grants",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"], ["objects.sha256"], name=op.f("fk_object_grants_sha256_objects")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_object_grants_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("sha256", "project_id", name=op.f("pk_object_grants")),
    )
    op.create_table(
        "attempt_outputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name=op.f("fk_attempt_outputs_attempt_id_attempts")
        ),
        sa.ForeignKeyConstraint(
            ["sha256"], ["objects.sha256"], name=op.f("fk_attempt_outputs_sha256_objects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempt_outputs")),
        sa.UniqueConstraint("attempt_id", "name", name=op.f("uq_attempt_outputs_attempt_id_name")),
    )
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
    with op.batch_alter_table("projects") as batch:
        batch.add_column(
            sa.Column("allow_network", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("allow_network")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("result")
    op.drop_table("attempt_outputs")
    op.drop_table("object_grants")
    op.drop_table("objects")
