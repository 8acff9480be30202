"""Sealed files: authenticated encryption under a key derived from a modellock key.

A sealed model folder stores its weights as ``model.sealed`` (never ``model.safetensors``): the safetensors
bytes of the weights, encrypted. Training checkpoints of a sealed lock (``<out>/.work``) are sealed the same way.
Without the key nothing loads; a changed byte (of the file, or of the config fields it is bound to) is detected.

The scheme (``SCHEME``), with PyCA ``cryptography`` and ``hashlib.scrypt``, nothing hand-made:

- key: ``scrypt(canonical key, salt, N=2^15, r=8, p=1)`` -> 32 bytes, with a random 16-byte salt per sealer (one
  per model written, one per training run), drawn from ``os.urandom``;
- cipher: AES-256-GCM over chunks of 1 MiB (any size seals, memory stays flat); chunk ``i`` under the nonce
  ``prefix || i`` (a random 8-byte prefix per file written, a 4-byte counter), with the file's header and the
  caller's context (for a model: its immutable config fields) as associated data;
- file: ``MAGIC``, the header's length (4 bytes, big endian), the header (JSON: cipher, KDF and its parameters,
  nonce prefix, chunk size, plaintext size), then the chunks, each with its 16-byte tag.

Reading, the header's parameters are checked against fixed bounds (``key.check_scrypt``) before any work, so a
crafted file cannot make opening slow. Models sealed by the first scheme (``keyed-gaussian/v1``, a key-seeded
noise mask that did not protect the weights) are refused with a message that says how to lock them again.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ModelLockError
from ..utils.atomic import write_bytes_atomic
from .fingerprint import SCRYPT_N, SCRYPT_P, SCRYPT_R, check_scrypt, scrypt_bounded

SCHEME = "aes-256-gcm+scrypt/2"  # config.json: lock.seal.scheme
OLD_SCHEMES = ("keyed-gaussian/v1",)
MAGIC = b"modellock sealed/2\n"
CIPHER = "AES-256-GCM"
SALT_BYTES = 16
CHUNK = 1 << 20
_TAG, _PREFIX = 16, 8
_MAX_HEADER = 4096
_MAX_CHUNK = 64 << 20


class SealError(ModelLockError):
    """A sealed file that does not open: tampered with, truncated, or sealed with another key."""


class Sealer:
    """Seals and opens bytes with one modellock key. One sealer draws one salt (one scrypt); every ``seal`` call
    draws a fresh nonce prefix. ``open`` derives the key for the salt and parameters its file's header names."""

    def __init__(self, key):
        self._secret = key.canonical()
        self._kdf = {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
                     "salt": os.urandom(SALT_BYTES).hex()}
        self._aeads: dict[str, object] = {}

    def _aead(self, kdf: dict):
        ident = json.dumps(kdf, sort_keys=True)
        if ident not in self._aeads:
            self._aeads[ident] = AESGCM(scrypt_bounded(self._secret, bytes.fromhex(kdf["salt"]), kdf["n"], kdf["r"],
                                                       kdf["p"], 32))
        return self._aeads[ident]

    def seal(self, data: bytes, context: bytes = b"") -> bytes:
        """``data`` sealed, bound to ``context`` (which ``open`` must be given again)."""
        chunks, prefix = max(1, -(-len(data) // CHUNK)), os.urandom(_PREFIX)
        header = json.dumps({"cipher": CIPHER, "kdf": self._kdf, "nonce": prefix.hex(), "chunk_size": CHUNK,
                             "size": len(data)}, sort_keys=True).encode()
        aead, aad = self._aead(self._kdf), _aad(header, context)
        parts = [MAGIC, struct.pack(">I", len(header)), header]
        view = memoryview(data)
        for i in range(chunks):
            parts.append(aead.encrypt(prefix + struct.pack(">I", i), view[i * CHUNK:(i + 1) * CHUNK], aad))
        return b"".join(parts)

    def open(self, blob: bytes, context: bytes = b"", where: str = "sealed file") -> bytes:
        """The bytes ``seal`` was given; SealError when the key, the context or any byte differs."""
        header, body = _split(blob, where)
        h = _parse_header(header, where)
        chunk, size = h["chunk_size"], h["size"]
        chunks = max(1, -(-size // chunk))
        if len(body) != size + chunks * _TAG:
            raise SealError(f"{where}: truncated or extended ({len(body)} bytes of ciphertext where the header "
                            f"says {size + chunks * _TAG})")
        aead, prefix, aad = self._aead(h["kdf"]), bytes.fromhex(h["nonce"]), _aad(header, context)
        step = chunk + _TAG
        try:
            return b"".join([aead.decrypt(prefix + struct.pack(">I", i), body[i * step:(i + 1) * step], aad)
                             for i in range(chunks)])
        except InvalidTag:
            raise SealError(f"{where}: does not open: sealed with another key, or changed since it was sealed "
                            "(tampered or corrupt)") from None


def _aad(header: bytes, context: bytes) -> bytes:
    """The associated data of every chunk: the file's magic and header, then the caller's context."""
    return MAGIC + struct.pack(">I", len(header)) + header + context


def _split(blob: bytes, where: str) -> tuple[bytes, memoryview]:
    """``(header, ciphertext)`` of a sealed file (the ciphertext a view, not a copy)."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise SealError(f"{where}: not a sealed modellock file")
    n = struct.unpack(">I", blob[len(MAGIC):len(MAGIC) + 4])[0]
    start = len(MAGIC) + 4
    if n > _MAX_HEADER or len(blob) < start + n:
        raise SealError(f"{where}: malformed header (length {n})")
    return blob[start:start + n], memoryview(blob)[start + n:]


def _parse_header(header: bytes, where: str) -> dict:
    """The header, every field checked and bounded, so a crafted file is refused before any slow work."""
    try:
        h = json.loads(header)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SealError(f"{where}: malformed header (not JSON)") from None

    def need(ok: bool, field: str, what: str) -> None:
        if not ok:
            raise SealError(f"{where}: header field '{field}' {what}")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    need(isinstance(h, dict), "(top level)", "must be an object")
    need(h.get("cipher") == CIPHER, "cipher", f"must be {CIPHER!r}, got {h.get('cipher')!r}")
    kdf = h.get("kdf")
    need(isinstance(kdf, dict) and kdf.get("name") == "scrypt", "kdf", "must be scrypt")
    need(all(is_int(kdf.get(k)) for k in ("n", "r", "p")), "kdf", "must give integers n, r and p")
    need(_is_hex(kdf.get("salt")), "kdf.salt", "must be hex")
    check_scrypt(kdf["n"], kdf["r"], kdf["p"], len(kdf["salt"]) // 2, 32, f"{where}: header field 'kdf'")
    need(_is_hex(h.get("nonce")) and len(h["nonce"]) == 2 * _PREFIX, "nonce", f"must be {_PREFIX} bytes in hex")
    need(is_int(h.get("chunk_size")) and 4096 <= h["chunk_size"] <= _MAX_CHUNK, "chunk_size",
         f"must be between 4096 and {_MAX_CHUNK}")
    need(is_int(h.get("size")) and 0 <= h["size"] < 1 << 44, "size", "must be a byte count")
    need(-(-h["size"] // h["chunk_size"]) < 1 << 32, "size", "needs more chunks than the nonce counts")
    return h


def _is_hex(v) -> bool:
    if not isinstance(v, str) or len(v) % 2:
        return False
    try:
        bytes.fromhex(v)
    except ValueError:
        return False
    return True


def write_sealed(path: str | os.PathLike, data: bytes, sealer: Sealer, context: bytes = b"") -> Path:
    """``data`` sealed into ``path`` (atomically: a new temporary file, then a rename)."""
    write_bytes_atomic(sealer.seal(data, context), path)
    return Path(path)


def read_sealed(path: str | os.PathLike, sealer: Sealer, context: bytes = b"") -> bytes:
    """The bytes sealed in ``path``; SealError naming the file when it does not open."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise ModelLockError(f"{path}: cannot be read ({type(e).__name__})") from None
    return sealer.open(blob, context, where=str(path))


def old_scheme_message(where, scheme: str) -> str:
    """Why a folder sealed by an old scheme is refused, and what to do."""
    return (f"{where}: sealed by the old scheme {scheme!r}, whose mask did not protect the weights (issue 17); this "
            "modellock does not open it: lock the model again with `modellock lock --key KEY --data DATA --out NEW` "
            "and delete this folder")
