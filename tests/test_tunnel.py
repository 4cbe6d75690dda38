"""
The client tunnel: plain local connections carried over mutual TLS to the daemon.
"""

from __future__ import annotations

import hashlib

from twisted.internet import endpoints, reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory

from twisted_mtls import tunnel
from twisted_mtls.client import main
from twisted_mtls.material import load_client_material

from .support import (
    Collector,
    LogEvents,
    TestCase,
    client_config,
    inline,
    pki,
    server_config,
    start_plain_server,
    start_server,
)
from .test_forward import DigestBackend, forwarder


class PlainClient(Collector):
    """
    Sends C{data}, ends its output, and collects everything until the connection closes.
    """

    def __init__(self, data: bytes, done: Deferred) -> None:
        self.data = data
        self.done = done

    def connectionMade(self) -> None:
        self.transport.write(self.data)
        self.transport.loseWriteConnection()

    def connectionLost(self, reason) -> None:
        self.done.callback(self.received)


async def start_tunnel(testcase, settings) -> int:
    """
    Start a tunnel on a free loopback port to C{settings}' server; return the port.
    """
    port = await tunnel.listen(reactor, "tcp:0:interface=127.0.0.1", settings, load_client_material(settings))
    testcase.addCleanup(port.stopListening)
    return port.getHost().port


async def through(port: int, data: bytes) -> bytes:
    """
    Send C{data} in clear text to the tunnel on C{port}; return what came back.
    """
    done: Deferred = Deferred()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await endpoint.connect(Factory.forProtocol(lambda: PlainClient(data, done)))
    return await done


class TunnelTests(TestCase):
    @inline
    async def test_tunnel_to_echo(self):
        """A plain local connection is carried over mTLS to the echo daemon and its lines come back."""
        events = LogEvents(self)
        service = start_server(self)
        port = await start_tunnel(self, client_config(service))
        self.assertEqual(await through(port, b"one\ntwo\n"), b"one\ntwo\n")
        opened = await events.first("connection_open")
        self.assertEqual(opened["cn"], "alice")
        await events.first("tunnel_open")

    @inline
    async def test_tunnel_half_close_through_forwarder(self):
        """End of input crosses the tunnel and the forwarder to the target, and the answer comes back."""
        service = forwarder(self, Factory.forProtocol(DigestBackend))
        port = await start_tunnel(self, client_config(service))
        data = b"x" * 100_000
        got = await through(port, data)
        self.assertEqual(got, b"%d %s\n" % (len(data), hashlib.sha256(data).hexdigest().encode()))

    @inline
    async def test_tunnel_wrong_server_name(self):
        """A server certificate for another name closes the local connection, with the client's reason logged."""
        events = LogEvents(self)
        service = start_server(self)
        port = await start_tunnel(self, client_config(service, server_name="example.com"))
        self.assertEqual(await through(port, b"hello\n"), b"")
        failed = await events.first("tunnel_failed")
        self.assertEqual(
            failed["reason"],
            "the server's certificate is not acceptable: certificate is for "
            "DNS:localhost, IP:127.0.0.1, not for 'example.com'",
        )

    @inline
    async def test_tunnel_refused_by_server(self):
        """A client certificate the server does not trust closes the local connection with the server's refusal."""
        from twisted_mtls import certbuilder

        events = LogEvents(self)
        service = start_server(self, server_config(min_tls_version="1.2"))
        cert, key = pki().write("stranger", certbuilder.make_self_signed_client("stranger"))
        port = await start_tunnel(self, client_config(service, cert, key))
        self.assertEqual(await through(port, b"hello\n"), b"")
        failed = await events.first("tunnel_failed")
        self.assertIn("the server refused our certificate", failed["reason"])

    @inline
    async def test_tunnel_server_down(self):
        """A server that is not running closes the local connection with the client's connect message."""
        events = LogEvents(self)
        service = start_server(self)
        settings = client_config(service)
        await service.stopService()
        port = await start_tunnel(self, settings)
        self.assertEqual(await through(port, b"hello\n"), b"")
        failed = await events.first("tunnel_failed")
        self.assertEqual(
            failed["reason"],
            f"cannot connect to {settings.connect[0]}:{settings.connect[1]}: "
            "connection refused (is the server running?)",
        )

    @inline
    async def test_tunnel_handshake_timeout(self):
        """A server that never completes the TLS handshake closes the local connection with the client's timeout sentence."""
        events = LogEvents(self)
        port = start_plain_server(self)
        settings = client_config(None, connect=f"127.0.0.1:{port}", timeout="0.5")
        local = await start_tunnel(self, settings)
        self.assertEqual(await through(local, b"hello\n"), b"")
        failed = await events.first("tunnel_failed")
        self.assertEqual(
            failed["reason"],
            f"cannot connect to 127.0.0.1:{port}: the TLS handshake did not complete within 0.5 s",
        )

    def listen_status(self, listen: str) -> int:
        """
        Return the client's exit status for C{--listen listen}.
        """
        p = pki()
        return main([
            "--connect", "127.0.0.1:1", "--cert", str(p.folder / "client.pem"),
            "--key", str(p.folder / "client.key"), "--ca", str(p.folder / "ca.pem"),
            "--listen", listen,
        ])  # fmt: skip

    def test_listen_must_be_local(self):
        """--listen on a non-loopback address is refused (exit 2) unless --unsafe-listen."""
        self.assertEqual(self.listen_status("tcp:0:interface=0.0.0.0"), 2)

    def test_listen_repeated_interface_must_be_local(self):
        """--listen whose last interface= (the one Twisted binds) is not loopback is refused (exit 2)."""
        self.assertEqual(self.listen_status("tcp:0:interface=127.0.0.1:interface=0.0.0.0"), 2)
