"""
The configuration file: its sections, keys, defaults and parsers.

Each section is a frozen dataclass whose fields carry their own default,
parser and help text (see L{setting}); the INI loader, the twistd options and
README's reference all read that one description.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from . import policy
from .descriptions import endpoint_kind, is_local_target
from .errors import ConfigError
from .policy import list_of

Parser = Callable[[str], Any]

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


# --- value parsers: each raises ValueError("expected ...") -------------------


def text(value: str) -> str:
    """
    Accept any non-empty string.
    """
    value = value.strip()
    if not value:
        raise ValueError("expected a value, got nothing")
    return value


def path(value: str) -> Path:
    """
    Accept a file path (resolved later against the config file's folder).
    """
    value = text(value)
    try:
        return Path(value).expanduser()
    except RuntimeError:  # ~user that does not exist
        raise ValueError(f"expected a file path, got {value!r} (cannot expand its ~)") from None


def optional_path(value: str) -> Path | None:
    """
    Accept a file path, or nothing.
    """
    return path(value) if value.strip() else None


def whole_number(minimum: int, maximum: int | None = None) -> Parser:
    """
    Return a parser of whole numbers from C{minimum} to C{maximum}.
    """

    def parse(value: str) -> int:
        try:
            number = int(value.strip().replace("_", ""))
        except ValueError:
            number = None
        if number is None or number < minimum or (maximum is not None and number > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise ValueError(f"expected a whole number >= {minimum}{upper}, got {value!r}")
        return number

    return parse


def seconds(minimum: float = 0.0) -> Parser:
    """
    Return a parser of a duration in seconds (a number >= C{minimum}; 0 may mean off).
    """

    def parse(value: str) -> float:
        try:
            number = float(value.strip())
        except ValueError:
            number = None
        if number is None or number != number or number < minimum or number == float("inf"):
            raise ValueError(f"expected a number of seconds >= {minimum:g}, got {value!r}")
        return number

    return parse


def choice(*options: str) -> Parser:
    """
    Return a parser that accepts one of C{options}.
    """

    def parse(value: str) -> str:
        value = value.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {value!r}")
        return value

    return parse


def boolean(value: str) -> bool:
    """
    Accept true/false, yes/no, on/off, 1/0.
    """
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def host_port(value: str) -> tuple[str, int]:
    """
    Accept C{HOST:PORT}, C{[IPV6]:PORT}.
    """
    value = text(value)
    host, sep, port = value.rpartition(":")
    if value.startswith("["):
        host = host.strip("[]") if host.endswith("]") else ""
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (e.g. localhost:8443), got {value!r}")
    return host, int(port)


def server_endpoint(value: str) -> str:
    """
    Accept a Twisted server endpoint description, e.g. C{tcp:8443:interface=127.0.0.1}.
    """
    from twisted.internet import endpoints, reactor

    value = text(value)
    try:
        endpoints.serverFromString(reactor, value)
    except Exception as e:  # the parsers raise whatever they like
        raise ValueError(
            "expected a Twisted server endpoint description such as "
            f"tcp:8443:interface=127.0.0.1, got {value!r} ({e})"
        ) from None
    return value


def service_name(value: str) -> str:
    """
    Accept C{echo}, C{forward} or C{python:package.module:attribute}.
    """
    value = text(value)
    if value in ("echo", "forward"):
        return value
    module, _, attribute = value.partition("python:")[2].partition(":")
    names = module.split(".") + attribute.split(".")
    if not value.startswith("python:") or not all(n.isidentifier() for n in names):
        raise ValueError(
            f"expected echo, forward or python:package.module:attribute, got {value!r}"
        )
    return value


def client_endpoint(value: str) -> str:
    """
    Accept nothing, or a Twisted client endpoint description of kind tcp or
    unix (e.g. C{tcp:127.0.0.1:8080}, C{unix:/run/app.sock}).
    """
    from twisted.internet import endpoints, reactor

    value = value.strip()
    if not value:
        return value
    problem = None
    if endpoint_kind(value) not in ("tcp", "unix"):
        problem = "only tcp: and unix: are supported"
    else:
        try:
            endpoints.clientFromString(reactor, value)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            problem = str(e) or type(e).__name__
    if problem:
        raise ValueError(
            "expected a Twisted client endpoint such as tcp:127.0.0.1:8080 or "
            f"unix:/run/app.sock, got {value!r} ({problem})"
        )
    return value


def check_server(section: "ServerConfig") -> None:
    """
    Check the C{[server]} keys that depend on one another; raise L{ConfigError}.
    """
    if section.service == "forward" and not section.target:
        raise section.source.error(
            "target", "is required when service = forward: " + _help("target")
        )
    if section.target and not section.unsafe_target and not is_local_target(section.target):
        raise section.source.error(
            "target",
            f"{section.target!r} is neither a loopback address nor a unix socket; "
            "set unsafe_target = true to relay to another host in clear text",
        )
    if section.service.startswith("python:"):
        from .services import load_user_factory

        try:
            load_user_factory(section.service)
        except ValueError as e:
            raise section.source.error("service", str(e)) from None


def _help(key: str) -> str:
    return next(f.metadata["help"] for f in settings(ServerConfig) if f.name == key)


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


def optional_server_endpoint(value: str) -> str:
    """
    Accept a Twisted server endpoint description, or nothing (off).
    """
    return server_endpoint(value) if value.strip() else ""


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
    where = os.fspath(config_file)
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        with open(config_file, encoding="utf-8") as f:
            parser.read_file(f)
    except OSError as e:
        raise ConfigError(f"cannot read the configuration file: {e.strerror}", source=where) from None
    except UnicodeDecodeError:
        raise ConfigError("cannot read the configuration file: it is not UTF-8 text", source=where) from None
    except configparser.Error as e:
        raise ConfigError(f"not a valid INI file: {_first_line(e)}", source=where) from None
    for section in parser.sections():
        if section not in SECTIONS:
            raise ConfigError(
                f"unknown section (expected one of: {', '.join(f'[{s}]' for s in SECTIONS)})",
                source=where,
                section=section,
            )
        known = {f.name for f in settings(SECTIONS[section])}
        for key in parser[section]:
            if key not in known:
                raise ConfigError(
                    f"unknown key (expected one of: {', '.join(sorted(known))})",
                    source=where,
                    section=section,
                    key=key,
                )
    if not parser.has_section(name):
        if name == "server":
            raise ConfigError(f"has no [{name}] section", source=where)
        return {}
    return dict(parser[name])


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
