"""A real `mandate serve` on an ephemeral loopback port, with its own data directory,
started for the test session and stopped after it."""

from __future__ import annotations

import os
import pathlib
import subprocess
import tempfile
import time
from typing import Iterator, Sequence

import pytest

from mandate import Client, MandateError, Signer

ROOT = pathlib.Path(__file__).resolve().parents[3]
ADMIN = "spiffe://mandate.local/admin"


class Coordinator:
    def __init__(self, address: str, data: pathlib.Path, binary: pathlib.Path) -> None:
        self.address = address
        self.data = data
        self.binary = binary

    def admin(self) -> Client:
        return Client(self.address, Signer.from_key_file(ADMIN, self.data / "admin.key"))


def _binary() -> pathlib.Path:
    path = os.environ.get("MANDATE_BIN")
    if path:
        return pathlib.Path(path)
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = target / "debug" / "mandate"
    if not binary.exists():
        subprocess.run(["cargo", "build", "--locked", "-q", "-p", "mandate-cli"], cwd=ROOT, check=True)
    return binary


def start_coordinator(
    binary: pathlib.Path, data: pathlib.Path, listen: str = "127.0.0.1:0", extra: Sequence[str] = ()
) -> tuple[subprocess.Popen[str], Coordinator]:
    """Starts `mandate serve` on `data` (with `extra` flags); returns the process and a
    handle once it answers a signed call. The caller stops the process."""
    proc = subprocess.Popen(
        [str(binary), "serve", "--listen", listen, "--data-dir", str(data), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on" in first, f"the coordinator did not start: {first!r}"
        c = Coordinator(first.split()[-1], data, binary)
        # Poll until it answers a signed call (never sleep blindly for long).
        deadline = time.monotonic() + 30
        while True:
            try:
                with c.admin() as admin:
                    admin.get_trust_bundle()
                return proc, c
            except MandateError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    except BaseException:
        proc.terminate()
        proc.wait(timeout=10)
        raise


@pytest.fixture(scope="session")
def coordinator() -> Iterator[Coordinator]:
    with tempfile.TemporaryDirectory() as tmp:
        proc, c = start_coordinator(_binary(), pathlib.Path(tmp) / "mandate-data")
        try:
            yield c
        finally:
            proc.terminate()
            proc.wait(timeout=10)
