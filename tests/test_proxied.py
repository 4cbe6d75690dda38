"""
proxy_protocol: a PROXY header (v1 or v2) from a load balancer before TLS.
"""

from __future__ import annotations

from hypothesis import given, settings, strategies as st
from twisted.internet.address import IPv4Address, IPv6Address

from twisted_mtls import proxyproto
from twisted_mtls.metrics import MTLSCollector

from .faults import back_to, open_fds, pause, plain_socket, read_until_closed, session_through
from .support import LogEvents, TestCase, client_config, inline, port_of, server_config, start_server, talk


def v2_header(host: str = "203.0.113.7", port: int = 40001) -> bytes:
    """
    Return a PROXY v2 header for a client at C{host}:C{port}.
    """
    kind = IPv6Address if ":" in host else IPv4Address
    destination = kind("TCP", "::1" if ":" in host else "127.0.0.1", 8443)
    return proxyproto.encode_v2(kind("TCP", host, port), destination)


class HeaderReaderTests(TestCase):
    def test_v1_tcp4(self):
        """A v1 TCP4 line gives the client address and leaves what follows."""
        header, rest = proxyproto.parse_v1(b"PROXY TCP4 198.51.100.2 127.0.0.1 5555 8443\r\n\x16\x03")
        self.assertEqual(header.source, ("198.51.100.2", 5555))
        self.assertEqual(rest, b"\x16\x03")

    def test_v1_unknown_is_local(self):
        """A v1 UNKNOWN line carries no client address."""
        header, _ = proxyproto.parse_v1(b"PROXY UNKNOWN\r\n")
        self.assertEqual(header.command, proxyproto.COMMAND_LOCAL)

    def test_v1_errors_say_what_is_wrong(self):
        """Malformed v1 lines raise ValueError saying what was expected."""
        for data, words in [
            (b"GET / HTTP/1.1\r\n", "must start with 'PROXY '"),
            (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "not an IPv4 address"),
            (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n", "not a port number"),
            (b"PROXY TCP5 a b c d\r\n", "expected 'PROXY TCP4|TCP6"),
            (b"PROXY " + b"1" * 200, "longer than 107 bytes"),
        ]:
            with self.assertRaises(ValueError) as caught:
                proxyproto.parse_v1(data)
            self.assertIn(words, str(caught.exception))

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(["v1", "v2"]), st.lists(st.integers(1, 40), max_size=20), st.binary(max_size=30))
    def test_any_chunking_reads_the_same_header(self, version, sizes, after):
        """However the header is chunked, the reader returns it once complete, with every byte after it."""
        data = (b"PROXY TCP6 2001:db8::1 ::1 65535 443\r\n" if version == "v1" else v2_header("2001:db8::1", 65535)) + after
        reader, start, result = proxyproto.HeaderReader(version), 0, None
        for size in sizes + [len(data)]:
            result = reader.feed(data[start : start + size])
            start += size
            if result is not None:
                break
        header, rest = result
        self.assertEqual(header.source, ("2001:db8::1", 65535))
        self.assertEqual(rest + data[start:], after)

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["v1", "v2"]), st.binary(max_size=300))
    def test_any_bytes_give_a_header_more_or_value_error(self, version, data):
        """Arbitrary bytes give a header, a request for more, or ValueError, never another exception."""
        try:
            proxyproto.HeaderReader(version).feed(data)
        except ValueError:
            pass


class ProxiedServerTests(TestCase):
    @inline
    async def test_v2_client_address_is_logged(self):
        """With proxy_protocol = v2 the echo works and the log names the address from the header."""
        events = LogEvents(self)
        service = start_server(self, server_config(proxy_protocol="v2"))
        session = await session_through(self, client_config(service), port_of(service), v2_header())
        self.assertEqual(await session.echo(b"through a proxy"), b"through a proxy\n")
        opened = await events.first("connection_open")
        self.assertEqual(opened["peer"], "203.0.113.7:40001")

    @inline
    async def test_v1_ipv6_client_address_is_logged(self):
        """With proxy_protocol = v1 a TCP6 line's client address is logged in brackets."""
        events = LogEvents(self)
        service = start_server(self, server_config(proxy_protocol="v1"))
        header = b"PROXY TCP6 2001:db8::9 ::1 1234 8443\r\n"
        session = await session_through(self, client_config(service), port_of(service), header)
        self.assertEqual(await session.echo(b"v1"), b"v1\n")
        self.assertEqual((await events.first("connection_open"))["peer"], "[2001:db8::9]:1234")

    @inline
    async def test_local_command_uses_the_proxy_address(self):
        """A v2 LOCAL header (a balancer's health check) is served as the proxy's own connection."""
        events = LogEvents(self)
        service = start_server(self, server_config(proxy_protocol="v2"))
        local = proxyproto.HEADER.pack(proxyproto.SIGNATURE, 0x20, 0, 0)
        session = await session_through(self, client_config(service), port_of(service), local)
        self.assertEqual(await session.echo(b"check"), b"check\n")
        self.assertTrue((await events.first("connection_open"))["peer"].startswith("127.0.0.1:"))

    @inline
    async def test_no_header_is_closed_and_logged(self):
        """A client that starts TLS without a header is closed, logged and counted, and others keep working."""
        events = LogEvents(self)
        service = start_server(self, server_config(proxy_protocol="v2"))
        await talk(client_config(service), b"warm-up")  # the client's one-time descriptors
        baseline = open_fds()
        outcome = await talk(client_config(service), b"direct")
        self.assertIsNotNone(outcome.failure)
        failed = await events.first("proxy_header_failed")
        self.assertIn("sent no valid PROXY v2 header (not a PROXY protocol v2 header", failed["reason"])
        self.assertEqual(service.proxyFactory.failures, {"invalid": 2})
        session = await session_through(self, client_config(service), port_of(service), v2_header())
        self.assertEqual(await session.echo(b"still fine"), b"still fine\n")
        session.transport.loseConnection()
        await session.lost
        await back_to(baseline)

    @inline
    async def test_header_timeout(self):
        """A connection that sends half a header is closed at handshake_timeout with that reason."""
        events = LogEvents(self)
        service = start_server(self, server_config(proxy_protocol="v1", handshake_timeout="0.2"))
        sock = plain_socket(service)
        sock.sendall(b"PROXY TCP4 1.2.3.4")
        self.assertEqual(await read_until_closed(sock), b"")
        failed = await events.first("proxy_header_failed")
        self.assertEqual(failed["reason"], "no complete PROXY header within 0.2 s")

    @inline
    async def test_untrusted_source(self):
        """A connection from outside proxy_from is closed before its header is read."""
        events = LogEvents(self)
        service = start_server(self, server_config(proxy_protocol="v2", proxy_from="10.0.0.0/8"))
        sock = plain_socket(service)
        sock.sendall(v2_header())
        await read_until_closed(sock)
        failed = await events.first("proxy_header_failed")
        self.assertEqual(failed["reason"], "not in proxy_from, so it may not send a PROXY header")
        self.assertEqual(failed["label"], "untrusted_source")

    @inline
    async def test_refusal_names_the_client(self):
        """A connection over max_connections is logged with the client address from its header."""
        events = LogEvents(self)
        service = start_server(self, server_config(proxy_protocol="v2", max_connections="1"))
        await session_through(self, client_config(service), port_of(service), v2_header())
        sock = plain_socket(service)
        sock.sendall(v2_header("198.51.100.4", 999))
        await read_until_closed(sock)
        refused = await events.first("connection_refused")
        self.assertEqual(refused["peer"], "198.51.100.4:999")

    @inline
    async def test_metrics(self):
        """Header failures are counted by reason in mtls_proxy_header_failures_total."""
        service = start_server(self, server_config(proxy_protocol="v2"))
        sock = plain_socket(service)
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        await read_until_closed(sock)
        await pause(0.01)
        families = {f.name: f for f in MTLSCollector(service).collect()}
        samples = {s.labels["reason"]: s.value for s in families["mtls_proxy_header_failures"].samples if s.name.endswith("_total")}
        self.assertEqual(samples["invalid"], 1)
        self.assertEqual(samples["timeout"], 0)

    @inline
    async def test_forward_passes_the_client_address_on(self):
        """service = forward sends the client address from the incoming header in its own PROXY header to the target."""
        from twisted.internet.protocol import Factory

        from .test_forward import ProxyHeaderBackend, forwarder

        ProxyHeaderBackend.headers = []
        service = forwarder(
            self, Factory.forProtocol(ProxyHeaderBackend), target_proxy_protocol="v2", proxy_protocol="v1"
        )
        header = b"PROXY TCP4 198.51.100.8 127.0.0.1 4242 8443\r\n"
        session = await session_through(self, client_config(service), port_of(service), header)
        self.assertEqual(await session.echo(b"onwards"), b"onwards\n")
        self.assertEqual(ProxyHeaderBackend.headers[0].source, ("198.51.100.8", 4242))
