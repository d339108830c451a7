"""Where a caller or a listening address is: this machine only, or the network."""

from __future__ import annotations

import ipaddress
from typing import Any, Mapping


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def caller_is_local(scope: Mapping[str, Any]) -> bool:
    """Whether the ASGI request ``scope`` came from this machine. Behind a reverse proxy on this machine uvicorn
    puts the X-Forwarded-For address here; a proxy that sends none makes every caller local (docs/service.md)."""
    client = scope.get("client")
    return bool(client) and is_loopback(str(client[0]))
