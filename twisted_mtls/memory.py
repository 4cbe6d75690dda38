"""
Giving memory back to the system after a crowd of connections has gone.

Each TLS connection holds tens of KB in OpenSSL and in Python; when thousands
close, glibc keeps the freed heap for reuse and the process's RSS stays at
its peak. L{MemoryReleaser} asks glibc to return it (C{malloc_trim}) once the
open connections have fallen well below their peak.
"""

from __future__ import annotations

import ctypes
from typing import Callable

from twisted.logger import Logger

log = Logger(namespace="twisted_mtls")


def malloc_trim() -> Callable[[int], int] | None:
    """
    Return glibc's C{malloc_trim}, or L{None} where the C library has none.
    """
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


class MemoryReleaser:
    """
    Calls C{trim(0)} once the open connections (C{count()}) have fallen to a
    quarter of their peak since the last release, when that peak was at
    least C{minimum_peak}; at most once per C{interval} seconds, and never
    on the path of a single connection.
    """

    def __init__(
        self,
        clock,
        count: Callable[[], int],
        trim: Callable[[int], int] | None = malloc_trim(),
        minimum_peak: int = 256,
        interval: float = 5.0,
    ) -> None:
        self.clock = clock
        self.count = count
        self.trim = trim
        self.minimum_peak = minimum_peak
        self.interval = interval
        self.peak = 0
        self.pending = None
        self.released = 0

    def opened(self) -> None:
        """
        A connection opened.
        """
        open_now = self.count()
        if open_now > self.peak:
            self.peak = open_now

    def closed(self) -> None:
        """
        A connection closed: schedule a release when few are left of the peak.
        """
        if (
            self.trim is not None
            and self.pending is None
            and self.peak >= self.minimum_peak
            and self.count() <= self.peak // 4
        ):
            self.pending = self.clock.callLater(self.interval, self._release)

    def _release(self) -> None:
        self.pending = None
        peak, self.peak = self.peak, self.count()
        self.trim(0)
        self.released += 1
        log.debug(
            "returned freed memory to the system ({peak} connections at the peak, {now} now)",
            event="memory_released",
            peak=peak,
            now=self.peak,
        )

    def stop(self) -> None:
        """
        Cancel a scheduled release.
        """
        if self.pending is not None and self.pending.active():
            self.pending.cancel()
        self.pending = None
