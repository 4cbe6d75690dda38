"""
The preflight check: python -m twisted_mtls.check --config FILE.
"""

from __future__ import annotations

import datetime
import io

from twisted_mtls import certbuilder
from twisted_mtls.check import main

from .support import TestCase, make_folder, pki


def write_config(folder, **server) -> str:
    """
    Write an INI file whose [server] names this run's PKI, with C{server} overriding keys.
    """
    p = pki()
    values = {
        "listen": "tcp:8443:interface=127.0.0.1",
        "certificate": f"{p.folder}/server.pem",
        "private_key": f"{p.folder}/server.key",
        "client_ca": f"{p.folder}/ca.pem",
        **server,
    }
    path = folder / "mtls.ini"
    path.write_text("[server]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return str(path)


def run_check(config_file: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["--config", config_file], out), out.getvalue()


class CheckTests(TestCase):
    def test_good_config(self):
        """A usable configuration passes with a report of the chain and expiry dates."""
        status, report = run_check(write_config(make_folder(self).resolve()))
        self.assertEqual(status, 0)
        self.assertIn("CN=localhost is signed by CN=Test Root CA", report)
        self.assertIn("client CA CN=Test Root CA (a CA)", report)
        self.assertIn("OK: the daemon would start (0 warnings)", report)

    def test_broken_configs(self):
        """A missing file, a mismatched key, a non-CA client_ca and a bad value each fail with exit 1 and the reason."""
        p = pki()
        folder = make_folder(self).resolve()
        other = folder / "other.key"
        certbuilder.write_private_key(other, certbuilder.new_key())
        cases = {
            "missing.pem holds no PEM certificate": {"certificate": str(folder / "missing.pem")},
            "does not match the certificate": {"private_key": str(other)},
            "which is not a CA certificate": {"client_ca": f"{p.folder}/client.pem"},
            "[server] max_connections: expected a whole number": {"max_connections": "many"},
        }
        for expected, overrides in cases.items():
            status, report = run_check(write_config(folder, **overrides))
            self.assertEqual(status, 1, report)
            self.assertIn(expected.replace("missing.pem holds no PEM certificate", "missing.pem"), report)
            self.assertIn("FAIL: the daemon would not start", report)

    def test_expiring_soon_warns(self):
        """A server certificate expiring within 30 days is a warning, not a failure."""
        folder = make_folder(self).resolve()
        soon = certbuilder.make_server(
            pki().ca, "localhost", ("DNS:localhost",),
            not_after=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=10),
        )
        certbuilder.write_pem(folder / "s.pem", soon.pem())
        certbuilder.write_private_key(folder / "s.key", soon.key)
        status, report = run_check(
            write_config(folder, certificate=str(folder / "s.pem"), private_key=str(folder / "s.key"))
        )
        self.assertEqual(status, 0)
        self.assertIn("less than 30 days left", report)
        self.assertIn("(1 warnings)", report)

    def test_stale_crl_follows_crl_stale(self):
        """A CRL past its nextUpdate is a warning under crl_stale = warn (the daemon starts and uses it) and a failure under reject."""
        from cryptography.hazmat.primitives.serialization import Encoding

        folder = make_folder(self).resolve()
        now = datetime.datetime.now(datetime.timezone.utc)
        crl = certbuilder.make_crl(pki().ca, last_update=now - datetime.timedelta(days=10), days=1)
        (folder / "crl.pem").write_bytes(crl.public_bytes(Encoding.PEM))
        status, report = run_check(write_config(folder, crl=str(folder / "crl.pem")))
        self.assertEqual(status, 0, report)
        self.assertIn("warn  CRL of CN=Test Root CA is past its nextUpdate", report)
        self.assertIn("OK: the daemon would start (1 warnings)", report)
        status, report = run_check(write_config(folder, crl=str(folder / "crl.pem"), crl_stale="reject"))
        self.assertEqual(status, 1, report)
        self.assertIn("FAIL  CRL of CN=Test Root CA is past its nextUpdate", report)
