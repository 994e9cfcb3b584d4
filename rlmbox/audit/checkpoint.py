"""Signed checkpoints of the chain head, and the keys that sign and check them.

A checkpoint line in ``checkpoints.jsonl`` is the canonical JSON of
``{v, seq, sha256, prev, ts, alg, key_id, sig}``: ``sha256`` is the digest of record ``seq``,
``prev`` the digest of the previous checkpoint line (so checkpoints form their own chain) and
``sig`` signs the line without ``sig``, prefixed by a domain tag. Because a checkpoint names a
head, a log cut short of a signed head is detected as truncated.

Keys: a PEM Ed25519 private key file (``alg = "ed25519"``; verify needs only the public key)
or raw bytes used as an HMAC-SHA256 key (``alg = "hmac-sha256"``; verify needs the same bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rlmbox.audit.bodies import write_all
from rlmbox.audit.canonical import canonical_bytes
from rlmbox.audit.files import open_regular, read_regular
from rlmbox.errors import AuditError

DOMAIN = b"rlmbox-audit-checkpoint-v1\n"
KEY_FILE = "audit.key"
PUBLIC_KEY_FILE = "audit.pub"
ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"


class Signer(Protocol):
    """Signs checkpoint messages."""

    alg: str
    key_id: str

    def sign(self, message: bytes) -> bytes: ...


class Checker(Protocol):
    """Checks checkpoint signatures."""

    alg: str
    key_id: str

    def verify(self, message: bytes, signature: bytes) -> bool: ...


def _ed25519_key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _hmac_key_id(key: bytes) -> str:
    return hmac.new(key, b"rlmbox-audit-key-id", hashlib.sha256).hexdigest()[:16]


class Ed25519Signer:
    """Ed25519 with a private key; the public key checks."""

    alg = ED25519

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public = private.public_key()
        self.key_id = _ed25519_key_id(self.public)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)


class Ed25519Checker:
    """Checks Ed25519 signatures with a public key."""

    alg = ED25519

    def __init__(self, public: Ed25519PublicKey) -> None:
        self._public = public
        self.key_id = _ed25519_key_id(public)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            self._public.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class HmacKey:
    """HMAC-SHA256 with a shared key: signs and checks."""

    alg = HMAC_SHA256

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise AuditError("an HMAC audit key must be at least 16 bytes")
        self._key = bytes(key)
        self.key_id = _hmac_key_id(self._key)

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def verify(self, message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(message), signature)


def load_signer(directory: Path, signing_key: Path | bytes | None) -> Signer:
    """The signer for a log: a key file, HMAC bytes, or (``None``) an Ed25519 key in ``directory``.

    With ``None`` the key is created as ``audit.key`` (0600) on first open, and its public half
    written to ``audit.pub``. That protects against corruption and naive edits only: whoever
    can write the directory can re-sign. Pass a key kept elsewhere, and pin the public key at
    verify time, to stand against an attacker with write access.
    """
    if isinstance(signing_key, bytes | bytearray):
        return HmacKey(bytes(signing_key))
    path = directory / KEY_FILE if signing_key is None else Path(signing_key)
    if signing_key is None and not os.path.lexists(path):
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
    try:   # the directory's own key is a file rlmbox made; a key given is read as it is
        data = read_regular(path) if signing_key is None else path.read_bytes()
        loaded = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AuditError(f"cannot load audit signing key {path}: {exc}") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise AuditError(f"audit signing key {path} is not an Ed25519 private key")
    signer = Ed25519Signer(loaded)
    _write_public_key(directory / PUBLIC_KEY_FILE, signer.public_pem())
    return signer


def _write_public_key(path: Path, pem: bytes) -> None:
    """Write ``audit.pub`` unless it already holds ``pem``; refuses an odd file there."""
    try:
        if read_regular(path) == pem:
            return
    except FileNotFoundError:
        pass
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        write_all(fd, pem)
    finally:
        os.close(fd)


def load_public_key(data: bytes) -> Ed25519Checker:
    """A checker from a PEM public key (or a PEM private key, whose public half is used)."""
    try:
        public: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            public = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise AuditError(f"not a PEM Ed25519 key: {exc}") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise AuditError("the audit public key is not an Ed25519 key")
    return Ed25519Checker(public)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One parsed checkpoint line."""

    seq: int
    sha256: str
    prev: str
    ts: str
    alg: str
    key_id: str
    sig: bytes
    message: bytes  # the signed bytes (domain tag + canonical line without ``sig``)


def make_checkpoint_line(signer: Signer, *, seq: int, head: str, prev: str, ts: str) -> bytes:
    """The canonical line (no newline) of a checkpoint over record ``seq`` with digest ``head``."""
    body: dict[str, Any] = {"v": 1, "seq": seq, "sha256": head, "prev": prev, "ts": ts,
                            "alg": signer.alg, "key_id": signer.key_id}
    signature = signer.sign(DOMAIN + canonical_bytes(body))
    body["sig"] = base64.b64encode(signature).decode("ascii")
    return canonical_bytes(body)


def parse_checkpoint(obj: dict[str, Any]) -> Checkpoint:
    """Parse a checkpoint object; raises ``ValueError``/``TypeError`` naming what is wrong."""
    expected = {"v", "seq", "sha256", "prev", "ts", "alg", "key_id", "sig"}
    if set(obj) != expected:
        raise ValueError(f"checkpoint fields {sorted(obj)} are not {sorted(expected)}")
    if obj["v"] != 1:
        raise ValueError(f"unknown checkpoint version {obj['v']!r}")
    seq = obj["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("checkpoint seq is not a positive integer")
    for name in ("sha256", "prev", "ts", "alg", "key_id", "sig"):
        if not isinstance(obj[name], str):
            raise TypeError(f"checkpoint {name} is not a string")
    try:
        sig = base64.b64decode(obj["sig"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("checkpoint sig is not base64") from exc
    unsigned = {k: v for k, v in obj.items() if k != "sig"}
    return Checkpoint(seq=seq, sha256=obj["sha256"], prev=obj["prev"], ts=obj["ts"],
                      alg=obj["alg"], key_id=obj["key_id"], sig=sig,
                      message=DOMAIN + canonical_bytes(unsigned))
