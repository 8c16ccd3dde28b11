"""Ed25519 keys: PKCS#8 PEM files (created 0600, refused when group or others can read
them, as on the Rust side), the environment, and signing in Mandate's domains."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mandate.errors import KeyFileError


class SigningKey:
    """An Ed25519 private key. Its `repr` never shows key material."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @staticmethod
    def generate() -> "SigningKey":
        return SigningKey(Ed25519PrivateKey.generate())

    @staticmethod
    def from_seed(seed: bytes) -> "SigningKey":
        """From a 32-byte seed (test vectors publish theirs)."""
        return SigningKey(Ed25519PrivateKey.from_private_bytes(seed))

    @staticmethod
    def from_pem(pem: str | bytes) -> "SigningKey":
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise KeyFileError("not a PKCS#8 PEM private key") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError("the key is not an Ed25519 key")
        return SigningKey(key)

    @staticmethod
    def load(path: str | os.PathLike[str]) -> "SigningKey":
        """Reads a PKCS#8 PEM file, refusing one that group or others can read."""
        p = Path(path)
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except OSError as e:
            raise KeyFileError(f"cannot read key file `{p}`: {e.strerror}") from None
        if os.name == "posix" and mode & 0o077:
            raise KeyFileError(
                f"key file `{p}` is readable by group or others (mode {mode:o}); run chmod 600"
            )
        return SigningKey.from_pem(p.read_bytes())

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes a new PKCS#8 PEM file with mode 0600; refuses to overwrite."""
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)

    def sign(self, domain: bytes, payload: bytes) -> bytes:
        """Signs `domain || 0x00 || payload` (`domain` without the zero byte)."""
        return self._key.sign(domain + b"\x00" + payload)

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self.public_key.hex()})"
