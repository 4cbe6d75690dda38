"""
A listener that backs off when the process runs out of file descriptors
(or kernel memory) instead of spinning.

Twisted's TCP port answers C{accept()} failing with EMFILE by returning,
and the reactor, seeing the listening socket still readable, calls it again
at once: a busy loop for as long as the descriptors stay used up. (When its
one reserved descriptor is free, Twisted instead accepts and closes every
waiting client.) L{guard_accepts} makes the port stop reading for a short,
growing pause, logs it once in plain words, counts it, and leaves waiting
clients in the listen backlog to be served once descriptors are free again.
"""

from __future__ import annotations

import errno
import resource

from twisted.logger import Logger

log = Logger(namespace="twisted_mtls")

# accept() errors that mean "no resources now": wait, then try again.
EXHAUSTED = {
    errno.EMFILE: "the process has no file descriptors left (EMFILE)",
    errno.ENFILE: "the system has no file descriptors left (ENFILE)",
    errno.ENOBUFS: "the kernel has no buffer space left (ENOBUFS)",
    errno.ENOMEM: "the kernel has no memory left (ENOMEM)",
}

FIRST_PAUSE = 0.1
LONGEST_PAUSE = 1.0


class AcceptGuard:
    """
    Stands in for a listening port's socket: C{accept()} failing for want of
    resources pauses the port instead of returning to a busy reactor.
    """

    def __init__(self, port, clock) -> None:
        self._socket = port.socket
        self.port = port
        self.clock = clock
        self.pauses = 0
        self.pausesInRow = 0
        self.delay = FIRST_PAUSE
        self.resumeCall = None

    def __getattr__(self, name):
        return getattr(self._socket, name)

    def accept(self):
        """
        Accept a connection; on exhaustion pause the port and report "no
        more clients now" to Twisted.
        """
        try:
            return self._socket.accept()
        except OSError as e:
            if e.errno not in EXHAUSTED:
                raise
            self._pause(e.errno)
            raise BlockingIOError(errno.EAGAIN, "accepting paused") from None
        finally:
            if self.resumeCall is None and self.pausesInRow:
                self._recovered()

    def _recovered(self) -> None:
        log.info(
            "accepting connections again after {count} pauses",
            event="accept_resumed",
            count=self.pausesInRow,
        )
        self.pausesInRow = 0
        self.delay = FIRST_PAUSE

    def _pause(self, code: int) -> None:
        self.pauses += 1
        self.pausesInRow += 1
        if self.pausesInRow == 1:
            soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
            log.warn(
                "cannot accept connections: {reason}; pausing accepts for {delay:g} s "
                "and retrying (open file limit {limit}); waiting clients stay queued",
                event="accept_paused",
                reason=EXHAUSTED[code],
                delay=self.delay,
                limit=soft,
            )
        self.port.stopReading()
        self.resumeCall = self.clock.callLater(self.delay, self._resume)
        self.delay = min(self.delay * 2, LONGEST_PAUSE)

    def _resume(self) -> None:
        self.resumeCall = None
        if self.port.connected and not self.port.disconnecting:
            self.port.startReading()

    def close(self) -> None:
        """
        The port is closing: close the socket and stop waiting to resume.
        """
        if self.resumeCall is not None and self.resumeCall.active():
            self.resumeCall.cancel()
        self.resumeCall = None
        self._socket.close()


def guard_accepts(port, clock) -> AcceptGuard | None:
    """
    Make listening C{port} back off when accepting fails for want of
    resources; return its guard (L{None} for a port without a socket).
    """
    if getattr(port, "socket", None) is None:
        return None
    guard = AcceptGuard(port, clock)
    port.socket = guard
    return guard
