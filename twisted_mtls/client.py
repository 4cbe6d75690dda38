"""
C{python -m twisted_mtls.client}: talk to an mTLS line-echo server.

It presents our certificate, verifies the server's chain and name, sends
one C{--message} or every line of stdin, prints the echoes, and explains any
failure in one sentence on stderr with an exit status per kind of failure
(see L{twisted_mtls.reasons.Kind}).
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from typing import BinaryIO

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IHandshakeListener
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from . import config
from .errors import ConfigError
from .reasons import (
    Explanation,
    Kind,
    describe_connect_failure,
    describe_server_failure,
    describe_tls_failure,
)
from .tls import IPeerRejectionListener


class ClientFailed(Exception):
    """
    The conversation with the server failed; carries the L{Explanation}.
    """

    def __init__(self, explanation: Explanation) -> None:
        super().__init__(explanation.text)
        self.explanation = explanation


@implementer(IHandshakeListener, IPeerRejectionListener)
class EchoClient(Protocol):
    """
    Sends lines once the handshake is done and writes every echoed byte to
    C{output}; C{done} fires once all that was sent has come back, or fails
    with L{ClientFailed}.
    """

    handshook = False
    finished = False
    inputEnded = False
    rejection: str | None = None
    failure: Explanation | None = None
    sent = 0
    received = 0
    lastByte = b"\n"
    # What came back that is not the echo of what we sent (None: all of it was).
    answer: bytearray | None = None

    def __init__(self, done: defer.Deferred, output: BinaryIO, message: bytes | None, reactor) -> None:
        self.done = done
        self.output = output
        self.message = message
        self.reactor = reactor
        self.unechoed = bytearray()  # sent, not yet seen back

    def peerRejected(self, reason: str) -> None:
        self.rejection = self.rejection or reason

    def handshakeCompleted(self) -> None:
        self.handshook = True
        if self.message is not None:
            self.send(self.message + b"\n")
            self.endInput()
        else:
            from twisted.internet.stdio import StandardIO

            # StandardIO makes its stdout non-blocking; give it /dev/null so
            # that ours stays as it is (we write the echoes ourselves).
            self.devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            stdin = StandardIO(_StdinToServer(self), stdout=self.devnull, reactor=self.reactor)
            self.transport.registerProducer(stdin, True)

    def send(self, data: bytes) -> None:
        """
        Send C{data} to the server; it is expected to come back.
        """
        if data:
            self.sent += len(data)
            self.lastByte = data[-1:]
            if self.answer is None:
                self.unechoed += data
            self.transport.write(data)

    def endInput(self) -> None:
        """
        No more input: finish the last line, then wait for every echo.
        """
        if self.lastByte != b"\n":
            self.send(b"\n")
        self.inputEnded = True
        self._finishIfEchoed()

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        write_all(self.output, data)
        self._compare(data)
        self._finishIfEchoed()

    def _compare(self, data: bytes) -> None:
        """
        Match C{data} against what we sent; keep the first bytes of an
        answer that is not the echo (an echo server's C{ERROR ...} line, or
        another service's reply).
        """
        if self.answer is not None:
            if len(self.answer) < 4096:
                self.answer += data[: 4096 - len(self.answer)]
            return
        if self.unechoed.startswith(data):
            del self.unechoed[: len(data)]
            return
        echoed = len(os.path.commonprefix([bytes(self.unechoed), data]))
        self.answer = bytearray(data[echoed : echoed + 4096])
        self.unechoed.clear()

    def serverError(self) -> str | None:
        """
        Return the error line the echo service answered instead of an echo, if it did.
        """
        if self.answer is None:
            return None
        line = bytes(self.answer).split(b"\n", 1)[0]
        if not line.startswith(b"ERROR "):
            return None
        return line.decode("utf-8", "replace")

    def _finishIfEchoed(self) -> None:
        if self.inputEnded and self.received >= self.sent and not self.finished:
            self.finished = True
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        if getattr(self, "devnull", None) is not None:
            os.close(self.devnull)
            self.devnull = None
        explanation = describe_tls_failure(reason.value, "server")
        # A TLS 1.3 server refuses our certificate after our side of the
        # handshake is done: its alert counts even when all was echoed
        # (with empty input, nothing was).
        error = self.serverError()
        if self.finished and explanation.kind is not Kind.REFUSED_BY_PEER and not error:
            self.done.callback(0)
            return
        if error:
            explanation = Explanation(Kind.PROTOCOL, f"the server answered {error!r} instead of the echo")
        elif self.failure is not None:
            explanation = self.failure
        else:
            explanation = describe_server_failure(self.rejection, reason.value)
        if self.handshook and explanation.kind is Kind.PROTOCOL and not self.rejection and not error:
            explanation = Explanation(
                Kind.PROTOCOL,
                f"{explanation.text} after echoing {self.received} of {self.sent} bytes",
            )
        self.done.errback(ClientFailed(explanation))


def write_all(output: BinaryIO, data: bytes) -> None:
    """
    Write all of C{data} to C{output} now, waiting while it is a full pipe or
    terminal, even one left non-blocking (a terminal shares that flag
    between stdin and stdout).
    """
    output.flush()
    try:
        fd = output.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. BytesIO
        output.write(data)
        return
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select.select([], [fd], [])


class _StdinToServer(Protocol):
    def __init__(self, client: EchoClient) -> None:
        self.client = client

    def dataReceived(self, data: bytes) -> None:
        self.client.send(data)

    def connectionLost(self, reason) -> None:
        self.client.transport.unregisterProducer()
        self.client.endInput()


def server_endpoint(reactor, settings: config.ClientConfig, material, wrap=endpoints.wrapClientTLS):
    """
    Return a client endpoint to the server C{settings} name, over TLS (made
    by C{wrap}) that presents C{material}'s certificate and verifies the
    server's chain and name.
    """
    from .tls import ClientTLSCreator

    host, port = settings.connect
    return wrap(
        ClientTLSCreator(material, settings.server_name or host),
        endpoints.HostnameEndpoint(reactor, host, port, timeout=settings.timeout),
    )


async def run(reactor, settings: config.ClientConfig, material, message: bytes | None, output: BinaryIO) -> int:
    """
    Connect, exchange lines and return 0; raise L{ClientFailed} otherwise.
    """
    host, port = settings.connect
    where = f"{host}:{port}"
    done: defer.Deferred = defer.Deferred()
    endpoint = server_endpoint(reactor, settings, material)
    factory = Factory.forProtocol(lambda: EchoClient(done, output, message, reactor))
    try:
        protocol = await endpoint.connect(factory)
    except Exception as e:
        raise ClientFailed(describe_connect_failure(e, where))
    timer = reactor.callLater(settings.timeout, _handshakeTimeout, protocol, where, settings.timeout)
    try:
        return await done
    finally:
        if timer.active():
            timer.cancel()


def _handshakeTimeout(protocol: EchoClient, where: str, timeout: float) -> None:
    if not protocol.handshook:
        protocol.failure = Explanation(
            Kind.CONNECT,
            f"cannot connect to {where}: the TLS handshake did not complete within {timeout:g} s",
        )
        protocol.transport.abortConnection()


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m twisted_mtls.client",
        description="Send lines to an mTLS echo server over a verified mutual-TLS connection.",
        epilog="Exit status: 0 ok; 2 bad local files or options; 3 cannot connect; "
        "4 the server's certificate is not acceptable; 5 the server refused our "
        "certificate or handshake; 6 the TLS conversation broke off.",
    )
    parser.add_argument("--config", "-c", help="INI file with a [client] section")
    parser.add_argument("--connect", help="HOST:PORT of the server")
    parser.add_argument("--server-name", help="name or IP the server certificate must be for")
    parser.add_argument("--cert", "--certificate", dest="certificate", help="our certificate (PEM)")
    parser.add_argument("--key", "--private-key", dest="private_key", help="our private key (PEM)")
    parser.add_argument("--ca", help="CA bundle that issued the server certificate (PEM)")
    parser.add_argument("--timeout", help="seconds allowed to connect and handshake")
    parser.add_argument("--message", "-m", help="send this one line, print its echo and exit")
    parser.add_argument(
        "--listen",
        help="tunnel mode: accept plain connections on this Twisted endpoint "
        "(e.g. tcp:8080:interface=127.0.0.1) and carry each over mTLS to the server",
    )
    parser.add_argument(
        "--unsafe-listen",
        action="store_true",
        help="allow --listen on an address other than loopback or a unix socket",
    )
    return parser.parse_args(argv)


def main(argv=None, output: BinaryIO | None = None) -> int:
    """
    Run the client; return its exit status.
    """
    from twisted.internet import reactor

    from .material import load_client_material

    args = parse_args(argv)
    overrides = {f.name: getattr(args, f.name, None) for f in config.settings(config.ClientConfig)}
    try:
        settings = config.load(config.ClientConfig, args.config, overrides)
        material = load_client_material(settings)
    except ConfigError as e:
        sys.stderr.write(f"mtls-client: {e}\n")
        return Kind.LOCAL
    if args.listen is not None:
        from .tunnel import serve

        return serve(reactor, args, settings, material)
    message = args.message.encode("utf-8", "surrogateescape") if args.message is not None else None
    outcome: list = []

    def finish(result):
        outcome.append(result)
        reactor.stop()

    def start():
        defer.ensureDeferred(
            run(reactor, settings, material, message, output or sys.stdout.buffer)
        ).addBoth(finish)

    reactor.callWhenRunning(start)
    reactor.run()
    result = outcome[0] if outcome else 1
    if isinstance(result, int):
        return result
    if result.check(ClientFailed):
        sys.stderr.write(f"mtls-client: {result.value.explanation.text}\n")
        return int(result.value.explanation.kind)
    sys.stderr.write(f"mtls-client: unexpected error: {result.getErrorMessage()}\n")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
