"""Real `sshd` processes on loopback for the fleet's tests: ten hosts, generated keys, a test user.

Each host is one sshd on its own port, with its own config, host key and pid file under a
temporary folder; the client side gets a generated ssh_config and known_hosts, so nothing
reads or writes the real ~/.ssh. The test user has a plain shell.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
from acceptance_helpers import free_port

from service_configs import sshd_config

SSHD = "/usr/sbin/sshd"
USER = "corralfleet"
PASSWORD = "fleet-pw-3141"
SITES = tuple(f"web{i}" for i in range(1, 11))


@dataclass
class SshHost:
    site: str
    port: int
    config: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class SshFleet:
    base: Path
    ssh_config: Path
    hosts: dict[str, SshHost] = field(default_factory=dict)

    def start(self, site: str) -> None:
        host = self.hosts[site]
        with (self.base / f"sshd-{site}.log").open("ab") as log:
            host.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(host.config)],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", host.port), 0.5),
            ):
                return
            if host.proc.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(
            f"sshd for {site} did not start: {(self.base / f'sshd-{site}.log').read_text()}"
        )

    def kill(self, site: str) -> None:
        """SIGKILL the site's sshd and every sshd it forked: its connections drop at once."""
        host = self.hosts[site]
        if host.proc is None:
            return
        for pid in [*_sshd_descendants(host.proc.pid), host.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        host.proc.wait(5)
        host.proc = None

    def stop_all(self) -> None:
        for site in self.hosts:
            self.kill(site)

    def toml(self, roles: dict[str, list[str]], extra: str = "") -> str:
        """A server config listing the hosts (with their roles) and the generated ssh_config."""
        lines = [f'ssh_config = "{self.ssh_config}"', extra]
        for site, host in self.hosts.items():
            lines += [
                f"[hosts.{site}]",
                f'ssh = "{USER}@127.0.0.1"',
                f"port = {host.port}",
                f"roles = {roles.get(site, [])!r}".replace("'", '"'),
            ]
        return "\n".join(lines) + "\n"


def _sshd_descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        names[int(entry.name)] = name
    found: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            todo.append(child)
            if names.get(child, "").startswith("sshd"):
                found.append(child)
    return found


def _ensure_user() -> None:
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    # a password: sshd (without PAM) refuses a locked account
    subprocess.run(["chpasswd"], input=f"{USER}:{PASSWORD}".encode(), check=True)


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "corral-test", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


def start_fleet(base: Path) -> SshFleet:
    _ensure_user()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    base.chmod(0o755)
    user_pub = _keygen(base / "user_key")
    host_pub = _keygen(base / "host_key")
    (base / "authorized_keys").write_text(user_pub + "\n")
    (base / "authorized_keys").chmod(0o644)
    known: list[str] = []
    fleet = SshFleet(base, base / "ssh_config")
    for site in SITES:
        port = free_port()
        config = base / f"sshd-{site}.conf"
        config.write_text(sshd_config(base, site, port, USER, max_startups=100))
        fleet.hosts[site] = SshHost(site, port, config)
        known.append(f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}")
    (base / "known_hosts").write_text("\n".join(known) + "\n")
    fleet.ssh_config.write_text(
        "\n".join(
            [
                "Host *",
                f"  IdentityFile {base / 'user_key'}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {base / 'known_hosts'}",
                "  GlobalKnownHostsFile /dev/null",
                "  StrictHostKeyChecking yes",
                "  LogLevel ERROR",
            ]
        )
        + "\n"
    )
    for site in SITES:
        fleet.start(site)
    return fleet


@pytest.fixture(scope="session")
def ssh_fleet(missing_service: Callable[[str, str], NoReturn]) -> Iterator[SshFleet]:
    """Ten sshd hosts for the session (skipped loudly locally, a failure in CI, without sshd)."""
    missing = [p for p in (SSHD, "ssh", "ssh-keygen") if not shutil.which(p)]
    if missing:
        missing_service(
            "sshd",
            f"{', '.join(missing)} not found (Debian: apt-get install -y openssh-server)",
        )
    if os.geteuid() != 0:
        missing_service("sshd", "the fleet's tests run as root: they create a test user")
    # not under pytest's temp folder: sshd reads authorized_keys as the test user, who may not
    # enter root's 0700 folders
    base = Path(tempfile.mkdtemp(prefix="corral-sshd-"))
    try:
        fleet = start_fleet(base)
        try:
            yield fleet
        finally:
            fleet.stop_all()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        # the sites' own directories the hosts' Python kept in the machine's temp folder
        for site in Path(tempfile.gettempdir()).glob("corral-worker-site-web*"):
            shutil.rmtree(site, ignore_errors=True)
