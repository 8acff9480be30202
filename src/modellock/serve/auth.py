"""Bearer tokens for the service: a tokens file of hashes and quotas, and a constant-time check.

The tokens file holds one token a line, ``NAME sha256:HEX [per_minute=N] [per_day=N]`` (the token's own
quotas of images, see ``quotas.py``), and ``#`` comments; the token itself is shown once, when
``modellock serve-token add`` makes it, and stored nowhere. Tokens are 256 random bits
(``mlk_`` + 43 URL-safe characters), so a fast hash suffices: nobody can search 2^256 preimages, and a
request costs one sha256 instead of a slow hash. A presented token is hashed and compared with every
stored hash by ``hmac.compare_digest``, without stopping at a match, so the time taken does not tell
which token, or how much of one, matched.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLockError
from ..utils.atomic import write_bytes_atomic

TOKEN_PREFIX = "mlk_"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_QUOTA = re.compile(r"^(per_minute|per_day)=([1-9][0-9]{0,11})$")
_HEADER = ("# modellock serve tokens: NAME sha256:HASH [per_minute=N] [per_day=N] (images) per line. Hashes only:\n"
           "# a token is shown once, when made. Add one: `modellock serve-token add --tokens THIS_FILE --name NAME`.\n")
_LINE = "expected 'NAME sha256:<64 hex digits> [per_minute=N] [per_day=N]'"


@dataclass(frozen=True)
class Quota:
    """Images a caller may send per minute and per day (None: no limit)."""

    per_minute: int | None = None
    per_day: int | None = None

    def __post_init__(self):
        for name in ("per_minute", "per_day"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")

    def over(self, default: "Quota") -> "Quota":
        """This quota, with ``default``'s value where this one has none."""
        return Quota(self.per_minute if self.per_minute is not None else default.per_minute,
                     self.per_day if self.per_day is not None else default.per_day)

    def fields(self) -> str:
        return "".join(f" {k}={v}" for k, v in (("per_minute", self.per_minute), ("per_day", self.per_day)) if v)


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenFile:
    """The tokens of a file by name; ``verify`` tells whose token a request carries."""

    def __init__(self, hashes: dict[str, str] | None = None, path: Path | None = None,
                 quotas: dict[str, Quota] | None = None):
        self.hashes, self.path, self.quotas = dict(hashes or {}), path, dict(quotas or {})

    def __len__(self) -> int:
        return len(self.hashes)

    @classmethod
    def load(cls, path: str | os.PathLike, missing_ok: bool = False) -> "TokenFile":
        """Read a tokens file; ModelLockError naming the file and line when it is malformed."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if missing_ok:
                return cls(path=path)
            raise ModelLockError(f"tokens file {path}: not found (make one with `modellock serve-token add`)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ModelLockError(f"tokens file {path}: cannot be read ({type(e).__name__})") from None
        hashes: dict[str, str] = {}
        quotas: dict[str, Quota] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            extra = [_QUOTA.match(f) for f in fields[2:]]
            words = [m.group(1) for m in extra if m]
            if (len(fields) < 2 or not _NAME.match(fields[0]) or not _HASH.match(fields[1]) or not all(extra)
                    or len(set(words)) != len(words)):
                # the line may hold a pasted token: say where, not what
                raise ModelLockError(f"tokens file {path}, line {number}: {_LINE}")
            if fields[0] in hashes:
                raise ModelLockError(f"tokens file {path}, line {number}: name {fields[0]!r} appears twice")
            hashes[fields[0]] = fields[1]
            if words:
                quotas[fields[0]] = Quota(**{m.group(1): int(m.group(2)) for m in extra})
        return cls(hashes, path, quotas)

    def verify(self, token: str | None) -> str | None:
        """The name of the token ``token`` is, or None; the same work whichever token (if any) matches."""
        if not token:
            return None
        presented = hash_token(token)
        found = None
        for name, stored in self.hashes.items():
            if hmac.compare_digest(presented, stored):
                found = name
        return found

    def add(self, name: str, quota: Quota | None = None) -> str:
        """Make a new token called ``name`` (with its own ``quota``, if given), store its hash (file written
        atomically, mode 0600), return it."""
        if not _NAME.match(name):
            raise ModelLockError(f"token name {name!r}: use 1-64 letters, digits and _ . @ -")
        if name in self.hashes:
            raise ModelLockError(f"tokens file {self.path}: already has a token named {name!r} (remove it first)")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.hashes[name] = hash_token(token)
        if quota is not None and (quota.per_minute or quota.per_day):
            self.quotas[name] = quota
        self.save()
        return token

    def remove(self, name: str) -> None:
        if name not in self.hashes:
            raise ModelLockError(f"tokens file {self.path}: no token named {name!r}")
        del self.hashes[name]
        self.quotas.pop(name, None)
        self.save()

    def save(self) -> Path:
        text = _HEADER + "".join(f"{n} {h}{self.quotas.get(n, Quota()).fields()}\n" for n, h in self.hashes.items())
        write_bytes_atomic(text.encode("utf-8"), self.path, mode=0o600)
        return Path(self.path)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None
