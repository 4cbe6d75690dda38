"""
Property-based tests: the line echo under arbitrary chunking, and the
configuration loader under arbitrary input.
"""

import configparser

from hypothesis import given, settings, strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from twisted_mtls import config
from twisted_mtls.errors import ConfigError
from twisted_mtls.protocol import LineEcho, MTLSFactory

from .support import TestCase, make_folder, server_config

LIMIT = 64

lines = st.lists(
    st.binary(max_size=LIMIT).map(lambda b: b.replace(b"\n", b"")).flatmap(
        lambda body: st.sampled_from([body + b"\n", body + b"\r\n"])
    ),
    max_size=20,
)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """
    Split C{data} at the (sorted, de-duplicated) offsets C{cuts}.
    """
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    pieces, start = [], 0
    for point in points + [len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


def echo_protocol(max_line_length: int = LIMIT, views: bool = False) -> tuple[LineEcho, StringTransport]:
    """
    Return a LineEcho past its handshake, writing to a StringTransport
    (one that takes memoryviews, with C{views}).
    """
    factory = MTLSFactory(server_config(max_line_length=str(max_line_length)), Clock())
    protocol = factory.buildProtocol(None)
    transport = ViewTransport() if views else StringTransport()
    protocol.makeConnection(transport)
    protocol.handshakeDone = True
    return protocol, transport


class ViewTransport(StringTransport):
    """
    A StringTransport that, like our TLS transport, takes memoryviews.
    """

    def write(self, data) -> None:
        super().write(bytes(data))


def feed(protocol: LineEcho, piece: bytes, views: bool) -> None:
    """
    Hand C{piece} to C{protocol}: as bytes, or as the TLS layer does, a view
    at the start of a reused buffer that is overwritten after the call.
    """
    if not views:
        protocol.dataReceived(piece)
        return
    scratch = bytearray(piece) + b"\0" * 7
    protocol.dataReceived(memoryview(scratch)[: len(piece)])
    scratch[:] = b"\xff" * len(scratch)


class LineEchoProperties(TestCase):
    @settings(max_examples=300, deadline=None)
    @given(lines, st.binary(max_size=LIMIT).map(lambda b: b.replace(b"\n", b"")), st.lists(st.integers(0, 10_000), max_size=30), st.booleans())
    def test_any_chunking_echoes_every_complete_line_in_order(self, sent, tail, cuts, views):
        """However the bytes are chunked, as bytes or as views of a reused buffer, exactly the complete lines come back, in order, unchanged."""
        protocol, transport = echo_protocol(views=views)
        data = b"".join(sent) + tail
        for piece in chunked(data, cuts):
            feed(protocol, piece, views)
        self.assertEqual(transport.value(), b"".join(sent))
        self.assertEqual(protocol.lines, len(sent))
        self.assertFalse(transport.disconnecting)

    @settings(max_examples=200, deadline=None)
    @given(lines, st.integers(LIMIT + 1, 3 * LIMIT), st.lists(st.integers(0, 10_000), max_size=30), st.booleans())
    def test_overlong_line_after_any_chunking(self, before, length, cuts, views):
        """An over-long line is answered after every earlier line, and the connection closes (bytes or views)."""
        protocol, transport = echo_protocol(views=views)
        data = b"".join(before) + b"x" * length + b"\n" + b"after\n"
        for piece in chunked(data, cuts):
            feed(protocol, piece, views)
        expected = b"".join(before) + b"ERROR line too long: the limit is %d bytes\n" % LIMIT
        self.assertEqual(transport.value(), expected)
        self.assertTrue(transport.disconnecting)


printable_ini = st.text(
    alphabet=st.sampled_from(list("[]=:#;\n \t%abcdefgilnmoprstuvxyz_0123456789.-/")), max_size=300
)


class ConfigLoaderProperties(TestCase):
    @settings(max_examples=300, deadline=None)
    @given(st.one_of(printable_ini, st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
    def test_any_input_loads_or_raises_config_error(self, text):
        """Whatever the file holds, loading it either succeeds or raises ConfigError, nothing else."""
        path = make_folder(self) / "any.ini"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        for section in (config.ServerConfig, config.ClientConfig):
            try:
                config.load(section, path)
            except ConfigError as e:
                self.assertTrue(str(e).startswith(str(path)))

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from([f.name for f in config.settings(config.ServerConfig)]), st.text(max_size=40))
    def test_any_value_of_any_key_loads_or_raises_config_error(self, key, value):
        """Any value for any [server] key either parses or raises a ConfigError naming the file."""
        parser = configparser.ConfigParser(interpolation=None)
        parser["server"] = {"certificate": "a.pem", "private_key": "a.key", "client_ca": "ca.pem"}
        try:
            parser["server"][key] = value
        except ValueError:
            return
        path = make_folder(self) / "one.ini"
        with open(path, "w", encoding="utf-8") as f:
            try:
                parser.write(f)
            except ValueError:
                return
        try:
            config.load(config.ServerConfig, path)
        except ConfigError as e:
            self.assertTrue(str(e).startswith(str(path)), str(e))
