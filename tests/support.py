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

from OpenSSL import SSL
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer

from twisted_mtls import certbuilder, config
from twisted_mtls.certbuilder import Issued
from twisted_mtls.client import ClientFailed, run
from twisted_mtls.material import ClientMaterial, ServerMaterial, load_client_material, load_server_material
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
        return write_issued(self.folder, name, issued)


def write_issued(folder: Path, name: str, issued: Issued) -> tuple[Path, Path]:
    """
    Write C{issued} as FOLDER/NAME.pem and FOLDER/NAME.key; return both paths.
    """
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
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


def start_server(
    testcase, settings: config.ServerConfig | None = None, material: ServerMaterial | None = None
) -> MTLSService:
    """
    Start a daemon service listening on loopback (with C{material} instead of
    what C{settings} name, when given); stop it when the test ends.
    """
    settings = settings or server_config()
    material = material or load_server_material(settings)
    service = MTLSService(settings, material, reactor)
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


def client_config(service: MTLSService | None, cert: Path | None = None, key: Path | None = None, **overrides: str) -> config.ClientConfig:
    """
    Return a [client] configuration that talks to C{service} as the good client.
    """
    p = pki()
    values = {
        "connect": f"127.0.0.1:{port_of(service) if service else 1}",
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


async def talk(
    settings: config.ClientConfig,
    message: bytes | None = b"hello",
    material: ClientMaterial | None = None,
) -> Outcome:
    """
    Run the real client once (presenting C{material} instead of what
    C{settings} name, when given); return what it printed or why it failed.
    """
    output = io.BytesIO()
    material = material or load_client_material(settings)
    try:
        await run(reactor, settings, material, message, output)
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



# --- a raw TLS client: any certificate, any versions, any bytes ---------------


def raw_context(
    issued: Issued | None = None,
    *,
    min_version: int = SSL.TLS1_2_VERSION,
    max_version: int | None = None,
    ciphers: bytes | None = None,
) -> SSL.Context:
    """
    Return a client context presenting C{issued} (or no certificate) that
    verifies nothing, limited to the given TLS versions and ciphers.
    """
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(min_version)
    if max_version is not None:
        context.set_max_proto_version(max_version)
    if ciphers is not None:
        context.set_cipher_list(ciphers)
    if issued is not None:
        context.use_certificate(issued.certificate)
        context.use_privatekey(issued.key)
    context.set_verify(SSL.VERIFY_NONE)
    return context


@implementer(IOpenSSLClientConnectionCreator)
class RawCreator:
    """
    Makes client connections from one fixed context.
    """

    def __init__(self, context: SSL.Context) -> None:
        self.context = context

    def clientConnectionForTLS(self, tlsProtocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)


@dataclass
class RawOutcome:
    """
    What a raw client saw: whether its handshake completed, what came back,
    and why the connection ended.
    """

    handshook: bool
    received: bytes
    reason: Failure
    tls_version: str | None = None

    @property
    def clean(self) -> bool:
        return self.reason.check(ConnectionDone) is not None


@implementer(IHandshakeListener)
class RawClient(Protocol):
    """
    After the handshake, writes C{chunks} one C{write} each; closes once
    C{expect} bytes came back (never, when L{None}).
    """

    handshook = False
    tls_version = None

    def __init__(self, chunks: list[bytes], expect: int | None) -> None:
        self.chunks = chunks
        self.expect = expect
        self.received = b""
        self.lost: defer.Deferred = defer.Deferred()

    def handshakeCompleted(self) -> None:
        self.handshook = True
        self.tls_version = self.transport.getHandle().get_protocol_version_name()
        for chunk in self.chunks:
            self.transport.write(chunk)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.expect is not None and len(self.received) >= self.expect:
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self.reason = reason
        self.lost.callback(None)


async def raw_talk(
    service: MTLSService,
    context: SSL.Context | None,
    chunks: list[bytes] = (),
    expect: int | None = None,
    timeout: float = 5.0,
) -> RawOutcome:
    """
    Connect to C{service} over TLS with C{context} (plain TCP when L{None}),
    send C{chunks} and return what happened once the connection ends.
    """
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port_of(service), timeout=timeout)
    if context is not None:
        endpoint = endpoints.wrapClientTLS(RawCreator(context), endpoint)
    client = RawClient(list(chunks), expect)
    await endpoint.connect(Factory.forProtocol(lambda: client))
    await client.lost.addTimeout(timeout, reactor)
    return RawOutcome(client.handshook, client.received, client.reason, client.tls_version)


class _Greeter(Protocol):
    def connectionMade(self) -> None:
        if self.factory.greeting:
            self.transport.write(self.factory.greeting)


def start_plain_server(testcase, greeting: bytes = b"") -> int:
    """
    Listen on loopback with a plain TCP server that sends C{greeting} (or
    nothing) and never speaks TLS; return its port.
    """
    factory = Factory.forProtocol(_Greeter)
    factory.greeting = greeting
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return port.getHost().port
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
