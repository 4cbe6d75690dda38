"""
C{workers = N}: N processes under one twistd serving one listening socket.

The twistd process becomes a supervisor: it opens the listener (before
privileges are dropped), makes one session ticket key, and starts N workers
(C{twistd -n mtls ...} with the same options) that inherit the
listening socket as fd 3 and read the ticket key from a pipe on fd 4, so a
session made on one worker resumes on any other. The kernel hands each
accepted connection to one of the workers waiting in accept(). SIGHUP is
passed on to every worker (each reloads); SIGTERM or SIGINT stops the
supervisor, which passes SIGTERM on and waits for every worker to drain.
A worker that dies is started again after a second. Worker K (from 0)
serves its own /metrics on the configured port + K.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger

from .listening import listen_or_exit

log = Logger(namespace="twisted_mtls")

WORKER = "MTLS_WORKER"  # the worker's number, in its environment
LISTEN_FD, KEY_FD = 3, 4
FAMILIES = {"AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6, "AF_UNIX": socket.AF_UNIX}


def worker_number() -> int | None:
    """
    Return this process's worker number, or L{None} outside a worker.
    """
    value = os.environ.get(WORKER)
    return int(value) if value is not None else None


def read_ticket_key() -> bytes:
    """
    Read the ticket key the supervisor sent on fd 4 (in a worker).
    """
    with os.fdopen(KEY_FD, "rb") as pipe:
        return pipe.read()


def adopt_listener(reactor, factory):
    """
    Serve C{factory} on the listening socket inherited as fd 3 (in a worker).
    """
    family = FAMILIES[os.environ[WORKER + "_FAMILY"]]
    port = reactor.adoptStreamPort(LISTEN_FD, family, factory)
    os.close(LISTEN_FD)  # adoptStreamPort took a duplicate
    return port


def per_worker(listen: str, number: int) -> str:
    """
    Return the endpoint worker C{number} uses for C{listen}: a fixed TCP
    port moves up by C{number}; anything else is used as it is.
    """
    match = re.match(r"^(tcp6?:)(\d+)(.*)$", listen)
    if not match or int(match.group(2)) == 0:
        return listen
    return f"{match.group(1)}{int(match.group(2)) + number}{match.group(3)}"


def worker_argv(options) -> list[str]:
    """
    Return the command line of a worker for C{options}: twistd in the
    foreground with the same mtls options (and log file).
    """
    from .tap import Options

    twistd = getattr(options, "parent", None) or {}
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    argv += ["-n", "--pidfile="]
    if twistd.get("logfile"):
        argv.append(f"--logfile={twistd['logfile']}")
    argv.append("mtls")
    for name, _, _, _ in Options.optParameters:
        if options[name] is not None:
            argv.append(f"--{name}={options[name]}")
    return argv


class _Worker(ProcessProtocol):
    def __init__(self, supervisor: Supervisor, number: int) -> None:
        self.supervisor = supervisor
        self.number = number
        self.ended = defer.Deferred()

    def processEnded(self, reason) -> None:
        self.ended.callback(None)
        self.supervisor.workerEnded(self, reason.value.exitCode, reason.value.signal)


class Supervisor(Service):
    """
    Opens the listener and keeps C{config.workers} worker processes serving it.
    """

    name = "workers"
    port = None

    def __init__(self, options, ticket_key: bytes, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.options = options
        self.config = options.serverConfig
        self.ticketKey = ticket_key
        self.workers: dict[int, _Worker] = {}
        self._previous = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        listen_or_exit(self.reactor, self.config.listen, Factory(), self._listening)

    def _listening(self, port) -> None:
        port.stopReading()  # the workers accept; we only hold the socket open
        self.port = port

    def startService(self) -> None:
        super().startService()
        self._previous = signal.signal(signal.SIGHUP, self._onHangup)
        for number in range(self.config.workers):
            self.spawn(number)

    def spawn(self, number: int) -> None:
        """
        Start worker C{number}.
        """
        if not self.running:
            return
        family = socket.AddressFamily(self.port.socket.family).name
        read, write = os.pipe()
        os.write(write, self.ticketKey)  # 80 bytes: fits in any pipe buffer
        os.close(write)
        worker = _Worker(self, number)
        env = dict(os.environ, **{WORKER: str(number), WORKER + "_FAMILY": family})
        self.reactor.spawnProcess(
            worker,
            sys.executable,
            worker_argv(self.options),
            env=env,
            childFDs={0: 0, 1: 1, 2: 2, LISTEN_FD: self.port.fileno(), KEY_FD: read},
        )
        os.close(read)
        self.workers[number] = worker
        log.info("started worker {worker}", event="worker_started", worker=number)

    def workerEnded(self, worker: _Worker, code, signum) -> None:
        """
        A worker exited: start it again unless we are stopping.
        """
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if not self.running:
            return
        log.error(
            "worker {worker} exited (status {code}, signal {signal}); starting it again in 1 s",
            event="worker_exited",
            worker=worker.number,
            code=code,
            signal=signum,
        )
        self.reactor.callLater(1, self.spawn, worker.number)

    def _onHangup(self, signum, frame) -> None:
        self.reactor.callFromThread(self.signalAll, signal.SIGHUP)

    def signalAll(self, signum: int) -> None:
        """
        Send C{signum} to every running worker.
        """
        for worker in list(self.workers.values()):
            try:
                worker.transport.signalProcess(signal.Signals(signum).name[3:])
            except Exception:  # it is exiting already
                pass

    def stopService(self):
        """
        Ask every worker to drain and exit; fire when all have.
        """
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
        ended = [w.ended for w in self.workers.values()]
        self.signalAll(signal.SIGTERM)
        if self.port is not None:
            self.port.stopListening()
        return defer.DeferredList(ended)
