"""
Tests for L{twisted_mtls.certbuilder} and the C{python -m twisted_mtls.pki} tool.
"""

from __future__ import annotations

import io
import ipaddress
import os
import stat
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store
from twisted.trial.unittest import TestCase

from twisted_mtls import certbuilder, pki

OPENSSL = "/usr/bin/openssl"


def run(*argv: str) -> tuple[int, str, str]:
    """Run the pki tool in-process and return (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = pki.main(list(argv))
    return status, out.getvalue(), err.getvalue()


def load_cert(path: str) -> x509.Certificate:
    """The first certificate in a PEM file."""
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificates(f.read())[0]


def load_crl(directory: str) -> x509.CertificateRevocationList:
    """The CRL in a PKI directory."""
    with open(os.path.join(directory, "crl.pem"), "rb") as f:
        return x509.load_pem_x509_crl(f.read())


def extension(cert: x509.Certificate, kind: type) -> x509.Extension:
    """The extension of the given class."""
    return cert.extensions.get_extension_for_class(kind)


PKI_FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")


class InitTests(TestCase):
    """Tests for C{pki init}."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        self.status, self.out, self.err = run("init", self.dir)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def test_writesSixFiles(self) -> None:
        """init writes the CA, server and client certificates and keys."""
        self.assertEqual((self.status, self.err), (0, ""))
        self.assertEqual(sorted(os.listdir(self.dir)), sorted(PKI_FILES))
        for name in PKI_FILES:
            self.assertIn(self.path(name), self.out)

    def test_keyModes(self) -> None:
        """Private keys are 0600 and certificates 0644, the directory 0700."""
        for name in PKI_FILES:
            mode = stat.S_IMODE(os.stat(self.path(name)).st_mode)
            self.assertEqual(mode, 0o600 if name.endswith(".key") else 0o644, name)
        self.assertEqual(stat.S_IMODE(os.stat(self.dir).st_mode), 0o700)

    def test_caExtensions(self) -> None:
        """The CA has a critical BasicConstraints CA=true and can sign certs."""
        ca = load_cert(self.path("ca.pem"))
        bc = extension(ca, x509.BasicConstraints)
        self.assertTrue(bc.critical)
        self.assertTrue(bc.value.ca)
        self.assertTrue(extension(ca, x509.KeyUsage).value.key_cert_sign)

    def test_serverExtensions(self) -> None:
        """The server cert is serverAuth with localhost, 127.0.0.1 and ::1."""
        server = load_cert(self.path("server.pem"))
        eku = extension(server, x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.SERVER_AUTH])
        san = extension(server, x509.SubjectAlternativeName).value
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual(
            san.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")],
        )
        self.assertFalse(extension(server, x509.BasicConstraints).value.ca)

    def test_clientExtensions(self) -> None:
        """The client cert is clientAuth for CN=client."""
        client = load_cert(self.path("client.pem"))
        eku = extension(client, x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertEqual(client.subject.rfc4514_string(), "CN=client")

    def test_chainVerifies(self) -> None:
        """The server chain verifies and the client is signed by the CA."""
        ca = load_cert(self.path("ca.pem"))
        verifier = (
            PolicyBuilder()
            .store(Store([ca]))
            .build_server_verifier(x509.DNSName("localhost"))
        )
        server = load_cert(self.path("server.pem"))
        self.assertEqual(verifier.verify(server, []), [server, ca])
        # cryptography's ClientVerifier insists on a SAN, which CN=client lacks.
        load_cert(self.path("client.pem")).verify_directly_issued_by(ca)

    def test_ecByDefault(self) -> None:
        """Keys are EC P-256 by default."""
        issued = certbuilder.load_issued(self.path("server.pem"), self.path("server.key"))
        self.assertIsInstance(issued.key, ec.EllipticCurvePrivateKey)
        self.assertEqual(issued.key.curve.name, "secp256r1")

    def test_refusesOverwrite(self) -> None:
        """A second init without --force fails naming a file and writes nothing."""
        before = {n: os.stat(self.path(n)).st_mtime_ns for n in PKI_FILES}
        status, out, err = run("init", self.dir)
        self.assertEqual(status, 1)
        self.assertEqual(out, "")
        self.assertTrue(err.startswith("pki: "), err)
        self.assertIn(self.path("ca.pem"), err)
        self.assertEqual(len(err.strip().splitlines()), 1)
        after = {n: os.stat(self.path(n)).st_mtime_ns for n in PKI_FILES}
        self.assertEqual(before, after)

    def test_refusesWhenAnyTargetExists(self) -> None:
        """init refuses before writing anything when only a later target exists."""
        directory = self.mktemp()
        os.makedirs(directory)
        with open(os.path.join(directory, "client.key"), "w") as f:
            f.write("keep")
        status, _, err = run("init", directory)
        self.assertEqual(status, 1)
        self.assertIn("client.key", err)
        self.assertEqual(os.listdir(directory), ["client.key"])

    def test_forceOverwrites(self) -> None:
        """init --force replaces the CA and keeps keys at 0600."""
        old = load_cert(self.path("ca.pem"))
        status, _, err = run("init", self.dir, "--force")
        self.assertEqual((status, err), (0, ""))
        self.assertNotEqual(load_cert(self.path("ca.pem")), old)
        mode = stat.S_IMODE(os.stat(self.path("ca.key")).st_mode)
        self.assertEqual(mode, 0o600)

    def test_forceDropsTheOldCAsRevocations(self) -> None:
        """init --force removes index.json and crl.pem, which belonged to the replaced CA."""
        self.assertEqual(run("issue-client", self.dir, "bob")[0], 0)
        self.assertEqual(run("revoke", self.dir, self.path("bob.pem"))[0], 0)
        self.assertEqual(run("init", self.dir)[0], 1)  # refuses: index.json exists
        status, out, _ = run("init", self.dir, "--force")
        self.assertEqual(status, 0)
        self.assertIn("removed", out)
        self.assertFalse(os.path.exists(self.path("index.json")))
        self.assertFalse(os.path.exists(self.path("crl.pem")))


class InitOptionTests(TestCase):
    """Tests for C{pki init} options."""

    def test_rsa(self) -> None:
        """init --rsa makes RSA-2048 keys."""
        directory = self.mktemp()
        self.assertEqual(run("init", directory, "--rsa")[0], 0)
        for stem in ("ca", "server", "client"):
            issued = certbuilder.load_issued(
                os.path.join(directory, f"{stem}.pem"),
                os.path.join(directory, f"{stem}.key"),
            )
            self.assertIsInstance(issued.key, rsa.RSAPrivateKey)
            self.assertEqual(issued.key.key_size, 2048)

    def test_extraSan(self) -> None:
        """init --san adds SANs to the server cert."""
        directory = self.mktemp()
        run("init", directory, "--san", "DNS:example.org", "--san", "IP:10.1.2.3")
        server = load_cert(os.path.join(directory, "server.pem"))
        san = extension(server, x509.SubjectAlternativeName).value
        self.assertIn(x509.DNSName("example.org"), san)
        self.assertIn(x509.IPAddress(ipaddress.ip_address("10.1.2.3")), san)

    def test_badSan(self) -> None:
        """A bad --san is one pki: line, exit 1, and no files."""
        directory = self.mktemp()
        status, _, err = run("init", directory, "--san", "IP:999.1.1.1")
        self.assertEqual(status, 1)
        self.assertTrue(err.startswith("pki: "), err)
        self.assertFalse(os.path.exists(directory))

    def test_usageError(self) -> None:
        """An unknown command is a usage error with status 2."""
        self.assertEqual(run("frobnicate")[0], 2)


class IssueTests(TestCase):
    """Tests for C{pki issue-client} and C{pki issue-server}."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        run("init", self.dir)
        self.ca = load_cert(os.path.join(self.dir, "ca.pem"))

    def test_issueClient(self) -> None:
        """issue-client writes NAME.pem/NAME.key with URI and DNS SANs and OUs."""
        status, out, err = run(
            "issue-client", self.dir, "alice",
            "--uri", "spiffe://example.org/alice", "--dns", "alice.example.org",
            "--ou", "ops",
        )  # fmt: skip
        self.assertEqual((status, err), (0, ""))
        cert = load_cert(os.path.join(self.dir, "alice.pem"))
        san = extension(cert, x509.SubjectAlternativeName).value
        self.assertEqual(
            san.get_values_for_type(x509.UniformResourceIdentifier),
            ["spiffe://example.org/alice"],
        )
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["alice.example.org"])
        self.assertEqual(cert.subject.rfc4514_string(), "CN=alice,OU=ops")
        self.assertIn(certbuilder.fingerprint(cert), out)
        cert.verify_directly_issued_by(self.ca)
        mode = stat.S_IMODE(os.stat(os.path.join(self.dir, "alice.key")).st_mode)
        self.assertEqual(mode, 0o600)

    def test_issueServer(self) -> None:
        """issue-server writes a serverAuth cert with the given SANs."""
        status, out, err = run(
            "issue-server", self.dir, "web", "--san", "web.example.org",
            "--san", "IP:::1",
        )  # fmt: skip
        self.assertEqual((status, err), (0, ""))
        cert = load_cert(os.path.join(self.dir, "web.pem"))
        san = extension(cert, x509.SubjectAlternativeName).value
        self.assertEqual(list(san), [
            x509.DNSName("web.example.org"),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ])  # fmt: skip
        self.assertIn("web.pem", out)
        cert.verify_directly_issued_by(self.ca)

    def test_issueRefusesOverwrite(self) -> None:
        """Issuing an existing name again fails unless --force is given."""
        run("issue-client", self.dir, "bob")
        self.assertEqual(run("issue-client", self.dir, "bob")[0], 1)
        self.assertEqual(run("issue-client", self.dir, "bob", "--force")[0], 0)

    def test_daysBeyondTheCalendar(self) -> None:
        """A --days too large for a certificate date is a one-line usage error (status 2) and writes nothing."""
        status, _, err = run("issue-client", self.dir, "bob", "--days", "9999999")
        self.assertEqual(status, 2)
        self.assertIn("--days: expected a number of days from 1 to 36500, got '9999999'", err)
        self.assertNotIn("Traceback", err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "bob.pem")))

    def test_missingCa(self) -> None:
        """Issuing from a directory without a CA fails with one pki: line."""
        status, _, err = run("issue-client", self.mktemp(), "bob")
        self.assertEqual(status, 1)
        self.assertTrue(err.startswith("pki: missing CA file"), err)


class RevokeTests(TestCase):
    """Tests for C{pki revoke} and C{pki crl}."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        run("init", self.dir)
        self.ca = load_cert(os.path.join(self.dir, "ca.pem"))
        self.client = os.path.join(self.dir, "client.pem")

    def test_revokeListsSerialAndReason(self) -> None:
        """revoke writes a CA-signed CRL listing the serial with its reason."""
        status, out, err = run("revoke", self.dir, self.client, "--reason", "key_compromise")
        self.assertEqual((status, err), (0, ""))
        crl = load_crl(self.dir)
        self.assertTrue(crl.is_signature_valid(self.ca.public_key()))
        serial = load_cert(self.client).serial_number
        entry = crl.get_revoked_certificate_by_serial_number(serial)
        self.assertIsNotNone(entry)
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value
        self.assertEqual(reason.reason, x509.ReasonFlags.key_compromise)
        self.assertIn("crl.pem", out)

    def test_crlNumberIncrements(self) -> None:
        """Each regeneration of the CRL uses the next CRL number."""
        run("revoke", self.dir, self.client)
        first = load_crl(self.dir).extensions.get_extension_for_class(x509.CRLNumber)
        self.assertEqual(run("crl", self.dir)[0], 0)
        second = load_crl(self.dir).extensions.get_extension_for_class(x509.CRLNumber)
        self.assertEqual(second.value.crl_number, first.value.crl_number + 1)

    def test_emptyCrl(self) -> None:
        """crl with nothing revoked writes an empty, signed CRL."""
        self.assertEqual(run("crl", self.dir)[0], 0)
        crl = load_crl(self.dir)
        self.assertEqual(len(crl), 0)
        self.assertTrue(crl.is_signature_valid(self.ca.public_key()))

    def test_doubleRevokeIsNoOp(self) -> None:
        """Revoking an already-revoked cert says so and changes nothing."""
        run("revoke", self.dir, self.client)
        paths = [os.path.join(self.dir, n) for n in ("index.json", "crl.pem")]
        before = [open(p, "rb").read() for p in paths]
        status, out, _ = run("revoke", self.dir, self.client)
        self.assertEqual(status, 0)
        self.assertIn("already revoked", out)
        self.assertEqual([open(p, "rb").read() for p in paths], before)

    def test_foreignCertRefused(self) -> None:
        """A certificate from another CA is not revoked."""
        other = self.mktemp()
        run("init", other)
        status, _, err = run("revoke", self.dir, os.path.join(other, "client.pem"))
        self.assertEqual(status, 1)
        self.assertTrue(err.startswith("pki: "), err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "crl.pem")))

    def test_caItselfRefused(self) -> None:
        """revoke refuses the CA's own certificate (it is not a certificate the CA issued to a peer) and writes no CRL."""
        status, _, err = run("revoke", self.dir, os.path.join(self.dir, "ca.pem"))
        self.assertEqual(status, 1)
        self.assertIn("is the CA's own certificate", err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "crl.pem")))

    def test_unreadableCert(self) -> None:
        """A file that is not a certificate is one pki: error line."""
        status, _, err = run("revoke", self.dir, os.path.join(self.dir, "client.key"))
        self.assertEqual(status, 1)
        self.assertEqual(err.count("\n"), 1)
        self.assertTrue(err.startswith("pki: "), err)


class ParseSanTests(TestCase):
    """Tests for L{certbuilder.parse_san}."""

    def test_prefixed(self) -> None:
        """Prefixed values parse to the matching GeneralName."""
        cases = {
            "DNS:example.org": x509.DNSName("example.org"),
            "IP:127.0.0.1": x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            "IP:::1": x509.IPAddress(ipaddress.ip_address("::1")),
            "URI:spiffe://x/y": x509.UniformResourceIdentifier("spiffe://x/y"),
            "email:a@b": x509.RFC822Name("a@b"),
        }
        for text, expected in cases.items():
            self.assertEqual(certbuilder.parse_san(text), expected, text)

    def test_bare(self) -> None:
        """Bare values are classified as IP, URI, email or DNS."""
        cases = {
            "10.0.0.1": x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
            "::1": x509.IPAddress(ipaddress.ip_address("::1")),
            "spiffe://td/w": x509.UniformResourceIdentifier("spiffe://td/w"),
            "a@example.org": x509.RFC822Name("a@example.org"),
            "*.example.org": x509.DNSName("*.example.org"),
        }
        for text, expected in cases.items():
            self.assertEqual(certbuilder.parse_san(text), expected, text)

    def test_errors(self) -> None:
        """Malformed SANs raise ValueError with a message naming the value."""
        for text in ("", "DNS:", "IP:1.2.3", "bad name", "URI:nope", "x@", "FOO:bar"):
            with self.assertRaises(ValueError, msg=text) as caught:
                certbuilder.parse_san(text)
            self.assertTrue(str(caught.exception), text)


class CertBuilderTests(TestCase):
    """Tests for the L{certbuilder} library functions."""

    def test_fingerprintMatchesOpenSSL(self) -> None:
        """fingerprint() prints what openssl x509 -fingerprint -sha256 prints."""
        if not os.path.exists(OPENSSL):
            raise self.skipTest(f"{OPENSSL} not installed")
        issued = certbuilder.make_ca("fp")
        result = subprocess.run(
            [OPENSSL, "x509", "-noout", "-fingerprint", "-sha256"],
            input=issued.pem(), capture_output=True, check=True,
        )  # fmt: skip
        expected = result.stdout.decode().strip().split("=", 1)[1]
        self.assertEqual(certbuilder.fingerprint(issued.certificate), expected)

    def test_intermediateChain(self) -> None:
        """A leaf under an intermediate carries the intermediate as its chain."""
        root = certbuilder.make_ca("root")
        intermediate = certbuilder.make_ca("inter", issuer=root, path_length=0)
        self.assertEqual(intermediate.chain, ())
        leaf = certbuilder.make_server(intermediate, "svc.example.org")
        self.assertEqual(leaf.chain, (intermediate.certificate,))
        self.assertEqual(len(x509.load_pem_x509_certificates(leaf.pem())), 2)
        verifier = (
            PolicyBuilder()
            .store(Store([root.certificate]))
            .build_server_verifier(x509.DNSName("svc.example.org"))
        )
        path = verifier.verify(leaf.certificate, list(leaf.chain))
        self.assertEqual(path, [leaf.certificate, intermediate.certificate, root.certificate])

    def test_clientWithoutEku(self) -> None:
        """make_client(extended_key_usage=None) omits the EKU extension."""
        ca = certbuilder.make_ca("ca")
        cert = certbuilder.make_client(ca, "c", extended_key_usage=None).certificate
        self.assertRaises(
            x509.ExtensionNotFound, extension, cert, x509.ExtendedKeyUsage
        )

    def test_noDigitalSignature(self) -> None:
        """digital_signature=False leaves keyEncipherment only."""
        ca = certbuilder.make_ca("ca")
        cert = certbuilder.make_client(ca, "c", digital_signature=False).certificate
        usage = extension(cert, x509.KeyUsage).value
        self.assertFalse(usage.digital_signature)
        self.assertTrue(usage.key_encipherment)

    def test_crlRevokedEntries(self) -> None:
        """make_crl lists each serial with its date and reason."""
        ca = certbuilder.make_ca("ca")
        when = datetime(2024, 1, 2, tzinfo=timezone.utc)
        crl = certbuilder.make_crl(ca, [(42, when, x509.ReasonFlags.superseded)])
        entry = crl.get_revoked_certificate_by_serial_number(42)
        self.assertEqual(entry.revocation_date_utc, when)
        self.assertTrue(crl.is_signature_valid(ca.certificate.public_key()))

    def test_writeRefusesExisting(self) -> None:
        """write_pem and write_private_key raise FileExistsError without force."""
        path = self.mktemp()
        key = certbuilder.new_key()
        certbuilder.write_private_key(path, key)
        self.assertRaises(FileExistsError, certbuilder.write_private_key, path, key)
        self.assertRaises(FileExistsError, certbuilder.write_pem, path, b"x")
        certbuilder.write_pem(path, b"x", force=True)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)
