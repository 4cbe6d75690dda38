"""
The access policy: its rules, their parsing, and their effect over real TLS.
"""

from __future__ import annotations

from twisted_mtls import certbuilder, config
from twisted_mtls.errors import ConfigError
from twisted_mtls.identity import PeerIdentity
from twisted_mtls.policy import Policy, UriPattern, fingerprint, open_policy_warning
from twisted_mtls.values import split_list

from .access import attempt, write_bundle
from .support import TestCase, inline, pki, server_config

_BOB = None


def bob():
    """
    A client with a CN, an OU and one SAN of each kind, issued once per run.
    """
    global _BOB
    if _BOB is None:
        _BOB = certbuilder.make_client(
            pki().ca,
            "bob",
            organizational_units=("payments",),
            sans=("DNS:bob.example.org", "IP:10.1.2.3", "URI:spiffe://example.org/ns/prod/sa/bob"),
        )
    return _BOB


def other_fingerprint() -> str:
    return certbuilder.fingerprint(pki().client.certificate)


class ParsingTests(TestCase):
    def test_lists(self):
        """A list value may be comma-separated, one per line, or both."""
        self.assertEqual(split_list("a, b\n c,\n\nd"), ("a", "b", "c", "d"))

    def test_fingerprint_forms(self):
        """A fingerprint is accepted in any case, with or without colons."""
        printed = certbuilder.fingerprint(bob().certificate)
        for form in (printed, printed.lower(), printed.replace(":", ""), printed.replace(":", "").lower()):
            self.assertEqual(fingerprint(form), printed)

    def test_bad_values_are_config_errors(self):
        """Invalid patterns, fingerprints and addresses are configuration errors naming the key."""
        bad = {
            "allow_uri": "spiffe://example.org/ns/pre*/sa",
            "allow_fingerprint": "AB:CD",
            "allow_spki": "zz" * 32,
            "allow_ip": "10.0.0.300",
            "allow_dns": "bad name.example",
            "allow_all": "maybe",
            "crl_stale": "ignore",
        }
        for key, value in bad.items():
            with self.assertRaises(ConfigError) as raised:
                server_config(**{key: value})
            self.assertEqual(raised.exception.key, "--" + key.replace("_", "-"))

    def test_uri_patterns(self):
        """'*' matches exactly one path segment and a final '**' any remainder."""
        pattern = UriPattern.parse("spiffe://example.org/ns/*/sa/**")
        self.assertTrue(pattern.matches("spiffe://example.org/ns/prod/sa/bob"))
        self.assertTrue(pattern.matches("spiffe://EXAMPLE.org/ns/prod/sa/bob/extra"))
        self.assertFalse(pattern.matches("spiffe://example.org/ns/prod/sa"))
        self.assertFalse(pattern.matches("spiffe://example.org/ns/a/b/sa/bob"))
        self.assertFalse(pattern.matches("spiffe://example.org/ns//sa/bob"))
        self.assertFalse(pattern.matches("spiffe://other.org/ns/prod/sa/bob"))
        exact = UriPattern.parse("spiffe://example.org/web")
        self.assertTrue(exact.matches("spiffe://example.org/web"))
        self.assertFalse(exact.matches("spiffe://example.org/web/x"))

    def test_invalid_uri_patterns(self):
        """A wildcard inside a segment, in the authority or before the end ('**') is refused."""
        for text in ("spiffe://example.org/a*", "spiffe://*.org/a", "spiffe://example.org/**/a", "no-scheme/a", "spiffe:///a"):
            with self.assertRaises(ValueError):
                UriPattern.parse(text)

    def test_read_from_file(self):
        """Rules are read from the file, one per line or comma-separated."""
        folder = self.mktemp()
        import os

        os.makedirs(folder)
        path = os.path.join(folder, "mtls.ini")
        with open(path, "w") as f:
            f.write(
                "[server]\ncertificate = s.pem\nprivate_key = s.key\nclient_ca = ca.pem\n"
                "allow_cn = alice, bob\n  carol\nallow_uri =\n  spiffe://example.org/ns/*/sa/**\n"
            )
        loaded = config.load(config.ServerConfig, path)
        self.assertEqual(loaded.allow_cn, ("alice", "bob", "carol"))
        self.assertEqual(loaded.allow_uri[0].text, "spiffe://example.org/ns/*/sa/**")
        self.assertEqual(loaded.crl, ())


class PolicyTests(TestCase):
    def test_no_rules_lets_everyone_in(self):
        """With no allow_* key every verified certificate passes."""
        self.assertIsNone(Policy().check(PeerIdentity.from_certificate(bob().certificate)))

    def test_refusal_names_the_identity(self):
        """A refusal says no rule matched and names the certificate."""
        reason = Policy(cn=("carol",)).check(PeerIdentity.from_certificate(bob().certificate))
        self.assertIn("not allowed by the access policy: no allow_* rule matches", reason)
        self.assertIn("CN=bob,OU=payments", reason)
        self.assertIn("URI:spiffe://example.org/ns/prod/sa/bob", reason)
        self.assertIn(certbuilder.fingerprint(bob().certificate), reason)

    def test_open_policy_warning(self):
        """Several CAs in client_ca and no rule give a warning; a rule or one CA does not."""
        cas = (pki().ca.certificate, certbuilder.make_ca("Other CA").certificate)
        self.assertIn("client_ca holds 2 CAs and no allow_* rule", open_policy_warning(Policy(), cas))
        self.assertIsNone(open_policy_warning(Policy(allow_all=True), cas))
        self.assertIsNone(open_policy_warning(Policy(), cas[:1]))

    def test_digest_changes_with_rules(self):
        """The session context digest differs between two policies."""
        self.assertNotEqual(Policy(cn=("a",)).digest(), Policy(cn=("b",)).digest())


def rules() -> dict[str, tuple[str, str]]:
    """
    Each key with a value that matches bob and one that does not.
    """
    c = bob().certificate
    return {
        "allow_cn": ("carol, bob", "carol"),
        "allow_ou": ("payments", "ops"),
        "allow_dns": ("*.example.org", "*.bob.example.org, example.org"),
        "allow_ip": ("10.0.0.0/8", "10.1.2.4, 192.168.0.0/16"),
        "allow_uri": ("spiffe://example.org/ns/*/sa/**", "spiffe://example.org/ns/staging/**"),
        "allow_fingerprint": (certbuilder.fingerprint(c).replace(":", "").lower(), other_fingerprint()),
        "allow_spki": (certbuilder.spki_fingerprint(c), certbuilder.spki_fingerprint(pki().client.certificate)),
        "allow_all": ("true", "false"),
    }


class RuleOverTLSTests(TestCase):
    @inline
    async def test_each_rule_matched(self):
        """A client matching any one rule is served."""
        for key, (matching, _) in rules().items():
            result = await attempt(self, server_config(**{key: matching}), bob())
            self.assertTrue(result.accepted, f"{key} = {matching}: {result.server_reason}")
            self.assertEqual(result.outcome.output, b"hello\n")

    @inline
    async def test_each_rule_not_matched(self):
        """A client matching no rule is refused in the handshake, with the reason logged."""
        for key, (_, other) in rules().items():
            if key == "allow_all":
                continue
            result = await attempt(self, server_config(**{key: other}), bob())
            self.assertFalse(result.accepted, key)
            self.assertIn("not allowed by the access policy", result.server_reason)
            self.assertIn("the server refused our certificate", result.outcome.reason)
            self.assertEqual(result.outcome.output, b"")

    @inline
    async def test_denial_over_tls12(self):
        """Over TLS 1.2 the denial ends the handshake and the client says why."""
        result = await attempt(self, server_config(allow_cn="carol"), bob(), tls12=True)
        self.assertIn("not allowed by the access policy", result.server_reason)
        self.assertEqual(
            result.outcome.reason,
            "the server refused our certificate: it gave no specific reason; a twisted-mtls "
            "server sends this alert when our certificate is valid but its access policy "
            "does not allow it (TLS alert: internal error)",
        )

    @inline
    async def test_denial_over_tls13(self):
        """Over TLS 1.3 the client learns of the denial after its handshake and says why."""
        result = await attempt(self, server_config(allow_cn="carol", min_tls_version="1.3"), bob())
        self.assertIn("not allowed by the access policy", result.server_reason)
        self.assertIn("(TLS alert: internal error)", result.outcome.reason)
        self.assertEqual(result.outcome.failure.explanation.kind, 5)

    @inline
    async def test_open_policy_warned_at_startup(self):
        """A server with two client CAs and no rule logs a warning when it starts."""
        other = certbuilder.make_ca("Other CA")
        result = await attempt(self, server_config(client_ca=write_bundle(pki().ca, other)))
        self.assertTrue(result.accepted)
        [warning] = result.events.named("policy_open")
        self.assertIn("client_ca holds 2 CAs", warning["problem"])
