"""
Our client against servers it must not trust, and its exit codes.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

from twisted_mtls import certbuilder
from twisted_mtls.material import ServerMaterial
from twisted_mtls.reasons import Kind

from .processes import run_process
from .support import (
    LogEvents, TestCase, client_config, inline, make_folder, pki, port_of, server_config,
    start_plain_server, start_server,
    talk, write_issued,
)


def client_args(port: int, cert: str = "client", key: str | None = None) -> list[str]:
    """
    Return the argv of our client for this run's PKI on loopback C{port},
    presenting CERT.pem and KEY.key from the PKI folder (or given paths).
    """
    folder = pki().folder
    return [
        "-m", "twisted_mtls.client",
        "--connect", f"127.0.0.1:{port}",
        "--server-name", "localhost",
        "--cert", cert if "/" in cert else str(folder / f"{cert}.pem"),
        "--key", key or str(folder / f"{cert}.key"),
        "--ca", str(folder / "ca.pem"),
        "--timeout", "5",
    ]  # fmt: skip


def free_port() -> int:
    """
    Return a loopback port nothing listens on (bound once, then released).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UntrustedServerTests(TestCase):
    async def assertUntrusted(self, service, text: str, logged: str, **overrides: str) -> None:
        """
        Check that our client refuses C{service} with C{text}, exit kind 4,
        and that the server logged C{logged}.
        """
        events = LogEvents(self)
        outcome = await talk(client_config(service, **overrides), b"secret")
        failed = await events.first("handshake_failed")
        self.assertEqual(failed["reason"], logged)
        self.assertEqual(outcome.output, b"")
        self.assertIsNotNone(outcome.failure)
        self.assertEqual(outcome.failure.explanation.kind, Kind.PEER_CERTIFICATE)
        self.assertEqual(outcome.reason, "the server's certificate is not acceptable: " + text)

    @inline
    async def test_wrong_name(self):
        """A server certificate for other names (or IPs) is refused, naming the names it is for."""
        service = start_server(self)
        for name in ("example.org", "127.0.0.2"):
            await self.assertUntrusted(
                service,
                f"certificate is for DNS:localhost, IP:127.0.0.1, not for {name!r}",
                # pyOpenSSL cannot give a name mismatch its own verify error,
                # so OpenSSL's alert says only "internal error".
                "the client refused the handshake (TLS alert: internal error)",
                server_name=name,
            )

    @inline
    async def test_untrusted_ca(self):
        """A server certificate from a CA the client does not trust is refused as unknown CA."""
        service = start_server(self)
        other = make_folder(self) / "other-ca.pem"
        certbuilder.write_pem(other, certbuilder.make_ca("Other CA").pem())
        await self.assertUntrusted(
            service,
            "unknown CA: CN=Test Root CA is not a trusted CA "
            "(or the server did not send the intermediate certificate)",
            "the client refused our certificate: it does not trust the CA that issued "
            "our certificate (TLS alert: unknown ca)",
            ca=str(other),
        )

    @inline
    async def test_expired_server_certificate(self):
        """An expired server certificate is refused with the date it expired on."""
        end = (datetime.now(timezone.utc) - timedelta(days=1)).replace(microsecond=0)
        p = pki()
        expired = certbuilder.make_server(
            p.ca, "localhost", ("DNS:localhost",), not_before=end - timedelta(days=9), not_after=end
        )
        # The config loader refuses an expired server certificate: build the material directly.
        material = ServerMaterial((expired.certificate,), expired.key, (p.ca.certificate,))
        service = start_server(self, material=material)
        await self.assertUntrusted(
            service,
            f"certificate expired on {end:%Y-%m-%d %H:%M:%S} UTC",
            "the client refused our certificate: our certificate has expired or is not yet "
            "valid (TLS alert: certificate expired)",
        )


class ExitCodeTests(TestCase):
    @inline
    async def test_refused_port(self):
        """A port nobody listens on ends the client with exit status 3 and a plain sentence."""
        port = free_port()
        status, out, err = await run_process(*client_args(port), "--message", "hi")
        self.assertEqual(status, 3)
        self.assertEqual(out, b"")
        self.assertEqual(
            err,
            f"mtls-client: cannot connect to 127.0.0.1:{port}: connection refused "
            "(is the server running?)\n".encode(),
        )

    @inline
    async def test_bad_local_key(self):
        """A private key file that holds no key ends the client with exit status 2, naming the option."""
        key = make_folder(self) / "bad.key"
        key.write_bytes(b"not a key\n")
        status, out, err = await run_process(*client_args(1, key=str(key)), "--message", "hi")
        self.assertEqual(status, 2)
        self.assertEqual(out, b"")
        self.assertEqual(
            err, f"mtls-client: --private-key: {key} holds no usable PEM private key\n".encode()
        )

    @inline
    async def test_empty_input_accepted(self):
        """With empty stdin the client handshakes, sends nothing and exits 0."""
        service = start_server(self)
        status, out, err = await run_process(*client_args(port_of(service)), stdin=b"")
        self.assertEqual((status, out, err), (0, b"", b""))

    @inline
    async def test_slow_reader_gets_every_byte(self):
        """Streaming 4 MB of lines into a pipe that is read slowly loses and reorders nothing (stdout stays blocking)."""
        import shlex
        import sys

        service = start_server(self)
        folder = make_folder(self).resolve()
        lines = b"".join(b"%07d %s\n" % (n, b"x" * (n % 90)) for n in range(80000))
        (folder / "in").write_bytes(lines)
        client = " ".join(shlex.quote(a) for a in [sys.executable, *client_args(port_of(service))])
        command = f"{client} < {folder / 'in'} | (sleep 1; cat) > {folder / 'out'}"
        status, out, err = await run_process("/bin/sh", "-c", command, python=False, timeout=60)
        self.assertEqual((status, err), (0, b""))
        self.assertEqual((folder / "out").read_bytes(), lines)

    @inline
    async def test_empty_input_refused(self):
        """With empty stdin a client refused after its TLS 1.3 Finished still exits 5 with the reason."""
        other = make_folder(self)
        cert, key = write_issued(other, "m", certbuilder.make_client(certbuilder.make_ca("Other CA"), "m"))
        service = start_server(self)
        status, out, err = await run_process(
            *client_args(port_of(service), str(cert), str(key)), stdin=b""
        )
        self.assertEqual(status, Kind.REFUSED_BY_PEER, err)
        self.assertEqual(
            err,
            b"mtls-client: the server refused our certificate: it does not trust the CA "
            b"that issued our certificate (TLS alert: unknown ca)\n",
        )


class NotAServerTests(TestCase):
    @inline
    async def test_handshake_timeout(self):
        """A server that accepts TCP but never answers the handshake is a connection that timed out (exit kind 3)."""
        port = start_plain_server(self)
        settings = client_config(None, connect=f"127.0.0.1:{port}", timeout="0.3")
        outcome = await talk(settings, b"hi")
        self.assertEqual(outcome.failure.explanation.kind, Kind.CONNECT)
        self.assertEqual(
            outcome.reason,
            f"cannot connect to 127.0.0.1:{port}: the TLS handshake did not complete within 0.3 s",
        )

    @inline
    async def test_not_tls(self):
        """A server that answers in plain text is reported as not TLS (exit kind 6)."""
        port = start_plain_server(self, b"SSH-2.0-OpenSSH_9.6\r\n")
        outcome = await talk(client_config(None, connect=f"127.0.0.1:{port}"), b"hi")
        self.assertEqual(outcome.failure.explanation.kind, Kind.PROTOCOL)
        self.assertEqual(
            outcome.reason, "not TLS: the server sent bytes that are not a TLS record"
        )


class ServerErrorTests(TestCase):
    @inline
    async def test_over_long_message_is_not_success(self):
        """When the echo service answers an over-long line with its error line, the client fails with that line (exit kind 6), not success."""
        service = start_server(self, server_config(max_line_length="5"))
        outcome = await talk(client_config(service), b"123456789")
        self.assertEqual(outcome.failure.explanation.kind, Kind.PROTOCOL)
        self.assertEqual(
            outcome.reason,
            "the server answered 'ERROR line too long: the limit is 5 bytes' instead of the echo",
        )

    @inline
    async def test_lines_before_the_error_are_echoed(self):
        """Lines echoed before the error line still reach the output; the failure names the error line."""
        service = start_server(self, server_config(max_line_length="5"))
        outcome = await talk(client_config(service), b"ok\nalso\nmuch too long")
        self.assertEqual(outcome.output, b"ok\nalso\nERROR line too long: the limit is 5 bytes\n")
        self.assertIn("'ERROR line too long: the limit is 5 bytes'", outcome.reason)
