"""
Writing keys, certificates and other files of a PKI: atomically when
replacing, never over an existing file unless forced, private keys 0600.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Union

from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    from .certbuilder import PrivateKey

StrPath = Union[str, "os.PathLike[str]"]


def pkcs8_pem(key: PrivateKey) -> bytes:
    """The private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_file(
    path: StrPath, data: bytes, *, mode: int = 0o644, force: bool = False
) -> None:
    """Write data to path with the given mode; FileExistsError unless force."""
    if not force:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        _fill_or_remove(fd, path, data, mode)
        return
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    _fill_or_remove(fd, temporary, data, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _fill_or_remove(fd: int, path: StrPath, data: bytes, mode: int) -> None:
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(path)
        raise


def write_private_key(path: StrPath, key: PrivateKey, *, force: bool = False) -> None:
    """Write key as unencrypted PKCS#8 PEM, readable by the owner only (0600)."""
    write_file(path, pkcs8_pem(key), mode=0o600, force=force)


def write_pem(path: StrPath, data: bytes, *, force: bool = False) -> None:
    """Write PEM data with mode 0644."""
    write_file(path, data, mode=0o644, force=force)
