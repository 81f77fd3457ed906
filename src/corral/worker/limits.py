"""Resource limits for one attempt: rlimits and cgroups, and naming the limit that ended a job (stdlib only).

A job with limits starts through a small wrapper instead of a fork with `preexec_fn` (which
costs every spawn its vfork fast path and is unsafe in a threaded worker): `/bin/sh` moves
itself into the attempt's cgroups, then execs util-linux `prlimit`, which sets the rlimits
and execs the job. Jobs without limits keep the plain spawn.

What each limit uses:
- cpu: RLIMIT_CPU (SIGXCPU at the limit, SIGKILL a second later);
- memory: a cgroup v1 memory controller where one is writable (the kernel's OOM killer ends
  the job, and the cgroup counts it); otherwise RLIMIT_AS (allocations fail);
- procs: a cgroup v1 pids controller where writable; otherwise RLIMIT_NPROC (per user, and
  not enforced for root);
- fsize: RLIMIT_FSIZE (SIGXFSZ); nofile: RLIMIT_NOFILE.
cgroup v2 controllers are not used for limits: the development machine's v2 mount has none
(they are bound to its v1 hierarchies), so a v2 limit could not be tested there; with v2 alone,
limits are the rlimits. (Jobs are followed by v2 groups all the same: worker/tracking.py.)
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CGROUP_V1 = "/sys/fs/cgroup"
_KILL_ROUNDS = 50  # rounds of SIGKILL, 10 ms apart, for processes that fork while being killed
_PREFIX = "corral"


def format_size(n: float) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            value = n / scale
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{int(n)} bytes"


def _secs(value: float) -> str:
    return f"{value:g} s"


@dataclass(frozen=True)
class Offer:
    """What this machine offers for limits, detected once per worker."""

    prlimit: str | None
    memory_cgroup: str | None  # the v1 memory hierarchy's directory we may create groups in
    pids_cgroup: str | None

    def describe(self) -> str:
        parts = ["rlimits via prlimit" if self.prlimit else "no prlimit (rlimits not applied)"]
        if self.memory_cgroup:
            parts.append("cgroup v1 memory")
        if self.pids_cgroup:
            parts.append("cgroup v1 pids")
        if not (self.memory_cgroup or self.pids_cgroup):
            parts.append("no writable cgroup")
        return ", ".join(parts)


def _own_v1_dir(controller: str) -> str | None:
    """Our own cgroup in a v1 hierarchy, if that hierarchy is mounted where we expect it."""
    root = os.path.join(CGROUP_V1, controller)
    if not os.path.isfile(os.path.join(root, "cgroup.procs")):
        return None
    for line in read_lines("/proc/self/cgroup"):
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            # a container often mounts its own cgroup as the hierarchy's root
            candidate = os.path.join(root, path.lstrip("/"))
            return candidate if os.path.isdir(candidate) else root
    return None


def read_lines(path: str) -> list[str]:
    """A small file's lines, or none where it cannot be read (a kernel without that /proc file)."""
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def _writable(parent: str) -> str | None:
    probe = os.path.join(parent, f"{_PREFIX}-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
    except OSError:
        return None
    with contextlib.suppress(OSError):
        os.rmdir(probe)
    return parent


def detect() -> Offer:
    memory = _own_v1_dir("memory")
    pids = _own_v1_dir("pids")
    return Offer(
        prlimit=shutil.which("prlimit"),
        memory_cgroup=_writable(memory) if memory else None,
        pids_cgroup=_writable(pids) if pids else None,
    )


_offer: Offer | None = None


def offer() -> Offer:
    global _offer
    if _offer is None:
        _offer = detect()
    return _offer


@dataclass
class Applied:
    """The limits put on one attempt: the wrapper argv, its cgroups, and what they recorded."""

    limits: Mapping[str, float]
    offer: Offer
    groups: dict[str, str] = field(default_factory=dict)  # controller -> cgroup directory

    def setup(self, name: str, owner: tuple[int, int] | None = None) -> None:
        """Create the attempt's cgroups (before the spawn); OSError if the kernel refuses.

        `owner` (uid, gid): the job's user, who must be able to move itself into them."""
        lim = self.limits
        try:
            if "memory" in lim and self.offer.memory_cgroup:
                d = self._make(self.offer.memory_cgroup, name, "memory")
                _write(d, "memory.limit_in_bytes", int(lim["memory"]))
                # with swap accounted, swapping out does not get past the limit
                with contextlib.suppress(OSError):
                    _write(d, "memory.memsw.limit_in_bytes", int(lim["memory"]))
            if "procs" in lim and self.offer.pids_cgroup:
                d = self._make(self.offer.pids_cgroup, name, "pids")
                _write(d, "pids.max", int(lim["procs"]))
            if owner is not None:
                for d in self.groups.values():
                    os.chown(os.path.join(d, "cgroup.procs"), *owner)
        except OSError:
            self.cleanup()
            raise

    def _make(self, parent: str, name: str, controller: str) -> str:
        d = os.path.join(parent, f"{_PREFIX}-{name}")
        os.mkdir(d)
        self.groups[controller] = d
        return d

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv` behind the wrapper that joins the cgroups and sets the rlimits."""
        lim = self.limits
        out: list[str] = []
        if self.groups:
            joins = " && ".join(f'echo $$ > "${i + 1}"' for i in range(len(self.groups)))
            procs = [os.path.join(d, "cgroup.procs") for d in self.groups.values()]
            n = len(procs)
            out += ["/bin/sh", "-c", f'{joins} && shift {n} && exec "$@"', "corral-limits"]
            out += procs
        rl: list[str] = []
        if "cpu" in lim:
            soft = max(1, math.ceil(lim["cpu"]))
            rl.append(f"--cpu={soft}:{soft + 1}")
        if "memory" in lim and "memory" not in self.groups:
            rl.append(f"--as={int(lim['memory'])}")
        if "procs" in lim and "pids" not in self.groups:
            rl.append(f"--nproc={int(lim['procs'])}")
        if "fsize" in lim:
            rl.append(f"--fsize={int(lim['fsize'])}")
        if "nofile" in lim:
            rl.append(f"--nofile={int(lim['nofile'])}")
        if rl and self.offer.prlimit:
            out += [self.offer.prlimit, *rl, "--"]
        return [*out, *argv]

    def kill_all(self) -> None:
        """SIGKILL every process still in the attempt's cgroups (escaped with setsid, too)."""
        for d in self.groups.values():
            kill_members(d)

    def cleanup(self) -> None:
        self.kill_all()
        for d in list(self.groups.values()):
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)  # the last members are still exiting

    def resources(self) -> dict[str, float]:
        """Numbers for the attempt record: what the cgroups saw, and which mechanism was used."""
        out: dict[str, float] = {}
        d = self.groups.get("memory")
        if d:
            out["memory_peak_bytes"] = float(_read_int(d, "memory.max_usage_in_bytes") or 0)
        d = self.groups.get("pids")
        if d:
            out["procs_peak"] = float(_read_int(d, "pids.peak") or 0)
        out["cgroup_version"] = 1.0 if self.groups else 0.0
        return out

    def explain(
        self, exit_code: int | None, cpu_used: float, sandboxed: bool
    ) -> tuple[str, bool] | None:
        """("killed: memory limit 512 MiB", killed) when a limit ended or hobbled the job."""
        lim = self.limits
        sig = -exit_code if exit_code is not None and exit_code < 0 else None
        if sig is None and sandboxed and exit_code is not None and exit_code > 128:
            sig = exit_code - 128  # bwrap exits 128+N when the job died of signal N
        d = self.groups.get("memory")
        if "memory" in lim and d and _oom_kills(d) > 0:
            return f"killed: memory limit {format_size(lim['memory'])}", True
        if "cpu" in lim and (
            sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= lim["cpu"])
        ):
            return f"killed: CPU limit {_secs(lim['cpu'])}", True
        if "fsize" in lim and sig == signal.SIGXFSZ:
            return f"killed: file size limit {format_size(lim['fsize'])}", True
        d = self.groups.get("pids")
        if "procs" in lim and d and _pids_max_hits(d) > 0:
            return f"procs limit {int(lim['procs'])} reached", False
        return None


def _write(d: str, name: str, value: int) -> None:
    with open(os.path.join(d, name), "w") as f:
        f.write(str(value))


def _read(d: str, name: str) -> str:
    try:
        with open(os.path.join(d, name)) as f:
            return f.read()
    except OSError:
        return ""


def _read_int(d: str, name: str) -> int | None:
    text = _read(d, name).strip()
    return int(text) if text.isdigit() else None


def _oom_kills(d: str) -> int:
    for line in _read(d, "memory.oom_control").splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    # kernels before 4.13 do not count OOM kills: hitting the limit is the best hint left
    return _read_int(d, "memory.failcnt") or 0


def _pids_max_hits(d: str) -> int:
    for line in _read(d, "pids.events").splitlines():
        key, _, value = line.partition(" ")
        if key == "max" and value.strip().isdigit():
            return int(value)
    return 0


def kill_members(path: str, pgid: int | None = None) -> int:
    """SIGKILL every process in the group at `path` and the groups below it, again until none
    is listed; how many were found the first time outside the process group `pgid`."""
    first = -1
    me = os.getpid()  # a thread of ours that could not move back out (never meant to happen)
    for _ in range(_KILL_ROUNDS):
        pids = [p for p in members(path) if p != me]
        if first < 0:
            first = sum(1 for p in pids if pgid is None or _pgid(p) != pgid)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    return max(first, 0)


def members(path: str) -> list[int]:
    """The processes in the group at `path` and below it (the zombies no longer are listed)."""
    pids: list[int] = []
    for top, dirs, _files in os.walk(path):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(top, d))]
        try:
            with open(os.path.join(top, "cgroup.procs")) as f:
                pids += [int(x) for x in f.read().split() if x.isdigit()]
        except OSError as exc:
            if exc.errno == errno.EOPNOTSUPP:  # a v2 threaded group lists threads alone
                pids += _processes_of(os.path.join(top, "cgroup.threads"))
    return list(dict.fromkeys(pids))


def _processes_of(threads_file: str) -> list[int]:
    """The processes whose threads a v2 `cgroup.threads` lists."""
    pids: list[int] = []
    with contextlib.suppress(OSError), open(threads_file) as f:
        tids = [x for x in f.read().split() if x.isdigit()]
    for tid in tids:
        with contextlib.suppress(OSError), open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    pids.append(int(line.split()[1]))
                    break
    return pids


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None  # gone already
