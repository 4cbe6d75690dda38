"""
Client certificates the server refuses, over real TLS 1.2 and 1.3 on loopback:
what the server logs and what our client tells its user.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL

from twisted_mtls import certbuilder
from twisted_mtls.certbuilder import Issued
from twisted_mtls.material import ClientMaterial
from twisted_mtls.reasons import Kind, describe_tls_failure

from .support import (
    LogEvents, TestCase, client_config, inline, pki, raw_context, raw_talk, server_config,
    start_server, talk,
)

VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}
# What a client without a certificate is told: TLS 1.2 has no alert for it.
NO_CERTIFICATE_SEEN = {
    "1.2": "the server refused the handshake (TLS alert: handshake failure)",
    "1.3": "the server refused our certificate: it requires a client certificate "
    "and we sent none (TLS alert: certificate required)",
}
_NOW = datetime.now(timezone.utc)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


class _Rejection(TestCase):
    """
    Connects a certificate the server must refuse, with both our client and
    a raw pyOpenSSL client, at one TLS version.
    """

    async def refused(self, issued: Issued, version: str) -> tuple[str, object]:
        """
        Present C{issued} with our client at TLS C{version}; return the
        server's logged reason and the client's outcome.
        """
        events = LogEvents(self)
        service = start_server(self, server_config(min_tls_version=version))
        # Our client offers both versions: hold the server to this one.
        service.creator.context.set_max_proto_version(VERSIONS[version])
        # Our client refuses to load some of these certificates, so hand it them directly.
        material = ClientMaterial((issued.certificate,), issued.key, (pki().ca.certificate,))
        outcome = await talk(client_config(service), b"secret", material)
        failed = await events.first("handshake_failed")
        self.assertEqual(outcome.output, b"")
        self.assertEqual(events.named("connection_open"), [])
        return failed["reason"], outcome

    async def assertRefused(self, issued: Issued, server_reason: str, client_reason: str) -> None:
        """
        Check that C{issued} is refused at TLS 1.2 and 1.3 with these reasons.
        """
        for version in VERSIONS:
            reason, outcome = await self.refused(issued, version)
            self.assertEqual(reason, server_reason, version)
            self.assertIsNotNone(outcome.failure, version)
            self.assertEqual(outcome.failure.explanation.kind, Kind.REFUSED_BY_PEER, version)
            self.assertIn("the server refused our certificate", outcome.reason, version)
            self.assertIn(client_reason, outcome.reason, f"{version}: {outcome.reason}")


class RejectionTests(_Rejection):
    @inline
    async def test_no_client_certificate(self):
        """A client without a certificate is refused at TLS 1.2 and 1.3 and the server logs "no client certificate"."""
        for version, number in VERSIONS.items():
            events = LogEvents(self)
            service = start_server(self, server_config(min_tls_version=version))
            outcome = await raw_talk(
                service, raw_context(None, min_version=number, max_version=number), [b"secret\n"]
            )
            failed = await events.first("handshake_failed")
            self.assertEqual(failed["reason"], "no client certificate was presented", version)
            self.assertEqual(outcome.received, b"", version)
            seen = describe_tls_failure(outcome.reason.value, "server")
            self.assertEqual(seen.kind, Kind.REFUSED_BY_PEER, version)
            self.assertEqual(seen.text, NO_CERTIFICATE_SEEN[version], version)

    @inline
    async def test_other_ca(self):
        """A client certificate from another CA is refused as "unknown CA"."""
        other = certbuilder.make_ca("Other CA")
        await self.assertRefused(
            certbuilder.make_client(other, "mallory"),
            "unknown CA: CN=Other CA is not a trusted CA "
            "(or the client did not send the intermediate certificate)",
            "it does not trust the CA that issued our certificate (TLS alert: unknown ca)",
        )

    @inline
    async def test_expired(self):
        """An expired client certificate is refused with the date it expired on."""
        end = (_NOW - timedelta(days=2)).replace(microsecond=0)
        issued = certbuilder.make_client(
            pki().ca, "old", not_before=end - timedelta(days=30), not_after=end
        )
        await self.assertRefused(
            issued,
            f"certificate expired on {_when(end)}",
            "our certificate has expired or is not yet valid (TLS alert: certificate expired)",
        )

    @inline
    async def test_not_yet_valid(self):
        """A client certificate valid only from tomorrow is refused as not yet valid."""
        start = (_NOW + timedelta(days=1)).replace(microsecond=0)
        issued = certbuilder.make_client(
            pki().ca, "early", not_before=start, not_after=start + timedelta(days=30)
        )
        await self.assertRefused(
            issued,
            f"certificate is not yet valid (valid from {_when(start)})",
            "it found our certificate bad (TLS alert: bad certificate)",
        )

    @inline
    async def test_server_auth_only(self):
        """A certificate whose EKU has serverAuth but not clientAuth is refused as not a client certificate."""
        issued = certbuilder.make_client(
            pki().ca, "server-only", extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,)
        )
        await self.assertRefused(
            issued,
            "not a client certificate: its key usage or extended key usage "
            "does not allow TLS client authentication",
            "our certificate is not allowed for this use (TLS alert: unsupported certificate)",
        )

    @inline
    async def test_self_signed(self):
        """A self-signed client certificate is refused as not issued by a trusted CA."""
        await self.assertRefused(
            certbuilder.make_self_signed_client("selfie"),
            "self-signed certificate, not issued by a trusted CA",
            "it does not trust the CA that issued our certificate (TLS alert: unknown ca)",
        )

    @inline
    async def test_good_client_still_served(self):
        """After refusing a bad client the server still serves a good one."""
        service = start_server(self)
        other = certbuilder.make_ca("Other CA")
        await raw_talk(service, raw_context(certbuilder.make_client(other, "m")), [b"x\n"])
        outcome = await talk(client_config(service), b"after")
        self.assertEqual(outcome.output, b"after\n")


def _unreadable_san_client() -> Issued:
    """
    A client certificate from the test CA whose SAN holds a 5-byte IP
    address: OpenSSL accepts it, C{cryptography} cannot read its extensions.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtensionOID, NameOID

    ca, key = pki().ca, certbuilder.new_key()
    san = bytes([0x30, 7, 0x87, 5, 1, 2, 3, 4, 5])  # SEQUENCE { [7] 5 bytes }
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "odd")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - timedelta(days=1))
        .not_valid_after(_NOW + timedelta(days=5))
        .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, san), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(certificate, key, ())


class UnreadableCertificateTests(TestCase):
    @inline
    async def test_unreadable_extensions_refused_in_plain_words(self):
        """A certificate OpenSSL verifies but whose extensions cannot be read is refused with one plain reason, no traceback, and the server goes on serving."""
        odd = _unreadable_san_client()
        for version in ("1.2", "1.3"):
            for settings in ({}, {"allow_cn": "odd, alice"}):
                events = LogEvents(self)
                service = start_server(self, server_config(**settings))
                outcome = await raw_talk(
                    service,
                    raw_context(odd, min_version=VERSIONS[version], max_version=VERSIONS[version]),
                    [b"x\n"],
                )
                self.assertEqual(outcome.received, b"", (version, settings))
                failed = await events.first("handshake_failed")
                self.assertEqual(
                    failed["reason"],
                    "the certificate cannot be read: its extensions are malformed "
                    "(b'\\x01\\x02' does not appear to be an IPv4 or IPv6 address)",
                )
                self.assertEqual(service.factory.stats.handshakeFailures.get("other"), 1)
                self.assertEqual((await talk(client_config(service), b"after")).output, b"after\n")
