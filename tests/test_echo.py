"""
The line echo over real mutual TLS on loopback.
"""

from .support import TestCase, LogEvents, client_config, inline, start_server, talk


class EchoTests(TestCase):
    @inline
    async def test_one_line(self):
        """A verified client gets its line back and the server logs who it was."""
        events = LogEvents(self)
        service = start_server(self)
        outcome = await talk(client_config(service), b"hello")
        self.assertIsNone(outcome.failure)
        self.assertEqual(outcome.output, b"hello\n")
        opened = await events.first("connection_open")
        self.assertEqual(opened["cn"], "alice")
        self.assertIn("DNS:alice.example", opened["sans"])
