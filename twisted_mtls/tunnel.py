"""
The client tunnel (C{python -m twisted_mtls.client --listen ENDPOINT}): accept
plain local connections and carry each over its own mutual-TLS connection to
the server, like ghostunnel's client mode.

Each local connection gets a TLS connection that presents our certificate
and verifies the server's chain and name exactly as the interactive client
does; bytes are relayed both ways with backpressure and half-close
(L{twisted_mtls.relay}). A connection that cannot be carried is closed and
the reason logged in the client's words (event C{tunnel_failed}).
"""

from __future__ import annotations

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from .client import _handshakeTimeout, server_endpoint
from .protocol import describe_address
from .reasons import Explanation, Kind, describe_connect_failure, describe_server_failure
from .relay import Relay
from .tls import IPeerRejectionListener

log = Logger(namespace="twisted_mtls")


@implementer(IHandshakeListener, IPeerRejectionListener, IHalfCloseableProtocol)
class ServerSide(Protocol):
    """
    The mutual-TLS connection carrying one local connection to the server.
    """

    handshook = False
    rejection: str | None = None
    failure: Explanation | None = None  # set by the handshake timeout

    def __init__(self, local: LocalConnection) -> None:
        self.local = local

    def peerRejected(self, reason: str) -> None:
        self.rejection = self.rejection or reason

    def handshakeCompleted(self) -> None:
        self.handshook = True
        self.local.serverReady(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.local.relay.fromBack(data)

    def readConnectionLost(self) -> None:
        self.local.relay.backEndedOutput()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason) -> None:
        if self.local.relay.finished:
            return self.local.relay.backLost("finished")
        explanation = self.failure or describe_server_failure(self.rejection, reason.value)
        if explanation.kind is not Kind.PROTOCOL or not self.handshook:
            self.local.failed(explanation.text)
        self.local.relay.backLost(explanation.text)


@implementer(IHalfCloseableProtocol)
class LocalConnection(Protocol):
    """
    One plain local connection, relayed to the server.
    """

    factory: TunnelFactory
    connecting = None
    timer = None

    def connectionMade(self) -> None:
        self.peer = describe_address(self.transport.getPeer())
        self.relay = Relay(self.transport, lambda reason: self.transport.loseConnection())
        server = Factory.forProtocol(lambda: ServerSide(self))
        server.noisy = False
        self.connecting = self.factory.endpoint.connect(server)
        self.connecting.addCallbacks(self._connected, self._cannotConnect)

    def _connected(self, server: ServerSide) -> None:
        self.connecting = None
        timeout = self.factory.settings.timeout
        self.timer = self.factory.reactor.callLater(
            timeout, _handshakeTimeout, server, self.factory.where, timeout
        )

    def _cannotConnect(self, failure) -> None:
        self.connecting = None
        if not self.relay.lost:
            self.failed(describe_connect_failure(failure.value, self.factory.where).text)
            self.transport.loseConnection()

    def serverReady(self, server) -> None:
        """
        The TLS handshake with the server succeeded: start relaying.
        """
        self._cancelTimer()
        log.info(
            "{local} -> {where}: tunnel open",
            event="tunnel_open",
            local=self.peer,
            where=self.factory.where,
        )
        self.relay.attach(server)

    def failed(self, reason: str) -> None:
        """
        This local connection could not be carried for C{reason}.
        """
        log.warn(
            "{local} -> {where}: {reason}",
            event="tunnel_failed",
            local=self.peer,
            where=self.factory.where,
            reason=reason,
        )

    def dataReceived(self, data: bytes) -> None:
        self.relay.fromFront(data)

    def readConnectionLost(self) -> None:
        self.relay.frontEndedOutput()

    def writeConnectionLost(self) -> None:
        pass

    def _cancelTimer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()

    def connectionLost(self, reason) -> None:
        self._cancelTimer()
        self.relay.frontLost()
        if self.connecting is not None:
            self.connecting.cancel()


class TunnelFactory(Factory):
    """
    Accepts local connections and carries each to the server of C{settings}
    (a L{twisted_mtls.config.ClientConfig}) with C{material}.
    """

    protocol = LocalConnection

    def __init__(self, reactor, settings, material) -> None:
        from .halfclose import TLSClientEndpoint

        self.reactor = reactor
        self.settings = settings
        host, port = settings.connect
        self.where = f"{host}:{port}"
        self.endpoint = server_endpoint(reactor, settings, material, TLSClientEndpoint)


def listen(reactor, description: str, settings, material) -> defer.Deferred:
    """
    Listen on the server endpoint C{description}; fire with the listening port.
    """
    endpoint = endpoints.serverFromString(reactor, description)
    return endpoint.listen(TunnelFactory(reactor, settings, material))


def serve(reactor, args, settings, material) -> int:
    """
    Run the tunnel on C{args.listen} until interrupted; return the exit status.
    """
    import sys

    from twisted.logger import globalLogBeginner, formatEvent

    from .values import server_endpoint
    from .descriptions import is_local_listener

    try:
        description = server_endpoint(args.listen)
    except ValueError as e:
        sys.stderr.write(f"mtls-client: --listen: {e}\n")
        return Kind.LOCAL
    if not args.unsafe_listen and not is_local_listener(description):
        sys.stderr.write(
            f"mtls-client: --listen: {description!r} is not loopback or a unix socket: anyone "
            "who can reach it would use our certificate; add --unsafe-listen if that is meant\n"
        )
        return Kind.LOCAL

    def toStderr(event) -> None:
        if event.get("log_namespace") == "twisted_mtls" and "event" in event:
            sys.stderr.write(f"mtls-client: {formatEvent(event)}\n")
            sys.stderr.flush()

    globalLogBeginner.beginLoggingTo([toStderr], redirectStandardIO=False)
    status: list[int] = []

    def listening(port) -> None:
        host = port.getHost()
        log.info(
            "tunnel listening on {address}, carrying each connection to {where}",
            event="tunnel_listening",
            address=describe_address(host),
            where=f"{settings.connect[0]}:{settings.connect[1]}",
        )

    def cannotListen(failure) -> None:
        sys.stderr.write(f"mtls-client: cannot listen on {description}: {failure.getErrorMessage()}\n")
        status.append(int(Kind.LOCAL))
        reactor.stop()

    reactor.callWhenRunning(
        lambda: listen(reactor, description, settings, material).addCallbacks(listening, cannotListen)
    )
    reactor.run()
    return status[0] if status else 0
