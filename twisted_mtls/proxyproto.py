"""
The PROXY protocol, version 2 (HAProxy's proxy-protocol.txt): a binary header
a proxy sends before the client's bytes so the backend learns who connected.

L{encode_v2} writes a header with the client and server addresses and the
TLS fields of a verified mutual-TLS connection; L{parse_v2} reads one back.

TLS fields go in the standard C{PP2_TYPE_SSL} TLV (client flags, verify
result, sub-TLVs version, CN, cipher). The client certificate, which the
specification has no type for, goes in the application-specific TLV
L{PP2_TYPE_CLIENT_CERT} (0xE0, from the range the specification reserves
for applications) as DER.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
HEADER = struct.Struct("!12sBBH")  # signature, version|command, family|transport, length

COMMAND_LOCAL, COMMAND_PROXY = 0x0, 0x1
FAMILY_UNSPEC, FAMILY_TCP4, FAMILY_TCP6, FAMILY_UNIX = 0x00, 0x11, 0x21, 0x31

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_SSL = 0x20
PP2_SUBTYPE_SSL_VERSION = 0x21
PP2_SUBTYPE_SSL_CN = 0x22
PP2_SUBTYPE_SSL_CIPHER = 0x23
PP2_TYPE_CLIENT_CERT = 0xE0

PP2_CLIENT_SSL, PP2_CLIENT_CERT_CONN, PP2_CLIENT_CERT_SESS = 0x01, 0x02, 0x04

_ADDRESSES = {
    FAMILY_TCP4: struct.Struct("!4s4sHH"),
    FAMILY_TCP6: struct.Struct("!16s16sHH"),
    FAMILY_UNIX: struct.Struct("!108s108s"),
}


@dataclass(frozen=True)
class TLSInfo:
    """
    The TLS fields of a PROXY v2 header.
    """

    version: str | None = None
    cipher: str | None = None
    common_name: str | None = None
    client_certificate: bytes | None = None  # DER
    verified: bool = True
    client_flags: int = PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN


@dataclass(frozen=True)
class ProxyHeader:
    """
    A parsed PROXY v2 header. Addresses are C{(host, port)} for TCP, a path
    for unix sockets, L{None} for C{LOCAL} or an unspecified family.
    """

    command: int
    family: int
    source: tuple[str, int] | str | None
    destination: tuple[str, int] | str | None
    tlvs: tuple[tuple[int, bytes], ...]
    tls: TLSInfo | None
    authority: str | None = None


def _tlv(kind: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise ValueError(f"PROXY v2 TLV 0x{kind:02x} is {len(value)} bytes, the limit is 65535")
    return struct.pack("!BH", kind, len(value)) + value


def _addresses(source, destination) -> tuple[int, bytes]:
    """
    Return the family and the packed addresses of two Twisted address objects.
    """
    if hasattr(source, "host") and hasattr(destination, "host"):
        src = ipaddress.ip_address(source.host.split("%")[0])
        dst = ipaddress.ip_address(destination.host.split("%")[0])
        if src.version == dst.version:
            family = FAMILY_TCP4 if src.version == 4 else FAMILY_TCP6
            packed = _ADDRESSES[family].pack(src.packed, dst.packed, source.port, destination.port)
            return family, packed
    if hasattr(source, "name") and hasattr(destination, "name"):
        names = [_path_bytes(a.name) for a in (source, destination)]
        return FAMILY_UNIX, _ADDRESSES[FAMILY_UNIX].pack(*names)
    return FAMILY_UNSPEC, b""


def _path_bytes(name) -> bytes:
    if name is None:
        return b""
    return name if isinstance(name, bytes) else str(name).encode("utf-8", "surrogateescape")


def encode_v2(
    source, destination, tls: TLSInfo | None = None, authority: str | bytes | None = None
) -> bytes:
    """
    Return a PROXY v2 C{PROXY} header for a connection from C{source} to
    C{destination} (Twisted C{IPv4Address}, C{IPv6Address} or C{UNIXAddress}),
    with the TLS fields of C{tls} and the SNI host name C{authority} (text,
    or the bytes a client sent).
    """
    family, body = _addresses(source, destination)
    if authority:
        if isinstance(authority, str):
            authority = authority.encode("utf-8")
        body += _tlv(PP2_TYPE_AUTHORITY, authority)
    if tls is not None:
        subs = b"".join(
            _tlv(kind, value.encode("utf-8"))
            for kind, value in (
                (PP2_SUBTYPE_SSL_VERSION, tls.version),
                (PP2_SUBTYPE_SSL_CN, tls.common_name),
                (PP2_SUBTYPE_SSL_CIPHER, tls.cipher),
            )
            if value
        )
        verify = struct.pack("!BI", tls.client_flags, 0 if tls.verified else 1)
        body += _tlv(PP2_TYPE_SSL, verify + subs)
        if tls.client_certificate:
            body += _tlv(PP2_TYPE_CLIENT_CERT, tls.client_certificate)
    if len(body) > 0xFFFF:
        raise ValueError(f"PROXY v2 header would be {len(body)} bytes, the limit is 65535")
    return HEADER.pack(SIGNATURE, 0x20 | COMMAND_PROXY, family, len(body)) + body


def parse_v2(data: bytes) -> tuple[ProxyHeader, bytes] | None:
    """
    Parse a PROXY v2 header at the start of C{data}; return it and the bytes
    after it, L{None} if C{data} is too short to tell, or raise L{ValueError}
    if C{data} does not start with a valid header.
    """
    if len(data) < HEADER.size:
        if not SIGNATURE.startswith(data[: len(SIGNATURE)]):
            raise ValueError("not a PROXY protocol v2 header (bad signature)")
        return None
    signature, version_command, family, length = HEADER.unpack_from(data)
    if signature != SIGNATURE:
        raise ValueError("not a PROXY protocol v2 header (bad signature)")
    if version_command >> 4 != 2 or version_command & 0xF not in (COMMAND_LOCAL, COMMAND_PROXY):
        raise ValueError(f"unsupported PROXY protocol version/command 0x{version_command:02x}")
    end = HEADER.size + length
    if len(data) < end:
        return None
    body, rest = data[HEADER.size : end], data[end:]
    source = destination = None
    layout = _ADDRESSES.get(family)
    if layout is not None and version_command & 0xF == COMMAND_PROXY:
        if len(body) < layout.size:
            raise ValueError(f"PROXY v2 header too short for address family 0x{family:02x}")
        source, destination = _unpack_addresses(family, layout.unpack_from(body))
    tlvs = _parse_tlvs(body[layout.size if layout else 0 :]) if layout or family == FAMILY_UNSPEC else ()
    found = dict(tlvs)
    authority = found.get(PP2_TYPE_AUTHORITY)
    header = ProxyHeader(
        command=version_command & 0xF,
        family=family,
        source=source,
        destination=destination,
        tlvs=tlvs,
        tls=_tls_info(found),
        authority=authority.decode("utf-8", "replace") if authority is not None else None,
    )
    return header, rest


def _unpack_addresses(family: int, fields: tuple):
    if family == FAMILY_UNIX:
        return tuple(f.rstrip(b"\0").decode("utf-8", "surrogateescape") for f in fields)
    src, dst, sport, dport = fields
    return (str(ipaddress.ip_address(src)), sport), (str(ipaddress.ip_address(dst)), dport)


def _parse_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs, offset = [], 0
    while offset < len(data):
        if len(data) - offset < 3:
            raise ValueError("PROXY v2 header has a truncated TLV")
        kind, length = struct.unpack_from("!BH", data, offset)
        value = data[offset + 3 : offset + 3 + length]
        if len(value) != length:
            raise ValueError(f"PROXY v2 TLV 0x{kind:02x} is truncated")
        tlvs.append((kind, value))
        offset += 3 + length
    return tuple(tlvs)


def _tls_info(found: dict[int, bytes]) -> TLSInfo | None:
    ssl = found.get(PP2_TYPE_SSL)
    if ssl is None:
        return None
    if len(ssl) < 5:
        raise ValueError("PROXY v2 SSL TLV is too short")
    flags, verify = struct.unpack_from("!BI", ssl)
    subs = dict(_parse_tlvs(ssl[5:]))

    def text(kind: int) -> str | None:
        value = subs.get(kind)
        return value.decode("utf-8", "replace") if value is not None else None

    return TLSInfo(
        version=text(PP2_SUBTYPE_SSL_VERSION),
        cipher=text(PP2_SUBTYPE_SSL_CIPHER),
        common_name=text(PP2_SUBTYPE_SSL_CN),
        client_certificate=found.get(PP2_TYPE_CLIENT_CERT),
        verified=verify == 0,
        client_flags=flags,
    )


# --- version 1 (text) and reading either version from a stream ---------------

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the specification's bound, CRLF included


def parse_v1(data: bytes) -> tuple[ProxyHeader, bytes] | None:
    """
    Parse a PROXY v1 (text) header at the start of C{data}; return it and
    the bytes after it, L{None} if C{data} is too short to tell, or raise
    L{ValueError} if C{data} does not start with a valid header.
    """
    if not (data.startswith(V1_PREFIX) or V1_PREFIX.startswith(data[: len(V1_PREFIX)])):
        raise ValueError("not a PROXY protocol v1 header (it must start with 'PROXY ')")
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise ValueError(f"PROXY v1 header longer than {V1_MAX_LENGTH} bytes")
        return None
    words = data[:end].decode("ascii", "replace").split(" ")
    rest = data[end + 2 :]
    if words[1:2] == ["UNKNOWN"]:
        return ProxyHeader(COMMAND_LOCAL, FAMILY_UNSPEC, None, None, (), None), rest
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ValueError("malformed PROXY v1 header: expected 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'")
    family = FAMILY_TCP4 if words[1] == "TCP4" else FAMILY_TCP6
    source = (_v1_address(words[2], family), _v1_port(words[4]))
    destination = (_v1_address(words[3], family), _v1_port(words[5]))
    return ProxyHeader(COMMAND_PROXY, family, source, destination, (), None), rest


def _v1_address(text: str, family: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"malformed PROXY v1 header: {text!r} is not an IP address") from None
    if address.version != (4 if family == FAMILY_TCP4 else 6):
        raise ValueError(f"malformed PROXY v1 header: {text} is not an IPv{4 if family == FAMILY_TCP4 else 6} address")
    return str(address)


def _v1_port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or int(text) > 65535 or (text != "0" and text[0] == "0"):
        raise ValueError(f"malformed PROXY v1 header: {text!r} is not a port number")
    return int(text)


PARSERS = {"v1": parse_v1, "v2": parse_v2}


class HeaderReader:
    """
    Reads one PROXY header of C{version} (C{"v1"} or C{"v2"}) from a stream
    delivered in chunks of any size.
    """

    def __init__(self, version: str) -> None:
        self.parse = PARSERS[version]
        self.buffered = b""

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """
        Add C{data}; return the header and the bytes after it once it is
        complete, L{None} while more is needed, or raise L{ValueError} when
        the stream does not start with a valid header.
        """
        self.buffered += data
        return self.parse(self.buffered)
