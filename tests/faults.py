"""
What the robustness tests share: counting our open file descriptors,
plain sockets that misbehave, and clients that send a PROXY header first.
"""

from __future__ import annotations

import os
import socket
import struct

from twisted.internet import endpoints, reactor, task
from twisted.internet.protocol import Factory
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from twisted_mtls.tls import ClientTLSCreator
from twisted_mtls.material import load_client_material

from .support import Session, eventually, port_of


def open_fds() -> int:
    """
    Return how many file descriptors this process has open.
    """
    return len(os.listdir("/proc/self/fd"))


async def back_to(baseline: int, timeout: float = 5.0) -> int:
    """
    Wait until this process has no more than C{baseline} descriptors open; return the count.
    """
    try:
        await eventually(lambda: open_fds() <= baseline, timeout)
    except AssertionError:
        raise AssertionError(f"{open_fds()} descriptors open, {baseline} before: {describe_fds()}") from None
    return open_fds()


def describe_fds() -> str:
    """
    Return what this process's descriptors point to.
    """
    names = []
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            names.append(f"{fd}->{os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return ", ".join(names)


def plain_socket(service) -> socket.socket:
    """
    Return a blocking TCP socket connected to C{service}, with a 5 s timeout.
    """
    return socket.create_connection(("127.0.0.1", port_of(service)), timeout=5)


def reset(sock: socket.socket) -> None:
    """
    Close C{sock} abortively: the peer gets a TCP RST, not a FIN.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def read_until_closed(sock: socket.socket, most: int = 1 << 20) -> bytes:
    """
    Read from non-blocking C{sock} until the peer closes it (at most C{most} bytes, 5 s).
    """
    sock.setblocking(False)
    received = bytearray()

    def closed() -> bool:
        while True:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return False
            except ConnectionResetError:
                return True
            if not data or len(received) >= most:
                return True
            received.extend(data)

    await eventually(closed)
    sock.close()
    return bytes(received)


class _Prefixed(ProtocolWrapper):
    def makeConnection(self, transport) -> None:
        transport.write(self.factory.prefix)
        super().makeConnection(transport)


class _PrefixFactory(WrappingFactory):
    protocol = _Prefixed

    def __init__(self, wrapped, prefix: bytes) -> None:
        super().__init__(wrapped)
        self.prefix = prefix


class PrefixEndpoint:
    """
    A client endpoint that writes C{prefix} (a PROXY header) before anything
    the connected protocol writes.
    """

    def __init__(self, wrapped, prefix: bytes) -> None:
        self.wrapped = wrapped
        self.prefix = prefix

    def connect(self, factory):
        """
        Connect; fire with the protocol C{factory} built.
        """
        connecting = self.wrapped.connect(_PrefixFactory(factory, self.prefix))
        return connecting.addCallback(lambda wrapper: wrapper.wrappedProtocol)


async def session_through(testcase, settings, port: int, prefix: bytes = b"") -> Session:
    """
    Connect to loopback C{port} as the client of C{settings}, sending
    C{prefix} before TLS, and complete the handshake; aborted when the test ends.
    """
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
    if prefix:
        endpoint = PrefixEndpoint(endpoint, prefix)
    endpoint = endpoints.wrapClientTLS(
        ClientTLSCreator(load_client_material(settings), settings.server_name or "localhost"),
        endpoint,
    )
    session = await endpoint.connect(Factory.forProtocol(Session))
    testcase.addCleanup(lambda: session.lost.called or session.transport.abortConnection())
    return await session.handshook


async def pause(seconds: float = 0.0) -> None:
    """
    Let the reactor run for C{seconds}.
    """
    await task.deferLater(reactor, seconds, lambda: None)
