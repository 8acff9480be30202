"""The Host-header allow-list: a page in a browser cannot reach a loopback service by DNS rebinding.

A web page at ``http://evil.example:8000`` whose name the attacker then points at 127.0.0.1 can make the
victim's browser send requests to a service on the victim's loopback; the browser sends them with
``Host: evil.example:8000``. A service without tokens (loopback only) therefore answers only requests
whose Host names the loopback (``localhost``, ``127.0.0.1``, ``[::1]``, any port) or a name the owner
allowed (``--allowed-host``); others get 421, a request without a usable Host 400.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# RFC 9110 Host: a registered name or IPv4 address, or a bracketed IPv6 address; an optional port
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::(?P<port>[0-9]{0,5}))?")


def host_name(header: str | None) -> str | None:
    """The host of a Host header (lower case, IPv6 without brackets, no port), or None when malformed."""
    match = _HOST.fullmatch(header or "")
    if match is None or (match["port"] and int(match["port"]) > 65535):
        return None
    if match["ipv6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["ipv6"]))
        except ValueError:
            return None
    return match["name"].lower()


def allowed_name(text: str) -> str | None:
    """A name of the allow-list as ``host_name`` gives it (an IPv6 address with or without brackets), or None
    when it is not a host name or address alone."""
    text = text.strip()
    if ":" in text and not text.startswith("["):
        text = f"[{text}]"
    return host_name(text) if ":" not in text.rpartition("]")[2] else None


class HostCheck:
    """ASGI middleware: requests whose Host is not in ``allowed`` are answered by ``respond`` (421 or 400)."""

    def __init__(self, app, allowed: Iterable[str], respond):
        self.app, self.respond = app, respond
        self.allowed = frozenset(filter(None, map(allowed_name, allowed)))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = [v for k, v in scope.get("headers") or [] if k == b"host"]
        name = host_name(headers[0].decode("latin-1")) if len(headers) == 1 else None
        if name is None:
            return await self.respond(scope, send, 400, "missing or malformed Host header")
        if name not in self.allowed:
            return await self.respond(scope, send, 421, f"this service answers requests to "
                                      f"{', '.join(sorted(self.allowed))} only (the Host header names another "
                                      "host); start it with --allowed-host NAME to answer NAME")
        return await self.app(scope, receive, send)
