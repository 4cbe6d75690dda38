"""
service = forward: relaying verified clients to a plain target over real TLS on loopback.
"""

from __future__ import annotations

import hashlib
import os
import time

from twisted.internet import endpoints, reactor
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.web import resource, server
from zope.interface import implementer

from twisted_mtls import proxyproto
from twisted_mtls.identity import PeerIdentity

from .support import (
    Collector,
    EchoBackend,
    LogEvents,
    RawClient,
    RawCreator,
    TestCase,
    client_config,
    exchange,
    free_port,
    inline,
    listen_plain,
    pki,
    raw_context,
    server_config,
    start_server,
    talk,
)


def forwarder(testcase, backend_factory=None, **overrides):
    """
    Start a plain backend (echo by default) and a daemon forwarding to it.
    """
    if backend_factory is not None or "target" not in overrides:
        address = listen_plain(testcase, backend_factory or Factory.forProtocol(EchoBackend))
        overrides.setdefault("target", f"tcp:127.0.0.1:{address.port}")
    return start_server(testcase, server_config(service="forward", **overrides))


@implementer(IHalfCloseableProtocol)
class DigestBackend(Protocol):
    """
    Reads until its input ends, then answers the byte count and SHA-256 and closes.
    """

    def connectionMade(self) -> None:
        self.digest = hashlib.sha256()
        self.count = 0

    def dataReceived(self, data: bytes) -> None:
        self.digest.update(data)
        self.count += len(data)

    def readConnectionLost(self) -> None:
        self.transport.write(b"%d %s\n" % (self.count, self.digest.hexdigest().encode()))
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass


class GreetFirstBackend(Collector):
    """
    Greets, ends its output at once, then still reads; answers nothing more.
    """

    instances: list = []

    def connectionMade(self) -> None:
        self.instances.append(self)
        self.transport.write(b"greetings\n")
        self.transport.loseWriteConnection()


class ProxyHeaderBackend(EchoBackend):
    """
    Parses the PROXY v2 header, keeps it, then echoes the rest (half-closing like L{EchoBackend}).
    """

    headers: list = []

    def connectionMade(self) -> None:
        self.buffer = b""
        self.header = None

    def dataReceived(self, data: bytes) -> None:
        if self.header is not None:
            self.transport.write(data)
            return
        self.buffer += data
        parsed = proxyproto.parse_v2(self.buffer)
        if parsed is not None:
            self.header, rest = parsed
            self.headers.append(self.header)
            self.transport.write(rest)


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello over https, " + request.getHeader(b"host") + b"\n"


class ForwardTests(TestCase):
    @inline
    async def test_forward_to_echo(self):
        """A verified client's line goes through the relay to a plain echo target and back."""
        events = LogEvents(self)
        service = forwarder(self)
        outcome = await talk(client_config(service), b"through the relay")
        self.assertIsNone(outcome.failure)
        self.assertEqual(outcome.output, b"through the relay\n")
        closed = await events.first("connection_closed")
        self.assertEqual(closed["cn"], "alice")
        self.assertEqual(closed["bytes_in"], 18)

    @inline
    async def test_forward_to_http(self):
        """An HTTP request relayed to a twisted.web server gets its response back."""
        site = server.Site(Hello())
        service = forwarder(self, site)
        got = await exchange(
            client_config(service), b"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(got.received.startswith(b"HTTP/1.1 200 OK\r\n"), got.received[:80])
        self.assertTrue(got.received.endswith(b"hello over https, example\n"))

    @inline
    async def test_target_refused(self):
        """A target that refuses the connection closes the client's, with the reason logged."""
        events = LogEvents(self)
        port = free_port(self)
        service = forwarder(self, target=f"tcp:127.0.0.1:{port}")
        got = await exchange(client_config(service), b"anyone there?\n")
        self.assertEqual(got.received, b"")
        failed = await events.first("target_unreachable")
        self.assertEqual(
            failed["reason"],
            f"cannot connect to target tcp:127.0.0.1:{port}: connection refused "
            "(is the target running?)",
        )
        closed = await events.first("connection_closed")
        self.assertEqual(closed["reason"], failed["reason"])

    @inline
    async def test_target_missing_unix_socket(self):
        """A unix-socket target that does not exist closes the client's connection with the reason."""
        events = LogEvents(self)
        path = os.path.abspath(self.mktemp())
        service = forwarder(self, target=f"unix:{path}")
        await exchange(client_config(service), b"hello\n")
        failed = await events.first("target_unreachable")
        self.assertIn(f"cannot connect to target unix:{path}:", failed["reason"])
        self.assertIn("No such file", failed["reason"])

    @inline
    async def test_client_half_close(self):
        """The client ends its output; the target sees end of input and its answer still arrives."""
        service = forwarder(self, Factory.forProtocol(DigestBackend))
        data = b"half-closed request\n" * 10
        got = await exchange(client_config(service), data)
        self.assertEqual(got.received, b"%d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode()))
        self.assertTrue(got.serverEnded)

    @inline
    async def test_target_half_close(self):
        """The target ends its output; the client sees end of input and can still send to the target."""
        GreetFirstBackend.instances = []
        service = forwarder(self, Factory.forProtocol(GreetFirstBackend))
        got = await exchange(client_config(service), [b"still ", b"talking\n"])
        self.assertEqual(got.received, b"greetings\n")
        self.assertTrue(got.serverEnded)
        self.assertEqual(GreetFirstBackend.instances[0].received, b"still talking\n")

    @inline
    async def test_hundred_megabytes(self):
        """100 MB go through the relay intact: the target's SHA-256 matches the client's."""
        service = forwarder(self, Factory.forProtocol(DigestBackend))
        block = os.urandom(1 << 20)
        chunks = [block] * 100
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        started = time.monotonic()
        got = await exchange(client_config(service), chunks)
        self.assertEqual(got.received, b"%d %s\n" % (100 << 20, digest.hexdigest().encode()))
        print(f"\n100 MB relayed in {time.monotonic() - started:.2f} s")

    @inline
    async def test_proxy_protocol_v2_non_ascii_server_name(self):
        """A client whose SNI is not ASCII still gets its bytes forwarded after a PROXY v2 header carrying that name."""
        from OpenSSL import SSL

        class NamingCreator(RawCreator):
            def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
                connection = SSL.Connection(self.context, None)
                connection.set_tlsext_host_name("café.example".encode("utf-8"))
                return connection

        ProxyHeaderBackend.headers = []
        service = forwarder(self, Factory.forProtocol(ProxyHeaderBackend), target_proxy_protocol="v2")
        endpoint = endpoints.wrapClientTLS(
            NamingCreator(raw_context(pki().client)),
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", service.port.getHost().port),
        )
        client = RawClient([b"hello\n"], 6)
        await endpoint.connect(Factory.forProtocol(lambda: client))
        await client.lost.addTimeout(5, reactor)
        self.assertEqual(client.received, b"hello\n")
        self.assertEqual(ProxyHeaderBackend.headers[0].authority, "café.example")

    @inline
    async def test_proxy_protocol_v2(self):
        """With target_proxy_protocol = v2 the backend learns the client's address, TLS version, cipher, CN and certificate."""
        from cryptography import x509

        ProxyHeaderBackend.headers = []
        service = forwarder(self, Factory.forProtocol(ProxyHeaderBackend), target_proxy_protocol="v2")
        got = await exchange(client_config(service), b"after the header\n")
        self.assertEqual(got.received, b"after the header\n")
        header = ProxyHeaderBackend.headers[0]
        self.assertEqual(header.command, proxyproto.COMMAND_PROXY)
        self.assertEqual(header.family, proxyproto.FAMILY_TCP4)
        self.assertEqual(header.source[0], "127.0.0.1")
        self.assertEqual(header.destination, ("127.0.0.1", service.port.getHost().port))
        self.assertEqual(header.authority, "localhost")
        self.assertEqual(header.tls.common_name, "alice")
        self.assertEqual(header.tls.version, "TLSv1.3")
        self.assertTrue(header.tls.cipher.startswith("TLS_"))
        self.assertTrue(header.tls.verified)
        certificate = x509.load_der_x509_certificate(header.tls.client_certificate)
        self.assertEqual(certificate, pki().client.certificate)
        self.assertEqual(PeerIdentity.from_certificate(certificate).common_name, "alice")
