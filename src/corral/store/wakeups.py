"""Wake-ups across coordinators that share one PostgreSQL: the hub's topics over LISTEN/NOTIFY."""

from __future__ import annotations

import logging
import queue
import threading

import psycopg
from sqlalchemy.engine import make_url

from corral.events import Hub
from corral.store.engine import Database

log = logging.getLogger("corral.wakeups")
CHANNEL = "corral"


class PgWakeups:
    """Forward this hub's notifications to PostgreSQL, and others' to this hub.

    Sending goes through a queue and one thread, so the request that caused a notification
    never waits for it; topics that pile up while one NOTIFY is sent go out together.
    """

    def __init__(self, db: Database, hub: Hub) -> None:
        url = make_url(db.url).set(drivername="postgresql")
        self.dsn = url.render_as_string(hide_password=False)
        self.hub = hub
        self._out: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._listen, name="corral-listen", daemon=True),
            threading.Thread(target=self._send, name="corral-notify", daemon=True),
        ]
        self.ready = threading.Event()

    def start(self) -> None:
        self.hub.listen(self._out.put)
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop both threads and wait (a little) for them to close their connections."""
        self._stop.set()
        self._out.put(None)
        for t in self._threads:
            if t.is_alive():
                t.join(timeout)

    def _send(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    while not self._stop.is_set():
                        topic = self._out.get()
                        if topic is None:
                            return
                        topics = {topic}
                        while True:  # coalesce what is already waiting
                            try:
                                more = self._out.get_nowait()
                            except queue.Empty:
                                break
                            if more is None:
                                return
                            topics.add(more)
                        for t in sorted(topics):
                            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, t))
            except psycopg.Error as exc:
                log.warning("NOTIFY connection lost (%s); reconnecting", exc)
                self._stop.wait(1.0)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.ready.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self.hub.notify(note.payload, forward=False)
            except psycopg.Error as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(1.0)
