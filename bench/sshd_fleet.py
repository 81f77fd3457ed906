"""N real `sshd` on loopback ports for W6: generated keys, a plain user, stopped by PID.

Adapted from tests/acceptance/fleet_sshd.py: one sshd per host, each with its own
port, config and pid file under the scratch directory, one shared host key; the
client side gets a generated ssh_config and known_hosts, so nothing reads or
writes the real ~/.ssh. Needs root (to add the user) and Debian's openssh-server.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.service_configs import free_ports, sshd_config

SSHD = "/usr/sbin/sshd"
USER = "corralbench"
PASSWORD = "bench-fleet-2718"


@dataclass
class Host:
    site: str
    port: int
    config: Path


@dataclass
class SshFleet:
    base: Path
    hosts: list[Host] = field(default_factory=list)
    procs: list[procs.ManagedProc] = field(default_factory=list)

    @property
    def ssh_config(self) -> Path:
        return self.base / "ssh_config"

    @property
    def key(self) -> Path:
        return self.base / "user_key"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop(grace=3)
        self.procs.clear()
        # the directories corral's connections kept for its sites in the hosts' temp folder
        for h in self.hosts:
            shutil.rmtree(Path(tempfile.gettempdir(), f"corral-worker-site-{h.site}"), True)


def missing() -> list[str]:
    return [p for p in (SSHD, "ssh", "ssh-keygen") if not shutil.which(p)]


def _ensure_user() -> None:
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    # a password: sshd (without PAM) refuses a locked account
    subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}".encode(), check=True)


def _keygen(path: Path, kind: str = "ed25519") -> None:
    # a new key each start: a repetition's fleet reuses the directory of the one before
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "corral-bench", "-f", str(path)]
        + (["-m", "PEM"] if kind == "rsa" else []),
        check=True,
    )


def start(base: Path, n: int) -> SshFleet:
    """Start ``n`` sshd (sites web1..webN); wait until each accepts connections."""
    if missing():
        raise RuntimeError(
            f"{', '.join(missing())} not found (Debian: apt-get install -y openssh-server)"
        )
    _ensure_user()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    fleet = SshFleet(base)
    # RSA in PEM: every peer's SSH library reads it (libssh2 included)
    _keygen(fleet.key, "rsa")
    _keygen(base / "host_key")
    (base / "authorized_keys").write_text(fleet.key.with_suffix(".pub").read_text())
    (base / "authorized_keys").chmod(0o644)
    host_pub = (base / "host_key.pub").read_text().split()[:2]
    known = []
    for i, port in enumerate(free_ports(n), start=1):
        site = f"web{i}"
        config = base / f"sshd-{site}.conf"
        config.write_text(sshd_config(base, site, port, USER, max_startups=200))
        fleet.hosts.append(Host(site, port, config))
        known.append(f"[127.0.0.1]:{port} {' '.join(host_pub)}")
    fleet.known_hosts.write_text("\n".join(known) + "\n")
    fleet.ssh_config.write_text(
        "\n".join(
            [
                "Host *",
                f"  IdentityFile {fleet.key}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {fleet.known_hosts}",
                "  GlobalKnownHostsFile /dev/null",
                "  StrictHostKeyChecking yes",
                "  BatchMode yes",
                "  LogLevel ERROR",
            ]
        )
        + "\n"
    )
    try:
        for h in fleet.hosts:
            fleet.procs.append(
                procs.spawn(
                    f"sshd-{h.site}", [SSHD, "-D", "-e", "-f", str(h.config)], base / "logs"
                )
            )
        for h, p in zip(fleet.hosts, fleet.procs, strict=True):
            procs.wait_until(
                f"sshd {h.site}", lambda h=h: _accepts(h.port), timeout=10, interval=0.05, procs=[p]
            )
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    time.sleep(0)
    return False
