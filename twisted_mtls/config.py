"""
The configuration file: its sections, keys and defaults, and how a section is loaded.

Each section is a frozen dataclass whose fields carry their own default,
parser and help text (see L{setting}); the INI loader, the twistd options and
README's reference all read that one description. The value parsers are in
L{twisted_mtls.values}, the checks of keys that depend on one another in
L{twisted_mtls.crosschecks}, the reading of the INI file in L{twisted_mtls.inifile}.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from . import policy
from .crosschecks import check_server
from .errors import ConfigError
from .inifile import read_section
from .values import (
    Parser,
    boolean,
    choice,
    client_endpoint,
    host_port,
    list_of,
    optional_path,
    optional_server_endpoint,
    path,
    seconds,
    server_endpoint,
    service_name,
    text,
    whole_number,
)

# Marks a setting as a file path, resolved against the config file's folder.
_PATH = "path"


def setting(
    default: str | None, parse: Parser, help: str, *, kind: str = ""
) -> Any:
    """
    Describe one key of a section: its default as written in a file (L{None}
    when the key is required), the function that parses it, and its help.
    """
    return field(
        metadata={"default": default, "parse": parse, "help": help, "kind": kind}
    )


def listing(parse: Parser, help: str, *, kind: str = "") -> Any:
    """
    Describe a key that takes a list (one per line or comma-separated, empty
    by default) of values C{parse} accepts.
    """
    return setting("", list_of(parse), help, kind=kind)


# --- sections ----------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """
    The C{[server]} section: what the daemon listens on and whom it lets in.
    """

    listen: str = setting(
        "tcp:8443:interface=127.0.0.1",
        server_endpoint,
        "Twisted server endpoint for the transport under TLS "
        "(tcp:PORT:interface=ADDR, tcp6:..., unix:PATH, systemd:domain=INET:index=0).",
    )
    service: str = setting(
        "echo",
        service_name,
        "What to serve once a client is verified: echo (line echo), forward (relay "
        "to target) or python:package.module:attribute (your protocol factory).",
    )
    target: str = setting(
        "",
        client_endpoint,
        "service = forward: the Twisted client endpoint to relay to "
        "(tcp:HOST:PORT or unix:PATH); loopback or unix only unless unsafe_target.",
    )
    target_timeout: float = setting(
        "10", seconds(0.001), "Seconds allowed to connect to target before the client is closed."
    )
    unsafe_target: bool = setting(
        "false", boolean, "Allow a target that is neither loopback nor a unix socket."
    )
    target_proxy_protocol: str = setting(
        "off",
        choice("off", "v2"),
        "off, or v2: open each connection to target with a PROXY protocol v2 header "
        "carrying the client address, TLS version, cipher, client CN and certificate.",
    )
    certificate: Path = setting(
        None, path, "PEM file: the server certificate, then its intermediates.", kind=_PATH
    )
    private_key: Path = setting(
        None, path, "PEM file: the server certificate's private key.", kind=_PATH
    )
    client_ca: Path = setting(
        None,
        path,
        "PEM bundle of the CAs that issue client certificates (the only trust anchors).",
        kind=_PATH,
    )
    min_tls_version: str = setting(
        "1.2", choice("1.2", "1.3"), "Lowest TLS version accepted: 1.2 or 1.3."
    )
    max_line_length: int = setting(
        "65536",
        whole_number(1, 2**30),
        "Longest line, in bytes without its delimiter; a longer one is answered "
        "with an error line and the connection is closed.",
    )
    idle_timeout: float = setting(
        "300", seconds(), "Close a connection idle this many seconds (0: never)."
    )
    max_connection_lifetime: float = setting(
        "0",
        seconds(),
        "Close a connection cleanly once it has been open this many seconds (0: never).",
    )
    max_connections: int = setting(
        "1000",
        whole_number(0),
        "Most connections open at once (handshaking or served); further ones are "
        "closed at once and counted (0: no limit).",
    )
    max_pending_output: int = setting(
        "262144",
        whole_number(4096, 2**30),
        "Bytes of unsent output per connection above which the server stops reading "
        "from that client until it has drained.",
    )
    close_timeout: float = setting(
        "5",
        seconds(0.001),
        "Abort a connection whose peer has not completed a clean close within this many seconds.",
    )
    shutdown_timeout: float = setting(
        "10",
        seconds(),
        "On SIGTERM/SIGINT, seconds open connections get to receive their echoes "
        "before they are closed.",
    )
    reload_interval: float = setting(
        "0",
        seconds(),
        "Check the certificate, key and CA files this often and reload them when "
        "their content changed (0: only on SIGHUP).",
    )
    handshake_timeout: float = setting(
        "10", seconds(0.001), "Abort a TLS handshake not completed within this many seconds."
    )
    proxy_protocol: str = setting(
        "off",
        choice("off", "v1", "v2"),
        "off, v1 or v2: every connection starts with a PROXY protocol header from a TCP "
        "load balancer (read within handshake_timeout), whose client address is used in "
        "logs and limits; a connection without a valid one is closed.",
    )
    proxy_from: tuple = listing(
        policy.ip_network,
        "proxy_protocol on: addresses or CIDR networks allowed to send PROXY headers "
        "(your load balancers); connections from elsewhere are closed (empty: any).",
    )
    verify_depth: int = setting(
        "4",
        whole_number(1, 64),
        "Most intermediate certificates allowed between a client certificate and its CA.",
    )
    allow_cn: tuple = listing(text, "Let in clients whose subject common name is one of these.")
    allow_ou: tuple = listing(text, "Let in clients with one of these organizational units (OU).")
    allow_dns: tuple = listing(
        policy.dns_name, "Let in clients with one of these DNS SANs (*.example.org: one label)."
    )
    allow_ip: tuple = listing(
        policy.ip_network, "Let in clients with an IP SAN in one of these addresses or CIDR networks."
    )
    allow_uri: tuple = listing(
        policy.UriPattern.parse,
        "Let in clients with a URI SAN matching one of these; '*' is one path segment, "
        "a final '**' any remainder (spiffe://example.org/ns/*/sa/**).",
    )
    allow_fingerprint: tuple = listing(
        policy.fingerprint,
        "Let in clients whose certificate has one of these SHA-256 fingerprints "
        "(hex, any case, colons optional).",
    )
    allow_spki: tuple = listing(
        policy.fingerprint,
        "Let in clients whose public key (SubjectPublicKeyInfo) has one of these SHA-256 digests.",
    )
    allow_all: bool = setting(
        "false",
        boolean,
        "Let in every client certificate that chains to client_ca, explicitly.",
    )
    crl: tuple = listing(
        path,
        "CRL files (PEM or DER), one from each CA in client_ca; revoked clients are refused.",
        kind=_PATH,
    )
    crl_stale: str = setting(
        "warn",
        choice("warn", "reject"),
        "A CRL past its nextUpdate: warn (log and use it) or reject (refuse its clients).",
    )
    session_tickets: bool = setting(
        "on",
        boolean,
        "Issue TLS session tickets so that clients resume without a full handshake "
        "(off: resumption only from this process's session cache).",
    )
    session_ticket_key_file: Path | None = setting(
        "",
        optional_path,
        "File holding the 80-byte session ticket key (raw or base64; `pki ticket-key FILE` "
        "writes one), shared by workers and by servers behind one load balancer; "
        "replace it and reload to rotate (empty: a random key per start).",
        kind=_PATH,
    )
    workers: int = setting(
        "1",
        whole_number(1, 256),
        "Processes serving the listening socket (one twistd); SIGHUP and SIGTERM reach all.",
    )
    source: "Source" = field(default=None, compare=False, repr=False)  # type: ignore[assignment]


@dataclass(frozen=True)
class ClientConfig:
    """
    The C{[client]} section: where the client connects and what it presents.
    """

    connect: tuple = setting(
        "localhost:8443", host_port, "HOST:PORT of the server."
    )
    server_name: str = setting(
        "", str.strip, "Host name or IP the server certificate must be for (default: HOST)."
    )
    certificate: Path = setting(
        None, path, "PEM file: our client certificate, then its intermediates.", kind=_PATH
    )
    private_key: Path = setting(None, path, "PEM file: our private key.", kind=_PATH)
    ca: Path = setting(
        None, path, "PEM bundle of the CAs trusted to issue the server certificate.", kind=_PATH
    )
    timeout: float = setting("10", seconds(0.001), "Seconds allowed to connect and handshake.")
    source: "Source" = field(default=None, compare=False, repr=False)  # type: ignore[assignment]


@dataclass(frozen=True)
class LogConfig:
    """
    The C{[log]} section: how the daemon writes its log.
    """

    format: str = setting(
        "text",
        choice("text", "json"),
        "text: twistd's lines; json: one JSON object per line with stable field names.",
    )
    source: "Source" = field(default=None, compare=False, repr=False)  # type: ignore[assignment]


@dataclass(frozen=True)
class MetricsConfig:
    """
    The C{[metrics]} section: the Prometheus and health-check listener.
    """

    listen: str = setting(
        "",
        optional_server_endpoint,
        "Twisted server endpoint serving /metrics and /healthz over plain HTTP, "
        "e.g. tcp:9100:interface=127.0.0.1 (empty: off).",
    )
    source: "Source" = field(default=None, compare=False, repr=False)  # type: ignore[assignment]


SECTIONS: Mapping[str, type] = {
    "server": ServerConfig,
    "client": ClientConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
}

# Checks of keys that depend on one another, run after a section is parsed.
CHECKS: Mapping[type, tuple[Callable[[Any], None], ...]] = {ServerConfig: (check_server,)}

Section = TypeVar("Section", ServerConfig, ClientConfig, LogConfig, MetricsConfig)


@dataclass(frozen=True)
class Source:
    """
    Where each value of a loaded section came from, for error messages.
    """

    file: str | None
    section: str
    overridden: frozenset[str] = frozenset()

    def error(self, key: str, message: str) -> ConfigError:
        """
        Return a L{ConfigError} about C{key}, naming the option or the file and section.
        """
        if key in self.overridden or self.file is None:
            return ConfigError(message, key="--" + key.replace("_", "-"))
        return ConfigError(message, source=self.file, section=self.section, key=key)


def settings(section: type) -> list:
    """
    Return the dataclass fields of C{section} that are configurable keys.
    """
    return [f for f in fields(section) if "parse" in f.metadata]


def file_paths(values: Any) -> list[Path]:
    """
    Return the files a loaded section names (its path keys that are set,
    each file of a list-valued key).
    """
    paths: list[Path] = []
    for f in settings(type(values)):
        value = getattr(values, f.name)
        if f.metadata["kind"] == _PATH and value is not None:
            paths.extend(value if isinstance(value, tuple) else [value])
    return paths


def load(
    section_type: type[Section],
    config_file: str | os.PathLike | None,
    overrides: Mapping[str, str | None] = {},
) -> Section:
    """
    Load one section from C{config_file} (or none), with C{overrides} taken
    from the command line; raise L{ConfigError} naming what is wrong.
    """
    name = next(k for k, v in SECTIONS.items() if v is section_type)
    values = _read_section(config_file, name) if config_file is not None else {}
    overridden = frozenset(k for k, v in overrides.items() if v is not None)
    source = Source(
        os.fspath(config_file) if config_file is not None else None, name, overridden
    )
    base = Path(config_file).resolve().parent if config_file is not None else Path.cwd()
    parsed: dict[str, Any] = {}
    for f in settings(section_type):
        raw = overrides.get(f.name)
        from_file = raw is None
        if from_file:
            raw = values.get(f.name, f.metadata["default"])
        if raw is None:
            raise source.error(f.name, "is required: " + f.metadata["help"])
        try:
            value = f.metadata["parse"](raw)
        except ValueError as e:
            raise source.error(f.name, str(e)) from None
        if f.metadata["kind"] == _PATH and value is not None and from_file:
            value = tuple(base / v for v in value) if isinstance(value, tuple) else base / value
        parsed[f.name] = value
    loaded = section_type(**parsed, source=source)
    for check in CHECKS.get(section_type, ()):
        check(loaded)
    return loaded


def _read_section(config_file: str | os.PathLike, name: str) -> dict[str, str]:
    """
    Read C{[name]} from an INI file, refusing unknown sections and keys.
    """
    known = {section: {f.name for f in settings(t)} for section, t in SECTIONS.items()}
    values = read_section(config_file, name, known)
    if values is None:
        if name == "server":
            raise ConfigError(f"has no [{name}] section", source=os.fspath(config_file))
        return {}
    return values
