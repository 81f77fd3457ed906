"""Processes the harness starts, and what they cost (CPU, RSS).

Every process is started in its own session, remembered in a registry, and
stopped by its PID: the graceful signal first, SIGKILL after a grace period,
then SIGKILL to any descendant still alive (matched by PID *and* start time,
so a recycled PID is never hit). ``stop_all()`` runs on exit and on errors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from bench.service_configs import free_ports

REPO_ROOT = Path(__file__).resolve().parent.parent

_REGISTRY: list[ManagedProc] = []


class ManagedProc:
    """One process started by the harness (its output goes to a log file)."""

    def __init__(self, name: str, popen: subprocess.Popen, log_path: Path, stop_signal: int):
        self.name = name
        self.popen = popen
        self.pid = popen.pid
        self.log_path = log_path
        self.stop_signal = stop_signal
        try:
            self._ctime = psutil.Process(self.pid).create_time()
        except psutil.Error:
            self._ctime = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            tail = self.log_tail(12)
            last = tail.splitlines()[-1] if tail else "(no output)"
            raise RuntimeError(
                f"{self.name} (pid {self.pid}) exited with code {self.popen.returncode}: {last}"
                + (f"\n--- last lines of {self.log_path.name} ---\n{tail}" if tail else "")
            )

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []

    def stop(self, grace: float = 10.0) -> None:
        """Graceful signal to the PID, wait up to ``grace`` s, then SIGKILL it and its tree."""
        kids = self.descendants()
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, self.stop_signal)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=5)
        # descendants that outlived their parent (orphans) get a short grace too
        deadline = time.monotonic() + 3
        for k in kids:
            try:
                k.wait(timeout=max(0.0, deadline - time.monotonic()))
            except psutil.TimeoutExpired:
                try:
                    if k.is_running():  # checks PID + create time
                        k.kill()
                except psutil.Error:
                    pass
            except psutil.Error:
                pass
        if self in _REGISTRY:
            _REGISTRY.remove(self)


def spawn(
    name: str,
    argv: list[str],
    log_dir: Path,
    env: dict[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
) -> ManagedProc:
    """Start ``argv`` in a new session (Ctrl-C on the terminal does not reach it)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT)] + ([full_env["PYTHONPATH"]] if full_env.get("PYTHONPATH") else [])
    )
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            env=full_env,
            start_new_session=True,
        )
    proc = ManagedProc(name, popen, log_path, stop_signal)
    _REGISTRY.append(proc)
    return proc


def stop_all(grace: float = 10.0) -> None:
    """Stop every process still registered, newest first."""
    for proc in list(reversed(_REGISTRY)):
        try:
            proc.stop(grace)
        except Exception as exc:  # keep stopping the others
            print(f"warning: stopping {proc.name} (pid {proc.pid}): {exc}", file=sys.stderr)


def venv_bin(name: str) -> str:
    """A console script of the environment the harness runs in (bench/.venv)."""
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"console script {name!r} not found next to {sys.executable}")
    return found


def free_port() -> int:
    return free_ports(1)[0]


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.1,
    procs: Iterable[ManagedProc] = (),
) -> None:
    """Poll ``check`` until true; fail early if one of ``procs`` died; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        for p in procs:
            p.check_alive()
        try:
            if check():
                return
        except Exception as exc:  # not ready yet
            last_exc = exc
        time.sleep(interval)
    why = f" ({last_exc})" if last_exc else ""
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s{why}")


# ---------------------------------------------------------------- CPU and RSS


def _tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_snapshot(roots: Iterable[int], externals: Iterable[int] = ()) -> dict:
    """CPU seconds so far of process trees (``roots``) and of single processes (``externals``).

    For a tree every live process counts its own user+system time plus that of
    its reaped children (so short-lived children such as ``true`` count).
    """
    tree: dict[tuple[int, float], float] = {}
    for r in roots:
        for p in _tree(r):
            try:
                t = p.cpu_times()
                own = t.user + t.system
                tree[(p.pid, p.create_time())] = own + t.children_user + t.children_system
            except psutil.Error:
                pass
    ext: dict[tuple[int, float], float] = {}
    for pid in externals:
        try:
            p = psutil.Process(pid)
            t = p.cpu_times()
            ext[(pid, p.create_time())] = t.user + t.system
        except psutil.Error:
            pass
    return {"tree": tree, "ext": ext}


def cpu_delta(before: dict, after: dict) -> float:
    """CPU seconds spent between two snapshots.

    Trees: sum(after) - sum(before); a process that ended in between was reaped
    by a parent in the tree, whose children time now holds all of it.
    Externals (e.g. Redis, PostgreSQL backends): per process, new ones counted
    in full, vanished ones ignored.
    """
    tree = sum(after["tree"].values()) - sum(before["tree"].values())
    ext = 0.0
    for key, v in after["ext"].items():
        ext += v - before["ext"].get(key, 0.0)
    return max(0.0, tree) + max(0.0, ext)


def self_cpu() -> float:
    """CPU seconds of the harness process itself (the client side)."""
    t = psutil.Process().cpu_times()
    return t.user + t.system


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_mb(pids: Iterable[int]) -> float | None:
    """Largest peak RSS (VmHWM, since the process started) among ``pids``, in MB."""
    vals = [v for v in (_status_kb(p, "VmHWM") for p in pids) if v is not None]
    return max(vals) / 1024 if vals else None


def current_rss_mb(pids: Iterable[int]) -> float | None:
    """Largest current RSS (VmRSS) among ``pids``, in MB (for shared services)."""
    vals = [v for v in (_status_kb(p, "VmRSS") for p in pids) if v is not None]
    return max(vals) / 1024 if vals else None


def redis_pid(url_host: str = "127.0.0.1", port: int = 6379) -> int | None:
    """PID of the Redis server (from INFO), to count its CPU with Celery and RQ."""
    try:
        import redis

        info = redis.Redis(host=url_host, port=port, socket_timeout=5).info("server")
        return int(info["process_id"])
    except Exception:
        return None
