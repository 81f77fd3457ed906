"""How the tests and the benchmark start their loopback services: sshd and SeaweedFS (stdlib only).

The acceptance fleet, the object store tests and `bench/` all use these, so a service is
configured one way everywhere; the benchmark puts this directory on its import path.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from pathlib import Path


def free_ports(n: int) -> list[int]:
    """n distinct free ports on loopback: all held while they are picked, so none is handed
    out twice (one at a time, the kernel may give the same port again once it is let go)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def sshd_config(base: Path, site: str, port: int, user: str, max_startups: int) -> str:
    """An sshd_config for one host on 127.0.0.1: key login of `user` only, files under `base`."""
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {base / 'host_key'}",
        f"PidFile {base / f'sshd-{site}.pid'}",
        f"AuthorizedKeysFile {base / 'authorized_keys'}",
        "StrictModes no",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        f"AllowUsers {user}",
        f"MaxStartups {max_startups}",
        f"MaxSessions {max_startups}",
        "LogLevel ERROR",
    ]
    return "\n".join(lines) + "\n"


def weed_s3_identity(path: Path, name: str, access_key: str, secret_key: str) -> None:
    """The S3 credentials file of `weed server -s3`: one identity allowed everything."""
    identity = {
        "name": name,
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    path.write_text(json.dumps({"identities": [identity]}))


def weed_server_argv(
    binary: str, base: Path, config: Path, ports: Sequence[int], volume_limit_mb: int
) -> list[str]:
    """`weed server` with a filer and S3, bound to 127.0.0.1 on the eight given ports, keeping
    its data and sockets under `base` (not in /tmp, where parallel runs would collide)."""
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return [
        binary,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={base / 'data'}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-master.volumeSizeLimitMB={volume_limit_mb}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={base / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={base / 's3.sock'}",
        f"-s3.config={config}",
    ]
