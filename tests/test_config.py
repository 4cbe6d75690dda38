"""
Configuration errors: each names the file, section and key and what was
expected; the daemon exits 78 with one line and listens on nothing.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path


from twisted_mtls import certbuilder, config
from twisted_mtls.errors import ConfigError
from twisted_mtls.material import load_server_material

from .processes import run_process, twistd
from .support import TestCase, inline, make_folder, pki, write_issued

GOOD = {
    "listen": "tcp:0:interface=127.0.0.1",
    "certificate": "server.pem",
    "private_key": "server.key",
    "client_ca": "ca.pem",
}


def write_ini(folder: Path, text: str) -> Path:
    """
    Write C{text} as FOLDER/mtls.ini; return its path.
    """
    ini = folder / "mtls.ini"
    ini.write_text(text)
    return ini


def server_ini(folder: Path, **changes: str | None) -> Path:
    """
    Write a good [server] section next to this run's PKI files, with
    C{changes} (L{None} removes a key); return the file's path.
    """
    p = pki()
    for name in ("server.pem", "server.key", "ca.pem"):
        target = folder / name
        if not target.exists():
            target.write_bytes((p.folder / name).read_bytes())
    values = {**GOOD, **changes}
    lines = [f"{k} = {v}" for k, v in values.items() if v is not None]
    return write_ini(folder, "[server]\n" + "\n".join(lines) + "\n")


class ConfigErrorTests(TestCase):
    def setUp(self) -> None:
        self.folder = make_folder(self)

    def load_error(self, ini: Path, **overrides: str) -> ConfigError:
        """
        Load the server configuration and material from C{ini}; return the error.
        """
        with self.assertRaises(ConfigError) as caught:
            load_server_material(config.load(config.ServerConfig, ini, overrides))
        return caught.exception

    def assertNames(self, error: ConfigError, ini: Path, where: str, *words: str) -> None:
        """
        Check that C{error} starts with C{ini} and C{where} and mentions C{words}.
        """
        self.assertTrue(str(error).startswith(f"{ini}: {where}"), str(error))
        for word in words:
            self.assertIn(word, str(error))

    def test_good_file(self):
        """A good file loads, with paths relative to the file's folder and defaults filled in."""
        settings = config.load(config.ServerConfig, server_ini(self.folder), {})
        self.assertEqual(settings.certificate, self.folder.resolve() / "server.pem")
        self.assertEqual(settings.max_line_length, 65536)
        self.assertEqual(settings.idle_timeout, 300)
        load_server_material(settings)

    def test_missing_file(self):
        """A configuration file that does not exist is named, with the system's reason."""
        ini = self.folder / "absent.ini"
        error = self.load_error(ini)
        self.assertEqual(
            str(error), f"{ini}: cannot read the configuration file: No such file or directory"
        )

    def test_not_utf8(self):
        """A configuration file that is not UTF-8 text is refused."""
        ini = self.folder / "mtls.ini"
        ini.write_bytes(b"[server]\nlisten = \xff\xfe\n")
        self.assertNames(self.load_error(ini), ini, "cannot read", "not UTF-8")

    def test_invalid_ini(self):
        """A file that is not INI is refused as not a valid INI file."""
        ini = write_ini(self.folder, "listen = tcp:1\n")
        self.assertNames(self.load_error(ini), ini, "not a valid INI file")

    def test_missing_section(self):
        """A file without [server] is refused for the daemon."""
        ini = write_ini(self.folder, "[client]\nconnect = localhost:1\n")
        self.assertEqual(str(self.load_error(ini)), f"{ini}: has no [server] section")

    def test_unknown_section(self):
        """A misspelt section is named with the sections expected."""
        ini = write_ini(self.folder, "[sever]\nlisten = tcp:1\n")
        self.assertNames(self.load_error(ini), ini, "[sever]: unknown section", "[server]")

    def test_unknown_key(self):
        """A misspelt key is named with its section and the keys expected."""
        ini = server_ini(self.folder, lisen="tcp:1")
        self.assertNames(self.load_error(ini), ini, "[server] lisen: unknown key", "listen")

    def test_bad_values(self):
        """A bad value for each typed key names the key and what was expected."""
        cases = {
            "listen": ("nonsense:1", "expected a Twisted server endpoint description"),
            "min_tls_version": ("1.1", "expected one of 1.2, 1.3, got '1.1'"),
            "max_line_length": ("lots", "expected a whole number >= 1"),
            "idle_timeout": ("-1", "expected a number of seconds >= 0, got '-1'"),
            "handshake_timeout": ("0", "expected a number of seconds >= 0.001, got '0'"),
            "verify_depth": ("0", "expected a whole number >= 1 and <= 64, got '0'"),
            "certificate": ("", "expected a value, got nothing"),
        }
        for key, (value, expected) in cases.items():
            ini = server_ini(self.folder, **{key: value})
            self.assertNames(self.load_error(ini), ini, f"[server] {key}: ", expected)

    def test_bad_option_value(self):
        """A bad value given as an option names the option, not the file."""
        error = self.load_error(server_ini(self.folder), max_line_length="0")
        self.assertEqual(
            str(error), "--max-line-length: expected a whole number >= 1 and <= 1073741824, got '0'"
        )

    def test_missing_required_key(self):
        """A file without a required key names it and says what it is."""
        for key in ("certificate", "private_key", "client_ca"):
            ini = server_ini(self.folder, **{key: None})
            self.assertNames(self.load_error(ini), ini, f"[server] {key}: is required", "PEM")

    def test_missing_certificate_file(self):
        """A certificate file that does not exist is named under its key."""
        ini = server_ini(self.folder, certificate="absent.pem")
        self.assertNames(
            self.load_error(ini), ini, "[server] certificate: cannot read", "absent.pem", "No such file"
        )

    def test_garbage_files(self):
        """A certificate, key or CA file without PEM content is refused under its key."""
        (self.folder / "junk").write_bytes(b"junk\n")
        for key, text in (
            ("certificate", "holds no PEM certificate"),
            ("private_key", "holds no usable PEM private key"),
            ("client_ca", "holds no PEM certificate"),
        ):
            ini = server_ini(self.folder, **{key: "junk"})
            self.assertNames(self.load_error(ini), ini, f"[server] {key}: ", text)

    def test_key_does_not_match(self):
        """A private key that is not the certificate's is refused, naming both files."""
        write_issued(self.folder, "other", certbuilder.make_client(pki().ca, "x"))
        ini = server_ini(self.folder, private_key="other.key")
        self.assertNames(
            self.load_error(ini), ini, "[server] private_key: ", "does not match the certificate"
        )

    def unusable(self, issued, problem: str) -> None:
        """
        Check that C{issued} as the server certificate is refused for C{problem}.
        """
        write_issued(self.folder, "bad", issued)
        ini = server_ini(self.folder, certificate="bad.pem", private_key="bad.key")
        self.assertNames(self.load_error(ini), ini, "[server] certificate: ", "cannot be used: " + problem)

    def test_ca_as_server_certificate(self):
        """A CA certificate is refused as a server certificate."""
        self.unusable(pki().ca, "it is a CA certificate, not a server certificate")

    def test_client_certificate_as_server_certificate(self):
        """A clientAuth-only certificate is refused as a server certificate."""
        self.unusable(
            pki().client, "its extended key usage does not include TLS server authentication"
        )

    def test_expired_server_certificate(self):
        """An expired server certificate is refused with the date it expired on."""
        end = (datetime.now(timezone.utc) - timedelta(days=1)).replace(microsecond=0)
        issued = certbuilder.make_server(
            pki().ca, "localhost", not_before=end - timedelta(days=9), not_after=end
        )
        self.unusable(issued, f"expired on {end:%Y-%m-%d %H:%M:%S} UTC")

    def test_client_ca_not_a_ca(self):
        """A client_ca file holding a leaf certificate is refused, naming that certificate."""
        (self.folder / "leaf.pem").write_bytes(pki().client.pem())
        ini = server_ini(self.folder, client_ca="leaf.pem")
        self.assertNames(
            self.load_error(ini), ini, "[server] client_ca: ", "CN=alice", "not a CA certificate"
        )


class DaemonConfigErrorTests(TestCase):
    @inline
    async def test_twistd_exits_78(self):
        """twistd with a bad file exits 78 after one line on stderr, no traceback, listening on nothing."""
        folder = make_folder(self)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        ini = server_ini(folder, listen=f"tcp:{port}:interface=127.0.0.1", max_line_length="lots")
        status, out, err = await run_process(
            *twistd(), "-n", "--pidfile=", "mtls", "--config", str(ini), python=False
        )
        self.assertEqual(status, 78, err)
        self.assertEqual(
            err.decode(),
            f"mtls: configuration error: {ini}: [server] max_line_length: expected a whole "
            "number >= 1 and <= 1073741824, got 'lots'\n",
        )
        self.assertNotIn(b"Traceback", out + err)
        self.assertNotIn(b"listening on", out)
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex(("127.0.0.1", port)), 0)


class WeakKeyTests(TestCase):
    def test_rsa_1024_client_certificate_is_a_local_error(self):
        """A client certificate with an RSA-1024 key is refused when loaded, saying its key is too small."""
        from twisted_mtls.material import load_client_material

        p = pki()
        weak = certbuilder.make_client(p.ca, "weak", key=certbuilder.new_key("rsa", 1024))
        folder = make_folder(self)
        certbuilder.write_pem(folder / "weak.pem", weak.pem())
        certbuilder.write_private_key(folder / "weak.key", weak.key)
        settings = config.load(
            config.ClientConfig,
            None,
            {"certificate": str(folder / "weak.pem"), "private_key": str(folder / "weak.key"), "ca": str(p.folder / "ca.pem")},
        )
        with self.assertRaises(ConfigError) as caught:
            load_client_material(settings)
        self.assertIn("1024-bit key is too small (at least 2048 bits)", str(caught.exception))
        self.assertEqual(caught.exception.key, "--certificate")
