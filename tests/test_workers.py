"""
workers = N: one twistd, N worker processes on one listening socket.
"""

from __future__ import annotations

from twisted_mtls.workers import per_worker

from .processes import LISTENING, client_of, run_process, start_daemon
from .support import TestCase, eventually, inline


class PerWorkerTests(TestCase):
    def test_fixed_port_moves_up(self) -> None:
        """Worker K's metrics endpoint is the configured TCP port + K."""
        self.assertEqual(per_worker("tcp:9100:interface=127.0.0.1", 2), "tcp:9102:interface=127.0.0.1")

    def test_other_endpoints_unchanged(self) -> None:
        """Port 0 and non-TCP endpoints are used as they are by every worker."""
        self.assertEqual(per_worker("tcp:0:interface=127.0.0.1", 1), "tcp:0:interface=127.0.0.1")
        self.assertEqual(per_worker("unix:/run/m.sock", 1), "unix:/run/m.sock")


class WorkersTests(TestCase):
    @inline
    async def test_two_workers_serve_reload_and_drain(self):
        """With workers = 2 both workers listen on one port and serve, SIGHUP reloads both, SIGTERM stops all with status 0."""
        daemon, ini = start_daemon(self, workers="2")
        await eventually(lambda: len(LISTENING.findall(daemon.out)) >= 2 or daemon.ended.called, 20)
        self.assertFalse(daemon.ended.called, daemon.err)
        ports = set(LISTENING.findall(daemon.out))
        self.assertEqual(len(ports), 1, daemon.out)
        self.assertIn(b"started worker 1", daemon.out)
        client = client_of(ini, ports.pop().decode())
        for n in range(4):
            status, out, err = await run_process(*client, "--message", f"hi {n}")
            self.assertEqual((status, out, err), (0, f"hi {n}\n".encode(), b""))
        daemon.signal("HUP")
        await eventually(lambda: daemon.out.count(b"reloaded (SIGHUP)") >= 2, 10)
        daemon.signal("TERM")
        self.assertEqual(await daemon.wait(15), 0, daemon.err)
        self.assertEqual(daemon.out.count(b"Server Shut Down."), 3)
        self.assertEqual(daemon.out.count(b" connected: CN=alice"), 4)
        self.assertNotIn(b"Traceback", daemon.out + daemon.err)
