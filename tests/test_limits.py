"""
Connection limits and timeouts, and flow control against a client that does not read.
"""

from __future__ import annotations

from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.protocol import Factory, Protocol

from .support import (
    LogEvents,
    TestCase,
    client_config,
    eventually,
    flood_until_paused,
    inline,
    open_session,
    pending_output,
    served,
    server_config,
    start_server,
    talk,
)


class _Trickle(Protocol):
    def connectionMade(self) -> None:
        self.lost = defer.Deferred()

    def connectionLost(self, reason) -> None:
        self.lost.callback(None)


class LimitTests(TestCase):
    @inline
    async def test_max_connections(self):
        """Connections over max_connections are closed at once and counted, and the listener keeps accepting."""
        events = LogEvents(self)
        service = start_server(self, server_config(max_connections="2"))
        settings = client_config(service)
        first = await open_session(self, settings)
        await open_session(self, settings)
        outcome = await talk(settings, b"third")
        self.assertIsNotNone(outcome.failure)
        self.assertEqual(service.factory.stats.refused, 1)
        refused = await events.first("connection_refused")
        self.assertEqual(refused["max_connections"], 2)
        first.transport.loseConnection()
        await first.lost
        await eventually(lambda: len(service.factory.active) == 1)
        outcome = await talk(settings, b"fourth")
        self.assertEqual(outcome.output, b"fourth\n")

    @inline
    async def test_trickling_handshake_is_cut(self):
        """A client that trickles handshake bytes is cut at the handshake timeout."""
        events = LogEvents(self)
        service = start_server(self, server_config(handshake_timeout="0.2"))
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", service.port.getHost().port)
        trickle = await endpoint.connect(Factory.forProtocol(_Trickle))
        hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 200
        for byte in hello:
            if trickle.lost.called:
                break
            trickle.transport.write(bytes([byte]))
            await task.deferLater(reactor, 0.01, lambda: None)
        await trickle.lost
        failed = await events.first("handshake_failed")
        self.assertEqual(failed["reason"], "handshake not completed within 0.2 s")
        self.assertEqual(service.factory.stats.handshakeFailures, {"timeout": 1})

    @inline
    async def test_max_connection_lifetime(self):
        """A connection open longer than max_connection_lifetime is closed cleanly with that reason."""
        events = LogEvents(self)
        service = start_server(self, server_config(max_connection_lifetime="0.2", idle_timeout="0"))
        session = await open_session(self, client_config(service))
        self.assertEqual(await session.echo(b"alive"), b"alive\n")
        await session.lost
        closed = await events.first("connection_closed")
        self.assertEqual(closed["reason"], "open for 0.2 s (max_connection_lifetime)")
        self.assertEqual(service.factory.stats.closed, {"lifetime": 1})

    @inline
    async def test_idle_timeout(self):
        """A connection idle longer than idle_timeout is closed and counted as such."""
        service = start_server(self, server_config(idle_timeout="0.1"))
        session = await open_session(self, client_config(service))
        await session.lost
        await eventually(lambda: service.factory.stats.closed)
        self.assertEqual(service.factory.stats.closed, {"idle_timeout": 1})

    @inline
    async def test_client_that_does_not_read(self):
        """A client that sends without reading makes the server stop reading instead of buffering without bound, and gets every echo once it reads."""
        cap = 65536
        service = start_server(self, server_config(max_pending_output=str(cap)))
        session = await open_session(self, client_config(service))
        (server,) = served(service)
        block = (b"x" * 1023 + b"\n") * 64
        sent = await flood_until_paused(session, server, block)
        self.assertTrue(server.readingPaused)
        for _ in range(16):  # 1 MiB more, while the server is not reading
            session.transport.write(block)
            sent += len(block)
            await task.deferLater(reactor, 0.005, lambda: None)
            self.assertLess(pending_output(server), cap + 2 * len(block) + 65536)
        session.transport.resumeProducing()
        await eventually(lambda: len(session.received) >= sent, timeout=30)
        self.assertEqual(bytes(session.received), block * (sent // len(block)))
        self.assertGreaterEqual(service.factory.stats.readPauses, 1)
