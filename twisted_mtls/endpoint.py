"""
The C{mtls:} server endpoint string: a TLS listener that requires a client
certificate, for any Twisted program::

    serverFromString(reactor, "mtls:8443:interface=127.0.0.1:"
                     "privateKey=server.key:certKey=server.pem:clientCA=ca.pem")

Twisted's C{ssl:} endpoint cannot ask for client certificates (Twisted issue
#6757); this one is built on the daemon's own TLS code (L{server_context}):
TLS 1.2 minimum, Mozilla intermediate ciphers, no compression or
renegotiation, and a client certificate issued by C{clientCA} required.
The parameters, named as in C{ssl:} where they mean the same:

  - C{port} (first positional): the TCP port (0: any free one).
  - C{interface}: the address to listen on; B{default 127.0.0.1}, unlike
    C{ssl:} (which listens on every interface). An IPv6 address listens on IPv6.
  - C{backlog}: the listen queue length (default 50).
  - C{privateKey}: PEM file with the server's private key (required).
  - C{certKey}: PEM file with the server certificate, then its
    intermediates (default: the C{privateKey} file).
  - C{extraCertChain}: PEM file with more intermediates to send.
  - C{clientCA}: PEM bundle of the CAs that issue client certificates, the
    only trust anchors (required).
  - C{minTLSVersion}: C{1.2} (default) or C{1.3}.
  - C{verifyDepth}: most intermediates between a client certificate and its
    CA (default 4).

Protocols read the client certificate from
C{transport.getPeerCertificate()} once the handshake is done (see
L{twisted_mtls.identity.PeerIdentity.from_certificate}). A problem with a
parameter or a file raises L{ValueError} naming the parameter.
"""

from __future__ import annotations

import dataclasses

from twisted.internet import endpoints

from . import config
from .errors import ConfigError
from .halfclose import TLSServerEndpoint
from .material import load_server_material, read_certificates
from .tls import ServerTLSCreator, server_context

# Our configuration key for each endpoint parameter that names one.
_KEYS = {
    "certificate": "certKey",
    "private_key": "privateKey",
    "client_ca": "clientCA",
    "min_tls_version": "minTLSVersion",
    "verify_depth": "verifyDepth",
}


def mtls_server_endpoint(
    reactor,
    port: str,
    interface: str = "127.0.0.1",
    backlog: str = "50",
    privateKey: str | None = None,
    certKey: str | None = None,
    extraCertChain: str | None = None,
    clientCA: str | None = None,
    minTLSVersion: str = "1.2",
    verifyDepth: str = "4",
) -> TLSServerEndpoint:
    """
    Return a server endpoint requiring client certificates (parameters as in
    this module's docstring); raise L{ValueError} naming a bad parameter.
    """
    for name, value in (("privateKey", privateKey), ("clientCA", clientCA)):
        if not value:
            raise ValueError(f"mtls: endpoint: {name}= is required")
    try:
        settings = config.load(
            config.ServerConfig,
            None,
            {
                "certificate": certKey or privateKey,
                "private_key": privateKey,
                "client_ca": clientCA,
                "min_tls_version": minTLSVersion,
                "verify_depth": verifyDepth,
            },
        )
        material = load_server_material(settings)
    except ConfigError as e:
        name = _KEYS.get((e.key or "").lstrip("-").replace("-", "_"), e.key)
        raise ValueError(f"mtls: endpoint: {name}: {e.message}") from None
    if extraCertChain:
        try:
            extra = tuple(read_certificates(extraCertChain))
        except ValueError as e:
            raise ValueError(f"mtls: endpoint: extraCertChain: {e}") from None
        material = dataclasses.replace(material, chain=material.chain + extra)
    try:
        number, queue = int(port), int(backlog)
    except ValueError:
        raise ValueError(f"mtls: endpoint: port and backlog must be whole numbers, got {port!r}, {backlog!r}") from None
    kind = endpoints.TCP6ServerEndpoint if ":" in interface else endpoints.TCP4ServerEndpoint
    creator = ServerTLSCreator(
        server_context(material, min_version=settings.min_tls_version, verify_depth=settings.verify_depth)
    )
    return TLSServerEndpoint(creator, kind(reactor, number, queue, interface))
