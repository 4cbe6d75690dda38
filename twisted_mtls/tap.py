"""
C{twistd mtls}: options and service maker.
"""

from __future__ import annotations

import os
import sys

from twisted.application.service import MultiService
from twisted.python import usage

from . import config
from .errors import ConfigError

# sysexits.h EX_CONFIG: the configuration is not usable.
EXIT_CONFIG = 78


def _option_name(key: str) -> str:
    return key.replace("_", "-")


class Options(usage.Options):
    """
    C{twistd mtls --config FILE}; each option overrides the key of the same
    name in the file's C{[server]} section.
    """

    synopsis = "[options]"
    longdesc = (
        "A mutual-TLS daemon: a client must present a certificate issued by a "
        "CA in client_ca before anything is served. Options override the keys "
        "of the same name in the [server] section of --config; relative paths "
        "in the file are relative to the file's folder. Exits with status "
        f"{EXIT_CONFIG} after one line on stderr when the configuration is not usable."
    )
    optParameters = [
        ["config", "c", None, "INI configuration file (see etc/mtls.ini)."],
    ] + [
        [
            _option_name(f.name),
            None,
            None,
            f.metadata["help"]
            + (f" [default: {f.metadata['default']}]" if f.metadata["default"] else ""),
        ]
        for f in config.settings(config.ServerConfig)
    ]

    def postOptions(self) -> None:
        from .material import load_server_material

        self.overrides = overrides = {
            f.name: self[_option_name(f.name)] for f in config.settings(config.ServerConfig)
        }
        try:
            self.serverConfig = config.load(config.ServerConfig, self["config"], overrides)
            self.logConfig = config.load(config.LogConfig, self["config"])
            self.metricsConfig = config.load(config.MetricsConfig, self["config"])
            self.material = load_server_material(self.serverConfig)
        except ConfigError as e:
            sys.stderr.write(f"mtls: configuration error: {e}\n")
            raise SystemExit(EXIT_CONFIG)


class DaemonService(MultiService):
    """
    The whole daemon: the TLS listener, its material watcher and the
    metrics listener; under twistd it also installs the configured log
    observer on the application.
    """

    def __init__(self, observer=None) -> None:
        super().__init__()
        self.observer = observer

    def startService(self) -> None:
        from .sdnotify import notify
        from .workers import worker_number

        super().startService()
        if worker_number() is None:  # the process systemd started
            from twisted.internet import reactor

            # Once running, after SignalShutdown installed its handlers, so
            # that a stop right after READY=1 is already graceful.
            reactor.callWhenRunning(
                notify, f"READY=1\nSTATUS=serving, pid {os.getpid()}\nMAINPID={os.getpid()}"
            )

    def stopService(self):
        from .sdnotify import notify

        notify("STOPPING=1")
        return super().stopService()

    def setServiceParent(self, parent) -> None:
        if self.observer is not None and hasattr(parent, "setComponent"):
            from twisted.logger import ILogObserver

            parent.setComponent(ILogObserver, self.observer)
        super().setServiceParent(parent)


def makeService(options: Options):
    """
    Return the daemon's service for parsed C{options}.
    """
    from .logs import twistd_observer
    from .metrics import MetricsService
    from .reload import MaterialWatcher
    from .service import MTLSService
    from .shutdown import SignalShutdown
    from .workers import Supervisor, per_worker, worker_number

    twistd = getattr(options, "parent", None)
    daemon = DaemonService(
        twistd_observer(options.logConfig.format, twistd) if twistd is not None else None
    )
    number = worker_number()
    if options.serverConfig.workers > 1 and number is None:
        key = options.material.ticket_key or os.urandom(80)
        supervisor = Supervisor(options, key)
        supervisor.setServiceParent(daemon)
        SignalShutdown(supervisor.reactor).setServiceParent(daemon)
        return daemon
    service = MTLSService(options.serverConfig, options.material)
    service.setServiceParent(daemon)
    SignalShutdown(service.reactor).setServiceParent(daemon)
    watcher = MaterialWatcher(
        service,
        loadConfig=lambda: config.load(config.ServerConfig, options["config"], options.overrides),
    )
    watcher.setServiceParent(daemon)
    if options.metricsConfig.listen:
        listen = per_worker(options.metricsConfig.listen, number or 0)
        MetricsService(listen, service, watcher).setServiceParent(daemon)
    return daemon
