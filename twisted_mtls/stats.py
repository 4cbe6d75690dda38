"""
Connection statistics kept in plain integers, cheap to update on the hot
path and read by the metrics collector.
"""

from __future__ import annotations

import bisect

# Upper bounds, in seconds, of the handshake duration histogram's buckets.
HANDSHAKE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Why a handshake failed, as a short label with a fixed set of values:
# (words in the plain-language reason, label), first match wins.
_HANDSHAKE_LABELS = (
    ("handshake not completed within", "timeout"),
    ("no client certificate", "no_certificate"),
    ("access policy", "policy"),
    ("not allowed by", "policy"),
    ("revoked", "revoked"),
    ("CRL", "crl"),
    ("expired", "expired"),
    ("not yet valid", "not_yet_valid"),
    ("unknown CA", "unknown_ca"),
    ("self-signed", "unknown_ca"),
    ("not a client certificate", "bad_usage"),
    ("TLS versions", "tls_version"),
    ("cipher suite", "no_shared_cipher"),
    ("not TLS", "not_tls"),
    ("closed the connection", "client_closed"),
)

HANDSHAKE_FAILURE_LABELS = tuple(dict.fromkeys(label for _, label in _HANDSHAKE_LABELS)) + (
    "other",
)


def handshake_failure_label(reason: str) -> str:
    """
    Return the metric label (one of L{HANDSHAKE_FAILURE_LABELS}) for a
    handshake failure explained as C{reason}.
    """
    for words, label in _HANDSHAKE_LABELS:
        if words in reason:
            return label
    return "other"


class ConnectionStats:
    """
    Totals over every connection a factory has served.

    Per-connection line and byte counts are added here when a connection
    ends; the collector adds those of the open ones.
    """

    def __init__(self) -> None:
        self.accepted = 0
        self.refused = 0
        self.readPauses = 0
        self.closed: dict[str, int] = {}
        self.handshakeFailures: dict[str, int] = {}
        self.handshakeBuckets = [0] * (len(HANDSHAKE_BUCKETS) + 1)
        self.handshakeSeconds = 0.0
        self.lines = 0
        self.bytesIn = 0
        self.bytesOut = 0
        self.soonestClientNotAfter: float | None = None

    def handshakeSucceeded(self, seconds: float, clientNotAfter: float) -> None:
        """
        Count a handshake that took C{seconds} with a client certificate
        valid until C{clientNotAfter} (POSIX time).
        """
        self.handshakeBuckets[bisect.bisect_left(HANDSHAKE_BUCKETS, seconds)] += 1
        self.handshakeSeconds += seconds
        if self.soonestClientNotAfter is None or clientNotAfter < self.soonestClientNotAfter:
            self.soonestClientNotAfter = clientNotAfter

    def handshakeFailed(self, reason: str) -> None:
        """
        Count a handshake that failed for C{reason}.
        """
        label = handshake_failure_label(reason)
        self.handshakeFailures[label] = self.handshakeFailures.get(label, 0) + 1

    def connectionClosed(self, label: str, lines: int, bytesIn: int, bytesOut: int) -> None:
        """
        Count a connection that ended for C{label} with its totals.
        """
        self.closed[label] = self.closed.get(label, 0) + 1
        self.lines += lines
        self.bytesIn += bytesIn
        self.bytesOut += bytesOut
