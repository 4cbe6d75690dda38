"""
Hostile and broken peers: after each, a good client still gets its echo,
the daemon logged what happened in plain words, and its open file
descriptors are back to what they were.

A client that never reads is covered in test_limits; lines at and over
max_line_length in test_echo.
"""

from __future__ import annotations

import os
import random
import resource
import socket

from OpenSSL import SSL

from .faults import back_to, open_fds, pause, plain_socket, read_until_closed, reset
from .support import (
    LogEvents,
    TestCase,
    client_config,
    eventually,
    inline,
    open_session,
    pki,
    port_of,
    raw_context,
    raw_talk,
    served,
    server_config,
    start_server,
    talk,
)


def client_hello() -> bytes:
    """
    Return the first flight of a real TLS client: a complete ClientHello record.
    """
    connection = SSL.Connection(raw_context(pki().client), None)
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    return connection.bio_read(65536)


class HostileTestCase(TestCase):
    """
    Starts a server, warms the good client up, and checks afterwards that
    nothing of the hostile peer is left behind.
    """

    async def start(self, **overrides: str):
        """
        Start a server with C{overrides}; return it once a good client got its echo.
        """
        self.events = LogEvents(self)
        self.service = start_server(self, server_config(**overrides))
        await self.good_echo()
        await pause(0.05)
        self.baseline = open_fds()
        return self.service

    async def good_echo(self) -> None:
        """
        Assert that a good client gets its echo.
        """
        outcome = await talk(client_config(self.service), b"still here")
        self.assertEqual(outcome.output, b"still here\n", outcome.reason)

    async def recovered(self) -> None:
        """
        Assert that a good client gets its echo, no connection is left and
        the descriptors are back to the baseline.
        """
        await self.good_echo()
        await eventually(lambda: not self.service.factory.active)
        await back_to(self.baseline)

    async def rejected(self, words: str, event: str = "handshake_failed") -> dict:
        """
        Return the latest C{event}, asserting that its reason contains C{words}.
        """
        found = await eventually(lambda: [e for e in self.events.named(event) if words in e["reason"]])
        return found[-1]


class NotTLSTests(HostileTestCase):
    @inline
    async def test_plaintext(self):
        """A plain-text line sent to the TLS port is rejected as not TLS."""
        service = await self.start()
        sock = plain_socket(service)
        sock.sendall(b"hello, is this the echo?\n")
        await read_until_closed(sock)
        await self.rejected("not TLS: the client sent bytes that are not a TLS record")
        await self.recovered()

    @inline
    async def test_http_request(self):
        """An HTTP request sent to the TLS port is rejected as a plain-text HTTP request."""
        service = await self.start()
        sock = plain_socket(service)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await read_until_closed(sock)
        await self.rejected("not TLS: the client sent a plain-text HTTP request")
        await self.recovered()

    @inline
    async def test_random_bytes(self):
        """Random bytes (seeded, several shapes) are rejected with a plain reason each time."""
        service = await self.start()
        generator = random.Random(6)
        for size in (1, 5, 300, 4096, 70000, 6, 300, 5000):
            sock = plain_socket(service)
            data = bytes(generator.randrange(256) for _ in range(size))
            if size < 1000 and size % 2 == 0:
                data = b"\x16\x03" + data  # the start of a handshake record, then noise
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server may have closed already
            await read_until_closed(sock)
        await eventually(lambda: len(self.events.named("handshake_failed")) >= 8)
        for failed in self.events.named("handshake_failed")[-8:]:
            self.assertRegex(failed["reason"], r"^(not TLS: the client sent|the client closed the connection)")
        await self.recovered()


class BrokenHandshakeTests(HostileTestCase):
    @inline
    async def test_truncated_client_hello(self):
        """Half a ClientHello followed by a close is logged as a close during the handshake."""
        service = await self.start()
        hello = client_hello()
        sock = plain_socket(service)
        sock.sendall(hello[: len(hello) // 2])
        sock.shutdown(socket.SHUT_WR)
        self.assertEqual(await read_until_closed(sock), b"")
        await self.rejected("the client closed the connection")
        await self.recovered()

    @inline
    async def test_stalled_handshake(self):
        """A client that sends its ClientHello and then nothing is aborted at handshake_timeout."""
        service = await self.start(handshake_timeout="0.3")
        sock = plain_socket(service)
        sock.sendall(client_hello())
        reply = await read_until_closed(sock)
        self.assertEqual(reply[:1], b"\x16")  # the server's handshake records, then the abort
        await self.rejected("handshake not completed within 0.3 s")
        self.assertEqual(service.factory.stats.handshakeFailures["timeout"], 1)
        await self.recovered()

    @inline
    async def test_connect_and_drop_flood(self):
        """A thousand clients that connect and close at once are each counted, logged one by one up to the burst and summed up past it, and leave nothing behind."""
        service = await self.start()
        before = service.factory.stats.accepted
        for _ in range(40):  # 40 batches of 25: within the listen backlog
            for sock in [plain_socket(service) for _ in range(25)]:
                sock.close()
            await pause(0.002)
        await eventually(lambda: service.factory.stats.accepted - before >= 1000, timeout=20)
        await eventually(lambda: not service.factory.active, timeout=20)
        dropped = service.factory.stats.handshakeFailures.get("client_closed", 0)
        self.assertEqual(dropped, 1000)
        await self.rejected("the client closed the connection")
        service.factory.rejections.summarise()
        one_by_one = len(self.events.named("handshake_failed"))
        summarised = sum(e["count"] for e in self.events.named("handshake_failures_summarised"))
        self.assertEqual(one_by_one + summarised, 1000)
        self.assertLess(one_by_one, 1000)
        await self.recovered()

    @inline
    async def test_reset_mid_stream(self):
        """A client that resets the TCP connection while its lines stream is logged as an abrupt close."""
        service = await self.start(idle_timeout="0")
        session = await open_session(self, client_config(service))
        await session.echo(b"first")
        session.transport.write((b"y" * 1000 + b"\n") * 2000)
        tcp = session.transport.transport
        tcp.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        tcp.abortConnection()
        await session.lost
        closed = await self.rejected("abruptly", event="connection_closed")
        self.assertEqual(closed["cn"], "alice")
        await self.recovered()

    @inline
    async def test_reset_before_handshake(self):
        """A plain socket reset right after connecting is logged as an abrupt close during the handshake."""
        service = await self.start()
        reset(plain_socket(service))
        await self.rejected("the client closed the connection abruptly")
        await self.recovered()


class LineContentTests(HostileTestCase):
    @inline
    async def test_one_under_the_limit(self):
        """Lines one byte under max_line_length, with LF and with CRLF, come back unchanged."""
        service = await self.start(max_line_length="100")
        data = b"u" * 99 + b"\n" + b"v" * 99 + b"\r\n"
        outcome = await raw_talk(service, raw_context(pki().client), [data], expect=len(data))
        self.assertEqual(outcome.received, data)
        await self.recovered()

    @inline
    async def test_nul_bytes_and_invalid_utf8(self):
        """NUL bytes, invalid UTF-8, a lone CR and every byte value inside lines are echoed unchanged."""
        service = await self.start()
        data = b"a\x00b\x00\n" + b"\xff\xfe\xc3\x28 \xed\xa0\x80\n" + b"cr\rinside\n" + bytes(range(256)).replace(b"\n", b"") + b"\n"
        outcome = await raw_talk(service, raw_context(pki().client), [data[i : i + 7] for i in range(0, len(data), 7)], expect=len(data))
        self.assertEqual(outcome.received, data)
        await eventually(lambda: [e for e in self.events.named("connection_closed") if e["lines"] == 4])
        await self.recovered()


class OutOfDescriptorsTests(HostileTestCase):
    @inline
    async def test_listener_backs_off_and_recovers(self):
        """With no descriptors left the listener pauses (no busy loop), says why, and serves the waiting client once they are back."""
        service = await self.start()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 64, hard))
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        guard = service.acceptGuard
        calls = [0]
        accept = guard._socket.accept

        def counting():
            calls[0] += 1
            return accept()

        guard._socket = _Counting(guard._socket, counting)
        filler = []
        try:
            for _ in range(highest + 64):  # until EMFILE
                filler.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        os.close(filler.pop())
        waiting = socket.socket()
        waiting.setblocking(False)
        waiting.connect_ex(("127.0.0.1", port_of(service)))
        try:
            paused = await self.rejected("the process has no file descriptors left (EMFILE)", event="accept_paused")
            await pause(0.5)
            self.assertTrue(guard.pauses >= 1)
            self.assertLess(calls[0], 20)  # a busy loop would have called accept thousands of times
            self.assertFalse(served(service))
        finally:
            for fd in filler:
                os.close(fd)
        self.assertEqual(paused["delay"], 0.1)
        await eventually(lambda: self.events.named("accept_resumed"), timeout=5)
        await eventually(lambda: service.factory.stats.accepted >= 2)
        waiting.close()
        await self.recovered()


class _Counting:
    """
    A socket whose accept() is C{accept}.
    """

    def __init__(self, sock, accept) -> None:
        self._sock = sock
        self.accept = accept

    def __getattr__(self, name):
        return getattr(self._sock, name)
