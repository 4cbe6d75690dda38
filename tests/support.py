"""
What the tests share: a PKI generated once per run, a real server on a
loopback port, the real client, and the log events the daemon emits.
"""

from __future__ import annotations

import atexit
import os
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IHalfCloseableProtocol, IHandshakeListener
from twisted.internet.protocol import Protocol
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from zope.interface import implementer

from twisted_mtls import certbuilder, config
from twisted_mtls.certbuilder import Issued
from twisted_mtls.client import ClientFailed, run
from twisted_mtls.material import load_client_material, load_server_material
from twisted_mtls.service import MTLSService


_OURS = (os.sep + "twisted_mtls" + os.sep, os.sep + "tests" + os.sep)


class TestCase(unittest.TestCase):
    """
    A trial test case that fails when our own code raised a DeprecationWarning.
    """

    def tearDown(self) -> None:
        ours = [
            w
            for w in self.flushWarnings()
            if issubclass(w["category"], DeprecationWarning)
            and any(part in w["filename"] for part in _OURS)
        ]
        if ours:
            self.fail(
                "DeprecationWarning from our code: "
                + "; ".join(f"{w['filename']}:{w['lineno']}: {w['message']}" for w in ours)
            )


@dataclass(frozen=True)
class PKI:
    """
    A CA with a server and a client certificate, written under C{folder}.
    """

    folder: Path
    ca: Issued
    server: Issued
    client: Issued

    def write(self, name: str, issued: Issued) -> tuple[Path, Path]:
        """
        Write C{issued} as NAME.pem and NAME.key; return both paths.
        """
        cert, key = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        certbuilder.write_pem(cert, issued.pem(), force=True)
        certbuilder.write_private_key(key, issued.key, force=True)
        return cert, key


_pki: PKI | None = None


def pki() -> PKI:
    """
    Return this run's PKI, making it on first use.
    """
    global _pki
    if _pki is None:
        folder = Path(tempfile.mkdtemp(prefix="mtls-test-pki-"))
        atexit.register(shutil.rmtree, folder, True)
        ca = certbuilder.make_ca("Test Root CA")
        made = PKI(
            folder,
            ca,
            certbuilder.make_server(ca, "localhost", ("DNS:localhost", "IP:127.0.0.1")),
            certbuilder.make_client(ca, "alice", sans=("DNS:alice.example",)),
        )
        certbuilder.write_pem(folder / "ca.pem", ca.pem())
        made.write("server", made.server)
        made.write("client", made.client)
        _pki = made
    return _pki


def server_config(**overrides: str) -> config.ServerConfig:
    """
    Return a [server] configuration for this run's PKI on a free loopback port.
    """
    p = pki()
    values = {
        "listen": "tcp:0:interface=127.0.0.1",
        "certificate": str(p.folder / "server.pem"),
        "private_key": str(p.folder / "server.key"),
        "client_ca": str(p.folder / "ca.pem"),
    }
    values.update(overrides)
    return config.load(config.ServerConfig, None, values)


def start_server(testcase, settings: config.ServerConfig | None = None) -> MTLSService:
    """
    Start a daemon service listening on loopback; stop it when the test ends.
    """
    settings = settings or server_config()
    service = MTLSService(settings, load_server_material(settings), reactor)
    service.privilegedStartService()
    service.startService()

    def stop():
        for protocol in list(service.tlsFactory.protocols):
            protocol.transport.abortConnection()
        return service.stopService()

    testcase.addCleanup(stop)
    return service


def port_of(service: MTLSService) -> int:
    return service.port.getHost().port


def client_config(service: MTLSService, cert: Path | None = None, key: Path | None = None, **overrides: str) -> config.ClientConfig:
    """
    Return a [client] configuration that talks to C{service} as the good client.
    """
    p = pki()
    values = {
        "connect": f"127.0.0.1:{port_of(service)}",
        "server_name": "localhost",
        "certificate": str(cert or p.folder / "client.pem"),
        "private_key": str(key or p.folder / "client.key"),
        "ca": str(p.folder / "ca.pem"),
        "timeout": "5",
    }
    values.update(overrides)
    return config.load(config.ClientConfig, None, values)


@dataclass
class Outcome:
    """
    What the client printed, and its failure if it failed.
    """

    output: bytes
    failure: ClientFailed | None

    @property
    def reason(self) -> str:
        return self.failure.explanation.text if self.failure else ""


async def talk(settings: config.ClientConfig, message: bytes | None = b"hello") -> Outcome:
    """
    Run the real client once; return what it printed or why it failed.
    """
    output = io.BytesIO()
    try:
        await run(reactor, settings, load_client_material(settings), message, output)
    except ClientFailed as failure:
        return Outcome(output.getvalue(), failure)
    return Outcome(output.getvalue(), None)


class LogEvents:
    """
    Collects the daemon's log events (those with an C{event} field) during a test.
    """

    def __init__(self, testcase) -> None:
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self)
        testcase.addCleanup(globalLogPublisher.removeObserver, self)

    def __call__(self, event: dict) -> None:
        if "event" in event:
            self.events.append(event)

    def named(self, name: str) -> list[dict]:
        return [e for e in self.events if e["event"] == name]

    async def first(self, name: str, timeout: float = 5.0) -> dict:
        """
        Wait for the first event called C{name}.
        """
        await eventually(lambda: self.named(name), timeout)
        return self.named(name)[0]


async def eventually(condition, timeout: float = 5.0, step: float = 0.01):
    """
    Wait until C{condition()} is true, at most C{timeout} seconds.
    """
    for _ in range(int(timeout / step)):
        value = condition()
        if value:
            return value
        await task.deferLater(reactor, step, lambda: None)
    raise AssertionError(f"condition not met within {timeout} s")


def make_folder(testcase) -> Path:
    folder = Path(testcase.mktemp())
    folder.mkdir(parents=True)
    return folder


def inline(f):
    """
    Run an C{async def} test method as a Deferred for trial.
    """

    def wrapper(*args, **kwargs):
        return defer.ensureDeferred(f(*args, **kwargs))

    wrapper.__name__ = f.__name__
    wrapper.__doc__ = f.__doc__
    return wrapper



# --- relaying: plain backends on loopback and a half-closing TLS client --------


def listen_plain(testcase, factory, description: str = "tcp:0:interface=127.0.0.1"):
    """
    Listen with C{factory} on a plain loopback endpoint; return its address.
    """
    from twisted.internet import endpoints

    port = []

    def listening(p):
        port.append(p)
        testcase.addCleanup(p.stopListening)

    endpoints.serverFromString(reactor, description).listen(factory).addCallback(listening)
    return port[0].getHost()


def free_port(testcase) -> int:
    """
    Return a loopback TCP port nothing listens on (it was just closed).
    """
    from twisted.internet.protocol import Factory

    port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
    number = port.getHost().port
    port.stopListening()
    return number


@implementer(IHalfCloseableProtocol)
class EchoBackend(Protocol):
    """
    A plain echo server: echoes every byte, and ends its output once its input ends.
    """

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def readConnectionLost(self) -> None:
        self.transport.loseWriteConnection()

    def writeConnectionLost(self) -> None:
        self.transport.loseConnection()


@dataclass
class Exchange:
    """
    What a client received over one mutual-TLS connection, and how it ended.
    """

    received: bytes
    reason: str
    serverEnded: bool


@implementer(IHandshakeListener, IHalfCloseableProtocol)
class ExchangeClient(Protocol):
    """
    Sends C{data} (from a push producer, in big chunks) once the handshake is
    done, then ends its output if C{endOutput}; collects everything received.
    """

    serverEnded = False

    def __init__(self, data: bytes | list[bytes], endOutput: bool, done: defer.Deferred) -> None:
        self.chunks = [data] if isinstance(data, bytes) else list(data)
        self.endOutput = endOutput
        self.done = done
        self.received: list[bytes] = []
        self.paused = False

    def handshakeCompleted(self) -> None:
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while self.chunks and not self.paused:
            self.transport.write(self.chunks.pop(0))
        if not self.chunks and self.transport is not None:
            self.transport.unregisterProducer()
            self.chunks = None
            if self.endOutput:
                self.transport.loseWriteConnection()

    def stopProducing(self) -> None:
        self.chunks = []

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def readConnectionLost(self) -> None:
        self.serverEnded = True
        if self.chunks is None and self.endOutput:
            return
        if self.chunks is None:
            self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass

    def connectionLost(self, reason) -> None:
        from twisted_mtls.reasons import describe_tls_failure

        self.done.callback(
            Exchange(b"".join(self.received), describe_tls_failure(reason.value, "server").text, self.serverEnded)
        )


async def exchange(
    settings: config.ClientConfig, data: bytes | list[bytes], endOutput: bool = True, protocol=None
) -> Exchange:
    """
    Connect as the client of C{settings}, send C{data}, end our output (if
    C{endOutput}) and return all that came back once the connection closed.
    """
    from twisted.internet import endpoints
    from twisted.internet.protocol import Factory

    from twisted_mtls.halfclose import TLSClientEndpoint
    from twisted_mtls.tls import ClientTLSCreator

    host, port = settings.connect
    done: defer.Deferred = defer.Deferred()
    endpoint = TLSClientEndpoint(
        ClientTLSCreator(load_client_material(settings), settings.server_name or host),
        endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=5),
    )
    made = protocol or (lambda: ExchangeClient(data, endOutput, done))
    client = await endpoint.connect(Factory.forProtocol(made))
    timer = reactor.callLater(60, client.transport.abortConnection)
    try:
        return await (done if protocol is None else client.done)
    finally:
        if timer.active():
            timer.cancel()


@implementer(IHalfCloseableProtocol)
class Collector(Protocol):
    """
    Keeps every byte it receives; closes once the peer's output has ended.
    """

    received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def readConnectionLost(self) -> None:
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        pass
