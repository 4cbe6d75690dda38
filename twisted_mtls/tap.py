"""
C{twistd mtls}: options and service maker.
"""

from __future__ import annotations

import sys

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

        overrides = {
            f.name: self[_option_name(f.name)] for f in config.settings(config.ServerConfig)
        }
        try:
            self.serverConfig = config.load(config.ServerConfig, self["config"], overrides)
            self.material = load_server_material(self.serverConfig)
        except ConfigError as e:
            sys.stderr.write(f"mtls: configuration error: {e}\n")
            raise SystemExit(EXIT_CONFIG)


def makeService(options: Options):
    """
    Return the daemon's service for parsed C{options}.
    """
    from .service import MTLSService

    return MTLSService(options.serverConfig, options.material)
