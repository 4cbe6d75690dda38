"""
Keys, certificates and CRLs for a small private or test PKI, built with
``cryptography`` objects only, carrying the extensions mutual TLS expects.

SAN parsing (L{parse_san}) lives in L{twisted_mtls.sans} and file writing
(L{write_file}, L{write_pem}, L{write_private_key}) in L{twisted_mtls.pemfiles};
both stay importable from here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# write_file, write_pem and write_private_key are re-exported for pki.py and the tests.
from .pemfiles import StrPath, pkcs8_pem, write_file, write_pem, write_private_key  # noqa: F401
from .sans import parse_san

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]

_CLOCK_SKEW = timedelta(minutes=5)
_SIGNATURE_HASH = hashes.SHA256()
_SERVER_AUTH = (ExtendedKeyUsageOID.SERVER_AUTH,)
_CLIENT_AUTH = (ExtendedKeyUsageOID.CLIENT_AUTH,)
_KEY_USAGE_FLAGS = (
    "digital_signature", "content_commitment", "key_encipherment",
    "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
    "encipher_only", "decipher_only",
)  # fmt: skip


@dataclass(frozen=True)
class Issued:
    """A certificate, its private key and the intermediates above it."""

    certificate: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()

    def pem(self) -> bytes:
        """The certificate followed by its chain, PEM encoded."""
        certificates = (self.certificate, *self.chain)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)

    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return pkcs8_pem(self.key)


@dataclass(frozen=True)
class _Signer:
    """Who signs a new certificate, and what the new certificate inherits."""

    name: x509.Name
    key: PrivateKey
    authority_key_identifier: x509.AuthorityKeyIdentifier
    chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class _Window:
    """A validity period."""

    not_before: datetime
    not_after: datetime


def new_key(kind: str = "ec", bits: int = 2048) -> PrivateKey:
    """A fresh private key: "ec" (P-256), "ec384" (P-384) or "rsa" (bits)."""
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    raise ValueError(f"unknown key kind {kind!r} (expected 'ec', 'ec384' or 'rsa')")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _window(days: int, not_before: datetime | None, not_after: datetime | None) -> _Window:
    start = not_before if not_before is not None else _utcnow() - _CLOCK_SKEW
    end = not_after if not_after is not None else start + timedelta(days=days)
    if end <= start:
        raise ValueError(f"notAfter {end} is not after notBefore {start}")
    return _Window(start, end)


def _common_name(name: str, organizational_units: Sequence[str] = ()) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou)
        for ou in organizational_units
    ]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    return x509.Name(attributes)


def _signer_for(issuer: Issued) -> _Signer:
    certificate = issuer.certificate
    extensions = certificate.extensions
    try:
        ski = extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.key.public_key()
        )
    is_root = certificate.subject == certificate.issuer
    chain = () if is_root else (certificate, *issuer.chain)
    return _Signer(certificate.subject, issuer.key, aki, chain)


def _self_signer(name: x509.Name, key: PrivateKey) -> _Signer:
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    return _Signer(name, key, aki, ())


def _key_usage(**enabled: bool) -> x509.KeyUsage:
    return x509.KeyUsage(**{**dict.fromkeys(_KEY_USAGE_FLAGS, False), **enabled})


def _sign(
    signer: _Signer,
    subject: x509.Name,
    key: PrivateKey,
    window: _Window,
    extensions: Iterable[tuple[x509.ExtensionType, bool]],
) -> Issued:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(window.not_before)
        .not_valid_after(window.not_after)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
        .add_extension(signer.authority_key_identifier, False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    certificate = builder.sign(signer.key, _SIGNATURE_HASH)
    return Issued(certificate, key, signer.chain)


def make_ca(
    name: str,
    *,
    issuer: Issued | None = None,
    key: PrivateKey | None = None,
    days: int = 3650,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    path_length: int | None = None,
) -> Issued:
    """A self-signed root CA, or an intermediate CA when issuer is given."""
    key = key or new_key()
    subject = _common_name(name)
    signer = _signer_for(issuer) if issuer else _self_signer(subject, key)
    extensions = [
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), True),
    ]
    return _sign(signer, subject, key, _window(days, not_before, not_after), extensions)


@dataclass(frozen=True)
class _LeafUsage:
    """What an end-entity certificate may be used for."""

    extended_key_usage: Sequence[x509.ObjectIdentifier] | None
    digital_signature: bool = True
    is_ca: bool = False


def _make_leaf(
    signer: _Signer,
    subject: x509.Name,
    sans: Sequence[x509.GeneralName],
    key: PrivateKey,
    window: _Window,
    usage: _LeafUsage,
) -> Issued:
    key_usage = _key_usage(
        digital_signature=usage.digital_signature, key_encipherment=True
    )
    extensions: list[tuple[x509.ExtensionType, bool]] = [
        (x509.BasicConstraints(ca=usage.is_ca, path_length=None), True),
        (key_usage, True),
    ]
    if usage.extended_key_usage:
        eku = x509.ExtendedKeyUsage(list(usage.extended_key_usage))
        extensions.append((eku, False))
    if sans:
        extensions.append((x509.SubjectAlternativeName(list(sans)), False))
    return _sign(signer, subject, key, window, extensions)


def make_server(
    issuer: Issued,
    name: str,
    sans: Sequence[str] = (),
    *,
    key: PrivateKey | None = None,
    days: int = 825,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = _SERVER_AUTH,
    digital_signature: bool = True,
    is_ca: bool = False,
) -> Issued:
    """A server certificate for CN=name; SANs default to DNS:name."""
    names = [parse_san(s) for s in sans] or [x509.DNSName(name)]
    usage = _LeafUsage(extended_key_usage, digital_signature, is_ca)
    window = _window(days, not_before, not_after)
    return _make_leaf(
        _signer_for(issuer), _common_name(name), names, key or new_key(), window, usage
    )


def make_client(
    issuer: Issued,
    name: str,
    *,
    sans: Sequence[str] = (),
    organizational_units: Sequence[str] = (),
    key: PrivateKey | None = None,
    days: int = 825,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = _CLIENT_AUTH,
    digital_signature: bool = True,
    is_ca: bool = False,
) -> Issued:
    """A client certificate for CN=name (and OUs); None omits the EKU extension."""
    subject = _common_name(name, organizational_units)
    names = [parse_san(s) for s in sans]
    usage = _LeafUsage(extended_key_usage, digital_signature, is_ca)
    window = _window(days, not_before, not_after)
    return _make_leaf(
        _signer_for(issuer), subject, names, key or new_key(), window, usage
    )


def make_self_signed_client(
    name: str, *, key: PrivateKey | None = None, days: int = 825
) -> Issued:
    """A self-signed clientAuth certificate for CN=name (not a CA)."""
    key = key or new_key()
    subject = _common_name(name)
    signer = _self_signer(subject, key)
    window = _window(days, None, None)
    return _make_leaf(signer, subject, (), key, window, _LeafUsage(_CLIENT_AUTH))


def make_crl(
    issuer: Issued,
    revoked: Iterable[tuple[int, datetime, x509.ReasonFlags | None]] = (),
    *,
    last_update: datetime | None = None,
    next_update: datetime | None = None,
    days: int = 30,
    crl_number: int = 1,
) -> x509.CertificateRevocationList:
    """A CRL signed by issuer listing (serial, revocation date, reason) entries.

    A reason of None or unspecified is left out of the entry (RFC 5280 5.3.1).
    """
    window = _window(days, last_update, next_update)
    signer = _signer_for(issuer)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.name)
        .last_update(window.not_before)
        .next_update(window.not_after)
        .add_extension(x509.CRLNumber(crl_number), False)
        .add_extension(signer.authority_key_identifier, False)
    )
    for serial, revoked_at, reason in revoked:
        entry = x509.RevokedCertificateBuilder(serial, revoked_at)
        if reason not in (None, x509.ReasonFlags.unspecified):
            entry = entry.add_extension(x509.CRLReason(reason), False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(issuer.key, _SIGNATURE_HASH)


def _colon_hex(digest: bytes) -> str:
    return digest.hex(":").upper()


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 certificate fingerprint as colon-separated upper-case hex."""
    return _colon_hex(cert.fingerprint(hashes.SHA256()))


def spki_fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 of the SubjectPublicKeyInfo, as colon-separated upper-case hex."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _colon_hex(hashlib.sha256(spki).digest())


def load_issued(cert_path: StrPath, key_path: StrPath) -> Issued:
    """Read a certificate (plus chain) and its private key back from PEM files."""
    with open(cert_path, "rb") as f:
        certificates = x509.load_pem_x509_certificates(f.read())
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"{key_path}: unsupported key type {type(key).__name__}")
    if key.public_key() != certificates[0].public_key():
        raise ValueError(f"{key_path} does not match the certificate in {cert_path}")
    return Issued(certificates[0], key, tuple(certificates[1:]))
