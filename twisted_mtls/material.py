"""
Certificates and keys read from PEM files, checked before they are used.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from .config import ClientConfig, ServerConfig

PrivateKey = Union[
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    dsa.DSAPrivateKey,
]


@dataclass(frozen=True)
class ServerMaterial:
    """
    What the TLS listener serves: its chain (leaf first), key and client CAs.
    """

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey
    client_cas: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    ticket_key: bytes | None = None


@dataclass(frozen=True)
class ClientMaterial:
    """
    What the client presents (chain, key) and whom it trusts (CAs).
    """

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey
    cas: tuple[x509.Certificate, ...]


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError(f"cannot read {os.fspath(path)}: {e.strerror}") from None


def read_certificates(path: Path) -> list[x509.Certificate]:
    """
    Return the certificates in a PEM file, in file order.
    """
    data = _read(path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates:
        raise ValueError(f"{os.fspath(path)} holds no PEM certificate")
    return certificates


def read_private_key(path: Path) -> PrivateKey:
    """
    Return the unencrypted private key in a PEM file.
    """
    data = _read(path)
    try:
        return serialization.load_pem_private_key(data, password=None)  # type: ignore[return-value]
    except TypeError:
        raise ValueError(
            f"{os.fspath(path)} is encrypted; give an unencrypted key file"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{os.fspath(path)} holds no usable PEM private key") from None


def public_der(key_or_cert: PrivateKey | x509.Certificate) -> bytes:
    """
    Return the DER SubjectPublicKeyInfo of a certificate or private key.
    """
    return key_or_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def validity_problem(cert: x509.Certificate, now: datetime.datetime | None = None) -> str | None:
    """
    Return why C{cert} is not valid at C{now}, or L{None} when it is.
    """
    now = now or _now()
    if cert.not_valid_after_utc < now:
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    if cert.not_valid_before_utc > now:
        return f"not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
    return None


def _extension(cert: x509.Certificate, kind: type):
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def is_ca(cert: x509.Certificate) -> bool:
    """
    Return whether C{cert} is marked as a certificate authority.
    """
    constraints = _extension(cert, x509.BasicConstraints)
    return bool(constraints and constraints.ca)


def usage_problem(cert: x509.Certificate, purpose: x509.ObjectIdentifier) -> str | None:
    """
    Return why C{cert} may not be used for C{purpose} (serverAuth or
    clientAuth), or L{None} when it may.
    """
    role = "server" if purpose == ExtendedKeyUsageOID.SERVER_AUTH else "client"
    if is_ca(cert):
        return f"it is a CA certificate, not a {role} certificate"
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if eku is not None and purpose not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        return f"its extended key usage does not include TLS {role} authentication"
    ku = _extension(cert, x509.KeyUsage)
    if ku is not None and not (ku.digital_signature or ku.key_agreement or ku.key_encipherment):
        return "its key usage allows neither digital signatures nor key exchange"
    return None


# The smallest keys OpenSSL's default security level (2) accepts.
_MINIMUM_BITS = {rsa.RSAPublicKey: 2048, dsa.DSAPublicKey: 2048, ec.EllipticCurvePublicKey: 224}


def strength_problem(cert: x509.Certificate) -> str | None:
    """
    Return why the key of C{cert} is too weak for TLS here, or L{None}.
    """
    public = cert.public_key()
    for kind, minimum in _MINIMUM_BITS.items():
        if isinstance(public, kind) and public.key_size < minimum:
            return f"its {public.key_size}-bit key is too small (at least {minimum} bits)"
    return None


def _load(source, key: str, loader, *args):
    try:
        return loader(*args)
    except ValueError as e:
        raise source.error(key, str(e)) from None


def load_chain_and_key(config: ServerConfig | ClientConfig, purpose: x509.ObjectIdentifier):
    """
    Load C{config.certificate} and C{config.private_key} and check that they
    match and suit C{purpose}; raise L{ConfigError} otherwise.
    """
    source = config.source
    chain = tuple(_load(source, "certificate", read_certificates, config.certificate))
    key = _load(source, "private_key", read_private_key, config.private_key)
    leaf = chain[0]
    if public_der(leaf) != public_der(key):
        raise source.error(
            "private_key",
            f"{os.fspath(config.private_key)} does not match the certificate "
            f"in {os.fspath(config.certificate)}",
        )
    problem = validity_problem(leaf) or usage_problem(leaf, purpose) or strength_problem(leaf)
    if problem:
        raise source.error(
            "certificate", f"{os.fspath(config.certificate)} cannot be used: {problem}"
        )
    return chain, key


def load_cas(source, key: str, file: Path) -> tuple[x509.Certificate, ...]:
    """
    Load a PEM bundle of CA certificates; raise L{ConfigError} for one that is not a CA.
    """
    cas = tuple(_load(source, key, read_certificates, file))
    for ca in cas:
        if not is_ca(ca):
            raise source.error(
                key,
                f"{os.fspath(file)} holds {ca.subject.rfc4514_string()}, "
                "which is not a CA certificate (no basicConstraints CA:TRUE)",
            )
    return cas


def load_server_material(config: ServerConfig) -> ServerMaterial:
    """
    Load and check everything the TLS listener serves; raise L{ConfigError}.
    """
    from .revocation import load_crls
    from .tickets import load_ticket_key

    chain, key = load_chain_and_key(config, ExtendedKeyUsageOID.SERVER_AUTH)
    cas = load_cas(config.source, "client_ca", config.client_ca)
    crls = load_crls(config.source, "crl", config.crl, cas)
    ticket_key = load_ticket_key(
        config.source, "session_ticket_key_file", config.session_ticket_key_file
    )
    return ServerMaterial(chain, key, cas, crls, ticket_key)


def load_client_material(config: ClientConfig) -> ClientMaterial:
    """
    Load and check what the client presents and trusts; raise L{ConfigError}.
    """
    chain, key = load_chain_and_key(config, ExtendedKeyUsageOID.CLIENT_AUTH)
    return ClientMaterial(chain, key, load_cas(config.source, "ca", config.ca))
