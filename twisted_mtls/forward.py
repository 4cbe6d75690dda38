"""
C{service = forward}: relay each verified client's bytes to C{target} and back.

The relay keeps the daemon's handshake, identity and logging behaviour
(L{MTLSProtocol}). Once the client is verified it connects to C{target}
(a Twisted client endpoint: C{tcp:HOST:PORT} or C{unix:PATH}) within
C{target_timeout} seconds, optionally opens with a PROXY v2 header
(C{target_proxy_protocol = v2}), then copies bytes both ways with
backpressure and half-close (see L{twisted_mtls.relay}). A target that
cannot be reached closes the client's connection with the reason logged
(event C{target_unreachable}, and in C{connection_closed}).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet import endpoints
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from . import proxyproto
from .protocol import MTLSFactory, MTLSProtocol, log
from .reasons import describe_connect_failure, describe_tls_failure
from .relay import Relay


@implementer(IHalfCloseableProtocol)
class TargetConnection(Protocol):
    """
    The relay's connection to the target: reports everything to its L{Forward}.
    """

    def __init__(self, forward: Forward) -> None:
        self.forward = forward

    def connectionMade(self) -> None:
        self.forward.targetConnected(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.forward.fromTarget(data)

    def readConnectionLost(self) -> None:
        self.forward.relay.backEndedOutput()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason) -> None:
        self.forward.relay.backLost(
            "the target closed the connection"
            if self.forward.relay.backEnded
            else describe_tls_failure(reason.value, "target").text
        )


@implementer(IHalfCloseableProtocol)
class Forward(MTLSProtocol):
    """
    Relays one verified client to the target, both ways.
    """

    factory: ForwardFactory
    connecting = None
    relay: Relay

    def peerAuthenticated(self, identity) -> None:
        config = self.factory.config
        self.relay = Relay(self.transport, self.closeBecause)
        endpoint = endpoints.clientFromString(self.factory.clock, config.target)
        factory = Factory.forProtocol(lambda: TargetConnection(self))
        factory.noisy = False
        self.connecting = endpoint.connect(factory)
        self.connecting.addTimeout(config.target_timeout, self.factory.clock)
        self.connecting.addErrback(self._targetUnreachable)

    def _targetUnreachable(self, failure) -> None:
        self.connecting = None
        if self.relay.lost:
            return
        config = self.factory.config
        text = describe_connect_failure(
            failure.value, f"target {config.target}", "is the target running?"
        ).text
        if text.endswith("timed out"):
            text += f" after {config.target_timeout:g} s"
        log.warn(
            "{peer} ({cn}): {reason}",
            event="target_unreachable",
            peer=self.peer,
            cn=self.peerIdentity.common_name,
            target=config.target,
            reason=text,
        )
        self.closeBecause(text)

    def proxyHeader(self) -> bytes:
        """
        Return the PROXY v2 header describing this client and its TLS session.
        """
        connection = self.transport.getHandle()
        certificate = connection.get_peer_certificate(as_cryptography=True)
        server_name = connection.get_servername()
        return proxyproto.encode_v2(
            self.transport.getPeer(),
            self.transport.getHost(),
            proxyproto.TLSInfo(
                version=connection.get_protocol_version_name(),
                cipher=connection.get_cipher_name(),
                common_name=self.peerIdentity.common_name,
                client_certificate=certificate.public_bytes(Encoding.DER),
            ),
            authority=server_name,  # the bytes the client sent, not always ASCII
        )

    def targetConnected(self, target) -> None:
        """
        The target accepted the connection: start relaying.
        """
        self.connecting = None
        if self.relay.lost:
            target.abortConnection()
            return
        preamble = b""
        if self.factory.config.target_proxy_protocol == "v2":
            preamble = self.proxyHeader()
        self.relay.attach(target, preamble)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.bytesIn += len(data)
        self.relay.fromFront(data)

    def fromTarget(self, data: bytes) -> None:
        """
        Bytes from the target: pass them to the client.
        """
        self.resetTimeout()
        self.bytesOut += len(data)
        self.relay.fromBack(data)

    def readConnectionLost(self) -> None:
        self.relay.frontEndedOutput()

    def writeConnectionLost(self) -> None:
        pass

    def closeBecause(self, reason: str, abort: bool = False, **how) -> None:
        self.transport.unregisterProducer()  # TLS closes only once no producer is left
        super().closeBecause(reason, abort, **how)

    def connectionLost(self, reason) -> None:
        if self.handshakeDone:
            if self.relay.finished:
                self.closeReason = self.closeReason or "both ends finished"
            self.relay.frontLost()
            if self.connecting is not None:
                self.connecting.cancel()
        super().connectionLost(reason)


class ForwardFactory(MTLSFactory):
    """
    Builds a L{Forward} relay for each client; C{clock} is the reactor.
    """

    protocol = Forward
