"""
The exceptions twisted-mtls raises on purpose.
"""

from __future__ import annotations


class MTLSError(Exception):
    """
    Base class of every error twisted-mtls raises deliberately.
    """


class ConfigError(MTLSError):
    """
    A configuration value, or a file it names, is not usable.

    Its string names where the value came from (file, section and key, or
    command-line option) and what was expected.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.section = section
        self.key = key

    def where(self) -> str:
        """
        Return the place this error is about, e.g. ``etc/mtls.ini: [server] listen``.
        """
        parts = []
        if self.source:
            parts.append(self.source)
        place = " ".join(
            p
            for p in (f"[{self.section}]" if self.section else None, self.key)
            if p
        )
        if place:
            parts.append(place)
        return ": ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message
