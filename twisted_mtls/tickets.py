"""
TLS session ticket keys that several contexts, processes and hosts share.

pyOpenSSL has no binding for C{SSL_CTX_set_tlsext_ticket_keys} (a macro over
C{SSL_CTX_ctrl}), and the OpenSSL inside C{cryptography} is linked
statically with its symbols hidden from the dynamic table. Its C{.symtab}
is still in the file, though: we read the offsets of C{SSL_CTX_ctrl} and of
two functions whose runtime addresses cffi gives us (cffi's direct-call
wrappers C{_cffi_d_NAME}, or NAME itself), check that both give the same
page-aligned load base, call C{SSL_CTX_ctrl} at base + offset only then, and
check that a key set on a scratch context reads back the same.
If anything does not check out, nothing is called: L{TicketKeys.available}
is false, one warning says why, and each context keeps OpenSSL's own
random per-context keys.

The same lookup finds C{SSL_CTX_set_num_tickets} (a function pyOpenSSL does
not bind): contexts issue one TLS 1.3 ticket per full handshake instead of
OpenSSL's two, checked on a scratch context first in the same way.
"""

from __future__ import annotations

import base64
import os
import struct
import sys
import tempfile
from pathlib import Path

from OpenSSL import SSL
from OpenSSL._util import ffi, lib
from twisted.logger import Logger

from .errors import ConfigError

log = Logger(namespace="twisted_mtls")

# 16 bytes of key name, 32 of HMAC key, 32 of AES key (OpenSSL's layout).
TICKET_KEY_SIZE = 80
SSL_CTRL_GET_TLSEXT_TICKET_KEYS = 58
SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59
_KNOWN = ("SSL_CTX_set_options", "SSL_CTX_get_options")
# The functions we call that pyOpenSSL does not bind, with their C types.
HIDDEN = {
    "SSL_CTX_ctrl": "long (*)(SSL_CTX *, int, long, void *)",
    "SSL_CTX_set_num_tickets": "int (*)(SSL_CTX *, size_t)",
    "SSL_CTX_get_num_tickets": "size_t (*)(SSL_CTX *)",
}
_SHT_SYMTAB, _STT_FUNC = 2, 2


def elf_function_offsets(path: str, names: tuple[str, ...]) -> dict[str, int]:
    """
    Return the C{.symtab} values of the functions called C{names} in the
    64-bit little-endian ELF file at C{path} (those it defines exactly once).
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    wanted = {name.encode(): name for name in names}
    found: dict[str, list[int]] = {}
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != _SHT_SYMTAB or entsize != 24:
            continue
        strtab = sections[link]
        strings = data[strtab[4] : strtab[4] + strtab[5]]
        # name offset in the string table -> name, for the names we want
        at = {}
        for raw, name in wanted.items():
            start = strings.find(b"\0" + raw + b"\0")
            while start != -1:
                at[start + 1] = name
                start = strings.find(b"\0" + raw + b"\0", start + 1)
        for st_name, st_info, _, shndx, value, _ in struct.iter_unpack(
            "<IBBHQQ", data[offset : offset + size]
        ):
            if st_name in at and st_info & 0xF == _STT_FUNC and shndx and value:
                found.setdefault(at[st_name], []).append(value)
    return {name: values[0] for name, values in found.items() if len(set(values)) == 1}


def _find_functions(wanted: dict[str, str]):
    """
    Return those of OpenSSL's hidden functions named as C{wanted}'s keys
    that the symbol table names, as cffi function pointers of the C types
    its values name, or a string saying why none can be found safely.
    """
    if sys.byteorder != "little" or ffi.sizeof("void *") != 8:
        return "not a 64-bit little-endian platform"
    from cryptography.hazmat.bindings import _rust

    raw_lib = getattr(lib, "_original_lib", lib)
    wrappers = tuple("_cffi_d_" + name for name in _KNOWN)
    try:
        offsets = elf_function_offsets(_rust.__file__, (*_KNOWN, *wrappers, *wanted))
        runtime = [int(ffi.cast("uintptr_t", ffi.addressof(raw_lib, n))) for n in _KNOWN]
    except (OSError, ValueError, struct.error, AttributeError, TypeError) as e:
        return f"cannot read {_rust.__file__}'s symbols: {e}"
    for names in (wrappers, _KNOWN):  # what cffi's addressof points at
        if all(n in offsets for n in names):
            bases = {address - offsets[n] for address, n in zip(runtime, names)}
            if len(bases) == 1 and not min(bases) % 4096:
                base = bases.pop()
                return {
                    n: ffi.cast(ctype, base + offsets[n]) for n, ctype in wanted.items() if n in offsets
                }
    return f"{_rust.__file__}'s symbol table does not match the loaded library"


_found: dict | str | None = None


def hidden_function(name: str):
    """
    Return the hidden OpenSSL function C{name} (one of L{HIDDEN}) as a cffi
    function pointer, or a string saying why it cannot be used safely
    (the symbol table is read once, for all of them).
    """
    global _found
    if _found is None:
        _found = _find_functions(HIDDEN)
    if isinstance(_found, str):
        return _found
    if name not in _found:
        from cryptography.hazmat.bindings import _rust

        return f"{_rust.__file__} has no symbol table naming {name}"
    return _found[name]


class TicketKeys:
    """
    Sets and reads the session ticket key of a pyOpenSSL context, when this
    cryptography build allows it safely.
    """

    def __init__(self) -> None:
        found = hidden_function("SSL_CTX_ctrl")
        self.problem = found if isinstance(found, str) else None
        self._ctrl = None if self.problem else found
        self._warned = False
        if self._ctrl is not None and not self._selfTest():
            self.problem, self._ctrl = "SSL_CTX_ctrl did not round-trip a ticket key", None

    @property
    def available(self) -> bool:
        """
        Whether ticket keys can be set on contexts.
        """
        return self._ctrl is not None

    def _selfTest(self) -> bool:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        key = os.urandom(TICKET_KEY_SIZE)
        return self._call(context, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, key) and self.get(context) == key

    def _call(self, context: SSL.Context, command: int, key: bytes | bytearray) -> bool:
        buffer = ffi.from_buffer(key)
        return self._ctrl(context._context, command, TICKET_KEY_SIZE, buffer) == 1

    def get(self, context: SSL.Context) -> bytes | None:
        """
        Return C{context}'s ticket key, or L{None} when it cannot be read.
        """
        if self._ctrl is None:
            return None
        out = bytearray(TICKET_KEY_SIZE)
        return bytes(out) if self._call(context, SSL_CTRL_GET_TLSEXT_TICKET_KEYS, out) else None

    def set(self, context: SSL.Context, key: bytes) -> bool:
        """
        Make C{context} encrypt and decrypt tickets with C{key} (80 bytes);
        return whether it does. When it cannot, warn once and leave the
        context's own random key in place.
        """
        if self._ctrl is None:
            if not self._warned:
                self._warned = True
                log.warn(
                    "shared session ticket keys are unavailable with this cryptography "
                    "build ({problem}): each process uses its own ticket key, so a "
                    "session resumes only on the process that made it",
                    event="ticket_keys_unavailable",
                    problem=self.problem,
                )
            return False
        if not self._call(context, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, key):
            return False
        return self.get(context) == key


_ticketCountSettable: bool | None = None


def set_ticket_count(context: SSL.Context, count: int) -> bool:
    """
    Make C{context} issue C{count} TLS 1.3 session tickets after a full
    handshake (OpenSSL's default is two); return whether it does. Nothing
    is called unless a scratch context first reads back OpenSSL's default
    and then the count set on it.
    """
    global _ticketCountSettable
    setter = hidden_function("SSL_CTX_set_num_tickets")
    getter = hidden_function("SSL_CTX_get_num_tickets")
    if isinstance(setter, str) or isinstance(getter, str):
        return False
    if _ticketCountSettable is None:
        scratch = SSL.Context(SSL.TLS_SERVER_METHOD)._context
        _ticketCountSettable = getter(scratch) == 2 and setter(scratch, 1) == 1 and getter(scratch) == 1
    if not _ticketCountSettable:
        return False
    return setter(context._context, count) == 1 and getter(context._context) == count


_keys: TicketKeys | None = None


def ticket_keys() -> TicketKeys:
    """
    Return the process's L{TicketKeys} (the symbol lookup is done once).
    """
    global _keys
    if _keys is None:
        _keys = TicketKeys()
    return _keys


def parse_ticket_key(content: bytes) -> bytes:
    """
    Return the 80-byte key in C{content} (raw, or base64 of it); raise
    L{ValueError} saying what was expected.
    """
    if len(content) == TICKET_KEY_SIZE:
        return content
    try:
        key = base64.b64decode(content.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != TICKET_KEY_SIZE:
        raise ValueError(
            f"expected {TICKET_KEY_SIZE} random bytes, or their base64 "
            f"(write one with: python -m twisted_mtls.pki ticket-key FILE); got {len(content)} bytes"
        )
    return key


def load_ticket_key(source, key: str, path: Path | None) -> bytes | None:
    """
    Return the ticket key in the file at C{path} (L{None} for no file);
    raise L{ConfigError} naming the file and key when it is not usable.
    """
    if path is None:
        return None
    try:
        content = path.read_bytes()
    except OSError as e:
        raise source.error(key, f"cannot read {path}: {e.strerror}") if source else ConfigError(
            f"{key}: cannot read {path}: {e.strerror}"
        )
    try:
        return parse_ticket_key(content)
    except ValueError as e:
        raise source.error(key, f"{path}: {e}") if source else ConfigError(f"{key}: {path}: {e}")


def write_ticket_key(path: Path) -> None:
    """
    Write a new random ticket key (base64) to C{path}, readable by its owner only.
    """
    text = base64.b64encode(os.urandom(TICKET_KEY_SIZE)) + b"\n"
    # A new file (mode 0600, O_EXCL): never one left behind with other modes.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # rotation: readers see the old key or the new one
    except BaseException:
        os.unlink(tmp)
        raise
