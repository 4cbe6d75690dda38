"""
Connections from a TCP load balancer that start with a PROXY protocol
header (HAProxy's proxy-protocol.txt, v1 or v2), read before TLS.

L{ProxiedFactory} sits between the listening port and the TLS factory: it
reads the header within C{handshake_timeout}, then hands the connection to
the TLS factory with the client's address as its peer, so that logs,
C{max_connections} refusals and everything that calls C{getPeer()} name the
real client, not the load balancer.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import alsoProvides, directlyProvides, providedBy

from .protocol import describe_address
from .proxyproto import COMMAND_PROXY, FAMILY_TCP4, FAMILY_TCP6, HeaderReader, ProxyHeader

log = Logger(namespace="twisted_mtls")

# Why a PROXY header was not accepted, as a metric label.
PROXY_FAILURE_LABELS = ("invalid", "timeout", "closed", "untrusted_source")


def header_address(header: ProxyHeader):
    """
    Return the client address a PROXY header carries as a Twisted address,
    or L{None} when it carries none (C{LOCAL} command, e.g. a health check,
    or an unknown family): the connection is then the proxy's own.
    """
    if header.command != COMMAND_PROXY or header.family not in (FAMILY_TCP4, FAMILY_TCP6):
        return None
    host, port = header.source
    return (IPv4Address if header.family == FAMILY_TCP4 else IPv6Address)("TCP", host, port)


def address_in(networks, host: str) -> bool:
    """
    Return whether C{host} (IPv4-mapped IPv6 counted as IPv4) is in one of C{networks}.
    """
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip
    return any(ip.version == n.version and ip in n for n in networks)


class ProxiedProtocol(ProtocolWrapper):
    """
    Reads a PROXY header, then connects the wrapped protocol (built only
    then, for the client's address) and relays everything else unchanged.
    """

    wrappedProtocol = None
    realPeer = None
    reader = None
    timeoutCall = None

    def __init__(self, factory: ProxiedFactory) -> None:
        super().__init__(factory, None)

    def makeConnection(self, transport) -> None:
        """
        Start reading the header, within the handshake timeout.
        """
        directlyProvides(self, providedBy(transport))
        self.transport = transport
        self.connected = 1
        self.proxy = transport.getPeer()
        self.factory.registerProtocol(self)
        host = getattr(self.proxy, "host", None)
        if self.factory.trusted and (host is None or not address_in(self.factory.trusted, host)):
            self.fail("untrusted_source", "not in proxy_from, so it may not send a PROXY header")
            return
        self.reader = HeaderReader(self.factory.version)
        self.timeoutCall = self.factory.clock.callLater(
            self.factory.timeout,
            self.fail,
            "timeout",
            f"no complete PROXY header within {self.factory.timeout:g} s",
        )

    def getPeer(self):
        """
        Return the client's address from the header (the proxy's before it).
        """
        return self.realPeer or self.proxy

    @property
    def bufferSize(self) -> int:
        return self.transport.bufferSize

    @bufferSize.setter
    def bufferSize(self, value: int) -> None:
        self.transport.bufferSize = value

    def dataReceived(self, data: bytes) -> None:
        if self.wrappedProtocol is not None:
            self.wrappedProtocol.dataReceived(data)
            return
        if self.reader is None:
            return
        try:
            parsed = self.reader.feed(data)
        except ValueError as e:
            self.fail("invalid", f"sent no valid PROXY {self.factory.version} header ({e})")
            return
        if parsed is not None:
            self._headerReceived(*parsed)

    def _headerReceived(self, header: ProxyHeader, rest: bytes) -> None:
        self._cancelTimeout()
        self.reader = None
        self.realPeer = header_address(header)
        wrapped = self.factory.wrappedFactory.buildProtocol(self.getPeer())
        if wrapped is None:
            self.transport.loseConnection()
            return
        self.wrappedProtocol = wrapped
        wrapped.makeConnection(self)
        if IHalfCloseableProtocol.providedBy(wrapped):
            alsoProvides(self, IHalfCloseableProtocol)
        if rest:
            wrapped.dataReceived(rest)

    def fail(self, label: str, reason: str) -> None:
        """
        Close this connection, which brought no acceptable header, logging C{reason}.
        """
        self._cancelTimeout()
        self.reader = None
        self.factory.failed(label, self.proxy, reason)
        self.transport.abortConnection()

    def readConnectionLost(self) -> None:
        self.wrappedProtocol.readConnectionLost()

    def writeConnectionLost(self) -> None:
        self.wrappedProtocol.writeConnectionLost()

    def _cancelTimeout(self) -> None:
        if self.timeoutCall is not None and self.timeoutCall.active():
            self.timeoutCall.cancel()
        self.timeoutCall = None

    def connectionLost(self, reason) -> None:
        self._cancelTimeout()
        if self.wrappedProtocol is not None:
            super().connectionLost(reason)
            return
        self.factory.unregisterProtocol(self)
        if self.reader is not None:
            self.reader = None
            self.factory.failed(
                "closed", self.proxy, "closed the connection before sending a PROXY header"
            )


class ProxiedFactory(WrappingFactory):
    """
    Wraps C{wrappedFactory} (the TLS factory) so that each connection first
    sends a PROXY header of C{version}, from an address in C{trusted} (any,
    when empty), within C{timeout} seconds.
    """

    protocol = ProxiedProtocol
    noisy = False

    def __init__(self, wrappedFactory, version: str, timeout: float, trusted=(), clock=None) -> None:
        super().__init__(wrappedFactory)
        if clock is None:
            from twisted.internet import reactor as clock
        self.version = version
        self.timeout = timeout
        self.trusted = tuple(trusted)
        self.clock = clock
        self.failures: dict[str, int] = {}

    def buildProtocol(self, addr):
        return self.protocol(self)

    def failed(self, label: str, proxy, reason: str) -> None:
        """
        Count and log a connection from C{proxy} closed for want of a valid header.
        """
        self.failures[label] = self.failures.get(label, 0) + 1
        level = log.info if label == "closed" else log.warn
        level(
            "{peer} closed: {reason}",
            event="proxy_header_failed",
            peer=describe_address(proxy),
            reason=reason,
            label=label,
        )

    def abortWaiting(self) -> None:
        """
        Abort the connections still waiting for their header (at shutdown).
        """
        for protocol in list(self.protocols):
            if protocol.wrappedProtocol is None:
                protocol.transport.abortConnection()
