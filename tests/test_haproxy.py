"""
Scale-out: a real HAProxy in TCP mode, sending PROXY v2 headers, in front
of two daemon instances on loopback.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import ssl
import subprocess

from twisted.internet import threads

from twisted_mtls import config

from .faults import session_through
from .support import LogEvents, TestCase, client_config, eventually, inline
from .support import make_folder, pki, port_of, server_config, start_server

HAPROXY = shutil.which("haproxy") or next(
    (p for p in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(p, os.X_OK)), None
)
TICKET_KEYS = "session_ticket_key_file" in {f.name for f in config.settings(config.ServerConfig)}

CONFIG = """\
global
    maxconn 500
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend mtls
    bind 127.0.0.1:{front}
    default_backend daemons
backend daemons
    balance roundrobin
    server a 127.0.0.1:{a} send-proxy-v2
    server b 127.0.0.1:{b} send-proxy-v2
"""


def start_haproxy(testcase, backends: list[int]) -> int:
    """
    Start HAProxy in front of loopback C{backends}; return its port and process.
    """
    folder = make_folder(testcase)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        front = probe.getsockname()[1]
    path = folder / "haproxy.cfg"
    path.write_text(CONFIG.format(front=front, a=backends[0], b=backends[1]))
    checked = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30)
    if checked.returncode:
        testcase.fail(f"haproxy rejected its configuration: {checked.stdout}{checked.stderr}")
    process = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=open(folder / "haproxy.log", "w")
    )

    def stop():
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    testcase.addCleanup(stop)
    return front, process


async def haproxy_ready(front: int, process) -> None:
    """
    Wait until HAProxy listens on C{front}; fail with its log if it exited.
    """

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"haproxy exited with status {process.returncode}")
        return listening(front)

    await eventually(ready, timeout=10)


def listening(port: int) -> bool:
    """
    Return whether something accepts connections on loopback C{port}.
    """
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@functools.cache
def stdlib_context() -> ssl.SSLContext:
    """
    Return the one stdlib client context (sessions resume only within it) of the good client.
    """
    folder = pki().folder
    context = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    context.load_cert_chain(str(folder / "client.pem"), str(folder / "client.key"))
    return context


def echo_with_session(port: int, session=None) -> tuple[bytes, object, bool]:
    """
    Echo one line through loopback C{port} with the stdlib TLS client, offering
    C{session}; return the echo, the session to resume and whether this one resumed.
    """
    context = stdlib_context()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
            tls.sendall(b"resume me\n")
            echoed = b""
            while not echoed.endswith(b"\n"):
                data = tls.recv(100)
                if not data:
                    break
                echoed += data
            return echoed, tls.session, tls.session_reused


def served_by(service) -> int:
    """
    Return how many connections C{service} served and closed (handshake failures not counted).
    """
    stats = service.factory.stats
    return sum(stats.closed.values()) - stats.closed.get("handshake_failed", 0)


class HAProxyTests(TestCase):
    def setUp(self):
        if HAPROXY is None:
            self.skipTest("haproxy is not installed (Debian package haproxy; .ci/run installs it)")

    def start_pair(self, **overrides: str):
        """
        Start two daemons that take PROXY v2 headers from loopback, and HAProxy in front.
        """
        services = [
            start_server(self, server_config(proxy_protocol="v2", proxy_from="127.0.0.1", **overrides))
            for _ in range(2)
        ]
        return services, start_haproxy(self, [port_of(s) for s in services])

    @inline
    async def test_spread_and_real_client_address(self):
        """Connections through HAProxy reach both instances, and each logs the client's own address and port."""
        events = LogEvents(self)
        services, (front, process) = self.start_pair()
        await haproxy_ready(front, process)
        ports = []
        for n in range(6):
            session = await session_through(self, client_config(services[0]), front)
            self.assertEqual(await session.echo(b"via haproxy %d" % n), b"via haproxy %d\n" % n)
            ports.append(session.transport.getHost().port)
            session.transport.loseConnection()
            await session.lost
        await eventually(lambda: sum(served_by(s) for s in services) >= 6)
        self.assertTrue(all(served_by(s) >= 2 for s in services), [served_by(s) for s in services])
        await eventually(lambda: len(events.named("connection_open")) >= 6)
        logged = {e["peer"] for e in events.named("connection_open")}
        self.assertEqual(logged, {f"127.0.0.1:{port}" for port in ports})

    @inline
    async def test_session_resumes_on_the_other_instance(self):
        """A TLS session made with one instance resumes on the other when both share a ticket key file."""
        if not TICKET_KEYS:
            self.skipTest(
                "[server] session_ticket_key_file does not exist yet (the session-ticket work adds it)"
            )
        key_file = make_folder(self) / "tickets.key"
        key_file.write_bytes(os.urandom(80))
        key_file.chmod(0o600)
        services, (front, process) = self.start_pair(session_ticket_key_file=str(key_file))
        await haproxy_ready(front, process)
        before = [served_by(s) for s in services]
        echoed, session, _ = await threads.deferToThread(echo_with_session, front)
        self.assertEqual(echoed, b"resume me\n")
        await eventually(lambda: sum(served_by(s) for s in services) == sum(before) + 1)
        middle = [served_by(s) for s in services]
        echoed, _, reused = await threads.deferToThread(echo_with_session, front, session)
        await eventually(lambda: sum(served_by(s) for s in services) == sum(before) + 2)
        after = [served_by(s) for s in services]
        self.assertEqual(echoed, b"resume me\n")
        first = [b - a for a, b in zip(before, middle)]
        second = [b - a for a, b in zip(middle, after)]
        self.assertEqual(sorted([first, second]), [[0, 1], [1, 0]])  # one each
        self.assertTrue(reused, "the second connection, on the other instance, did a full handshake")
