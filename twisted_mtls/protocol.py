"""
Protocols served over mutual TLS: the per-connection bookkeeping every
service shares, and the line echo.
"""

from __future__ import annotations

from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from .identity import PeerIdentity
from .reasons import describe_tls_failure
from .tls import IPeerRejectionListener

log = Logger(namespace="twisted_mtls")


def describe_address(address) -> str:
    """
    Return a peer address as C{host:port}, C{[v6]:port} or a socket path.
    """
    host = getattr(address, "host", None)
    if host is None:
        return getattr(address, "name", None) or str(address)
    return f"[{host}]:{address.port}" if ":" in host else f"{host}:{address.port}"


@implementer(IHandshakeListener, IPeerRejectionListener)
class MTLSProtocol(Protocol, TimeoutMixin):
    """
    The part of every served protocol that deals with the connection itself:
    handshake and idle timeouts, the peer's identity, and the log lines for
    its start, end or rejection.

    After the handshake C{self.peerIdentity} is the verified client's
    L{PeerIdentity}; subclasses start serving in L{peerAuthenticated}.
    """

    factory: MTLSFactory
    peerIdentity: PeerIdentity | None = None
    handshakeDone = False
    closeReason: str | None = None
    bytesIn = 0
    bytesOut = 0
    lines = 0

    def connectionMade(self) -> None:
        self.callLater = self.factory.clock.callLater
        self.startedAt = self.factory.clock.seconds()
        self.peer = describe_address(self.transport.getPeer())
        self.setTimeout(self.factory.config.handshake_timeout)

    def peerRejected(self, reason: str) -> None:
        if self.closeReason is None:
            self.closeReason = reason

    def handshakeCompleted(self) -> None:
        if self.handshakeDone:  # no renegotiation, but never serve twice
            return
        self.handshakeDone = True
        connection = self.transport.getHandle()
        self.peerIdentity = PeerIdentity.from_certificate(
            connection.get_peer_certificate(as_cryptography=True)
        )
        self.setTimeout(self.factory.config.idle_timeout or None)
        identity = self.peerIdentity
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

    def closeBecause(self, reason: str, abort: bool = False) -> None:
        """
        Close this connection (cleanly, or at once with C{abort}), logging C{reason}.
        """
        if self.closeReason is None:
            self.closeReason = reason
        self.setTimeout(None)
        if abort:
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def timeoutConnection(self) -> None:
        if self.handshakeDone:
            self.closeBecause(f"idle for {self.factory.config.idle_timeout:g} s")
        else:
            self.closeBecause(
                f"handshake not completed within {self.factory.config.handshake_timeout:g} s",
                abort=True,
            )

    def connectionLost(self, reason) -> None:
        self.setTimeout(None)
        if not self.handshakeDone:
            log.warn(
                "{peer} rejected: {reason}",
                event="handshake_failed",
                peer=self.peer,
                reason=self.closeReason or describe_tls_failure(reason.value, "client").text,
            )
            return
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
    closing = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.MAX_LENGTH = self.factory.config.max_line_length

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.resetTimeout()
        self.bytesIn += len(data)
        if self._buffer:
            data = self._buffer + data
        end = data.rfind(b"\n") + 1
        complete, rest = data[:end], data[end:]
        if end - 1 > self.MAX_LENGTH:
            complete, rest = self._upToLongLine(complete, rest)
        self._buffer = rest
        if complete:
            self.lines += complete.count(b"\n")
            self.bytesOut += len(complete)
            self.transport.write(complete)
        if len(rest) - rest.endswith(b"\r") > self.MAX_LENGTH:
            self.lineLengthExceeded(rest)

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
        self.closeBecause(f"sent a line longer than {self.MAX_LENGTH} bytes")


class MTLSFactory(Factory):
    """
    Builds the served protocol for each connection and holds what they share.
    """

    protocol = LineEcho

    def __init__(self, config, clock) -> None:
        self.config = config
        self.clock = clock
