"""The key's slow, salted fingerprint (scrypt) and the bounds a fingerprint or a sealed file read back must keep.

A fingerprint is stored with a locked model so that a wrong key gets a clear error; it is never the key. Every
scrypt parameter read from a file is checked first (``check_scrypt``): a crafted ``config.json`` cannot make a
reader compute for hours or allocate gigabytes.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from ..errors import ModelLockError

# scrypt cost: about 0.1 s and 32 MiB per fingerprint on a laptop core.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# what a fingerprint or a sealed file may ask for when read: at least the cost above, at most 16 times it
# (a crafted config.json cannot stall a reader), salts of 16-64 bytes, outputs of 16-64 bytes
SCRYPT_BOUNDS = {"n": (2**15, 2**20), "r": (1, 32), "p": (1, 16), "salt": (16, 64), "dklen": (16, 64)}
_MAX_COST = 16 * SCRYPT_N * SCRYPT_R * SCRYPT_P
_CACHE_SALT = b"modellock/edit-cache/v1"
_MAXMEM = 256 * 1024 * 1024



def fingerprint_of(canonical: bytes, salt: bytes | None = None) -> str:
    """A salted scrypt hash of a canonical key: ``scrypt$N$r$p$salt$hash`` (a fresh random salt when none)."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(canonical, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32, maxmem=_MAXMEM)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def fingerprint_matches(canonical: bytes, fingerprint: str) -> bool:
    """True when the canonical key produced ``fingerprint``; ModelLockError for parameters out of bounds."""
    parsed = parse_fingerprint(fingerprint)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    return hmac.compare_digest(scrypt_bounded(canonical, salt, n, r, p, len(digest)), digest)


def cache_id_of(canonical: bytes) -> str:
    """A stable, slow-hashed id of a canonical key naming its edit cache (not the fingerprint)."""
    return hashlib.scrypt(canonical, salt=_CACHE_SALT, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=16,
                          maxmem=_MAXMEM).hex()


def check_scrypt(n: int, r: int, p: int, salt_len: int, dklen: int, where: str = "scrypt") -> None:
    """ModelLockError naming the first scrypt parameter out of ``SCRYPT_BOUNDS`` (or of the cost bound)."""
    for name, value in (("n", n), ("r", r), ("p", p), ("salt", salt_len), ("dklen", dklen)):
        lo, hi = SCRYPT_BOUNDS[name]
        if not lo <= value <= hi:
            what = f"salt length {value} bytes" if name == "salt" else f"{name}={value}"
            raise ModelLockError(f"{where}: scrypt {what} out of bounds ({lo}-{hi})")
    if n & (n - 1):
        raise ModelLockError(f"{where}: scrypt n={n} is not a power of two")
    if n * r * p > _MAX_COST or 128 * n * r > _MAXMEM:
        raise ModelLockError(f"{where}: scrypt n={n}, r={r}, p={p} costs more than the bound "
                             f"({_MAX_COST // (SCRYPT_N * SCRYPT_R * SCRYPT_P)}x the default)")


def scrypt_bounded(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int, where: str = "scrypt") -> bytes:
    """``hashlib.scrypt`` after ``check_scrypt``: never more than the bounded cost."""
    check_scrypt(n, r, p, len(salt), dklen, where)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=_MAXMEM)


def parse_fingerprint(fingerprint, where: str = "fingerprint") -> tuple[int, int, int, bytes, bytes] | None:
    """``(n, r, p, salt, digest)`` of a ``scrypt$N$r$p$salt$hash`` fingerprint; None when it is not one;
    ModelLockError when its parameters are out of ``SCRYPT_BOUNDS``."""
    try:
        scheme, n, r, p, salt_hex, digest_hex = fingerprint.split("$")
        if scheme != "scrypt" or not all(x.isdigit() and len(x) <= 20 for x in (n, r, p)):
            return None
        parsed = int(n), int(r), int(p), bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except (ValueError, TypeError, AttributeError):
        return None
    check_scrypt(*parsed[:3], len(parsed[3]), len(parsed[4]), where)
    return parsed
