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
    Return the host a C{tcp:} client endpoint description connects to, or L{None}.
    """
    args, kwargs = _parse(description)
    positional = args[1:]
    # As Twisted's tcp: client parser: two positionals are HOST:PORT (host=
    # is then overridden); one is the host unless host= is given.
    if len(positional) >= 2 or (positional and "host" not in kwargs):
        return positional[0]
    return kwargs.get("host")


def _parse(description: str) -> tuple[list[str], dict[str, str]]:
    """
    Split an endpoint description into positional and keyword parameters
    as Twisted does: colons and the first C{=} of a field escaped with a
    backslash are literal, and a repeated keyword's last value counts.
    """
    args: list[str] = []
    kwargs: dict[str, str] = {}
    field, key, escaped = "", None, False
    for char in description + ":":
        if escaped:
            field, escaped = field + char, False
        elif char == "\\":
            escaped = True
        elif char == "=" and key is None:
            key, field = field, ""
        elif char == ":":
            if key is None:
                args.append(field)
            else:
                kwargs[key] = field
            field, key = "", None
        else:
            field += char
    return args, kwargs


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
    args, kwargs = _parse(description)
    # Twisted's parameters: tcp:PORT:INTERFACE:BACKLOG (every IPv4 address by
    # default), tcp6:PORT:BACKLOG:INTERFACE (every IPv6 address by default).
    position, default = {"tcp": (2, ""), "tcp6": (3, "::")}.get(kind, (None, ""))
    if position is None:
        return False
    interface = kwargs.get("interface", args[position] if len(args) > position else default)
    try:
        return ipaddress.ip_address(interface.strip("[]")).is_loopback
    except ValueError:
        return False
