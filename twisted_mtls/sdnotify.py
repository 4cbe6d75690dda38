"""
systemd's readiness protocol (C{Type=notify}): tell the service manager when
the daemon is ready, reloaded and stopping.
"""

from __future__ import annotations

import os
import socket


def notify(state: str, environ=os.environ) -> bool:
    """
    Send C{state} (e.g. C{READY=1}) to the socket in C{$NOTIFY_SOCKET};
    return whether there was one to send to.
    """
    address = environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode("utf-8"), address)
        except OSError:
            return False
    return True
