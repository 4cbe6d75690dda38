"""
Opening a listener while the daemon starts, before privileges are dropped:
a listener that cannot be opened ends the start with a clear message.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from twisted.internet import endpoints


def listen_or_exit(
    reactor: Any,
    description: str,
    factory: Any,
    listening: Callable[[Any], None],
    *,
    purpose: str = "",
) -> None:
    """
    Listen on the Twisted server endpoint C{description} with C{factory} and
    hand the port to C{listening}; when that fails at once, write
    C{mtls: cannot listen[ purpose] on DESCRIPTION: REASON} to stderr and exit 1.
    """
    failures: list = []
    endpoint = endpoints.serverFromString(reactor, description)
    endpoint.listen(factory).addCallbacks(listening, failures.append)
    if failures:
        sys.stderr.write(
            f"mtls: cannot listen{purpose} on {description}: {failures[0].getErrorMessage()}\n"
        )
        raise SystemExit(1)
