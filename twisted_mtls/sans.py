"""
Parsing subjectAltName values written as text ("DNS:x", "IP:x", "URI:x",
"email:x" or a bare value) into ``cryptography`` general names.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import idna
from cryptography import x509

_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")


def _dns_name(value: str) -> x509.DNSName:
    try:
        ascii_name = value.encode("ascii").decode("ascii")
    except UnicodeEncodeError:
        try:
            ascii_name = idna.encode(value, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise ValueError(f"invalid DNS name {value!r}: {e}") from None
    labels = ascii_name.split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if len(ascii_name) > 253 or not all(_DNS_LABEL.match(l) for l in labels):
        raise ValueError(f"invalid DNS name {value!r}")
    return x509.DNSName(ascii_name)


def _ip_address(value: str) -> x509.IPAddress:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"invalid IP address {value!r}") from None


def _uri(value: str) -> x509.UniformResourceIdentifier:
    if not urlsplit(value).scheme or any(c.isspace() for c in value):
        raise ValueError(f"invalid URI {value!r} (expected scheme://...)")
    return x509.UniformResourceIdentifier(value)


def _email(value: str) -> x509.RFC822Name:
    local, _, domain = value.rpartition("@")
    if not (local and domain) or any(c.isspace() for c in value):
        raise ValueError(f"invalid email address {value!r}")
    return x509.RFC822Name(value)


_SAN_PARSERS = {"dns": _dns_name, "ip": _ip_address, "uri": _uri, "email": _email}


def _bare_san(value: str) -> x509.GeneralName:
    try:
        return _ip_address(value)
    except ValueError:
        pass
    if "://" in value:
        return _uri(value)
    if "@" in value:
        return _email(value)
    if ":" in value:
        raise ValueError(
            f"unknown SAN type in {value!r} (expected DNS:, IP:, URI: or email:)"
        )
    return _dns_name(value)


def parse_san(text: str) -> x509.GeneralName:
    """A subjectAltName from "DNS:x", "IP:x", "URI:x", "email:x" or a bare value."""
    value = text.strip()
    prefix, colon, rest = value.partition(":")
    parse = _SAN_PARSERS.get(prefix.lower())
    if colon and parse is not None:
        if not rest:
            raise ValueError(f"empty value in SAN {text!r}")
        return parse(rest)
    if not value:
        raise ValueError("empty SAN")
    return _bare_san(value)
