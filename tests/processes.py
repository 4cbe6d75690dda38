"""
Real processes for the tests: the client and twistd, run with this Python
and bounded in time.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from twisted.internet import defer, protocol, reactor

ROOT = Path(__file__).resolve().parent.parent


def twistd() -> list[str]:
    """
    Return the argv prefix that runs the twistd next to this Python.
    """
    script = Path(sys.executable).parent / "twistd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "twisted"]


def environment() -> dict[str, str]:
    """
    Return the environment for a child: ours, with this checkout first on its path.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    return env


class Child(protocol.ProcessProtocol):
    """
    Collects a child's stdout and stderr; C{ended} fires with its exit status
    (or minus the signal that ended it).
    """

    def __init__(self, stdin: bytes | None = None) -> None:
        self.stdin = stdin
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        if self.stdin is not None:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason) -> None:
        value = reason.value
        status = value.exitCode if value.exitCode is not None else -(value.signal or 0)
        self.ended.callback(status)

    def signal(self, name: str) -> None:
        """
        Send the signal C{name} (e.g. C{"TERM"}) to the child, if it still runs.
        """
        if self.transport.pid is not None:
            self.transport.signalProcess(name)

    async def wait(self, timeout: float) -> int:
        """
        Return the exit status; kill the child when it outlives C{timeout} seconds.
        """
        timer = reactor.callLater(timeout, self.signal, "KILL")
        try:
            return await self.ended
        finally:
            if timer.active():
                timer.cancel()


def start(
    argv: list[str], stdin: bytes | None = None, cwd: str | None = None, env: dict | None = None
) -> Child:
    """
    Start C{argv} as a child process (stdin fed from C{stdin}, then closed),
    with C{env} added to its environment.
    """
    child = Child(stdin)
    reactor.spawnProcess(child, argv[0], argv, env={**environment(), **(env or {})}, path=cwd)
    return child


async def run_process(*args: str, stdin: bytes | None = None, timeout: float = 20.0, python: bool = True):
    """
    Run C{python ARGS} (or C{ARGS} when not C{python}); return (status, stdout, stderr).
    """
    argv = [sys.executable, *args] if python else list(args)
    child = start(argv, stdin)
    status = await child.wait(timeout)
    return status, child.out, child.err


# The line the daemon (each worker) logs once it listens, with the port.
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+) ")


def start_daemon(testcase, *, env: dict | None = None, **changes: str) -> tuple[Child, Path]:
    """
    Start C{twistd -n mtls} on a fresh folder's configuration (the test
    server's, with C{changes}) that also holds the test client's certificate
    and key; return the daemon (killed at cleanup) and the configuration file.
    """
    from .support import make_folder, pki
    from .test_config import server_ini

    folder = make_folder(testcase)
    ini = server_ini(folder, **changes)
    for name in ("client.pem", "client.key"):
        (folder / name).write_bytes((pki().folder / name).read_bytes())
    daemon = start([*twistd(), "-n", "--pidfile=", "mtls", "--config", str(ini)], env=env)
    testcase.addCleanup(daemon.signal, "KILL")
    return daemon, ini


def client_of(ini: Path, port: str) -> tuple[str, ...]:
    """
    Add to C{ini} a C{[client]} section for the test client connecting to
    C{port}; return the arguments that run that client.
    """
    with open(ini, "a") as f:
        f.write(
            f"\n[client]\nconnect = 127.0.0.1:{port}\nserver_name = localhost\n"
            "certificate = client.pem\nprivate_key = client.key\nca = ca.pem\n"
        )
    return ("-m", "twisted_mtls.client", "--config", str(ini))
