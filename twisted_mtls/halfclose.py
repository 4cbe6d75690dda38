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
"""

from __future__ import annotations

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer


class HalfCloseTLSProtocol(BufferingTLSTransport):
    """
    A TLS transport that lets an L{IHalfCloseableProtocol} close each
    direction on its own with close_notify.
    """

    readClosed = False
    writeClosed = False

    def makeConnection(self, transport) -> None:
        super().makeConnection(transport)
        if self._halfCloseable():
            alsoProvides(self, IHalfCloseableProtocol)  # TCP FIN -> readConnectionLost

    def _halfCloseable(self) -> bool:
        return IHalfCloseableProtocol.providedBy(self.wrappedProtocol)

    def _flushReceiveBIO(self) -> None:
        if not self._halfCloseable():
            return super()._flushReceiveBIO()
        while not self._lostTLSConnection and not self.readClosed:
            try:
                data = self._tlsConnection.recv(2**15)
            except WantReadError:
                break
            except ZeroReturnError:
                self._peerClosedWriting()
            except Error:
                self._tlsShutdownFinished(Failure())
            else:
                if not self._aborted:
                    ProtocolWrapper.dataReceived(self, data)
        if self._tlsConnection is not None:
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
