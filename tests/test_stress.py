"""
Nothing lost: the stress script against an in-process server on loopback.
"""

from __future__ import annotations

from twisted.internet import threads
from twisted.internet.protocol import Factory, Protocol

from twisted_mtls import stress

from .support import TestCase, inline, pki, port_of, server_config, start_server


def stress_args(service, **extra: str) -> list[str]:
    """
    Return stress command-line arguments for C{service} as the good client.
    """
    folder = pki().folder
    argv = [
        "--port", str(port_of(service)), "--cert", str(folder / "client.pem"),
        "--key", str(folder / "client.key"), "--ca", str(folder / "ca.pem"),
    ]  # fmt: skip
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}", value]
    return argv


class _Lossy(Protocol):
    seen = 0

    def dataReceived(self, data: bytes) -> None:
        before, self.seen = self.seen, self.seen + len(data)
        if before // 50_000 != self.seen // 50_000:
            data = data[1:]
        self.transport.write(data)


class LossyEcho(Factory):
    """
    An echo that loses a byte in every 50,000: what the stress must catch.
    """

    protocol = _Lossy


class StressTests(TestCase):
    @inline
    async def test_nothing_lost(self):
        """A hundred concurrent connections of random lines in random writes get back exactly what they sent."""
        service = start_server(self, server_config(max_pending_output="65536"))
        args = stress.parse_args(stress_args(service, connections="100", megabytes="4", seconds="20"))
        results, text = await threads.deferToThread(stress.run, args)
        self.assertEqual([r.problem for r in results if r.problem], [], text)
        self.assertEqual(len(results), 100)
        self.assertGreater(sum(r.sent for r in results), 3_000_000)
        self.assertIn("0 bytes lost, duplicated or reordered: OK", text)

    @inline
    async def test_a_lossy_echo_is_caught(self):
        """Against an echo that drops one byte now and then, the stress reports every affected connection."""
        service = start_server(self, server_config(service="python:tests.test_stress:LossyEcho"))
        args = stress.parse_args(stress_args(service, connections="4", megabytes="1", seconds="5", grace="1"))
        results, text = await threads.deferToThread(stress.run, args)
        self.assertEqual(len([r for r in results if r.problem]), 4, text)
        self.assertIn("bytes lost", text)
        self.assertIn("4 connections FAILED", text)

    def test_verdict(self):
        """The verdict names lost bytes, extra bytes and same-length differences."""
        self.assertIsNone(stress.verdict(3, b"a", 3, b"a"))
        self.assertEqual(stress.verdict(5, b"a", 3, b"b"), "2 bytes lost (sent 5, echoed 3)")
        self.assertIn("1 bytes more than sent", stress.verdict(3, b"a", 4, b"b"))
        self.assertIn("reordered or corrupted", stress.verdict(3, b"a", 3, b"b"))

    def test_lines_are_complete_and_random(self):
        """Generated lines each end in one LF, have no other LF, and vary in length."""
        import random

        made = list(stress.lines(random.Random(1), 200_000, 65536))
        self.assertTrue(all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in made))
        self.assertGreater(len({len(line) for line in made}), 20)

    def test_unusable_files_are_a_usage_error(self):
        """A missing CA file or a key that is not the certificate's exits with status 2 and a line naming the option and file, not a traceback."""
        import contextlib
        import io

        folder = pki().folder
        good = ["--port", "1", "--cert", str(folder / "client.pem"), "--key", str(folder / "client.key")]
        cases = [
            (good + ["--ca", str(folder / "missing.pem")], "--ca: cannot load", "No such file or directory"),
            (good[:4] + ["--key", str(folder / "server.key"), "--ca", str(folder / "ca.pem")],
             "--cert/--key: cannot load", "the PEM private key that matches it"),
        ]  # fmt: skip
        for argv, option, why in cases:
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr), self.assertRaises(SystemExit) as exited:
                stress.parse_args(argv)
            self.assertEqual(exited.exception.code, 2)
            self.assertIn(option, stderr.getvalue())
            self.assertIn(why, stderr.getvalue())
            self.assertNotIn("Traceback", stderr.getvalue())
