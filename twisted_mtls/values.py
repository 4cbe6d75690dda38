"""
Parsers of configuration values: each takes the text written in the file (or
on the command line) and returns the value, or raises C{ValueError("expected
...")} saying what it wanted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

from .descriptions import endpoint_kind

Parser = Callable[[str], Any]

T = TypeVar("T")


def text(value: str) -> str:
    """
    Accept any non-empty string.
    """
    value = value.strip()
    if not value:
        raise ValueError("expected a value, got nothing")
    return value


def path(value: str) -> Path:
    """
    Accept a file path (resolved later against the config file's folder).
    """
    value = text(value)
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~user that does not exist
        raise ValueError(f"expected a file path, got {value!r} (cannot expand its ~)") from None


def optional_path(value: str) -> Path | None:
    """
    Accept a file path, or nothing.
    """
    return path(value) if value.strip() else None


def whole_number(minimum: int, maximum: int | None = None) -> Parser:
    """
    Return a parser of whole numbers from C{minimum} to C{maximum}.
    """

    def parse(value: str) -> int:
        try:
            number = int(value.strip().replace("_", ""))
        except ValueError:
            number = None
        if number is None or number < minimum or (maximum is not None and number > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise ValueError(f"expected a whole number >= {minimum}{upper}, got {value!r}")
        return number

    return parse


def seconds(minimum: float = 0.0) -> Parser:
    """
    Return a parser of a duration in seconds (a number >= C{minimum}; 0 may mean off).
    """

    def parse(value: str) -> float:
        try:
            number = float(value.strip())
        except ValueError:
            number = None
        if number is None or number != number or number < minimum or number == float("inf"):
            raise ValueError(f"expected a number of seconds >= {minimum:g}, got {value!r}")
        return number

    return parse


def choice(*options: str) -> Parser:
    """
    Return a parser that accepts one of C{options}.
    """

    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return value

    return parse


def boolean(value: str) -> bool:
    """
    Accept true/false, yes/no, on/off, 1/0.
    """
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def host_port(value: str) -> tuple[str, int]:
    """
    Accept C{HOST:PORT}, C{[IPV6]:PORT}.
    """
    value = text(value)
    host, sep, port = value.rpartition(":")
    if value.startswith("["):
        host = host.strip("[]") if host.endswith("]") else ""
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. localhost:8443), got {value!r}")
    return host, int(port)


def server_endpoint(value: str) -> str:
    """
    Accept a Twisted server endpoint description, e.g. C{tcp:8443:interface=127.0.0.1}.
    """
    from twisted.internet import endpoints, reactor

    value = text(value)
    try:
        endpoints.serverFromString(reactor, value)
    except Exception as e:  # the parsers raise whatever they like
        raise ValueError(
            "expected a Twisted server endpoint description such as "
            f"tcp:8443:interface=127.0.0.1, got {value!r} ({e})"
        ) from None
    return value


def optional_server_endpoint(value: str) -> str:
    """
    Accept a Twisted server endpoint description, or nothing (off).
    """
    return server_endpoint(value) if value.strip() else ""


def service_name(value: str) -> str:
    """
    Accept C{echo}, C{forward} or C{python:package.module:attribute}.
    """
    value = text(value)
    if value in ("echo", "forward"):
        return value
    module, _, attribute = value.partition("python:")[2].partition(":")
    names = module.split(".") + attribute.split(".")
    if not value.startswith("python:") or not all(n.isidentifier() for n in names):
        raise ValueError(
            f"expected echo, forward or python:package.module:attribute, got {value!r}"
        )
    return value


def client_endpoint(value: str) -> str:
    """
    Accept nothing, or a Twisted client endpoint description of kind tcp or
    unix (e.g. C{tcp:127.0.0.1:8080}, C{unix:/run/app.sock}).
    """
    from twisted.internet import endpoints, reactor

    value = value.strip()
    if not value:
        return value
    problem = None
    if endpoint_kind(value) not in ("tcp", "unix"):
        problem = "only tcp: and unix: are supported"
    else:
        try:
            endpoints.clientFromString(reactor, value)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            problem = str(e) or type(e).__name__
    if problem:
        raise ValueError(
            "expected a Twisted client endpoint such as tcp:127.0.0.1:8080 or "
            f"unix:/run/app.sock, got {value!r} ({problem})"
        )
    return value


def split_list(value: str) -> tuple[str, ...]:
    """
    Split a list value written one per line or comma-separated; drop empty items.
    """
    items = (item.strip() for line in value.splitlines() for item in line.split(","))
    return tuple(dict.fromkeys(item for item in items if item))


def list_of(parse: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """
    Return a parser of a list (see L{split_list}) whose items C{parse} accepts.
    """

    def parse_list(value: str) -> tuple[T, ...]:
        return tuple(parse(item) for item in split_list(value))

    return parse_list
