"""
Hot reload of the configuration file and the material it names: on SIGHUP,
and every C{reload_interval} seconds when the files' content changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
from typing import Callable

from OpenSSL import SSL
from twisted.application.service import Service
from twisted.internet import task
from twisted.logger import Logger

from . import config
from .errors import ConfigError
from .material import load_server_material

log = Logger(namespace="twisted_mtls")


def content_digest(paths) -> bytes:
    """
    Return a digest of the content of the files at C{paths}, following
    symbolic links, so that atomic renames and symlink swaps change it; a
    file that cannot be read counts as its error.
    """
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.fsencode(path) + b"\0")
        try:
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
        except OSError as e:
            digest.update(f"unreadable: {e.strerror}".encode())
    return digest.digest()


# Keys a running daemon cannot change: they take effect after a restart.
RESTART_KEYS = (
    "listen",
    "service",
    "target",
    "target_proxy_protocol",
    "unsafe_target",
    "proxy_protocol",
    "proxy_from",
    "workers",
    "reload_interval",
)


class MaterialWatcher(Service):
    """
    Reloads the configuration (policy, CRLs, limits), the certificate, key
    and CA files of an L{MTLSService} and swaps its TLS context, so that new
    handshakes use the new material while established connections are
    untouched. A reload that fails keeps the old configuration and
    material, logs why and is counted.
    """

    name = "reload"
    ok = 0
    failed = 0
    lastSuccess: float | None = None
    _loop = None
    _previousHandler = None

    def __init__(
        self,
        service,
        handleSignals: bool = True,
        loadConfig: Callable[[], config.ServerConfig] | None = None,
    ) -> None:
        self.service = service
        self.loadConfig = loadConfig
        self.clock = service.reactor
        self.handleSignals = handleSignals
        # The configuration whose files are watched: the last one read, even
        # when its material failed to load, so that a file it names but
        # that is not there yet is watched.
        self.watched = service.config
        self.seen = self.digest()
        self.lastSuccess = self.clock.seconds()  # the service loaded it

    def digest(self) -> bytes:
        """
        Return the digest of the configuration file and the files it names.
        """
        settings = self.watched
        own = [settings.source.file] if self.loadConfig and settings.source.file else []
        return content_digest(own + config.file_paths(settings))

    def startService(self) -> None:
        super().startService()
        if self.handleSignals and hasattr(signal, "SIGHUP"):
            self._previousHandler = signal.signal(signal.SIGHUP, self._onSignal)
        interval = self.service.config.reload_interval
        if interval:
            self._loop = task.LoopingCall(self.poll)
            self._loop.clock = self.clock
            self._loop.start(interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._previousHandler is not None:
            signal.signal(signal.SIGHUP, self._previousHandler)
            self._previousHandler = None

    def _onSignal(self, signum, frame) -> None:
        self.clock.callFromThread(self.reload, "SIGHUP")

    def poll(self) -> bool | None:
        """
        Reload if the files' content changed since last seen; return the
        reload's outcome, or L{None} when nothing changed.
        """
        digest = self.digest()
        if digest == self.seen:
            return None
        return self.reload("files changed")

    def reload(self, trigger: str) -> bool:
        """
        Load the material again and serve it to new connections; return
        whether it could be loaded.
        """
        self.seen = self.digest()
        try:
            settings = self.settings()
            # What is loaded next is what this digest saw (or newer).
            self.watched = settings
            self.seen = self.digest()
            material = load_server_material(settings)
            context = self.service.context_for(material, settings)
        except (ConfigError, SSL.Error, ValueError) as e:
            self.failed += 1
            log.error(
                "reload ({trigger}) failed, still serving the previous certificate: {reason}",
                event="reload_failed",
                trigger=trigger,
                reason=str(e),
            )
            return False
        self.service.serve(settings, material, context)
        self.ok += 1
        self.lastSuccess = self.clock.seconds()
        leaf = material.chain[0]
        log.info(
            "reloaded ({trigger}): serving {subject}, valid until {not_after}; "
            "{client_cas} client CAs",
            event="reloaded",
            trigger=trigger,
            subject=leaf.subject.rfc4514_string(),
            not_after=leaf.not_valid_after_utc.isoformat(),
            client_cas=len(material.client_cas),
        )
        return True

    def settings(self) -> config.ServerConfig:
        """
        Return the configuration to serve next: the file read again, with
        the keys that need a restart kept as they are (and a warning).
        """
        current = self.service.config
        if self.loadConfig is None:
            return current
        fresh = self.loadConfig()
        for key in RESTART_KEYS:
            if getattr(fresh, key) != getattr(current, key):
                log.warn(
                    "{key} changed in the configuration: it takes effect after a restart",
                    event="reload_needs_restart",
                    key=key,
                )
        return dataclasses.replace(fresh, **{k: getattr(current, k) for k in RESTART_KEYS})
