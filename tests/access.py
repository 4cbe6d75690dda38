"""
What the access-policy, revocation and client-certificate tests share: one
connection attempt against a fresh server, and the certificates and CRLs
they write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from twisted.internet import endpoints, reactor
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from twisted_mtls import certbuilder
from twisted_mtls.certbuilder import Issued

from .support import (
    LogEvents,
    Outcome,
    client_config,
    eventually,
    pki,
    port_of,
    start_server,
    talk,
)


@dataclass
class Attempt:
    """
    One client's attempt: what the client saw and what the server logged.
    """

    outcome: Outcome
    events: LogEvents

    @property
    def accepted(self) -> bool:
        return bool(self.events.named("connection_open"))

    @property
    def server_reason(self) -> str:
        rejected = self.events.named("handshake_failed")
        return rejected[0]["reason"] if rejected else ""


def write_client(issued: Issued) -> tuple[Path, Path]:
    """
    Write a client certificate (with its chain) and key; return both paths.
    """
    return pki().write(f"client-{issued.certificate.serial_number:x}", issued)


def write_crl(*crls: x509.CertificateRevocationList, der: bool = False) -> str:
    """
    Write C{crls} to one file (DER holds only one); return its path.
    """
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    data = b"".join(crl.public_bytes(encoding) for crl in crls)
    name = f"crl-{abs(hash(data)):x}.{'der' if der else 'pem'}"
    path = pki().folder / name
    certbuilder.write_pem(path, data, force=True)
    return str(path)


def write_bundle(*cas: Issued) -> str:
    """
    Write a client_ca bundle of C{cas}; return its path.
    """
    data = b"".join(ca.certificate.public_bytes(serialization.Encoding.PEM) for ca in cas)
    path = pki().folder / f"bundle-{abs(hash(data)):x}.pem"
    certbuilder.write_pem(path, data, force=True)
    return str(path)


async def attempt(
    testcase, settings, issued: Issued | None = None, tls12: bool = False, **client: str
) -> Attempt:
    """
    Start a server with C{settings}, connect once as C{issued} (default: the
    run's good client; C{client} overrides its [client] keys), and wait until
    the server logged the outcome.
    """
    events = LogEvents(testcase)
    service = start_server(testcase, settings)
    if tls12:
        service.creator.context.set_max_proto_version(SSL.TLS1_2_VERSION)
    cert, key = write_client(issued) if issued else (None, None)
    outcome = await talk(client_config(service, cert, key, **client))
    await eventually(lambda: events.named("connection_open") or events.named("handshake_failed"))
    return Attempt(outcome, events)


@implementer(IOpenSSLClientConnectionCreator)
class RawClientCreator:
    """
    Presents a certificate our own client refuses to present (expired, not
    for clients, an RSA-1024 key...), at OpenSSL security level 0, so that the
    server's refusal can be tested.
    """

    def __init__(self, issued: Issued) -> None:
        self.context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        self.context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        self.context.use_certificate(issued.certificate)
        self.context.use_privatekey(issued.key)
        for certificate in issued.chain:
            self.context.add_extra_chain_cert(certificate)

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)


@implementer(IHandshakeListener)
class _Hello(Protocol):
    lost = False

    def handshakeCompleted(self) -> None:
        self.transport.write(b"hello\n")

    def connectionLost(self, reason) -> None:
        self.lost = True


async def raw_attempt(testcase, settings, issued: Issued) -> Attempt:
    """
    Like L{attempt}, with a raw client that presents C{issued} whatever it is.
    """
    events = LogEvents(testcase)
    service = start_server(testcase, settings)
    endpoint = endpoints.wrapClientTLS(
        RawClientCreator(issued),
        endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port_of(service), timeout=5),
    )
    protocol = await endpoint.connect(Factory.forProtocol(_Hello))
    await eventually(lambda: events.named("connection_open") or events.named("handshake_failed"))
    if not protocol.lost:
        protocol.transport.abortConnection()
    return Attempt(Outcome(b"", None), events)
