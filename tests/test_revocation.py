"""
Revocation: CRLs loaded and checked at start-up, and revoked or stale-CRL
clients over real TLS.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone

from cryptography import x509

from twisted_mtls import certbuilder, pki as pki_tool
from twisted_mtls.errors import ConfigError
from twisted_mtls.material import load_server_material

from .access import attempt, write_bundle, write_crl
from .support import TestCase, inline, pki, server_config

DAY = timedelta(days=1)
REVOKED_AT = datetime(2026, 3, 1, 12, 30, tzinfo=timezone.utc)


def revoking(issuer, *revoked, **window) -> x509.CertificateRevocationList:
    """
    A CRL from C{issuer} revoking each of C{revoked} (Issued) on REVOKED_AT.
    """
    entries = [(r.certificate.serial_number, REVOKED_AT, x509.ReasonFlags.key_compromise) for r in revoked]
    return certbuilder.make_crl(issuer, entries, **window)


class LoadingTests(TestCase):
    def assertConfigError(self, message: str, **overrides: str) -> None:
        with self.assertRaises(ConfigError) as raised:
            load_server_material(server_config(**overrides))
        self.assertEqual(raised.exception.key, "--crl")
        self.assertIn(message, raised.exception.message)

    def test_missing_file(self):
        """A CRL file that does not exist is a configuration error."""
        self.assertConfigError("cannot read", crl=str(pki().folder / "nope.pem"))

    def test_corrupt_file(self):
        """A file that holds no CRL is a configuration error."""
        path = pki().folder / "corrupt-crl.pem"
        path.write_bytes(b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n")
        self.assertConfigError("holds no valid CRL", crl=str(path))
        self.assertConfigError("holds no valid CRL", crl=str(pki().folder / "ca.pem"))

    def test_not_signed_by_a_configured_ca(self):
        """A CRL from a CA outside client_ca, or one with a forged issuer, is a configuration error."""
        other = certbuilder.make_ca("Other CA")
        self.assertConfigError("not signed by any CA in client_ca", crl=write_crl(revoking(other)))
        impostor = certbuilder.make_ca("Test Root CA")
        self.assertConfigError("not signed by any CA in client_ca", crl=write_crl(revoking(impostor)))

    def test_every_ca_needs_a_crl(self):
        """With crl set, a CA in client_ca without a CRL is a configuration error."""
        other = certbuilder.make_ca("Other CA")
        self.assertConfigError(
            "no CRL from CN=Other CA",
            client_ca=write_bundle(pki().ca, other),
            crl=write_crl(revoking(pki().ca)),
        )

    def test_pem_list_and_der(self):
        """CRLs load from PEM (several per file), DER, and a comma-separated list of files."""
        intermediate = certbuilder.make_ca("Loading Intermediate", issuer=pki().ca)
        both = write_crl(revoking(pki().ca), revoking(intermediate))
        settings = server_config(client_ca=write_bundle(pki().ca, intermediate), crl=both)
        self.assertEqual(len(load_server_material(settings).crls), 2)
        der = write_crl(revoking(pki().ca), der=True)
        settings = server_config(crl=f"{der}, {write_crl(revoking(pki().ca))}")
        self.assertEqual(len(load_server_material(settings).crls), 2)


class RevokedOverTLSTests(TestCase):
    @inline
    async def test_revoked_leaf(self):
        """A revoked client is refused over TLS 1.2 and 1.3 with the revocation date logged."""
        client = certbuilder.make_client(pki().ca, "mallory")
        settings = server_config(crl=write_crl(revoking(pki().ca, client)))
        for tls12 in (False, True):
            result = await attempt(self, settings, client, tls12=tls12)
            self.assertFalse(result.accepted)
            self.assertEqual(
                result.server_reason,
                f"revoked: certificate CN=mallory (serial {client.certificate.serial_number:X}) "
                "was revoked on 2026-03-01 12:30:00 UTC (reason: keyCompromise) by the CRL from CN=Test Root CA",
            )
            self.assertEqual(
                result.outcome.reason,
                "the server refused our certificate: our certificate is revoked (TLS alert: certificate revoked)",
            )

    @inline
    async def test_others_still_served(self):
        """A client not on the CRL is served."""
        revoked = certbuilder.make_client(pki().ca, "mallory")
        result = await attempt(self, server_config(crl=write_crl(revoking(pki().ca, revoked))))
        self.assertTrue(result.accepted)

    @inline
    async def test_revoked_intermediate(self):
        """A client whose intermediate CA is revoked is refused, naming the intermediate."""
        intermediate = certbuilder.make_ca("Revoked Intermediate", issuer=pki().ca)
        client = certbuilder.make_client(intermediate, "dave")
        settings = server_config(
            client_ca=write_bundle(pki().ca, intermediate),
            crl=write_crl(revoking(pki().ca, intermediate), revoking(intermediate)),
        )
        result = await attempt(self, settings, client)
        self.assertIn(
            "revoked: its CA certificate CN=Revoked Intermediate "
            f"(serial {intermediate.certificate.serial_number:X}) was revoked on 2026-03-01 12:30:00 UTC",
            result.server_reason,
        )

    @inline
    async def test_intermediate_without_crl(self):
        """A client under an intermediate that has no CRL is refused: revocation fails closed."""
        intermediate = certbuilder.make_ca("Unlisted Intermediate", issuer=pki().ca)
        client = certbuilder.make_client(intermediate, "erin")
        result = await attempt(self, server_config(crl=write_crl(revoking(pki().ca))), client)
        self.assertEqual(result.server_reason, "no CRL is configured for the issuer CN=Unlisted Intermediate")


class StaleCRLTests(TestCase):
    def stale(self) -> str:
        now = datetime.now(timezone.utc)
        return write_crl(revoking(pki().ca, last_update=now - 10 * DAY, next_update=now - DAY))

    @inline
    async def test_warn(self):
        """With crl_stale = warn a stale CRL is reported at start-up and on each check, and clients are served."""
        result = await attempt(self, server_config(crl=self.stale()))
        self.assertTrue(result.accepted)
        startup, check = result.events.named("crl_stale")
        self.assertIn("the CRL from CN=Test Root CA is stale: its nextUpdate was", startup["problem"])
        self.assertIn("(crl_stale = warn)", check["problem"])
        self.assertEqual(check["subject"], "CN=alice")

    @inline
    async def test_warn_still_refuses_revoked(self):
        """A stale CRL in warn mode still refuses the certificates it lists."""
        now = datetime.now(timezone.utc)
        client = certbuilder.make_client(pki().ca, "oscar")
        crl = revoking(pki().ca, client, last_update=now - 10 * DAY, next_update=now - DAY)
        result = await attempt(self, server_config(crl=write_crl(crl)), client)
        self.assertIn("revoked: certificate CN=oscar", result.server_reason)

    @inline
    async def test_reject(self):
        """With crl_stale = reject a stale CRL refuses its clients with a clear reason."""
        result = await attempt(self, server_config(crl=self.stale(), crl_stale="reject"))
        self.assertFalse(result.accepted)
        self.assertIn("the CRL from CN=Test Root CA is stale (its nextUpdate was", result.server_reason)
        self.assertIn("and crl_stale = reject", result.server_reason)


class PkiToolTests(TestCase):
    @inline
    async def test_revoke_end_to_end(self):
        """pki revoke writes crl.pem; a server using it refuses the revoked client."""
        folder = self.mktemp()
        with redirect_stdout(io.StringIO()):
            self.assertEqual(pki_tool.main(["init", folder]), 0)
            self.assertEqual(pki_tool.main(["issue-client", folder, "bob"]), 0)
            self.assertEqual(pki_tool.main(["revoke", folder, os.path.join(folder, "bob.pem")]), 0)
        settings = server_config(
            certificate=os.path.join(folder, "server.pem"),
            private_key=os.path.join(folder, "server.key"),
            client_ca=os.path.join(folder, "ca.pem"),
            crl=os.path.join(folder, "crl.pem"),
        )
        bob = certbuilder.load_issued(os.path.join(folder, "bob.pem"), os.path.join(folder, "bob.key"))
        result = await attempt(self, settings, bob, ca=os.path.join(folder, "ca.pem"))
        self.assertIn("revoked: certificate CN=bob", result.server_reason)
