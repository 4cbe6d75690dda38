"""
Copying bytes between two connections, both ways: the core of the forwarder
and of the client tunnel.

The front connection exists first; the back connection is made later, and
what the front sends meanwhile is held (up to L{PENDING_LIMIT} bytes, then
the front is no longer read). Each side pauses reading from the other while
it cannot keep up (backpressure); the end of one side's output becomes the
end of the other side's input (half-close); once both have ended, or either
is lost, both connections are closed.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

# Front bytes held while the back connection is being made.
PENDING_LIMIT = 256 * 1024


@implementer(IPushProducer)
class ReadPauser:
    """
    Pauses and resumes reading from a transport on behalf of the other side;
    closing is left to the L{Relay}, never done by the consumer.
    """

    def __init__(self, transport) -> None:
        self.transport = transport

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        pass


class Relay:
    """
    Joins the transport C{front} to a back transport given later to
    L{attach}; C{closeFront(reason)} closes the front connection.
    """

    back = None
    frontEnded = False  # the front will send nothing more
    backEnded = False  # the back will send nothing more
    lost = False
    paused = False
    pendingSize = 0

    def __init__(self, front, closeFront: Callable[[str], None]) -> None:
        self.front = front
        self.closeFront = closeFront
        self.pending: list[bytes] = []

    def attach(self, back, preamble: bytes = b"") -> None:
        """
        The back connection is made: send C{preamble} and what the front
        already sent, then relay both ways.
        """
        self.back = back
        if self.paused:
            self.paused = False
            self.front.resumeProducing()
        back.registerProducer(ReadPauser(self.front), True)
        self.front.registerProducer(ReadPauser(back), True)
        pending, self.pending = [preamble, *self.pending], []
        back.writeSequence(pending)
        if self.frontEnded:
            self._endBackInput()

    def fromFront(self, data: bytes) -> None:
        """
        Pass bytes from the front to the back (or hold them until it is made).
        """
        if self.back is not None:
            self.back.write(data)
            return
        self.pending.append(data)
        self.pendingSize += len(data)
        if self.pendingSize >= PENDING_LIMIT and not self.paused:
            self.paused = True
            self.front.pauseProducing()

    def fromBack(self, data: bytes) -> None:
        """
        Pass bytes from the back to the front.
        """
        self.front.write(data)

    def frontEndedOutput(self) -> None:
        """
        The front sends nothing more: end the back's input.
        """
        self.frontEnded = True
        if self.back is not None:
            self._endBackInput()

    def _endBackInput(self) -> None:
        self.back.unregisterProducer()
        self.back.loseWriteConnection()
        self._closeIfBothEnded()

    def backEndedOutput(self) -> None:
        """
        The back sends nothing more: end the front's input.
        """
        self.backEnded = True
        self.front.unregisterProducer()
        self.front.loseWriteConnection()
        self._closeIfBothEnded()

    @property
    def finished(self) -> bool:
        """
        Whether both directions ended normally.
        """
        return self.frontEnded and self.backEnded

    def _closeIfBothEnded(self) -> None:
        if self.finished:
            self.back.loseConnection()
            self.front.loseConnection()

    def backLost(self, reason: str) -> None:
        """
        The back connection is gone: close the front for C{reason}.
        """
        if self.lost:
            return
        self.lost = True
        self.front.unregisterProducer()
        if not self.finished:
            self.closeFront(reason)

    def frontLost(self) -> None:
        """
        The front connection is gone: close the back.
        """
        self.lost = True
        if self.back is not None:
            self.back.unregisterProducer()
            self.back.loseConnection()
