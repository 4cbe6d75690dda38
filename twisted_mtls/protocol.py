"""
Protocols served over mutual TLS: the per-connection bookkeeping every
service shares, and the line echo.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from .identity import PeerIdentity
from .memory import MemoryReleaser
from .rejections import RejectionLog
from .reasons import describe_tls_failure
from .stats import ConnectionStats
from .tls import IPeerRejectionListener, IPeerVerifiedListener

log = Logger(namespace="twisted_mtls")


def describe_address(address) -> str:
    """
    Return a peer address as C{host:port}, C{[v6]:port} or a socket path.
    """
    host = getattr(address, "host", None)
    if host is None:
        return getattr(address, "name", None) or str(address)
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


def count_newlines(data: bytes | bytearray, start: int, end: int) -> int:
    """
    Return how many newlines C{data[start:end]} holds (it ends with one).
    """
    # bytes.count scans about a byte a cycle; find is memchr: for long lines
    # a few finds are much cheaper, for short ones count the rest.
    count, at = 0, start
    for _ in range(16):
        at = data.find(b"\n", at, end) + 1
        if not at:
            return count
        count += 1
        if at >= end:
            return count
    return count + data.count(b"\n", at, end)


@implementer(IHandshakeListener, IPeerRejectionListener, IPeerVerifiedListener, IPushProducer)
class MTLSProtocol(Protocol, TimeoutMixin):
    """
    The part of every served protocol that deals with the connection itself:
    handshake, idle, lifetime and close timeouts, the peer's identity, the
    log lines for its start, end or rejection, and flow control.

    It is the producer of its own output: while more than
    C{max_pending_output} bytes wait to be sent, it stops reading from the
    peer, so a client that does not read cannot make the server buffer
    without bound.

    After the handshake C{self.peerIdentity} is the verified client's
    L{PeerIdentity}; subclasses start serving in L{peerAuthenticated}.
    """

    factory: MTLSFactory
    peerIdentity: PeerIdentity | None = None
    verifiedCertificate = None
    handshakeDone = False
    closeReason: str | None = None
    closeLabel: str | None = None
    closing = False
    readingPaused = False
    lifetimeCall = None
    bytesIn = 0
    flowControlled = False
    bytesOut = 0
    lines = 0

    def connectionMade(self) -> None:
        self.callLater = self.factory.clock.callLater
        self.startedAt = self.factory.clock.seconds()
        self.peer = describe_address(self.transport.getPeer())
        self.setTimeout(self.factory.config.handshake_timeout)
        self.factory.connectionOpened(self)

    def peerRejected(self, reason: str) -> None:
        if self.closeReason is None:
            self.closeReason = reason

    def peerVerified(self, certificate) -> None:
        self.verifiedCertificate = certificate

    def handshakeCompleted(self) -> None:
        if self.handshakeDone:  # no renegotiation, but never serve twice
            return
        self.handshakeDone = True
        connection = self.transport.getHandle()
        # A resumed session was verified when it was made: read its certificate.
        certificate = self.verifiedCertificate or connection.get_peer_certificate(
            as_cryptography=True
        )
        self.verifiedCertificate = None
        self.peerIdentity = PeerIdentity.from_certificate(certificate)
        self.setTimeout(self.factory.config.idle_timeout or None)
        identity = self.peerIdentity
        self.factory.stats.handshakeSucceeded(
            self.factory.clock.seconds() - self.startedAt, identity.not_after.timestamp()
        )
        lifetime = self.factory.config.max_connection_lifetime
        if lifetime:
            self.lifetimeCall = self.callLater(
                lifetime,
                self.closeBecause,
                f"open for {lifetime:g} s (max_connection_lifetime)",
                label="lifetime",
            )
        log.info(
            "{peer} connected: {subject} [{sans_text}] sha256={fingerprint} {tls_version} {cipher}",
            event="connection_open",
            peer=self.peer,
            sans_text=", ".join(identity.sans()),
            tls_version=connection.get_protocol_version_name(),
            cipher=connection.get_cipher_name(),
            **identity.log_fields(),
        )
        self.peerAuthenticated(identity)

    def peerAuthenticated(self, identity: PeerIdentity) -> None:
        """
        The handshake completed with a client presenting C{identity}.
        """

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()

    def _startFlowControl(self) -> None:
        lower = getattr(self.transport, "transport", None)
        if hasattr(lower, "bufferSize"):
            lower.bufferSize = self.factory.config.max_pending_output
        self.transport.registerProducer(self, True)
        self.flowControlled = True

    def pauseProducing(self) -> None:
        """
        Our peer is not reading what we send fast enough: stop reading from it.
        """
        if not self.readingPaused:
            self.readingPaused = True
            self.factory.stats.readPauses += 1
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """
        Our output has drained: read from the peer again.
        """
        if self.readingPaused:
            self.readingPaused = False
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        """
        The connection is going away; nothing to stop.
        """

    def closeBecause(
        self, reason: str, abort: bool = False, label: str = "error", grace: float | None = -1
    ) -> None:
        """
        Close this connection, logging C{reason} and counting it under
        C{label}: cleanly after the output already written (aborting it if
        the peer has not closed within C{grace} seconds, by default
        C{close_timeout}; L{None}: no limit), or at once with C{abort}.
        """
        if self.closeReason is None:
            self.closeReason = reason
            self.closeLabel = label
        self.closing = True
        if abort:
            self.setTimeout(None)
            self.transport.abortConnection()
            return
        self.setTimeout(self.factory.config.close_timeout if grace == -1 else grace)
        if self.flowControlled:
            self.flowControlled = False
            self.transport.unregisterProducer()
        self.resumeProducing()  # read on, so that the peer's close is seen
        self.transport.loseConnection()

    def timeoutConnection(self) -> None:
        if self.closing:
            self.closeBecause("did not close cleanly", abort=True)
        elif self.handshakeDone:
            self.closeBecause(
                f"idle for {self.factory.config.idle_timeout:g} s", label="idle_timeout"
            )
        else:
            self.closeBecause(
                f"handshake not completed within {self.factory.config.handshake_timeout:g} s",
                abort=True,
            )

    def connectionLost(self, reason) -> None:
        self.setTimeout(None)
        if self.lifetimeCall is not None and self.lifetimeCall.active():
            self.lifetimeCall.cancel()
        self.factory.connectionEnded(self)
        stats = self.factory.stats
        if not self.handshakeDone:
            why = self.closeReason or describe_tls_failure(reason.value, "client").text
            stats.handshakeFailed(why)
            stats.connectionClosed("handshake_failed", 0, self.bytesIn, self.bytesOut)
            self.factory.rejections.rejected(self.peer, why)
            return
        label = self.closeLabel or (
            "client_closed" if reason.check(ConnectionDone) else "connection_lost"
        )
        stats.connectionClosed(label, self.lines, self.bytesIn, self.bytesOut)
        log.info(
            "{peer} closed after {duration_ms:.0f} ms: {lines} lines, "
            "{bytes_in} bytes in, {bytes_out} bytes out; {reason}",
            event="connection_closed",
            peer=self.peer,
            cn=self.peerIdentity.common_name,
            fingerprint=self.peerIdentity.fingerprint_sha256,
            duration_ms=(self.factory.clock.seconds() - self.startedAt) * 1000,
            lines=self.lines,
            bytes_in=self.bytesIn,
            bytes_out=self.bytesOut,
            reason=self.closeReason or describe_tls_failure(reason.value, "client").text,
        )


class LineEcho(MTLSProtocol, LineReceiver):
    """
    Echo every complete line back byte for byte, with the delimiter it came
    with (LF or CRLF), in order.

    Complete lines are echoed in bulk: all the lines of one chunk of data go
    back in one write, so lineReceived is not called once per line. A line
    longer than C{max_line_length} bytes (not counting its delimiter) is
    answered with one error line, after the lines before it, and the
    connection is closed cleanly.
    """

    delimiter = b"\n"

    def connectionMade(self) -> None:
        super().connectionMade()
        self.MAX_LENGTH = self.factory.config.max_line_length

    def peerAuthenticated(self, identity: PeerIdentity) -> None:
        self._startFlowControl()

    # The TLS layer may pass a view of its read buffer: nothing keeps it.
    acceptsMemoryViews = True

    def dataReceived(self, data: bytes | memoryview) -> None:
        if self.closing:
            return
        self.resetTimeout()
        self.bytesIn += len(data)
        # our TLS layer hands on views of its buffer (starting at its start)
        # and takes views to write; any other transport, bytes
        views = type(data) is memoryview
        text, start, stop = (data.obj if views else data), 0, len(data)
        if self._buffer:  # a line straddles reads: complete it alone
            first = text.find(b"\n", 0, stop) + 1
            self._buffer += data[: first or stop]
            if not first:
                self._checkRest(self._buffer)
                return
            pending, self._buffer = self._buffer, b""
            if self._echo(pending, 0, len(pending), views):
                return
            start = first
        self._echo(text, start, stop, views)

    def _echo(self, text: bytes | bytearray, start: int, stop: int, views: bool) -> bool:
        """
        Echo the complete lines of C{text[start:stop]} (as a view when
        C{views}), keep the rest; return whether the connection is closing.
        """
        end = text.rfind(b"\n", start, stop) + 1 or start
        if end - start - 1 > self.MAX_LENGTH:
            whole = bytes(text[start:stop])
            complete, rest = self._upToLongLine(whole[: end - start], whole[end - start :])
            rest = bytearray(rest)
            end = start + len(complete)
        else:
            with memoryview(text) as view:
                complete, rest = view[start:end], bytearray(view[end:stop])
            if not views:
                complete = complete.tobytes()
        self._buffer = rest
        if complete:
            self.lines += count_newlines(text, start, end)
            self.bytesOut += len(complete)
            self.transport.write(complete)
        return self._checkRest(rest)

    def _checkRest(self, rest: bytearray | bytes) -> bool:
        """
        Refuse an incomplete line already too long; return whether closing.
        """
        if len(rest) - rest.endswith(b"\r") > self.MAX_LENGTH:
            self.lineLengthExceeded(rest)
        return self.closing

    def _upToLongLine(self, complete: bytes, rest: bytes) -> tuple[bytes, bytes]:
        """
        Split C{complete} before its first over-long line, if it has one.
        """
        start = 0
        limit = self.MAX_LENGTH
        while start < len(complete):
            newline = complete.index(b"\n", start)
            length = newline - start - (complete[newline - 1 : newline] == b"\r")
            if length > limit:
                return complete[:start], complete[start:]
            start = newline + 1
        return complete, rest

    def lineLengthExceeded(self, line: bytes) -> None:
        self.closing = True
        self._buffer = b""
        self.sendLine(b"ERROR line too long: the limit is %d bytes" % (self.MAX_LENGTH,))
        self.closeBecause(f"sent a line longer than {self.MAX_LENGTH} bytes", label="line_too_long")


class MTLSFactory(Factory):
    """
    Builds the served protocol for each connection and holds what they share.
    """

    protocol = LineEcho

    def __init__(self, config, clock) -> None:
        self.config = config
        self.clock = clock
        self.active: set[MTLSProtocol] = set()
        self.stats = ConnectionStats()
        self.memory = MemoryReleaser(clock, self.active.__len__)
        self.rejections = RejectionLog(clock)
        self._refusedUnlogged = 0
        self._refusalLoggedAt = float("-inf")

    def stopFactory(self) -> None:
        self.memory.stop()
        self.rejections.summarise()

    def connectionOpened(self, protocol: MTLSProtocol) -> None:
        """
        Count C{protocol}'s connection as open.
        """
        self.active.add(protocol)
        self.stats.accepted += 1
        self.memory.opened()

    def connectionEnded(self, protocol: MTLSProtocol) -> None:
        """
        Count C{protocol}'s connection as closed.
        """
        self.active.discard(protocol)
        self.memory.closed()

    def full(self) -> bool:
        """
        Return whether C{max_connections} connections are open.
        """
        limit = self.config.max_connections
        return bool(limit) and len(self.active) >= limit

    def refused(self, address) -> None:
        """
        Count a connection from C{address} closed at once because we are full,
        logging at most one line a second about such refusals.
        """
        self.stats.refused += 1
        self._refusedUnlogged += 1
        now = self.clock.seconds()
        if now - self._refusalLoggedAt >= 1:
            log.warn(
                "{peer} refused: {max_connections} connections are open "
                "(max_connections); {count} refused since the last such line",
                event="connection_refused",
                peer=describe_address(address),
                max_connections=self.config.max_connections,
                count=self._refusedUnlogged,
                reason="max_connections reached",
            )
            self._refusedUnlogged = 0
            self._refusalLoggedAt = now
