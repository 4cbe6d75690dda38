"""
Checks of configuration keys that depend on one another, run once a section
has been parsed key by key.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

from .descriptions import is_local_target

if TYPE_CHECKING:
    from .config import ServerConfig


def check_server(section: ServerConfig) -> None:
    """
    Check the C{[server]} keys that depend on one another; raise L{ConfigError}.
    """
    if section.service == "forward" and not section.target:
        raise section.source.error(
            "target", "is required when service = forward: " + _help(section, "target")
        )
    if section.target and not section.unsafe_target and not is_local_target(section.target):
        raise section.source.error(
            "target",
            f"{section.target!r} is neither a loopback address nor a unix socket; "
            "set unsafe_target = true to relay to another host in clear text",
        )
    if section.service.startswith("python:"):
        from .services import load_user_factory

        try:
            load_user_factory(section.service)
        except ValueError as e:
            raise section.source.error("service", str(e)) from None


def _help(section: object, key: str) -> str:
    return next(f.metadata["help"] for f in fields(section) if f.name == key)
