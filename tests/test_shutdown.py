"""
Graceful shutdown: stop accepting, deliver the echoes already owed, then close.
"""

from __future__ import annotations

from twisted.internet import task, reactor

from .support import (
    LogEvents,
    TestCase,
    client_config,
    eventually,
    flood_until_paused,
    inline,
    open_session,
    served,
    server_config,
    start_server,
    talk,
)


class ShutdownTests(TestCase):
    @inline
    async def test_no_echo_lost_under_load(self):
        """Stopping under load closes every connection cleanly after the echo of each line the server received."""
        events = LogEvents(self)
        service = start_server(self, server_config(shutdown_timeout="10"))
        settings = client_config(service)
        sessions = [await open_session(self, settings) for _ in range(5)]
        await eventually(lambda: all(p.handshakeDone for p in served(service)))
        lines = b"".join(b"line %05d of a steady stream\n" % i for i in range(4000))
        for session in sessions:
            session.transport.write(lines)
        await task.deferLater(reactor, 0, lambda: None)
        protocols = served(service)
        await service.stopService()
        for session in sessions:
            self.assertTrue(session.lost.called)
            received = bytes(session.received)
            self.assertTrue(lines.startswith(received))
            self.assertTrue(received.endswith(b"\n") or not received)
        self.assertEqual(
            sorted(len(s.received) for s in sessions), sorted(p.bytesOut for p in protocols)
        )
        report = await events.first("shutdown")
        self.assertEqual((report["clean"], report["handshaking"], report["timed_out"]), (5, 0, 0))
        self.assertEqual(service.factory.stats.closed, {"shutdown": 5})
        refused = await talk(settings, b"late")
        self.assertIn("connection refused", refused.reason)

    @inline
    async def test_stuck_connection_is_closed_after_timeout(self):
        """A client that never reads its echoes is aborted once shutdown_timeout has passed."""
        events = LogEvents(self)
        service = start_server(self, server_config(shutdown_timeout="0.2"))
        session = await open_session(self, client_config(service))
        await eventually(lambda: served(service))
        await flood_until_paused(session, served(service)[0], (b"y" * 1023 + b"\n") * 64)
        await service.stopService()
        report = await events.first("shutdown")
        self.assertEqual((report["clean"], report["timed_out"]), (0, 1))
        self.assertEqual(served(service), [])

    @inline
    async def test_zero_timeout_counts_each_connection_once(self):
        """With shutdown_timeout = 0 a handshaking connection counts as aborted during its handshake only, never also as timed out."""
        from twisted.internet import endpoints
        from twisted.internet.protocol import Factory, Protocol

        from .support import port_of

        events = LogEvents(self)
        service = start_server(self, server_config(shutdown_timeout="0"))
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port_of(service))
        silent = await endpoint.connect(Factory.forProtocol(Protocol))  # never says hello
        self.addCleanup(silent.transport.abortConnection)
        await eventually(lambda: len(service.factory.active) == 1)
        await service.stopService()
        report = await events.first("shutdown")
        self.assertEqual((report["clean"], report["handshaking"], report["timed_out"]), (0, 1, 0))
