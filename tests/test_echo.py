"""
The line echo over real mutual TLS on loopback.
"""

from .support import (
    LogEvents, TestCase, client_config, inline, pki, raw_context, raw_talk, server_config,
    start_server, talk,
)


def chunked(data: bytes, sizes: tuple[int, ...]) -> list[bytes]:
    """
    Cut C{data} into pieces of the given sizes, in turn, until it is used up.
    """
    pieces, start, turn = [], 0, 0
    while start < len(data):
        size = sizes[turn % len(sizes)]
        pieces.append(data[start : start + size])
        start, turn = start + size, turn + 1
    return pieces


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

    @inline
    async def test_many_lines_in_odd_chunks(self):
        """Many lines, long ones and CRLF ones among them, written in odd chunk sizes, come back byte for byte and in order."""
        lines = []
        for n in range(300):
            body = b"line %d " % n + b"x" * (n * 37 % 500)
            lines.append(body + (b"\r\n" if n % 3 == 0 else b"\n"))
        lines[17] = b"L" * (60 * 1024) + b"\n"
        lines[200] = b"C" * (60 * 1024) + b"\r\n"
        lines[201] = b"\n"
        lines[202] = b"\r\n"
        data = b"".join(lines)
        service = start_server(self)
        outcome = await raw_talk(
            service,
            raw_context(pki().client),
            chunked(data, (1, 7, 4093, 13, 16385, 2, 65537)),
            expect=len(data),
        )
        self.assertEqual(outcome.received, data)

    @inline
    async def test_line_at_the_limit(self):
        """A line exactly max_line_length bytes long (without LF or CRLF) is echoed."""
        service = start_server(self, server_config(max_line_length="100"))
        data = b"a" * 100 + b"\n" + b"b" * 100 + b"\r\n"
        outcome = await raw_talk(
            service, raw_context(pki().client), chunked(data, (3, 99, 1)), expect=len(data)
        )
        self.assertEqual(outcome.received, data)

    @inline
    async def test_line_over_the_limit(self):
        """A line one byte over max_line_length gets the error line after every earlier line, then a clean close."""
        events = LogEvents(self)
        service = start_server(self, server_config(max_line_length="100"))
        before = b"first\n" + b"a" * 100 + b"\r\n"
        data = before + b"b" * 101 + b"\nnever echoed\n"
        outcome = await raw_talk(service, raw_context(pki().client), chunked(data, (5, 97)))
        self.assertEqual(
            outcome.received, before + b"ERROR line too long: the limit is 100 bytes\n"
        )
        self.assertTrue(outcome.clean, outcome.reason)
        closed = await events.first("connection_closed")
        self.assertEqual(closed["reason"], "sent a line longer than 100 bytes")
        self.assertEqual(closed["lines"], 2)

    @inline
    async def test_unterminated_line_over_the_limit(self):
        """An over-long line still without its LF is refused as soon as it passes the limit."""
        service = start_server(self, server_config(max_line_length="100"))
        outcome = await raw_talk(service, raw_context(pki().client), [b"ok\n", b"z" * 150])
        self.assertEqual(outcome.received, b"ok\nERROR line too long: the limit is 100 bytes\n")
        self.assertTrue(outcome.clean, outcome.reason)

    @inline
    async def test_idle_timeout(self):
        """A verified client that sends nothing is disconnected after idle_timeout, with the reason logged."""
        events = LogEvents(self)
        service = start_server(self, server_config(idle_timeout="0.2"))
        outcome = await raw_talk(service, raw_context(pki().client), [b"one\n"])
        self.assertTrue(outcome.handshook)
        self.assertEqual(outcome.received, b"one\n")
        self.assertTrue(outcome.clean, outcome.reason)
        closed = await events.first("connection_closed")
        self.assertEqual(closed["reason"], "idle for 0.2 s")

    @inline
    async def test_handshake_timeout(self):
        """A client that connects and sends nothing is aborted after handshake_timeout, with the reason logged."""
        events = LogEvents(self)
        service = start_server(self, server_config(handshake_timeout="0.2"))
        outcome = await raw_talk(service, None)
        self.assertEqual(outcome.received, b"")
        failed = await events.first("handshake_failed")
        self.assertEqual(failed["reason"], "handshake not completed within 0.2 s")

    @inline
    async def test_other_connections_keep_working(self):
        """A client refused for a long line does not disturb another client's echo."""
        service = start_server(self, server_config(max_line_length="10"))
        bad = raw_talk(service, raw_context(pki().client), [b"x" * 50 + b"\n"])
        good = await talk(client_config(service), b"fine")
        self.assertEqual(good.output, b"fine\n")
        self.assertIn(b"ERROR line too long", (await bad).received)
