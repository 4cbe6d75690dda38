"""
The server's TLS context: versions it accepts, verify mode and options.
"""

from __future__ import annotations

from OpenSSL import SSL

from .support import (
    LogEvents, TestCase, inline, pki, raw_context, raw_talk, server_config, start_server,
)

# OpenSSL's SSL_OP_NO_RENEGOTIATION and SSL_OP_NO_COMPRESSION.
NO_RENEGOTIATION = SSL.OP_NO_RENEGOTIATION
NO_COMPRESSION = SSL.OP_NO_COMPRESSION


class VersionTests(TestCase):
    async def echo_at(self, version: int, **settings: str):
        """
        Talk to a server at exactly TLS C{version}; return the outcome and log events.
        """
        events = LogEvents(self)
        service = start_server(self, server_config(**settings))
        context = raw_context(pki().client, min_version=version, max_version=version)
        outcome = await raw_talk(service, context, [b"hi\n"], expect=3)
        return outcome, events

    @inline
    async def test_tls12_and_tls13_work(self):
        """A client limited to TLS 1.2, and one limited to TLS 1.3, both get their echo and the version is logged."""
        for version, name in ((SSL.TLS1_2_VERSION, "TLSv1.2"), (SSL.TLS1_3_VERSION, "TLSv1.3")):
            outcome, events = await self.echo_at(version)
            self.assertEqual(outcome.received, b"hi\n", name)
            self.assertEqual(outcome.tls_version, name)
            self.assertEqual((await events.first("connection_open"))["tls_version"], name)

    @inline
    async def test_tls11_refused(self):
        """A TLS 1.1 client is refused before any certificate is looked at, and the server logs why."""
        context = raw_context(
            pki().client,
            min_version=SSL.TLS1_1_VERSION,
            max_version=SSL.TLS1_1_VERSION,
            ciphers=b"DEFAULT:@SECLEVEL=0",
        )
        events = LogEvents(self)
        service = start_server(self)
        outcome = await raw_talk(service, context, [b"hi\n"])
        self.assertIn("protocol version", str(outcome.reason.value))
        self.assertFalse(outcome.handshook)
        self.assertEqual(outcome.received, b"")
        failed = await events.first("handshake_failed")
        self.assertEqual(
            failed["reason"], "the client offered only TLS versions this end does not accept"
        )

    @inline
    async def test_tls13_minimum_refuses_tls12(self):
        """With min_tls_version = 1.3 a TLS 1.2-only client is refused and the server logs why."""
        outcome, events = await self.echo_at(SSL.TLS1_2_VERSION, min_tls_version="1.3")
        self.assertFalse(outcome.handshook)
        self.assertEqual(outcome.received, b"")
        failed = await events.first("handshake_failed")
        self.assertEqual(
            failed["reason"], "the client offered only TLS versions this end does not accept"
        )


class ContextTests(TestCase):
    def test_verify_mode(self):
        """The server context requires a peer certificate: VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT."""
        service = start_server(self)
        self.assertEqual(
            service.creator.context.get_verify_mode(),
            SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
        )

    def test_no_compression_no_renegotiation(self):
        """The server context disables TLS compression and renegotiation."""
        options = start_server(self).creator.context.set_options(0)
        self.assertTrue(options & NO_COMPRESSION)
        self.assertTrue(options & NO_RENEGOTIATION)
