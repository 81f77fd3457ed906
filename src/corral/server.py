"""`corral serve` assembled: store, coordinator, app, sweeper, and the local worker."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from corral import heap
from corral.app import create_app
from corral.config import Settings
from corral.coordinator import Coordinator
from corral.domain.labels import parse_labels
from corral.domain.runspec import parse_toml
from corral.fleet.hosts import Fleet
from corral.fleet.inventory import Inventory
from corral.objects.backend import S3Options, open_backend
from corral.registry import Registry
from corral.secrets import Secrets
from corral.store import Store
from corral.store.wakeups import PgWakeups
from corral.sweeper import sweep_forever
from corral.worker.agent import Agent, AgentOptions, default_name
from corral.worker.link import LocalLink
from corral.worker.workdirs import claim_root

log = logging.getLogger("corral.server")

DEMO_SPEC = Path(__file__).with_name("demo.toml")


def ensure_admin_token(store: Store, path: Path) -> str | None:
    """On first start, make an admin token and keep it 0600 in $CORRAL_HOME; None if one exists."""
    if path.exists():
        secret = path.read_text().strip()
        if secret and store.tokens.lookup(secret) is not None:
            return None
    secret = "crl_" + secrets.token_urlsafe(32)
    store.tokens.create("admin", "admin (local)", secret=secret)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)
    return secret


def local_sandbox(home: Path, workdir: Path) -> dict[str, Any]:
    """The local worker takes code jobs when bubblewrap can box them here; the server's home
    (its token, its store) stays out of the box's sight."""
    from corral.worker import sandbox

    bwrap = sandbox.find_bwrap()
    why = sandbox.check(bwrap)
    if why:
        log.info("the local worker runs no code jobs: %s", why)
        return {}
    hidden = sandbox.hidden_paths(os.path.expanduser("~"), str(home), str(workdir))
    return {"bwrap": bwrap, "hide": hidden}


class Server:
    def __init__(
        self,
        settings: Settings,
        secrets: Secrets | None = None,
        inventory: Inventory | None = None,
        *,
        settle_heap: bool = False,
    ) -> None:
        # `settle_heap`: the process is this server's alone (`corral serve`), so its garbage
        # collector may be set for it once it has started (`heap.settle`)
        self.settle_heap = settle_heap
        # Handing work between threads (long-polls, the local worker's slots) waits for the GIL;
        # a shorter switch interval than the default 5 ms cuts that latency.
        sys.setswitchinterval(0.0005)
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        s3 = S3Options(
            settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, settings.s3_region
        )
        self.objects = open_backend(settings.objects, settings.home, s3)
        self.objects.check()
        self.store = Store(settings.db_url, retry_backoff=settings.retry_backoff)
        self.registry = Registry([Path(d).expanduser().absolute() for d in settings.tasks])
        self.coordinator = Coordinator(
            self.store,
            lease_ttl=settings.lease_ttl,
            offline_after=settings.offline_after,
            registry=self.registry,
            secrets=secrets,
            objects=self.objects,
            max_object_size=settings.max_object_size,
        )
        self.new_admin_token = ensure_admin_token(self.store, settings.token_file)
        self.wakeups: PgWakeups | None = None
        if self.store.db.is_postgres:
            # several coordinators may share this database: wake each other's long-polls
            self.wakeups = PgWakeups(self.store.db, self.coordinator.hub)
            self.wakeups.start()
        self.agent: Agent | None = None
        self.work_lock: int | None = None  # held for the local worker's life (`claim_root`)
        self.app = create_app(self.coordinator, max_body=settings.max_body, lifespan=self._lifespan)
        self.fleet: Fleet | None = None
        if inventory:
            self.fleet = Fleet(self.coordinator, inventory, settings.ssh_config)
            self.app.state.fleet = self.fleet

    def start_local_worker(self) -> None:
        s = self.settings
        if s.slots <= 0:
            return
        labels = {"local": "true", "platform": os.uname().sysname.lower()}
        labels.update(parse_labels(s.local_labels))
        name = f"{default_name()}-local"
        workdir = s.home / "work"
        # this server's own: held while it runs, and cleared of what a server of this home
        # that died (SIGKILL, a crash) left there, the directories of the jobs it was running
        self.work_lock = claim_root(str(workdir))
        if self.work_lock is None:
            # its local worker has this one's name: a join of it would read as that worker's
            # restart and end the jobs it is running
            log.error(
                "another corral serve of this home runs a local worker (it holds %s): "
                "this one runs none",
                workdir,
            )
            return
        kinds, confine = ["command", "task"], local_sandbox(s.home, workdir)
        if confine:
            kinds.append("code")
        link = LocalLink(self.coordinator, name, labels, s.slots, kinds)
        self.agent = Agent(
            link,
            AgentOptions(
                slots=s.slots,
                workdir=str(workdir),
                long_poll=s.long_poll,
                task_cache=str(s.home / "task-sources"),
                log_limit=s.log_limit,
                **confine,
            ),
        )
        self.agent.start()

    def submit_demo(self) -> None:
        from corral.auth import Principal

        spec = parse_toml(DEMO_SPEC.read_text())
        system = Principal(token_id=0, kind="admin", name="demo")
        run = self.coordinator.submit(system, spec)
        log.info("demo run %s submitted", run.id)

    @asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        sweeper = asyncio.create_task(sweep_forever(self.coordinator, self.settings.sweep_interval))
        self.start_local_worker()
        if self.fleet is not None:
            self.fleet.start(self.settings.long_poll)
        if self.settings.demo:
            await asyncio.to_thread(self.submit_demo)
        if self.settle_heap:
            heap.settle()  # started: the heap it keeps for its life is left out of collections
        try:
            yield
        finally:
            sweeper.cancel()
            if self.fleet is not None:
                await asyncio.to_thread(self.fleet.stop)
            if self.agent is not None:
                # jobs of the local worker cannot outlive the server: give their leases back
                await asyncio.to_thread(self.agent.stop, "corral serve stopped")
                await asyncio.to_thread(self.agent.wait_stopped, 10.0)
            if self.work_lock is not None:
                os.close(self.work_lock)
                self.work_lock = None
            if self.wakeups is not None:
                self.wakeups.stop()
            self.store.close()
