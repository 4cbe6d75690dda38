"""
Reading the INI configuration file, refusing sections and keys it does not know.
"""

from __future__ import annotations

import configparser
import os
from typing import Collection, Mapping

from .errors import ConfigError


def read_section(
    config_file: str | os.PathLike,
    name: str,
    known: Mapping[str, Collection[str]],
) -> dict[str, str] | None:
    """
    Return the keys of C{[name]} in an INI file (L{None} when it has no such
    section); raise L{ConfigError} on an unreadable file or on a section or
    key not in C{known} (section name to its key names).
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
        if section not in known:
            raise ConfigError(
                f"unknown section (expected one of: {', '.join(f'[{s}]' for s in known)})",
                source=where,
                section=section,
            )
        for key in parser[section]:
            if key not in known[section]:
                raise ConfigError(
                    f"unknown key (expected one of: {', '.join(sorted(known[section]))})",
                    source=where,
                    section=section,
                    key=key,
                )
    if not parser.has_section(name):
        return None
    return dict(parser[name])


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]
