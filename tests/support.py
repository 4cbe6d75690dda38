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
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
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



@implementer(IHandshakeListener)
class Session(Protocol):
    """
    A client connection kept open for a test: it collects every echoed
    byte; C{handshook} and C{lost} fire when the handshake completes and
    when the connection ends.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.handshook: defer.Deferred = defer.Deferred()
        self.lost: defer.Deferred = defer.Deferred()

    def handshakeCompleted(self) -> None:
        self.handshook.callback(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        if not self.handshook.called:
            self.handshook.errback(reason)
        self.lost.callback(reason.value)

    def served_certificate(self):
        """
        Return the certificate the server presented (cryptography object).
        """
        return self.transport.getHandle().get_peer_certificate(as_cryptography=True)

    async def echo(self, line: bytes) -> bytes:
        """
        Send C{line} (newline added) and wait until everything sent came back.
        """
        expected = len(self.received) + len(line) + 1
        self.transport.write(line + b"\n")
        await eventually(lambda: len(self.received) >= expected)
        return bytes(self.received[-len(line) - 1 :])


async def open_session(testcase, settings: config.ClientConfig) -> Session:
    """
    Connect to the server as C{settings} say and complete the handshake;
    the connection is aborted when the test ends.
    """
    from twisted.internet import endpoints

    from twisted_mtls.tls import ClientTLSCreator

    host, port = settings.connect
    endpoint = endpoints.wrapClientTLS(
        ClientTLSCreator(load_client_material(settings), settings.server_name or host),
        endpoints.TCP4ClientEndpoint(reactor, host, port),
    )
    session = await endpoint.connect(Factory.forProtocol(Session))
    testcase.addCleanup(lambda: session.lost.called or session.transport.abortConnection())
    return await session.handshook


def pending_output(protocol) -> int:
    """
    Return how many bytes the server holds for C{protocol}'s peer: in the TLS
    transport's small-write buffer and send buffer, and in the TCP
    transport's write buffer.
    """
    tls = protocol.transport
    tcp = tls.transport
    aggregator = getattr(tls, "_aggregator", None)
    aggregated = sum(len(b) for b in getattr(aggregator, "_buffer", ()))
    return (
        aggregated
        + sum(len(b) for b in tls._appSendBuffer)
        + len(tcp.dataBuffer) - tcp.offset
        + tcp._tempDataLen
    )


def served(service: MTLSService) -> list:
    """
    Return the server-side protocols of C{service}'s open connections.
    """
    return list(service.factory.active)


def stranger_config(testcase, service: MTLSService) -> config.ClientConfig:
    """
    Return a [client] configuration presenting a certificate from a CA the server does not trust.
    """
    stranger = certbuilder.make_client(certbuilder.make_ca("Other CA"), "mallory")
    folder = make_folder(testcase)
    cert, key = folder / "mallory.pem", folder / "mallory.key"
    certbuilder.write_pem(cert, stranger.pem())
    certbuilder.write_private_key(key, stranger.key)
    return client_config(service, cert, key)


async def flood_until_paused(session: Session, server, block: bytes, most: int = 1000) -> int:
    """
    Stop reading on C{session}'s side and send C{block} (at most C{most}
    times) until the server stops reading from it; return the bytes sent.
    """
    session.transport.pauseProducing()
    sent = 0
    for _ in range(most):
        if server.readingPaused:
            break
        session.transport.write(block)
        sent += len(block)
        await task.deferLater(reactor, 0, lambda: None)
    return sent
