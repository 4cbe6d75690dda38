"""
Reading Twisted endpoint descriptions (C{tcp:HOST:PORT}, C{unix:PATH},
C{tcp:PORT:interface=ADDR}) without connecting: their kind, host, and
whether they stay on this machine.
"""

from __future__ import annotations

import ipaddress


def endpoint_kind(description: str) -> str:
    """
    Return the kind (the part before the first colon) of an endpoint description.
    """
    return description.partition(":")[0].strip().lower()


def endpoint_host(description: str) -> str | None:
    """
    Return the host a C{tcp:} client endpoint description names, or L{None}.
    """
    positional = []
    for part in _split_endpoint(description)[1:]:
        key, sep, rest = part.partition("=")
        if sep and key == "host":
            return rest
        if not sep:
            positional.append(part)
    return positional[0] if positional else None


def _split_endpoint(description: str) -> list[str]:
    """
    Split an endpoint description at the colons not escaped with a backslash.
    """
    parts, current, escaped = [], "", False
    for char in description:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts, current = parts + [current], ""
        else:
            current += char
    return parts + [current]


def is_local_target(description: str) -> bool:
    """
    Return whether a client endpoint description is a unix socket or a
    loopback address (127.0.0.0/8, ::1, localhost).
    """
    if endpoint_kind(description) == "unix":
        return True
    host = (endpoint_host(description) or "").strip("[]")
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_listener(description: str) -> bool:
    """
    Return whether a server endpoint description listens only on loopback
    or on a unix socket.
    """
    kind = endpoint_kind(description)
    if kind == "unix":
        return True
    interface = next(
        (p.partition("=")[2] for p in _split_endpoint(description)[1:] if p.startswith("interface=")),
        "",
    )
    try:
        return kind in ("tcp", "tcp6") and ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False
