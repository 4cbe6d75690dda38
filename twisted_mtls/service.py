"""
The daemon as a Twisted service: a TLS listener that requires client certificates.
"""

from __future__ import annotations

import os
import sys

from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.logger import Logger

from .config import ServerConfig
from .acceptguard import guard_accepts
from .halfclose import HalfCloseTLSFactory
from .material import ServerMaterial
from .policy import Policy, log_open_policy
from .proxied import ProxiedFactory
from .revocation import Revocations
from .shutdown import drain
from .services import factory_for
from .tls import ServerTLSCreator, server_context
from .workers import adopt_listener, read_ticket_key, worker_number

log = Logger(namespace="twisted_mtls")


class LimitedTLSFactory(HalfCloseTLSFactory):
    """
    Wraps each accepted connection in TLS, unless C{max_connections} are
    open: then the socket is closed at once, before any TLS state exists.
    """

    def buildProtocol(self, addr):
        if self.wrappedFactory.full():
            self.wrappedFactory.refused(addr)
            return None
        return super().buildProtocol(addr)


class MTLSService(Service):
    """
    Listens on C{config.listen} and serves each verified client.

    It listens in L{privilegedStartService}, before twistd drops privileges,
    and a listener that cannot be opened ends the process with one line on
    stderr and exit status 1.
    """

    name = "mtls"
    port = None
    proxyFactory = None
    acceptGuard = None

    def __init__(self, config: ServerConfig, material: ServerMaterial, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.config = config
        self.material = material
        # Without a key file, one random ticket key for this start that every
        # context (reloads) shares; a worker gets its supervisor's.
        self.ticketKey = read_ticket_key() if worker_number() is not None else os.urandom(80)
        self.creator = ServerTLSCreator(self.context_for(material))
        self.factory = factory_for(config, reactor)
        self.tlsFactory = LimitedTLSFactory(self.creator, False, self.factory)
        if config.proxy_protocol != "off":
            self.proxyFactory = ProxiedFactory(
                self.tlsFactory, config.proxy_protocol, config.handshake_timeout,
                config.proxy_from, reactor,
            )  # fmt: skip

    def context_for(self, material: ServerMaterial, settings: ServerConfig | None = None):
        """
        Return the server TLS context for C{material} under C{settings} (by
        default this service's configuration), logging a warning about an
        open policy or a stale CRL.
        """
        settings = settings or self.config
        policy = Policy.from_config(settings)
        log_open_policy(policy, material.client_cas)
        Revocations(material.crls, settings.crl_stale).log_stale()
        return server_context(
            material,
            min_version=settings.min_tls_version,
            verify_depth=settings.verify_depth,
            policy=policy,
            crl_stale=settings.crl_stale,
            session_tickets=settings.session_tickets,
            ticket_key=self._ticketKeyFor(material, settings),
        )

    def _ticketKeyFor(self, material: ServerMaterial, settings: ServerConfig) -> bytes | None:
        if material.ticket_key is not None or settings.workers > 1:
            return material.ticket_key or self.ticketKey  # warns if it cannot be set
        from .tickets import ticket_keys

        return self.ticketKey if ticket_keys().available else None

    def serve(self, settings: ServerConfig, material: ServerMaterial, context) -> None:
        """
        Use C{settings}, C{material} and C{context} for new connections from now on.
        """
        self.config = self.factory.config = settings
        self.material = material
        self.creator.context = context
        if self.proxyFactory is not None:
            self.proxyFactory.timeout = settings.handshake_timeout

    def listen(self):
        """
        Start listening; return a Deferred that fires with the listening port.
        """
        if worker_number() is not None:  # the supervisor's socket
            return defer.maybeDeferred(
                adopt_listener, self.reactor, self.proxyFactory or self.tlsFactory
            )
        endpoint = endpoints.serverFromString(self.reactor, self.config.listen)
        return endpoint.listen(self.proxyFactory or self.tlsFactory)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listenError = None
        self.listen().addCallbacks(self._listening, self._cannotListen)
        if self._listenError is not None:
            sys.stderr.write(
                f"mtls: cannot listen on {self.config.listen}: {self._listenError}\n"
            )
            raise SystemExit(1)

    def _cannotListen(self, failure) -> None:
        if not self.reactor.running:  # still starting up: fail the start
            self._listenError = failure.getErrorMessage()
            return
        log.critical(
            "cannot listen on {listen}: {reason}",
            event="listen_failed",
            listen=self.config.listen,
            reason=failure.getErrorMessage(),
        )
        self.reactor.stop()

    def _listening(self, port) -> None:
        self.port = port
        self.acceptGuard = guard_accepts(port, self.reactor)
        host = port.getHost()
        log.info(
            "listening on {address} (TLS >= {min_tls_version}, client certificate required)",
            event="listening",
            address=f"{getattr(host, 'host', getattr(host, 'name', host))}:{getattr(host, 'port', '')}".rstrip(":"),
            min_tls_version=self.config.min_tls_version,
        )

    def stopService(self):
        """
        Stop accepting at once, then close the open connections gracefully
        within C{shutdown_timeout} seconds; the Deferred fires when done.
        """
        super().stopService()
        stopped = None
        if self.port is not None:
            port, self.port = self.port, None
            stopped = port.stopListening()
        if self.proxyFactory is not None:
            self.proxyFactory.abortWaiting()
        drained = defer.ensureDeferred(
            drain(self.factory, self.reactor, self.config.shutdown_timeout)
        )
        return defer.gatherResults([defer.maybeDeferred(lambda: stopped), drained])
