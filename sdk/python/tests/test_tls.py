"""TLS and mutual TLS from Python: a test CA made here with `cryptography`, a real
`mandate serve --tls-cert --tls-key --tls-client-ca`, the sync and asyncio clients."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import pathlib
import subprocess
import time
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mandate import Client, MandateError, Signer
from mandate.aio import AsyncClient

from conftest import ADMIN, _binary


class Pki:
    """A CA that writes PEM files into `dir`."""

    def __init__(self, dir: pathlib.Path, name: str) -> None:
        self.dir = dir
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca = dir / f"{name}-ca.pem"
        self.ca.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, file: str, spiffe: str | None = None) -> tuple[pathlib.Path, pathlib.Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        if spiffe:
            names.append(x509.UniformResourceIdentifier(spiffe))
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, file)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = self.dir / f"{file}.pem", self.dir / f"{file}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


class Tls:
    def __init__(self, address: str, data: pathlib.Path, pki: Pki) -> None:
        self.address = address
        self.data = data
        self.pki = pki

    def signer(self) -> Signer:
        return Signer.from_key_file(ADMIN, self.data / "admin.key")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tls]:
    dir = tmp_path_factory.mktemp("tls")
    pki = Pki(dir, "test")
    cert, key = pki.issue("server")
    data = dir / "mandate-data"
    proc = subprocess.Popen(
        [
            str(_binary()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data),
            "--tls-cert", str(cert), "--tls-key", str(key), "--tls-client-ca", str(pki.ca),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on" in first, f"the coordinator did not start: {first!r}"
        t = Tls(first.split()[-1], data, pki)
        cert, key = pki.issue("admin", ADMIN)
        deadline = time.monotonic() + 30
        while True:
            try:
                with Client(t.address, t.signer(), ca_file=pki.ca, cert_file=cert, key_file=key) as c:
                    c.get_trust_bundle()
                break
            except MandateError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield t
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_mutual_tls_serves_the_agent_its_certificate_names(tls: Tls) -> None:
    cert, key = tls.pki.issue("admin-sync", ADMIN)
    with Client(tls.address, tls.signer(), ca_file=tls.pki.ca, cert_file=cert, key_file=key) as c:
        assert any(a.agent_id == ADMIN for a in c.list_agents().agents)

    async def run() -> None:
        async with AsyncClient(
            f"https://{tls.address}", tls.signer(), ca_file=tls.pki.ca, cert_file=cert, key_file=key
        ) as c:
            assert any(a.agent_id == ADMIN for a in (await c.list_agents()).agents)

    asyncio.run(run())


def test_a_certificate_naming_another_agent_is_refused(tls: Tls) -> None:
    cert, key = tls.pki.issue("worker", "spiffe://mandate.local/worker")
    with Client(tls.address, tls.signer(), ca_file=tls.pki.ca, cert_file=cert, key_file=key) as c:
        with pytest.raises(MandateError) as e:
            c.list_agents()
    assert e.value.reason == "PEER_IDENTITY_MISMATCH"


def test_without_a_client_certificate_or_trusting_another_ca_nothing_is_served(
    tls: Tls, tmp_path: pathlib.Path
) -> None:
    with Client(tls.address, tls.signer(), ca_file=tls.pki.ca, timeout=5) as c:
        with pytest.raises(MandateError) as e:
            c.list_agents()
    assert e.value.reason != "PEER_IDENTITY_MISMATCH"
    other = Pki(tmp_path, "other")
    cert, key = other.issue("admin-other", ADMIN)
    with Client(tls.address, tls.signer(), ca_file=other.ca, cert_file=cert, key_file=key, timeout=5) as c:
        with pytest.raises(MandateError):
            c.list_agents()


def test_tls_options_that_do_not_fit_the_address_are_refused_locally(tls: Tls) -> None:
    with pytest.raises(MandateError) as e:
        Client(f"http://{tls.address}", tls.signer(), ca_file=tls.pki.ca)
    assert e.value.reason == "TLS"
    with pytest.raises(MandateError) as e:
        Client(f"https://{tls.address}", tls.signer())
    assert e.value.reason == "TLS"
    with pytest.raises(MandateError) as e:
        Client(tls.address, tls.signer(), ca_file=tls.pki.ca, cert_file=tls.pki.ca)
    assert "its key" in e.value.message
