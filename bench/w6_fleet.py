"""W6: one command (`true`) on N sshd hosts: cold, warm, and 100 in a row on one host.

Each peer, in turn within a repetition, is set up fresh and then measured:

* cold  — connect to every host and run `true` on each (nothing connected before);
* warm  — the same round over the connections kept from before (median of the rounds);
* seq   — `true` n times in a row on one host over a kept connection (total ms).

corral runs in a fresh ``corral serve`` with the hosts in its inventory: cold is
``corral exec --hosts web1,… -- true`` from command start to exit, right after the
server started (the coordinator has connected to no host yet); warm is the same
command again. ``corral (API)`` is the coordinator-side round: the same run (one
job per site) submitted with corral's Client in one request that answers at the run's end, and ``seq`` is n
such runs of one job on web1 in a row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import procs, sshd_fleet
from bench.sshd_fleet import USER, SshFleet

PEERS = ["corral", "asyncssh", "fabric", "pssh", "execnet", "openssh", "ansible"]


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


class Peer:
    name = "?"
    #: how it runs here (one line for the report)
    about = ""
    has_seq = True

    def __init__(self, fleet: SshFleet, workdir: Path) -> None:
        self.fleet = fleet
        self.workdir = workdir

    def cold(self) -> float:
        raise NotImplementedError

    def warm(self) -> float:
        raise NotImplementedError

    def seq(self, n: int) -> float:
        raise NotImplementedError

    def close(self) -> None:
        pass

    @staticmethod
    def version() -> str:
        return "?"


# -- corral ------------------------------------------------------------------------------


class CorralFleet(Peer):
    name = "corral"
    about = (
        "`corral serve` with the hosts in its inventory (execnet over ssh, kept warm); "
        "cold/warm = `corral exec --hosts … -- true` from command start to exit; "
        "(API) = the same run through `corral.Client`, one submit that answers at the run's end"
    )

    def __init__(self, fleet: SshFleet, workdir: Path) -> None:
        super().__init__(fleet, workdir)
        from bench.systems.corral_sys import CorralSystem

        self.system = CorralSystem(workdir)
        config = workdir / "corral.toml"
        workdir.mkdir(parents=True, exist_ok=True)
        lines = [f'ssh_config = "{fleet.ssh_config}"']
        for h in fleet.hosts:
            lines += [f"[hosts.{h.site}]", f'ssh = "{USER}@127.0.0.1"', f"port = {h.port}"]
        config.write_text("\n".join(lines) + "\n")
        self.system.extra_args = ["--config", str(config)]
        self.system.start()
        self.sites = [h.site for h in fleet.hosts]
        self.api: dict[str, float] = {}

    def _exec(self) -> float:
        env = dict(os.environ, CORRAL_SERVER=self.system.base, CORRAL_TOKEN=self.system.token)
        argv = [procs.venv_bin("corral"), "exec", "--hosts", ",".join(self.sites), "--", "true"]
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        ms = _ms(t0)
        if done.returncode != 0:
            raise RuntimeError(f"corral exec exited {done.returncode}: {done.stderr[-500:]}")
        return ms

    def cold(self) -> float:
        return self._exec()

    def warm(self) -> float:
        return self._exec()

    def api_round(self, sites: list[str]) -> float:
        client = self.system.client
        assert client is not None
        jobs = {s: {"command": "true", "on": {"site": s}} for s in sites}
        t0 = time.perf_counter()
        # one request: the submit answers when the run has ended (as W2 calls a task)
        run = client.submit({"name": f"w6-{time.monotonic_ns()}", "jobs": jobs}, wait=120)
        ms = _ms(t0)
        if run.state != "passed":
            raise RuntimeError(f"corral run {run.id} ended {run.state}")
        return ms

    def seq(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            self.api_round(self.sites[:1])
        return _ms(t0)

    def close(self) -> None:
        self.system.stop()

    @staticmethod
    def version() -> str:
        from importlib import metadata

        return f"corral {metadata.version('corral')}"


# -- asyncssh ----------------------------------------------------------------------------


class AsyncSSH(Peer):
    name = "asyncssh"
    about = (
        "`asyncssh.connect` to every host at once, `conn.run('true')`; warm over kept connections"
    )

    def __init__(self, fleet: SshFleet, workdir: Path) -> None:
        super().__init__(fleet, workdir)
        self.loop = asyncio.new_event_loop()
        self.conns: list[Any] = []

    async def _connect(self, port: int) -> Any:
        import asyncssh

        return await asyncssh.connect(
            "127.0.0.1",
            port=port,
            username=USER,
            client_keys=[str(self.fleet.key)],
            known_hosts=str(self.fleet.known_hosts),
            agent_path=None,
        )

    async def _cold(self) -> None:
        self.conns = list(await asyncio.gather(*(self._connect(h.port) for h in self.fleet.hosts)))
        await self._round()

    async def _round(self) -> None:
        for r in await asyncio.gather(*(c.run("true", check=True) for c in self.conns)):
            assert r.exit_status == 0

    async def _seq(self, n: int) -> None:
        for _ in range(n):
            await self.conns[0].run("true", check=True)

    def cold(self) -> float:
        t0 = time.perf_counter()
        self.loop.run_until_complete(self._cold())
        return _ms(t0)

    def warm(self) -> float:
        t0 = time.perf_counter()
        self.loop.run_until_complete(self._round())
        return _ms(t0)

    def seq(self, n: int) -> float:
        t0 = time.perf_counter()
        self.loop.run_until_complete(self._seq(n))
        return _ms(t0)

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.loop.run_until_complete(asyncio.sleep(0.05))
        self.loop.close()

    @staticmethod
    def version() -> str:
        import asyncssh

        return f"asyncssh {asyncssh.__version__}"


# -- Fabric ------------------------------------------------------------------------------


class Fabric(Peer):
    name = "fabric"
    about = "Fabric 3 `ThreadingGroup(...).run('true', hide=True)`; warm = the same group again"

    def _connections(self) -> list[Any]:
        from fabric import Connection

        kw = {
            "key_filename": str(self.fleet.key),
            "look_for_keys": False,
            "allow_agent": False,
        }
        return [
            Connection("127.0.0.1", user=USER, port=h.port, connect_kwargs=kw)
            for h in self.fleet.hosts
        ]

    def cold(self) -> float:
        from fabric import ThreadingGroup

        t0 = time.perf_counter()
        conns = self._connections()
        for c in conns:
            c.client.load_host_keys(str(self.fleet.known_hosts))
        self.group = ThreadingGroup.from_connections(conns)
        self._check(self.group.run("true", hide=True))
        return _ms(t0)

    @staticmethod
    def _check(results: Any) -> None:
        bad = [r for r in results.values() if r.exited != 0]
        if bad or results.failed:
            raise RuntimeError(f"fabric: {len(bad) + len(results.failed)} hosts failed")

    def warm(self) -> float:
        t0 = time.perf_counter()
        self._check(self.group.run("true", hide=True))
        return _ms(t0)

    def seq(self, n: int) -> float:
        conn = next(iter(self.group))
        t0 = time.perf_counter()
        for _ in range(n):
            conn.run("true", hide=True)
        return _ms(t0)

    def close(self) -> None:
        self.group.close()

    @staticmethod
    def version() -> str:
        from importlib import metadata

        return f"fabric {metadata.version('fabric')}, paramiko {metadata.version('paramiko')}"


# -- parallel-ssh ------------------------------------------------------------------------


class PSSH(Peer):
    name = "pssh"
    about = "parallel-ssh `ParallelSSHClient` (libssh2), `run_command('true')` + `join`"

    def cold(self) -> float:
        from pssh.clients import ParallelSSHClient
        from pssh.config import HostConfig

        t0 = time.perf_counter()
        self.client = ParallelSSHClient(
            ["127.0.0.1"] * len(self.fleet.hosts),
            host_config=[
                HostConfig(port=h.port, user=USER, private_key=str(self.fleet.key))
                for h in self.fleet.hosts
            ],
            pool_size=len(self.fleet.hosts),
            num_retries=1,
        )
        self._round()
        return _ms(t0)

    def _round(self) -> None:
        out = self.client.run_command("true")
        self.client.join(out)
        bad = [o for o in out if o.exit_code != 0 or o.exception]
        if bad:
            raise RuntimeError(f"pssh: {bad[0].exception or bad[0].exit_code}")

    def warm(self) -> float:
        t0 = time.perf_counter()
        self._round()
        return _ms(t0)

    def seq(self, n: int) -> float:
        from pssh.clients import SSHClient

        h = self.fleet.hosts[0]
        one = SSHClient("127.0.0.1", user=USER, port=h.port, pkey=str(self.fleet.key))
        one.run_command("true")  # connected before timing, as the others' kept connections
        t0 = time.perf_counter()
        for _ in range(n):
            out = one.run_command("true")
            one.wait_finished(out)
            if out.exit_code != 0:
                raise RuntimeError(f"pssh: exit {out.exit_code}")
        ms = _ms(t0)
        one.disconnect()
        return ms

    def close(self) -> None:
        for c in getattr(self.client, "_host_clients", {}).values():
            if c is not None:
                c.disconnect()

    @staticmethod
    def version() -> str:
        from importlib import metadata

        return f"parallel-ssh {metadata.version('parallel-ssh')}"


# -- execnet -----------------------------------------------------------------------------

_LOOP = """
import subprocess
while True:
    cmd = channel.receive()
    if cmd is None:
        break
    channel.send(subprocess.run(cmd, shell=True).returncode)
"""


class Execnet(Peer):
    name = "execnet"
    about = (
        "execnet gateways over `ssh` (one per host, opened at once), then one kept channel "
        "each running `true` per message"
    )

    def _open(self, port: int) -> tuple[Any, Any]:
        import execnet

        spec = f"ssh=-F {self.fleet.ssh_config} -p {port} {USER}@127.0.0.1//python=python3"
        gw = execnet.makegateway(spec)
        return gw, gw.remote_exec(_LOOP)

    def cold(self) -> float:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(self.fleet.hosts)) as pool:
            self.pairs = list(pool.map(lambda h: self._open(h.port), self.fleet.hosts))
        self._round()
        return _ms(t0)

    def _round(self) -> None:
        for _, ch in self.pairs:
            ch.send("true")
        for _, ch in self.pairs:
            if ch.receive(60) != 0:
                raise RuntimeError("execnet: true failed")

    def warm(self) -> float:
        t0 = time.perf_counter()
        self._round()
        return _ms(t0)

    def seq(self, n: int) -> float:
        ch = self.pairs[0][1]
        t0 = time.perf_counter()
        for _ in range(n):
            ch.send("true")
            if ch.receive(60) != 0:
                raise RuntimeError("execnet: true failed")
        return _ms(t0)

    def close(self) -> None:
        for gw, ch in getattr(self, "pairs", []):
            try:
                ch.send(None)
                ch.waitclose(5)
            finally:
                gw.exit()

    @staticmethod
    def version() -> str:
        import execnet

        return f"execnet {execnet.__version__}"


# -- OpenSSH -----------------------------------------------------------------------------


class OpenSSH(Peer):
    name = "openssh"
    about = (
        "`ssh HOST true &` for every host in a shell loop, then `wait`; warm over "
        "ControlMaster connections opened beforehand (ControlPersist)"
    )

    def _ssh(self, port: int, master: bool) -> str:
        args = ["ssh", "-F", str(self.fleet.ssh_config), "-p", str(port)]
        if master:
            args += ["-o", "ControlMaster=no", "-o", f"ControlPath={self.workdir}/cm-%p"]
        return shlex.join([*args, f"{USER}@127.0.0.1"])

    def _loop(self, master: bool) -> float:
        body = " ".join(
            f'{self._ssh(h.port, master)} true & pids="$pids $!";' for h in self.fleet.hosts
        )
        script = f'pids=""; {body} rc=0; for p in $pids; do wait $p || rc=1; done; exit $rc'
        t0 = time.perf_counter()
        subprocess.run(["sh", "-c", script], check=True, timeout=120)
        return _ms(t0)

    def cold(self) -> float:
        return self._loop(master=False)

    def warm(self) -> float:
        if not getattr(self, "masters", False):
            self.workdir.mkdir(parents=True, exist_ok=True)
            for h in self.fleet.hosts:
                subprocess.run(
                    [
                        "ssh", "-F", str(self.fleet.ssh_config), "-p", str(h.port),
                        "-o", "ControlMaster=yes", "-o", f"ControlPath={self.workdir}/cm-%p",
                        "-o", "ControlPersist=600", "-fN", f"{USER}@127.0.0.1",
                    ],
                    check=True,
                    timeout=60,
                )  # fmt: skip
            self.masters = True
        return self._loop(master=True)

    def seq(self, n: int) -> float:
        port = self.fleet.hosts[0].port
        script = f"for i in $(seq {n}); do {self._ssh(port, True)} true || exit 1; done"
        t0 = time.perf_counter()
        subprocess.run(["sh", "-c", script], check=True, timeout=300)
        return _ms(t0)

    def close(self) -> None:
        if getattr(self, "masters", False):
            for h in self.fleet.hosts:
                subprocess.run(
                    [
                        "ssh", "-F", str(self.fleet.ssh_config), "-p", str(h.port),
                        "-o", f"ControlPath={self.workdir}/cm-%p", "-O", "exit",
                        f"{USER}@127.0.0.1",
                    ],
                    capture_output=True,
                    timeout=30,
                )  # fmt: skip

    @staticmethod
    def version() -> str:
        done = subprocess.run(["ssh", "-V"], capture_output=True, text=True)
        return (done.stderr or done.stdout).strip()


# -- Ansible -----------------------------------------------------------------------------


class Ansible(Peer):
    name = "ansible"
    about = (
        "`ansible all -m command -a true -f N` (ad-hoc, ssh connection plugin); "
        "warm = a second run while its ControlPersist connections live; no 100-in-a-row"
    )
    has_seq = False

    def __init__(self, fleet: SshFleet, workdir: Path) -> None:
        super().__init__(fleet, workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.inventory = workdir / "inventory.ini"
        self.inventory.write_text(
            "\n".join(
                f"{h.site} ansible_host=127.0.0.1 ansible_port={h.port} ansible_user={USER} "
                f"ansible_ssh_private_key_file={fleet.key}"
                for h in fleet.hosts
            )
            + "\n"
        )
        self.env = dict(
            os.environ,
            ANSIBLE_HOST_KEY_CHECKING="False",
            ANSIBLE_SSH_ARGS=f"-F {fleet.ssh_config} -o ControlMaster=auto -o ControlPersist=120s",
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(workdir / "cp"),
            ANSIBLE_LOCAL_TEMP=str(workdir / "tmp"),
            ANSIBLE_PYTHON_INTERPRETER="/usr/bin/python3",
            ANSIBLE_CONFIG=str(workdir / "none.cfg"),
            ANSIBLE_NOCOLOR="1",
        )

    def _run(self) -> float:
        argv = [
            procs.venv_bin("ansible"),
            "all",
            "-i",
            str(self.inventory),
            "-m",
            "command",
            "-a",
            "true",
            "-f",
            str(len(self.fleet.hosts)),
            "-o",
        ]
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=300)
        ms = _ms(t0)
        if done.returncode != 0:
            raise RuntimeError(f"ansible exited {done.returncode}: {done.stdout[-500:]}")
        return ms

    def cold(self) -> float:
        return self._run()

    def warm(self) -> float:
        return self._run()

    def close(self) -> None:
        for sock in (self.workdir / "cp").glob("*"):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"],
                capture_output=True,
                timeout=30,
            )

    @staticmethod
    def version() -> str:
        from importlib import metadata

        return f"ansible-core {metadata.version('ansible-core')}"


CLASSES: dict[str, type[Peer]] = {
    "corral": CorralFleet,
    "asyncssh": AsyncSSH,
    "fabric": Fabric,
    "pssh": PSSH,
    "execnet": Execnet,
    "openssh": OpenSSH,
    "ansible": Ansible,
}


def versions(peers: list[str]) -> dict[str, str]:
    out = {}
    for name in peers:
        try:
            out[name] = CLASSES[name].version()
        except Exception as exc:
            out[name] = f"unavailable ({type(exc).__name__}: {exc})"
    return out


def _import_libraries(peers: list[str]) -> None:
    """Import the peers' libraries first: cold measures connecting, not importing."""
    import importlib

    mods = {
        "asyncssh": "asyncssh",
        "fabric": "fabric",
        "pssh": "pssh.clients",
        "execnet": "execnet",
    }
    for name in peers:
        if name in mods:
            # a missing library fails its peer alone, with its error, when it runs
            with contextlib.suppress(ImportError):
                importlib.import_module(mods[name])


def measure(
    workdir: Path,
    peers: list[str],
    hosts: int,
    warm_rounds: int,
    seq_n: int,
    log=print,
    errors: dict[str, list[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """One repetition: start the sshd hosts, then each peer in turn (fresh, cold first)."""
    _import_libraries(peers)
    fleet = sshd_fleet.start(workdir / "sshd", hosts)
    out: dict[str, dict[str, float]] = {}
    try:
        for name in peers:
            row = f"w6:{name}"
            peer: Peer | None = None
            try:
                peer = CLASSES[name](fleet, workdir / name)
                vals = {"w6_cold_ms": peer.cold()}
                rounds = [peer.warm() for _ in range(1 if name == "ansible" else warm_rounds)]
                vals["w6_warm_ms"] = statistics.median(rounds)
                if isinstance(peer, CorralFleet):
                    api = [peer.api_round(peer.sites) for _ in range(warm_rounds)]
                    out["w6:corral-api"] = {"w6_warm_ms": statistics.median(api)}
                    out["w6:corral-api"]["w6_seq_ms"] = peer.seq(seq_n)
                elif peer.has_seq:
                    vals["w6_seq_ms"] = peer.seq(seq_n)
                out[row] = vals
                log(f"  w6 {name}: " + ", ".join(f"{k}={v:,.1f}" for k, v in vals.items()))
                if "w6:corral-api" in out and name == "corral":
                    log("  w6 corral (API): " + ", ".join(
                        f"{k}={v:,.1f}" for k, v in out["w6:corral-api"].items()
                    ))  # fmt: skip
            except Exception as exc:
                msg = f"{type(exc).__name__}: {exc}".strip()[:1500]
                log(f"  w6 {name}: FAILED: {msg}")
                if errors is not None:
                    errors.setdefault(f"W6 {name}", []).append(msg)
            finally:
                if peer is not None:
                    try:
                        peer.close()
                    except Exception as exc:
                        log(f"  w6 {name}: close: {exc}")
    finally:
        fleet.stop()
    return out
