"""
The log of rejected handshakes, kept readable under a flood.

Each rejection is logged on its own line while they are few. Past C{burst}
in one second (a scanner, a misconfigured fleet, an attack) the rest of that
second's rejections are counted by reason and summed up in one line a
second later, so that a flood cannot bury the log or cost a line each.
"""

from __future__ import annotations

from collections import Counter

from twisted.logger import Logger

log = Logger(namespace="twisted_mtls")


class RejectionLog:
    """
    Logs C{handshake_failed} lines, at most C{burst} per C{period} seconds,
    and a C{handshake_failures_summarised} line for those beyond it.
    """

    def __init__(self, clock, burst: int = 20, period: float = 1.0) -> None:
        self.clock = clock
        self.burst = burst
        self.period = period
        self.windowStart = float("-inf")
        self.logged = 0
        self.unlogged: Counter[str] = Counter()
        self.summary = None

    def rejected(self, peer: str, reason: str) -> None:
        """
        The handshake of C{peer} was rejected for C{reason} (plain words).
        """
        now = self.clock.seconds()
        if now - self.windowStart >= self.period:
            self.windowStart, self.logged = now, 0
        if self.logged < self.burst:
            self.logged += 1
            log.warn("{peer} rejected: {reason}", event="handshake_failed", peer=peer, reason=reason)
            return
        self.unlogged[reason] += 1
        if self.summary is None:
            self.summary = self.clock.callLater(self.period, self.summarise)

    def summarise(self) -> None:
        """
        Log how many rejections were not logged one by one, per reason.
        """
        if self.summary is not None and self.summary.active():
            self.summary.cancel()
        self.summary = None
        counts, self.unlogged = self.unlogged, Counter()
        if not counts:
            return
        log.warn(
            "{count} more handshakes rejected, not logged one by one (over {burst} a second): {reasons}",
            event="handshake_failures_summarised",
            count=sum(counts.values()),
            burst=self.burst,
            reasons="; ".join(f"{n} × {reason}" for reason, n in counts.most_common()),
            by_reason=dict(counts),
        )
