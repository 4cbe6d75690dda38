"""
Session tickets: shared ticket keys, key files, and resumption that never
outlives the CAs, policy and CRLs that admitted a session (real TLS in memory).
"""

from __future__ import annotations

import base64
import io
import os
import ssl
import stat
from contextlib import redirect_stdout
from datetime import datetime, timezone

from cryptography import x509
from OpenSSL import SSL

from twisted_mtls import certbuilder, pki as pki_tool
from twisted_mtls.errors import ConfigError
from twisted_mtls.material import ServerMaterial, load_server_material
from twisted_mtls.policy import Policy
from twisted_mtls.tickets import (
    TICKET_KEY_SIZE,
    hidden_function,
    parse_ticket_key,
    set_ticket_count,
    ticket_keys,
    write_ticket_key,
)
from twisted_mtls.tls import TICKETS_PER_HANDSHAKE, server_context

from .support import TestCase, make_folder, pki, server_config, write_issued

VERSIONS = ("1.2", "1.3")


def material(crls: tuple[x509.CertificateRevocationList, ...] = ()) -> ServerMaterial:
    """
    This run's server material, with C{crls}.
    """
    p = pki()
    return ServerMaterial((p.server.certificate,), p.server.key, (p.ca.certificate,), crls)


def client(version: str, issued=None) -> ssl.SSLContext:
    """
    A client context (the standard ssl module) offering only TLS C{version},
    presenting C{issued} (alice by default).
    """
    p = pki()
    issued = issued or p.client
    folder = p.folder / "tickets"
    folder.mkdir(exist_ok=True)
    cert, key = write_issued(folder, issued.certificate.subject.rfc4514_string(), issued)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(p.folder / "ca.pem")
    context.load_cert_chain(cert, key)
    context.maximum_version = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    return context


def handshake(server: SSL.Context, client_ctx: ssl.SSLContext, session=None):
    """
    Do a TLS handshake in memory, then exchange a byte each way; return
    (resumed?, the client's session). A refused client raises an error.
    """
    s = SSL.Connection(server, None)
    s.set_accept_state()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client_ctx.wrap_bio(incoming, outgoing, server_hostname="localhost", session=session)

    def pump() -> None:
        data = outgoing.read()
        if data:
            s.bio_write(data)
        try:
            incoming.write(s.bio_read(2**17))
        except SSL.WantReadError:
            pass

    for _ in range(10):
        done = True
        try:
            c.do_handshake()
        except ssl.SSLWantReadError:
            done = False
        try:
            s.do_handshake()
        except SSL.WantReadError:
            done = False
        pump()
        if done:
            break
    else:
        raise AssertionError("handshake did not complete in 10 rounds")
    s.send(b"x")  # TLS 1.3: the client reads its tickets with the first data
    pump()
    c.read(1)
    c.write(b"y")  # TLS 1.3: a refused client certificate is seen here
    pump()
    s.recv(1)
    return c.session_reused, c.session


def revoking(*revoked) -> x509.CertificateRevocationList:
    """
    A CRL from this run's CA revoking each of C{revoked}.
    """
    now = datetime.now(timezone.utc)
    return certbuilder.make_crl(pki().ca, [(r.certificate.serial_number, now, None) for r in revoked])


class TicketKeyTests(TestCase):
    def setUp(self) -> None:
        if not ticket_keys().available:
            self.skipTest(f"ticket keys unavailable: {ticket_keys().problem}")

    def test_key_reads_back(self) -> None:
        """A ticket key set on a context reads back the same."""
        context = server_context(material(), ticket_key=b"k" * TICKET_KEY_SIZE)
        self.assertEqual(ticket_keys().get(context), b"k" * TICKET_KEY_SIZE)

    def test_shared_key_resumes_across_contexts(self) -> None:
        """Two separately built contexts with the same key resume each other's sessions."""
        key = os.urandom(TICKET_KEY_SIZE)
        for version in VERSIONS:
            peer = client(version)
            first, second = (server_context(material(), ticket_key=key) for _ in range(2))
            resumed, session = handshake(first, peer)
            self.assertFalse(resumed)
            self.assertEqual(handshake(second, peer, session)[0], True, version)
            self.assertEqual(handshake(first, peer, session)[0], True, version)

    def test_different_key_does_not_resume(self) -> None:
        """A context with another ticket key does a full handshake instead."""
        for version in VERSIONS:
            peer = client(version)
            first = server_context(material(), ticket_key=os.urandom(TICKET_KEY_SIZE))
            other = server_context(material(), ticket_key=os.urandom(TICKET_KEY_SIZE))
            _, session = handshake(first, peer)
            self.assertFalse(handshake(other, peer, session)[0], version)

    def test_unrelated_reload_resumes(self) -> None:
        """A context rebuilt from the same CAs, policy and CRLs resumes sessions made before."""
        key = os.urandom(TICKET_KEY_SIZE)
        policy = Policy(cn=("alice",))
        for version in VERSIONS:
            peer = client(version)
            before = server_context(material(), policy=policy, ticket_key=key)
            _, session = handshake(before, peer)
            after = server_context(material(), policy=Policy(cn=("alice",)), ticket_key=key)
            self.assertTrue(handshake(after, peer, session)[0], version)

    def test_policy_change_refuses_resumption(self) -> None:
        """After the access policy changes, an old session is not resumed: the client is checked again."""
        key = os.urandom(TICKET_KEY_SIZE)
        for version in VERSIONS:
            peer = client(version)
            before = server_context(material(), policy=Policy(cn=("alice",)), ticket_key=key)
            _, session = handshake(before, peer)
            widened = server_context(material(), policy=Policy(cn=("alice", "bob")), ticket_key=key)
            self.assertFalse(handshake(widened, peer, session)[0], version)
            narrowed = server_context(material(), policy=Policy(cn=("bob",)), ticket_key=key)
            with self.assertRaises((SSL.Error, ssl.SSLError)):
                handshake(narrowed, peer, session)

    def test_crl_change_refuses_resumption(self) -> None:
        """After the CRLs change, an old session is not resumed, and a revoked client is refused."""
        key = os.urandom(TICKET_KEY_SIZE)
        bob = certbuilder.make_client(pki().ca, "bob")
        for version in VERSIONS:
            peer = client(version)
            before = server_context(material(), ticket_key=key)
            _, session = handshake(before, peer)
            other_revoked = server_context(material((revoking(bob),)), ticket_key=key)
            self.assertFalse(handshake(other_revoked, peer, session)[0], version)
            alice_revoked = server_context(material((revoking(pki().client),)), ticket_key=key)
            with self.assertRaises((SSL.Error, ssl.SSLError)):
                handshake(alice_revoked, peer, session)

    def test_verify_depth_change_refuses_resumption(self) -> None:
        """After verify_depth is lowered, a session made through two intermediates is not resumed: the client is refused."""
        key = os.urandom(TICKET_KEY_SIZE)
        first = certbuilder.make_ca("First CA", issuer=pki().ca)
        far = certbuilder.make_client(certbuilder.make_ca("Second CA", issuer=first), "far")
        for version in VERSIONS:
            peer = client(version, far)
            before = server_context(material(), verify_depth=4, ticket_key=key)
            resumed, session = handshake(before, peer)
            self.assertFalse(resumed)
            self.assertTrue(handshake(before, peer, session)[0], version)
            shallow = server_context(material(), verify_depth=1, ticket_key=key)
            with self.assertRaises((SSL.Error, ssl.SSLError)):
                handshake(shallow, peer, session)

    def test_tickets_off(self) -> None:
        """With session_tickets off no ticket is issued, so another context cannot resume."""
        key = os.urandom(TICKET_KEY_SIZE)
        first = server_context(material(), session_tickets=False, ticket_key=key)
        second = server_context(material(), session_tickets=False, ticket_key=key)
        peer = client("1.2")
        _, session = handshake(first, peer)
        self.assertFalse(handshake(second, peer, session)[0])


class KeyFileTests(TestCase):
    def test_pki_ticket_key(self) -> None:
        """`pki ticket-key FILE` writes 80 random bytes in base64, mode 0600."""
        path = make_folder(self) / "ticket.key"
        with redirect_stdout(io.StringIO()) as out:
            self.assertEqual(pki_tool.main(["ticket-key", str(path)]), 0)
        self.assertIn("wrote a new session ticket key", out.getvalue())
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(len(base64.b64decode(path.read_bytes())), TICKET_KEY_SIZE)

    def test_key_file_private_over_stale_temporary(self) -> None:
        """A new ticket key is mode 0600 even when a readable temporary file was left from an earlier run."""
        path = make_folder(self) / "ticket.key"
        stale = path.with_name(path.name + ".tmp")
        stale.write_bytes(b"left over")
        stale.chmod(0o644)
        write_ticket_key(path)
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertEqual(len(base64.b64decode(path.read_bytes())), TICKET_KEY_SIZE)

    def test_raw_key_accepted(self) -> None:
        """A file of exactly 80 raw bytes is a key."""
        self.assertEqual(parse_ticket_key(b"\n" * 80), b"\n" * 80)

    def test_key_file_loaded(self) -> None:
        """The server material carries the key of session_ticket_key_file."""
        path = make_folder(self) / "ticket.key"
        path.write_bytes(base64.b64encode(b"z" * TICKET_KEY_SIZE))
        loaded = load_server_material(server_config(session_ticket_key_file=str(path)))
        self.assertEqual(loaded.ticket_key, b"z" * TICKET_KEY_SIZE)

    def test_bad_key_file(self) -> None:
        """A key file of the wrong size is a configuration error naming the key and what was expected."""
        path = make_folder(self) / "ticket.key"
        path.write_bytes(b"short")
        with self.assertRaises(ConfigError) as raised:
            load_server_material(server_config(session_ticket_key_file=str(path)))
        self.assertEqual(raised.exception.key, "--session-ticket-key-file")
        self.assertIn("expected 80 random bytes", raised.exception.message)

    def test_missing_key_file(self) -> None:
        """A key file that cannot be read is a configuration error."""
        path = make_folder(self) / "absent.key"
        with self.assertRaises(ConfigError) as raised:
            load_server_material(server_config(session_ticket_key_file=str(path)))
        self.assertIn("cannot read", raised.exception.message)


class TicketCountTests(TestCase):
    def test_one_ticket_per_handshake(self) -> None:
        """A server context issues one TLS 1.3 ticket per full handshake, and a client resumes with it."""
        count = hidden_function("SSL_CTX_get_num_tickets")
        if isinstance(count, str):
            self.skipTest(f"the ticket count cannot be read: {count}")
        context = server_context(material())
        self.assertEqual(count(context._context), TICKETS_PER_HANDSHAKE)
        self.assertEqual(TICKETS_PER_HANDSHAKE, 1)
        peer = client("1.3")
        _, session = handshake(context, peer)
        self.assertTrue(handshake(context, peer, session)[0])

    def test_ticket_count_needs_a_working_lookup(self) -> None:
        """Setting the ticket count reports whether it took effect on the context."""
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        settable = set_ticket_count(context, 3)
        count = hidden_function("SSL_CTX_get_num_tickets")
        if settable:
            self.assertEqual(count(context._context), 3)
        else:  # nothing was called: OpenSSL's default stands
            self.assertTrue(isinstance(count, str) or count(context._context) == 2)
