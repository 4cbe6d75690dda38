"""
TLS whose two directions close independently, and endpoints that use it.

Twisted's TLS answers a peer's close_notify with its own and drops the
connection, so whatever the other side still had to say is lost. Here, when
the wrapped protocol provides L{IHalfCloseableProtocol}:

  - the peer's close_notify (or a TCP FIN after it) calls the protocol's
    C{readConnectionLost()}, and the protocol may go on writing;
  - C{transport.loseWriteConnection()} sends our close_notify and the
    protocol goes on reading until the peer's close_notify;
  - once both directions are closed the TCP connection is closed.

Other protocols see Twisted's behaviour, except that bytes written just
before the peer's close_notify arrived are sent before our close_notify
(Twisted would drop them).

It is also Twisted's TLS with the per-connection and per-read Python work
cut down (see BENCHMARKS.md): TCP_NODELAY on TCP connections; the wrapped
transport's interfaces declared once per transport type, not re-declared
one by one on every connection; all the application data that one read
decrypts delivered in one C{dataReceived} (collected in a reused buffer, and
handed on as a view to a protocol that says it takes one); writes of 16 KiB
or more encrypted at once, not copied; TLS records sent on the socket at
once when nothing is queued; what the protocol writes while
handling a read sent at the end of that read (not one reactor turn later
through a C{callLater(0)}); and the TLS records of a write taken from
OpenSSL in large chunks.
"""

from __future__ import annotations

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Server
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import (
    BufferingTLSTransport,
    TLSMemoryBIOFactory,
    _AggregateSmallWrites,
)
from twisted.python.failure import Failure
from zope.interface import Declaration, directlyProvides, implementer, providedBy

# Largest plaintext asked of OpenSSL at once (it returns one record, at
# most 16 KiB, per call) and largest chunk of TLS records read back from it.
RECV_SIZE = 2**16
SEND_BIO_SIZE = 2**18
# Plaintext of one read is collected in a reused buffer of this size (a TCP
# read is at most 64 KiB); it is handed on when less than a record fits.
SCRATCH_SIZE = 2**17
# Writes at least this large go to OpenSSL at once, not copied and held.
BULK_WRITE = 2**14

_scratches: list[bytearray] = []  # buffers not in use (reads can nest)

# (interfaces of the transport, half-closeable protocol?) -> our declaration
_declarations: dict = {}


def _declaration(transport, halfCloseable: bool) -> Declaration:
    """
    Return what a TLS protocol over C{transport} directly provides: the
    transport's interfaces, and L{IHalfCloseableProtocol} when asked.
    """
    spec = providedBy(transport)
    key = (spec, halfCloseable)
    declaration = _declarations.get(key)
    if declaration is None:
        extra = (IHalfCloseableProtocol,) if halfCloseable else ()
        declaration = _declarations[key] = Declaration(spec, *extra)
    return declaration


def send_now(transport, data: bytes) -> None:
    """
    Write C{data} to C{transport}: to a TCP socket with nothing queued,
    straight away as far as the socket takes it (Twisted's write waits for
    the next reactor turn, with two C{epoll_ctl} calls), the rest queued.
    """
    if (
        type(transport) is not Server
        or transport._tempDataLen
        or transport.offset != len(transport.dataBuffer)
        or not transport.connected
        or transport.disconnecting
        or transport._writeDisconnected
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except OSError:  # EAGAIN, or an error Twisted reports on its own write
        sent = 0
    if sent < len(data):
        transport.write(data[sent:])


class _ReadTurnAggregator(_AggregateSmallWrites):
    """
    Twisted's small-write aggregator, except that while C{holding} (during a
    read) writes are only collected: the read's end flushes them.
    """

    holding = False

    def write(self, data: bytes | memoryview) -> None:
        if len(data) >= BULK_WRITE:  # encrypted now: no copy, nothing held
            self.flush()
            self._write(data)
            return
        data = bytes(data)  # a copy unless it is bytes already
        if not self.holding:
            return super().write(data)
        self._buffer.append(data)
        self._bufferLeft -= len(data)
        if self._bufferLeft < 0:
            self.flush()


class HalfCloseTLSProtocol(BufferingTLSTransport):
    """
    A TLS transport that lets an L{IHalfCloseableProtocol} close each
    direction on its own with close_notify.
    """

    readClosed = False
    writeClosed = False

    def __init__(self, factory, wrappedProtocol, _connectWrapped: bool = True) -> None:
        super().__init__(factory, wrappedProtocol, _connectWrapped)
        self._aggregator = _ReadTurnAggregator(self._aggregator._write, factory._clock)
        self.write = self._aggregator.write

    def makeConnection(self, transport) -> None:
        # TLSMemoryBIOProtocol.makeConnection, without re-declaring the
        # transport's interfaces one at a time on every connection.
        self._halfCloseable = IHalfCloseableProtocol.providedBy(self.wrappedProtocol)
        self._tlsConnection = self.factory._creatorCallable(self)
        self._appSendBuffer = []
        # the transport's interfaces; half-closeable: TCP FIN -> readConnectionLost
        directlyProvides(self, _declaration(transport, self._halfCloseable))
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)  # replies are whole; do not wait for ACKs
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        if self._connectWrapped:
            self.wrappedProtocol.makeConnection(self)
        self._checkHandshakeStatus()

    def dataReceived(self, data: bytes) -> None:
        aggregator = self._aggregator
        aggregator.holding = True
        try:
            super().dataReceived(data)
        finally:
            aggregator.holding = False
            aggregator.flush()

    def _flushReceiveBIO(self) -> None:
        scratch = _scratches.pop() if _scratches else bytearray(SCRATCH_SIZE)
        view = memoryview(scratch)
        filled = 0
        try:
            while not self._lostTLSConnection and not self.readClosed:
                if SCRATCH_SIZE - filled < 2**14:
                    filled = self._deliver(view, filled)
                try:
                    filled += self._tlsConnection.recv_into(view[filled:], RECV_SIZE)
                except WantReadError:
                    break
                except ZeroReturnError:
                    filled = self._deliver(view, filled)
                    if self._halfCloseable:
                        self._peerClosedWriting()
                    else:
                        self._shutdownTLS()
                        self._tlsShutdownFinished(None)
                except Error:
                    failure = Failure()
                    filled = self._deliver(view, filled)
                    self._tlsShutdownFinished(failure)
            self._deliver(view, filled)
        finally:
            _scratches.append(scratch)
        if self._tlsConnection is not None:
            self._flushSendBIO()

    def _deliver(self, view: memoryview, length: int) -> int:
        """
        Hand the first C{length} decrypted bytes in C{view} to the protocol
        in one call (as a view, valid during the call, to a protocol whose
        C{acceptsMemoryViews} is true; else as bytes); return 0.
        """
        if length and not self._aborted:
            data = view[:length]
            if not getattr(self.wrappedProtocol, "acceptsMemoryViews", False):
                data = data.tobytes()
            ProtocolWrapper.dataReceived(self, data)
        return 0

    def _flushSendBIO(self) -> None:
        while True:
            try:
                records = self._tlsConnection.bio_read(SEND_BIO_SIZE)
            except WantReadError:
                return
            send_now(self.transport, records)
            if len(records) < SEND_BIO_SIZE:
                return

    def _write(self, data: bytes) -> None:
        # TLSMemoryBIOProtocol._write, without a copy and a flush per record.
        if self._lostTLSConnection:
            return
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            try:
                sent += self._tlsConnection.send(view[sent:])
            except WantReadError:
                self._bufferedWrite(bytes(view[sent:]))
                break
            except Error:
                self._tlsShutdownFinished(Failure())
                return
        self._flushSendBIO()

    def _peerClosedWriting(self) -> None:
        self.readClosed = True
        self.wrappedProtocol.readConnectionLost()
        if (self.writeClosed or self.disconnecting) and not self._lostTLSConnection:
            self._shutdownTLS()
            self._tlsShutdownFinished(None)

    def _shutdownTLS(self) -> None:
        # Twisted answers a peer's close_notify without flushing the small
        # writes it holds back until the next reactor turn: they would be
        # lost (e.g. the echo of a client's last lines). Flush them first.
        self._aggregator.flush()
        super()._shutdownTLS()

    def loseWriteConnection(self) -> None:
        """
        Send close_notify: we write no more, but go on reading.
        """
        if self.writeClosed or self.disconnecting or not self.connected:
            return
        self._aggregator.flush()
        self.writeClosed = True
        if self.readClosed:
            self.loseConnection()
            return
        try:
            self._tlsConnection.shutdown()
        except Error:
            pass
        self._flushSendBIO()

    def readConnectionLost(self) -> None:
        """
        TCP FIN from the peer: read what is left; without close_notify the
        stream was cut short and the connection is lost.
        """
        if self._lostTLSConnection:
            return
        self._tlsConnection.bio_shutdown()
        self._flushReceiveBIO()

    def writeConnectionLost(self) -> None:
        """
        Our side of the TCP connection was shut down: nothing to do.
        """


class HalfCloseTLSFactory(TLSMemoryBIOFactory):
    """
    A L{TLSMemoryBIOFactory} whose connections are L{HalfCloseTLSProtocol}s.
    """

    protocol = HalfCloseTLSProtocol


class _TLSEndpoint:
    """
    Wraps the endpoint C{wrapped} in TLS from C{creator}, with half-close support.
    """

    isClient = False

    def __init__(self, creator, wrapped, clock=None) -> None:
        self.creator = creator
        self.wrapped = wrapped
        self.clock = clock

    def _tls(self, protocolFactory) -> HalfCloseTLSFactory:
        return HalfCloseTLSFactory(self.creator, self.isClient, protocolFactory, self.clock)


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint(_TLSEndpoint):
    """
    Listens on C{wrapped} and serves TLS from C{creator} (an
    C{IOpenSSLServerConnectionCreator}).
    """

    def listen(self, protocolFactory):
        """
        Listen with C{protocolFactory} under TLS; fire with the listening port.
        """
        return self.wrapped.listen(self._tls(protocolFactory))


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint(_TLSEndpoint):
    """
    Connects with C{wrapped} and speaks TLS from C{creator} (an
    C{IOpenSSLClientConnectionCreator}).
    """

    isClient = True

    def connect(self, protocolFactory):
        """
        Connect, then fire with the protocol C{protocolFactory} built.
        """
        return self.wrapped.connect(self._tls(protocolFactory)).addCallback(
            lambda tls: tls.wrappedProtocol
        )
