"""
The C{service} setting: what a verified client is served.

  - C{echo}: the line echo (L{twisted_mtls.protocol.LineEcho});
  - C{forward}: a relay to C{target} (L{twisted_mtls.forward});
  - C{python:package.module:attribute}: your own protocols.

The contract for C{python:} services:

  - C{package.module} is imported from the Python path, then from the
    current folder (appended to C{sys.path}, as gunicorn does).
  - C{attribute} (dots allowed, e.g. C{module:Class.method}) is a callable
    taking no arguments and returning an L{IProtocolFactory}; a
    L{twisted.internet.protocol.Factory} subclass qualifies. It is called
    once, when the daemon loads its configuration.
  - For each client, the factory's C{buildProtocol(address)} is called only
    once the TLS handshake has completed and the client certificate has been
    verified (returning L{None} closes the connection). The protocol's
    C{peerIdentity} attribute is the client's
    L{twisted_mtls.identity.PeerIdentity} before its C{connectionMade}; if it
    has a C{peerAuthenticated(identity)} method, that is called right after
    C{connectionMade}.
  - Its transport is the TLS connection: C{write}, C{loseConnection},
    C{registerProducer} and C{getPeer} work as usual. The daemon keeps its
    own timeouts and its C{connection_open}/C{connection_closed} log lines.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Callable

from twisted.internet.interfaces import IProtocolFactory

from .protocol import MTLSFactory, MTLSProtocol


def load_user_factory(spec: str) -> Callable[[], IProtocolFactory]:
    """
    Return the callable a C{python:package.module:attribute} service names;
    raise L{ValueError} saying why it cannot be used.
    """
    module_name, _, attribute = spec.partition("python:")[2].partition(":")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # like gunicorn: the current folder, after the rest
    try:
        found = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import {module_name!r}: {e}") from None
    for name in attribute.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise ValueError(f"{module_name!r} has no attribute {attribute!r}") from None
    if not callable(found):
        raise ValueError(
            f"{module_name}:{attribute} is not callable: expected a callable "
            "returning a protocol factory"
        )
    return found


class UserService(MTLSProtocol):
    """
    Serves a verified client with a protocol from the user's factory.
    """

    factory: UserServiceFactory
    served = None

    def peerAuthenticated(self, identity) -> None:
        served = self.factory.userFactory.buildProtocol(self.transport.getPeer())
        if served is None:
            self.closeBecause("the service refused the connection")
            return
        served.peerIdentity = identity
        self.served = served
        served.makeConnection(self.transport)
        hook = getattr(served, "peerAuthenticated", None)
        if callable(hook):
            hook(identity)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        self.bytesIn += len(data)
        if self.served is not None:
            self.served.dataReceived(data)

    def connectionLost(self, reason) -> None:
        if self.served is not None:
            self.served.connectionLost(reason)
        super().connectionLost(reason)


class UserServiceFactory(MTLSFactory):
    """
    Builds a L{UserService} for each client, around C{userFactory}.
    """

    protocol = UserService

    def __init__(self, config, clock, userFactory: IProtocolFactory) -> None:
        super().__init__(config, clock)
        self.userFactory = userFactory

    def startFactory(self) -> None:
        self.userFactory.doStart()

    def stopFactory(self) -> None:
        super().stopFactory()
        self.userFactory.doStop()


def factory_for(config, reactor) -> MTLSFactory:
    """
    Return the factory of the protocols C{config.service} names.
    """
    if config.service == "forward":
        from .forward import ForwardFactory

        return ForwardFactory(config, reactor)
    if config.service.startswith("python:"):
        userFactory = load_user_factory(config.service)()
        return UserServiceFactory(config, reactor, IProtocolFactory(userFactory))
    return MTLSFactory(config, reactor)
