"""
The mtls: server endpoint string, through Twisted's plugin lookup, with real TLS on loopback.
"""

from __future__ import annotations

from twisted.internet import endpoints, reactor
from twisted.internet.protocol import Factory, Protocol

from twisted_mtls import certbuilder
from twisted_mtls.identity import PeerIdentity

from .support import TestCase, client_config, inline, pki, talk


class IdentityEcho(Protocol):
    """
    Answers each chunk with the client's CN and the chunk.
    """

    def dataReceived(self, data: bytes) -> None:
        cert = self.transport.getHandle().get_peer_certificate(as_cryptography=True)
        self.transport.write(PeerIdentity.from_certificate(cert).common_name.encode() + b": " + data)


def description(port: str = "0", **extra: str) -> str:
    p = pki().folder
    parts = [
        f"mtls:{port}",
        "interface=127.0.0.1",
        f"privateKey={p / 'server.key'}",
        f"certKey={p / 'server.pem'}",
        f"clientCA={p / 'ca.pem'}",
    ] + [f"{k}={v}" for k, v in extra.items()]
    return ":".join(parts)


class FakeService:
    """
    Enough of an MTLSService for tests.support.client_config: the listening port.
    """

    def __init__(self, port) -> None:
        self.port = port


class EndpointTests(TestCase):
    async def listen(self, text: str):
        port = await endpoints.serverFromString(reactor, text).listen(Factory.forProtocol(IdentityEcho))
        self.addCleanup(port.stopListening)
        return FakeService(port)

    @inline
    async def test_good_client(self):
        """serverFromString("mtls:...") serves a client whose certificate the CA issued."""
        service = await self.listen(description())
        outcome = await talk(client_config(service), b"hi")
        self.assertIsNone(outcome.failure)
        self.assertEqual(outcome.output, b"alice: hi\n")

    @inline
    async def test_untrusted_client_refused(self):
        """A self-signed client certificate is refused, and the client says why (TLS 1.2 and 1.3)."""
        cert, key = pki().write("selfsigned", certbuilder.make_self_signed_client("mallory"))
        for version in ("1.2", "1.3"):
            service = await self.listen(description(minTLSVersion=version))
            outcome = await talk(client_config(service, cert, key), b"hi")
            self.assertEqual(outcome.output, b"")
            self.assertIn("the server refused our certificate", outcome.reason)

    @inline
    async def test_no_client_certificate_required(self):
        """The endpoint's context requires a client certificate (verify mode PEER | FAIL_IF_NO_PEER_CERT)."""
        from OpenSSL import SSL

        from twisted_mtls.endpoint import mtls_server_endpoint

        endpoint = mtls_server_endpoint(reactor, "0", privateKey=str(pki().folder / "server.key"),
                                        certKey=str(pki().folder / "server.pem"),
                                        clientCA=str(pki().folder / "ca.pem"))
        mode = endpoint.creator.context.get_verify_mode()
        self.assertEqual(mode & (SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT),
                         SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)

    def test_missing_client_ca(self):
        """Leaving out clientCA is a ValueError naming the parameter."""
        p = pki().folder
        with self.assertRaises(ValueError) as caught:
            endpoints.serverFromString(reactor, f"mtls:0:privateKey={p / 'server.key'}:certKey={p / 'server.pem'}")
        self.assertIn("clientCA= is required", str(caught.exception))

    def test_key_does_not_match(self):
        """A private key that does not match the certificate is a ValueError naming privateKey."""
        p = pki().folder
        with self.assertRaises(ValueError) as caught:
            endpoints.serverFromString(reactor, description(privateKey=str(p / "client.key")).replace(
                f"privateKey={p / 'server.key'}:", ""))
        self.assertIn("privateKey:", str(caught.exception))
        self.assertIn("does not match the certificate", str(caught.exception))
