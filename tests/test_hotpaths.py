"""
The per-connection shortcuts keep their meaning: TCP_NODELAY, the transport's
interfaces, one identity per certificate, and the verified leaf handed over.
"""

from __future__ import annotations

import socket

from twisted.internet.interfaces import IHalfCloseableProtocol, ITCPTransport

from twisted_mtls.identity import PeerIdentity

from .support import TestCase, client_config, inline, open_session, pki, served, start_server


class HotPathTests(TestCase):
    @inline
    async def test_accepted_socket_nodelay_and_interfaces(self):
        """An accepted TCP connection has TCP_NODELAY, and its TLS layer provides the TCP transport's interfaces."""
        service = start_server(self)
        session = await open_session(self, client_config(service))
        self.assertEqual(await session.echo(b"hello"), b"hello\n")
        (protocol,) = served(service)
        tls = protocol.transport
        sock = tls.transport.getHandle()
        self.assertTrue(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        self.assertTrue(ITCPTransport.providedBy(tls))
        self.assertFalse(IHalfCloseableProtocol.providedBy(tls))

    @inline
    async def test_verified_leaf_becomes_identity(self):
        """The handshake's verified certificate is the one the connection's identity was read from."""
        service = start_server(self)
        session = await open_session(self, client_config(service))
        await session.echo(b"x")
        (protocol,) = served(service)
        self.assertEqual(protocol.peerIdentity, PeerIdentity.from_certificate(pki().client.certificate))
        self.assertIsNone(protocol.verifiedCertificate)  # handed over, not kept

    def test_identity_cached_per_certificate(self):
        """The same certificate gives the same identity object; another certificate another one."""
        p = pki()
        first = PeerIdentity.from_certificate(p.client.certificate)
        self.assertIs(PeerIdentity.from_certificate(p.client.certificate), first)
        self.assertNotEqual(PeerIdentity.from_certificate(p.server.certificate), first)
