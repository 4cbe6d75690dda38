"""
The access policy: which verified client certificates may connect.

A client passes when any C{allow_*} rule matches its L{PeerIdentity}; with
no rule at all every certificate that chains to C{client_ca} passes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from cryptography import x509

from twisted.logger import Logger

from .identity import PeerIdentity

log = Logger(namespace="twisted_mtls")

_HEX = re.compile(r"[0-9a-f]{64}\Z")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def fingerprint(value: str) -> str:
    """
    Accept a SHA-256 digest as hex in any case, with or without colons;
    return it as upper-case colon-separated hex.
    """
    digits = value.strip().replace(":", "").lower()
    if not _HEX.match(digits):
        raise ValueError(
            f"expected a SHA-256 fingerprint (64 hex digits, colons allowed), got {value!r}"
        )
    return bytes.fromhex(digits).hex(":").upper()


def ip_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """
    Accept an IP address or a network in CIDR notation.
    """
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"expected an IP address or network (e.g. 10.0.0.5, 10.0.0.0/8, ::1), got {value!r}"
        ) from None


def dns_name(value: str) -> str:
    """
    Accept a DNS name, or a wildcard C{*.example.org} matching one label.
    """
    name = value.strip().lower().rstrip(".")
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if not labels or not all(re.fullmatch(r"(?!-)[a-z0-9_-]{1,63}(?<!-)", l) for l in labels):
        raise ValueError(f"expected a DNS name or *.domain, got {value!r}")
    return name


@dataclass(frozen=True)
class UriPattern:
    """
    A URI, or a SPIFFE-style pattern where a C{*} path segment matches
    exactly one segment and a final C{**} segment matches any remainder.
    """

    text: str
    regex: re.Pattern

    @classmethod
    def parse(cls, value: str) -> UriPattern:
        """
        Accept a URI pattern; raise ValueError("expected ...") when it is not valid.
        """
        text = value.strip()
        expected = (
            "expected a URI such as spiffe://example.org/ns/*/sa/** ('*' is one whole "
            "path segment, '**' only as the last segment)"
        )
        scheme = _SCHEME.match(text)
        if not scheme or any(c.isspace() for c in text):
            raise ValueError(f"{expected}, got {value!r}")
        authority, _, path = text[scheme.end():].partition("/")
        if not authority or "*" in authority or "?" in text or "#" in text:
            raise ValueError(f"{expected}, got {value!r}")
        segments = path.split("/") if path else []
        parts = [re.escape(text[: scheme.end()].lower() + authority.lower())]
        for i, segment in enumerate(segments):
            if segment == "**" and i == len(segments) - 1:
                parts.append("(?:/.+)")
            elif segment == "*":
                parts.append("/[^/]+")
            elif "*" in segment:
                raise ValueError(f"{expected}, got {value!r}")
            else:
                parts.append("/" + re.escape(segment))
        return cls(text, re.compile("".join(parts) + r"\Z"))

    def matches(self, uri: str) -> bool:
        """
        Return whether C{uri} (scheme and authority compared without case) matches.
        """
        scheme = _SCHEME.match(uri)
        if not scheme:
            return False
        authority, slash, path = uri[scheme.end():].partition("/")
        normal = uri[: scheme.end()].lower() + authority.lower() + slash + path
        return self.regex.match(normal) is not None


def _dns_matches(pattern: str, name: str) -> bool:
    name = name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return name == pattern


def _ip_in(networks: Sequence, address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip.version == n.version and ip in n for n in networks)


@dataclass(frozen=True)
class Policy:
    """
    The C{allow_*} rules of the C{[server]} section.
    """

    cn: tuple[str, ...] = ()
    ou: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    ip: tuple = ()
    uri: tuple[UriPattern, ...] = ()
    fingerprint: tuple[str, ...] = ()
    spki: tuple[str, ...] = ()
    allow_all: bool = False

    @classmethod
    def from_config(cls, config) -> Policy:
        """
        Return the policy of a loaded L{ServerConfig}.
        """
        return cls(
            cn=config.allow_cn,
            ou=config.allow_ou,
            dns=config.allow_dns,
            ip=config.allow_ip,
            uri=config.allow_uri,
            fingerprint=config.allow_fingerprint,
            spki=config.allow_spki,
            allow_all=config.allow_all,
        )

    @property
    def has_rules(self) -> bool:
        """
        Whether any C{allow_*} key is set (C{allow_all} included).
        """
        return self.allow_all or any(self._rules())

    def _rules(self) -> Iterable[tuple]:
        return (self.cn, self.ou, self.dns, self.ip, self.uri, self.fingerprint, self.spki)

    def matching_rule(self, identity: PeerIdentity) -> str | None:
        """
        Return the first rule (C{key = value}) that lets C{identity} in, or L{None}.
        """
        checks = (
            ("allow_cn", self.cn, lambda v: v == identity.common_name),
            ("allow_ou", self.ou, lambda v: v in identity.organizational_units),
            ("allow_dns", self.dns, lambda v: any(_dns_matches(v, n) for n in identity.dns_names)),
            ("allow_ip", self.ip, lambda v: any(_ip_in((v,), a) for a in identity.ip_addresses)),
            ("allow_uri", self.uri, lambda v: any(v.matches(u) for u in identity.uris)),
            ("allow_fingerprint", self.fingerprint, lambda v: v == identity.fingerprint_sha256),
            ("allow_spki", self.spki, lambda v: v == identity.spki_sha256),
        )
        for key, values, test in checks:
            for value in values:
                if test(value):
                    return f"{key} = {getattr(value, 'text', value)}"
        return None

    def check(self, identity: PeerIdentity) -> str | None:
        """
        Return why C{identity} is refused, or L{None} when it may connect.
        """
        if not self.has_rules or self.allow_all or self.matching_rule(identity):
            return None
        sans = ", ".join(identity.sans()) or "no SANs"
        return (
            f"not allowed by the access policy: no allow_* rule matches "
            f"{identity.subject or '(empty subject)'} [{sans}] serial {identity.serial:X} "
            f"sha256={identity.fingerprint_sha256} spki={identity.spki_sha256}"
        )

    def digest(self) -> bytes:
        """
        Return a digest of the rules, for the TLS session ID context.
        """
        text = repr(
            (
                self.cn, self.ou, self.dns, tuple(str(n) for n in self.ip),
                tuple(p.text for p in self.uri), self.fingerprint, self.spki, self.allow_all,
            )
        )  # fmt: skip
        return hashlib.sha256(text.encode()).digest()


def trust_anchor_count(cas: Sequence[x509.Certificate]) -> int:
    """
    Return how many of C{cas} are self-issued roots (all of them when none is).
    """
    return sum(1 for ca in cas if ca.subject == ca.issuer) or len(cas)


def open_policy_warning(policy: Policy, cas: Sequence[x509.Certificate]) -> str | None:
    """
    Return a warning when no rule is set although C{client_ca} holds several
    CAs (so every certificate any of them issues gets in), or L{None}.
    """
    count = trust_anchor_count(cas)
    if policy.has_rules or count < 2:
        return None
    return (
        f"client_ca holds {count} CAs and no allow_* rule is set: every certificate "
        "any of them issues is let in (set allow_* rules, or allow_all = true to "
        "silence this warning)"
    )


def log_open_policy(policy: Policy, cas: Sequence[x509.Certificate]) -> None:
    """
    Log the L{open_policy_warning}, if there is one.
    """
    warning = open_policy_warning(policy, cas)
    if warning:
        log.warn("{problem}", event="policy_open", problem=warning)
