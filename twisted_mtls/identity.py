"""
Who is on the other end: the identity read from a verified peer certificate.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID


def colon_hex(digest: bytes) -> str:
    """
    Format a digest the way C{openssl x509 -fingerprint} does: C{AB:CD:...}.
    """
    return digest.hex(":").upper()


@dataclass(frozen=True)
class PeerIdentity:
    """
    The identity a verified client certificate asserts.

    Every protocol served by twisted-mtls can read it as C{self.peerIdentity}
    once the handshake has completed.
    """

    subject: str
    common_name: str | None
    organizational_units: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uris: tuple[str, ...]
    emails: tuple[str, ...]
    serial: int
    issuer: str
    fingerprint_sha256: str
    spki_sha256: str
    not_after: datetime.datetime

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> PeerIdentity:
        """
        Read the identity of C{cert} (remembered for the last
        C{IDENTITY_CACHE_SIZE} certificates: clients reconnect).
        """
        if cls is PeerIdentity:
            return _cached_identity(cert)
        return cls._read(cert)

    @classmethod
    def _read(cls, cert: x509.Certificate) -> PeerIdentity:
        subject = cert.subject
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = x509.SubjectAlternativeName([])
        cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(
            subject=subject.rfc4514_string(),
            common_name=str(cns[0].value) if cns else None,
            organizational_units=tuple(
                str(a.value) for a in subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
            ),
            dns_names=tuple(san.get_values_for_type(x509.DNSName)),
            ip_addresses=tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
            uris=tuple(san.get_values_for_type(x509.UniformResourceIdentifier)),
            emails=tuple(san.get_values_for_type(x509.RFC822Name)),
            serial=cert.serial_number,
            issuer=cert.issuer.rfc4514_string(),
            fingerprint_sha256=colon_hex(cert.fingerprint(hashes.SHA256())),
            spki_sha256=colon_hex(hashlib.sha256(spki).digest()),
            not_after=cert.not_valid_after_utc,
        )

    def sans(self) -> list[str]:
        """
        Return the subject alternative names as C{TYPE:value} strings.
        """
        return (
            [f"DNS:{n}" for n in self.dns_names]
            + [f"IP:{n}" for n in self.ip_addresses]
            + [f"URI:{n}" for n in self.uris]
            + [f"email:{n}" for n in self.emails]
        )

    def log_fields(self) -> dict:
        """
        Return this identity as flat, JSON-friendly log fields.
        """
        return {
            "subject": self.subject,
            "cn": self.common_name,
            "ou": list(self.organizational_units),
            "sans": self.sans(),
            "serial": f"{self.serial:x}",
            "issuer": self.issuer,
            "fingerprint": self.fingerprint_sha256,
            "spki": self.spki_sha256,
            "not_after": self.not_after.isoformat(),
        }


IDENTITY_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=IDENTITY_CACHE_SIZE)
def _cached_identity(cert: x509.Certificate) -> PeerIdentity:
    # Certificates hash and compare by their DER encoding.
    return PeerIdentity._read(cert)
