"""
One table of client certificates, each connecting over real TLS to a server
that either serves it or refuses it with the reason it logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from cryptography.x509.oid import ExtendedKeyUsageOID

from twisted_mtls import certbuilder
from twisted_mtls.certbuilder import Issued

from .access import attempt, raw_attempt, write_crl
from .support import TestCase, inline, pki

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Kind:
    """
    A kind of client certificate, the server settings it meets, and the
    reason the server logs (empty: it is served). Our client tool refuses to
    present some certificates at all; a raw pyOpenSSL client presents those.
    """

    name: str
    make: Callable[[], Issued]
    refused_because: str = ""
    server: dict = field(default_factory=dict)
    raw_client: bool = False


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _intermediate() -> Issued:
    return certbuilder.make_ca("Table Intermediate CA", issuer=pki().ca)


def _under_pathlen_zero() -> Issued:
    limited = certbuilder.make_ca("PathLen0 CA", issuer=pki().ca, path_length=0)
    return certbuilder.make_client(certbuilder.make_ca("Sub CA", issuer=limited), "deep")


def _two_intermediates() -> Issued:
    first = certbuilder.make_ca("First CA", issuer=pki().ca)
    return certbuilder.make_client(certbuilder.make_ca("Second CA", issuer=first), "far")


def _without_chain(issued: Issued) -> Issued:
    return Issued(issued.certificate, issued.key, ())


def _revoked_setup() -> tuple[Issued, dict]:
    client = certbuilder.make_client(pki().ca, "revoked-client")
    crl = certbuilder.make_crl(pki().ca, [(client.certificate.serial_number, _now() - DAY, None)])
    return client, {"crl": write_crl(crl)}


def kinds() -> list[Kind]:
    """
    Every kind of client certificate in the table.
    """
    revoked, revoked_server = _revoked_setup()
    ca = pki().ca
    not_client = "not a client certificate: its key usage or extended key usage does not allow TLS client authentication"
    return [
        Kind("good EC", lambda: pki().client),
        Kind("good RSA", lambda: certbuilder.make_client(ca, "rsa", key=certbuilder.new_key("rsa"))),
        Kind("no EKU extension", lambda: certbuilder.make_client(ca, "no-eku", extended_key_usage=None)),
        Kind("intermediate, chain sent", lambda: certbuilder.make_client(_intermediate(), "via-int")),
        Kind("inside the policy", lambda: pki().client, server={"allow_cn": "alice"}),
        Kind(
            "intermediate not sent",
            lambda: _without_chain(certbuilder.make_client(_intermediate(), "lonely")),
            "unknown CA: CN=Table Intermediate CA is not a trusted CA (or the client did not send the intermediate certificate)",
        ),
        Kind(
            "other CA",
            lambda: certbuilder.make_client(certbuilder.make_ca("Other CA"), "stranger"),
            "unknown CA: CN=Other CA is not a trusted CA",
        ),
        Kind("self-signed", lambda: certbuilder.make_self_signed_client("selfie"), "self-signed certificate, not issued by a trusted CA"),
        Kind(
            "expired",
            lambda: certbuilder.make_client(ca, "old", not_before=_now() - 30 * DAY, not_after=_now() - DAY),
            "certificate expired on",
            raw_client=True,
        ),
        Kind(
            "not yet valid",
            lambda: certbuilder.make_client(ca, "early", not_before=_now() + DAY, days=30),
            "certificate is not yet valid (valid from",
            raw_client=True,
        ),
        Kind(
            "wrong EKU (serverAuth)",
            lambda: certbuilder.make_client(ca, "server-eku", extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,)),
            not_client,
            raw_client=True,
        ),
        Kind("keyUsage without digitalSignature", lambda: certbuilder.make_client(ca, "no-ds", digital_signature=False), not_client),
        Kind(
            "RSA-1024",
            lambda: certbuilder.make_client(ca, "weak", key=certbuilder.new_key("rsa", 1024)),
            "certificate has a key that is too small (1024 bits)",
            raw_client=True,
        ),
        Kind("pathLen violated", _under_pathlen_zero, "the chain is longer than CN=PathLen0 CA allows (pathLenConstraint)"),
        Kind(
            "more intermediates than verify_depth",
            _two_intermediates,
            "the chain has more intermediate certificates than verify_depth allows",
            server={"verify_depth": "1"},
        ),
        Kind("revoked", lambda: revoked, "revoked: certificate CN=revoked-client", server=revoked_server),
        Kind("outside the policy", lambda: pki().client, "not allowed by the access policy: no allow_* rule matches CN=alice", server={"allow_cn": "bob"}),
        Kind("CA certificate as client", lambda: certbuilder.make_client(ca, "ca-leaf", is_ca=True), "a CA certificate (basicConstraints CA:TRUE) is not a client certificate", raw_client=True),
    ]


class ClientCertificateTableTests(TestCase):
    @inline
    async def test_table(self):
        """Each kind of client certificate is served or refused with the logged reason expected."""
        from .support import server_config

        table = kinds()
        self.assertGreaterEqual(len(table), 15)
        seen = {}
        for kind in table:
            settings = server_config(**kind.server)
            run = raw_attempt if kind.raw_client else attempt
            result = await run(self, settings, kind.make())
            seen[kind.name] = (
                "served" if result.accepted else result.server_reason,
                result.outcome.reason,
            )
        mismatches = {}
        for kind in table:
            logged, client_saw = seen[kind.name]
            if not kind.refused_because:
                ok = logged == "served" and client_saw == ""
            else:
                ok = kind.refused_because in logged and (
                    kind.raw_client or client_saw.startswith("the server refused our certificate")
                )
            if not ok:
                mismatches[kind.name] = seen[kind.name]
        self.assertEqual(mismatches, {})
