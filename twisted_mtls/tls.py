"""
pyOpenSSL contexts for both ends, built from C{cryptography} objects, and the
server's connection creator.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Callable, Iterable

import idna
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from OpenSSL.crypto import X509
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from .identity import PeerIdentity
from .material import ClientMaterial, PrivateKey, ServerMaterial, is_ca
from .policy import Policy
from .reasons import describe_verify_error
from .revocation import Revocations

# Mozilla "intermediate" (v5.7) for TLS 1.2, ECDHE key exchange only.
TLS12_CIPHERS = b":".join(
    [
        b"ECDHE-ECDSA-AES128-GCM-SHA256",
        b"ECDHE-RSA-AES128-GCM-SHA256",
        b"ECDHE-ECDSA-AES256-GCM-SHA384",
        b"ECDHE-RSA-AES256-GCM-SHA384",
        b"ECDHE-ECDSA-CHACHA20-POLY1305",
        b"ECDHE-RSA-CHACHA20-POLY1305",
    ]
)
TLS13_CIPHERSUITES = b"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

# TLS 1.3 session tickets sent after a full handshake: a client resumes
# with one; OpenSSL's default of two costs a second ticket's encryption.
TICKETS_PER_HANDSHAKE = 1

_log = Logger(namespace="twisted_mtls")

VERIFY_MODE = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT

TLS_VERSIONS = {"1.2": SSL.TLS1_2_VERSION, "1.3": SSL.TLS1_3_VERSION}

VerifyCallback = Callable[[SSL.Connection, X509, int, int, int], bool]


class IPeerRejectionListener(Interface):
    """
    A protocol told why its peer's certificate was refused during the handshake.
    """

    def peerRejected(reason: str) -> None:
        """
        The peer's certificate was refused for C{reason} (plain words).
        """


class IPeerVerifiedListener(Interface):
    """
    A protocol handed its peer's certificate once the chain and the access
    policy accepted it, so that it need not convert it again.
    """

    def peerVerified(certificate: x509.Certificate) -> None:
        """
        The peer's leaf C{certificate} was verified (a full handshake).
        """


class ITLSConnectionCreator(IOpenSSLServerConnectionCreator):
    """
    A server connection creator whose current context can be read.
    """

    context = Attribute("The L{SSL.Context} new connections use.")


def _protocol_of(connection: SSL.Connection):
    tls_protocol = connection.get_app_data()
    return getattr(tls_protocol, "wrappedProtocol", tls_protocol)


def tell_rejection(connection: SSL.Connection, reason: str) -> None:
    """
    Tell the protocol behind C{connection}, if it listens, why its peer was refused.
    """
    protocol = _protocol_of(connection)
    if IPeerRejectionListener.providedBy(protocol):
        protocol.peerRejected(reason)


def tell_verified(connection: SSL.Connection, certificate: x509.Certificate) -> None:
    """
    Hand the protocol behind C{connection}, if it listens, its peer's verified leaf.
    """
    protocol = _protocol_of(connection)
    if IPeerVerifiedListener.providedBy(protocol):
        protocol.peerVerified(certificate)


def client_verifier(
    policy: Policy | None = None, revocations: Revocations | None = None
) -> VerifyCallback:
    """
    Return the server's verify callback: it refuses a client whose chain
    OpenSSL rejects (tolerating a stale CRL when C{revocations} says so) or,
    once the whole chain is verified, whose identity C{policy} refuses.
    An accepted leaf is handed to the protocol (L{IPeerVerifiedListener}).
    """
    if policy is not None and (policy.allow_all or not policy.has_rules):
        policy = None  # it admits everyone: skip reading identities

    def verify(conn: SSL.Connection, cert: X509, code: int, depth: int, ok: int) -> bool:
        if ok and depth:  # an intermediate or CA that OpenSSL accepted
            return True
        certificate = cert.to_cryptography()
        try:
            if not ok and revocations is not None and revocations.tolerates(code, certificate):
                return True
            problem = _client_problem(certificate, code, depth, ok, policy, revocations)
        except ValueError as e:
            # OpenSSL accepted what cryptography cannot parse (e.g. a SAN IP
            # address of 5 bytes): refuse it in words, not with a traceback.
            problem = f"the certificate cannot be read: its extensions are malformed ({e})"
        except Exception as e:  # never let a check error admit or crash a handshake
            _log.failure("checking a client certificate failed")
            problem = f"the certificate could not be checked ({type(e).__name__}: {e})"
        if problem:
            tell_rejection(conn, problem)
        elif depth == 0:
            tell_verified(conn, certificate)
        return problem is None

    return verify


def _client_problem(
    certificate: x509.Certificate,
    code: int,
    depth: int,
    ok: int,
    policy: Policy | None,
    revocations: Revocations | None,
) -> str | None:
    """
    Return why the client's C{certificate} at C{depth} is refused, or L{None}.
    """
    if not ok:
        return (revocations and revocations.explain(code, certificate, depth)) or (
            describe_verify_error(code, certificate, depth, "client")
        )
    if depth == 0 and is_ca(certificate):
        return "a CA certificate (basicConstraints CA:TRUE) is not a client certificate"
    if depth == 0 and policy is not None:
        return policy.check(PeerIdentity.from_certificate(certificate))
    return None


def base_context(method: int, min_version: str) -> SSL.Context:
    """
    Return a context with our protocol floor, cipher lists and hardening options.
    """
    context = SSL.Context(method)
    context.set_min_proto_version(TLS_VERSIONS[min_version])
    context.set_options(
        SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE
    )
    context.set_mode(SSL.MODE_RELEASE_BUFFERS)
    context.set_cipher_list(TLS12_CIPHERS)
    context.set_tls13_ciphersuites(TLS13_CIPHERSUITES)
    return context


def use_identity(context: SSL.Context, chain: Iterable[x509.Certificate], key: PrivateKey) -> None:
    """
    Make C{context} present C{chain} (leaf first) and sign with C{key}.
    """
    leaf, *intermediates = chain
    context.use_certificate(leaf)
    for intermediate in intermediates:
        context.add_extra_chain_cert(intermediate)
    context.use_privatekey(key)
    context.check_privatekey()


def trust(context: SSL.Context, cas: Iterable[x509.Certificate]) -> None:
    """
    Make C{cas} the only trust anchors of C{context}.
    """
    store = context.get_cert_store()
    for ca in cas:
        store.add_cert(X509.from_cryptography(ca))


def session_context_id(material: ServerMaterial, *policy: bytes) -> bytes:
    """
    Return a session ID context that changes whenever the trust anchors or
    C{policy} change, so that no session outlives the rules that admitted it.
    """
    digest = hashlib.sha256()
    for ca in material.client_cas:
        digest.update(ca.public_bytes(serialization.Encoding.DER))
    for part in policy:
        digest.update(len(part).to_bytes(4, "big") + part)
    return digest.digest()


def server_context(
    material: ServerMaterial,
    *,
    min_version: str = "1.2",
    verify_depth: int = 4,
    verify: VerifyCallback | None = None,
    policy: Policy | None = None,
    crl_stale: str = "warn",
    session_tickets: bool = True,
    ticket_key: bytes | None = None,
) -> SSL.Context:
    """
    Return a server context that requires a client certificate issued by
    one of C{material.client_cas}, not revoked by C{material.crls} and
    allowed by C{policy}; it issues session tickets (encrypted with
    C{ticket_key} when given and settable) unless C{session_tickets} is false.
    A session resumes only under the same CAs, policy, CRLs and verify depth.
    """
    revocations = Revocations(material.crls, crl_stale)
    context = base_context(SSL.TLS_SERVER_METHOD, min_version)
    use_identity(context, material.chain, material.key)
    trust(context, material.client_cas)
    revocations.install(context)
    for ca in material.client_cas:
        context.add_client_ca(ca)
    context.set_verify(VERIFY_MODE, verify or client_verifier(policy, revocations))
    context.set_verify_depth(verify_depth)
    rules = policy.digest() if policy is not None else b""
    depth = verify_depth.to_bytes(4, "big")  # a session never resumes past a lower limit
    context.set_session_id(session_context_id(material, rules, revocations.digest(), depth))
    if not session_tickets:
        context.set_options(SSL.OP_NO_TICKET)
        return context
    from .tickets import set_ticket_count, ticket_keys

    # One ticket per full handshake instead of two (see BENCHMARKS.md).
    set_ticket_count(context, TICKETS_PER_HANDSHAKE)
    if ticket_key is not None:
        ticket_keys().set(context, ticket_key)
    return context


@implementer(ITLSConnectionCreator)
class ServerTLSCreator:
    """
    Creates each server-side TLS connection from the current context, which
    can be swapped (on reload) without touching established connections.
    """

    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def serverConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        # Twisted sets the connection's app data to tlsProtocol.
        return SSL.Connection(self.context, None)


def name_problem(cert: x509.Certificate, server_name: str) -> str | None:
    """
    Return why C{cert} is not for C{server_name} (a host name or IP address),
    or L{None} when it is.
    """
    try:
        if _is_ip(server_name):
            verify_certificate_ip_address(cert, server_name)
        else:
            verify_certificate_hostname(cert, server_name)
    except VerificationError:
        names = ", ".join(PeerIdentity.from_certificate(cert).sans())
        return f"certificate is for {names}, not for {server_name!r}"
    except CertificateError:
        return (
            "certificate has no subjectAltName, so it is for no name "
            "(the common name is not used for this)"
        )
    return None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def client_context(material: ClientMaterial, server_name: str) -> SSL.Context:
    """
    Return a client context that presents C{material}'s certificate and
    accepts only a server certificate for C{server_name} issued by one of
    C{material.cas}.
    """

    def verify(conn: SSL.Connection, cert: X509, code: int, depth: int, ok: int) -> bool:
        problem = None
        if not ok:
            problem = describe_verify_error(code, cert.to_cryptography(), depth, "server")
        elif depth == 0:
            problem = name_problem(cert.to_cryptography(), server_name)
        if problem:
            tell_rejection(conn, problem)
        return problem is None

    context = base_context(SSL.TLS_CLIENT_METHOD, "1.2")
    use_identity(context, material.chain, material.key)
    trust(context, material.cas)
    context.set_verify(SSL.VERIFY_PEER, verify)
    return context


@implementer(IOpenSSLClientConnectionCreator)
class ClientTLSCreator:
    """
    Creates client-side TLS connections that present our certificate and
    verify the server's chain and name.
    """

    def __init__(self, material: ClientMaterial, server_name: str) -> None:
        self.context = client_context(material, server_name)
        self.sni = None if _is_ip(server_name) else idna.encode(server_name)

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        connection = SSL.Connection(self.context, None)
        if self.sni:
            connection.set_tlsext_host_name(self.sni)
        return connection
