"""TLS: `corral serve --tls-cert/--tls-key` with a CA made here; clients trust it by --ca."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import pytest
from acceptance_helpers import Cluster, wait_until
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


def make_pki(where: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1 and localhost it signed."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corral test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = where / "ca.pem", where / "server.pem", where / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path, ca_path


def test_tls_server_with_ca(cluster: Cluster, tmp_path: Path) -> None:
    cert, key, ca = make_pki(tmp_path)
    cluster.start(local_slots=0, tls=(cert, key, ca))
    assert cluster.url.startswith("https://127.0.0.1:")

    shown = cluster.cli("status", "--ca", str(ca))
    assert shown.code == 0, shown
    worker = cluster.worker("tls-worker", {"pool": "tls"})  # it passes --ca
    wait_until(lambda: "joined https://" in worker.stdout(), 5, "the worker to say it joined")

    done = cluster.cli("run", "--ca", str(ca), "--on", "pool=tls", "--", "echo over TLS")
    assert done.code == 0, done
    assert "over TLS" in done.out
    run = cluster.runs_named("echo")[0]
    assert cluster.job(run["id"], "job")["worker"] == "tls-worker"
    # CORRAL_CA does the same as --ca
    assert cluster.cli("status", env={"CORRAL_CA": str(ca)}).code == 0

    # without the CA: a clear certificate error, exit 2, no traceback
    refused = cluster.cli("status")
    assert refused.code == 2, refused
    assert "certificate" in refused.err.lower(), refused
    assert "Traceback" not in refused.err
    # plain HTTP to the TLS port does not work either
    plain = cluster.cli("status", env={"CORRAL_SERVER": cluster.url.replace("https", "http")})
    assert plain.code == 2 and "Traceback" not in plain.err, plain
    # a CA file that is not there: named in the error
    lost = cluster.cli("status", "--ca", str(tmp_path / "nope.pem"))
    assert lost.code == 2 and "nope.pem" in lost.err and "Traceback" not in lost.err, lost
