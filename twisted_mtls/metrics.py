"""
Prometheus metrics at C{/metrics} and a health check at C{/healthz}, over
plain HTTP on C{[metrics] listen}.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from twisted.application.service import Service
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from .listening import listen_or_exit
from .proxied import PROXY_FAILURE_LABELS
from .stats import HANDSHAKE_BUCKETS, HANDSHAKE_FAILURE_LABELS

log = Logger(namespace="twisted_mtls")

CLOSE_LABELS = (
    "client_closed",
    "connection_lost",
    "idle_timeout",
    "lifetime",
    "line_too_long",
    "shutdown",
    "handshake_failed",
    "error",
)


def _counter(name: str, help: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, help, value=value)


def _labelled(family, label: str, counts: dict, known=()):
    for value in dict.fromkeys((*known, *counts)):
        family.add_metric([value], counts.get(value, 0))
    return family


class MTLSCollector:
    """
    Reads the daemon's plain-integer statistics, its reload state and its
    material's validity dates when Prometheus scrapes.
    """

    def __init__(self, service, watcher=None) -> None:
        self.service = service
        self.watcher = watcher

    def describe(self):
        """
        Return no descriptions, so that registering does not collect.
        """
        return []

    def collect(self):
        """
        Yield every metric family.
        """
        factory = self.service.factory
        stats = factory.stats
        open_ = [p for p in factory.active if p.handshakeDone]
        yield _counter("mtls_connections_accepted", "TCP connections accepted.", stats.accepted)
        yield _counter(
            "mtls_connections_refused",
            "Connections closed at once because max_connections were open.",
            stats.refused,
        )
        yield GaugeMetricFamily(
            "mtls_connections_active", "Open connections (handshaking or served).", value=len(factory.active)
        )
        yield _labelled(
            CounterMetricFamily("mtls_connections_closed", "Connections closed, by reason.", labels=["reason"]),
            "reason",
            stats.closed,
            CLOSE_LABELS,
        )
        yield _labelled(
            CounterMetricFamily(
                "mtls_handshake_failures", "TLS handshakes that failed, by reason.", labels=["reason"]
            ),
            "reason",
            stats.handshakeFailures,
            HANDSHAKE_FAILURE_LABELS,
        )
        yield _counter(
            "mtls_policy_denials",
            "Verified clients refused by the access policy.",
            stats.handshakeFailures.get("policy", 0),
        )
        yield self._handshakeHistogram(stats)
        yield _counter(
            "mtls_lines_echoed", "Lines echoed.", stats.lines + sum(p.lines for p in open_)
        )
        yield _counter(
            "mtls_bytes_received",
            "Application bytes received from clients.",
            stats.bytesIn + sum(p.bytesIn for p in open_),
        )
        yield _counter(
            "mtls_bytes_echoed",
            "Application bytes sent back to clients.",
            stats.bytesOut + sum(p.bytesOut for p in open_),
        )
        yield _counter(
            "mtls_read_pauses",
            "Times reading from a client was paused because it did not read its output.",
            stats.readPauses,
        )
        yield from self._reloads()
        yield from self._validity(stats)
        yield from self._listener()

    def _listener(self):
        guard = self.service.acceptGuard
        yield _counter(
            "mtls_accept_pauses",
            "Times accepting was paused because file descriptors or kernel memory ran out.",
            guard.pauses if guard is not None else 0,
        )
        proxied = self.service.proxyFactory
        if proxied is not None:
            yield _labelled(
                CounterMetricFamily(
                    "mtls_proxy_header_failures",
                    "Connections closed for want of a valid PROXY header, by reason.",
                    labels=["reason"],
                ),
                "reason",
                proxied.failures,
                PROXY_FAILURE_LABELS,
            )

    def _handshakeHistogram(self, stats) -> HistogramMetricFamily:
        buckets, running = [], 0
        for bound, count in zip((*HANDSHAKE_BUCKETS, float("inf")), stats.handshakeBuckets):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return HistogramMetricFamily(
            "mtls_handshake_duration_seconds",
            "Time from accepting a connection to a completed handshake.",
            buckets=buckets,
            sum_value=stats.handshakeSeconds,
        )

    def _reloads(self):
        watcher = self.watcher
        if watcher is None:
            return
        reloads = CounterMetricFamily(
            "mtls_reloads", "Reloads of the served material, by result.", labels=["result"]
        )
        reloads.add_metric(["ok"], watcher.ok)
        reloads.add_metric(["failed"], watcher.failed)
        yield reloads
        if watcher.lastSuccess is not None:
            yield GaugeMetricFamily(
                "mtls_last_reload_success_timestamp_seconds",
                "When the material in use was loaded (POSIX time).",
                value=watcher.lastSuccess,
            )

    def _validity(self, stats):
        material = self.service.material
        expiry = GaugeMetricFamily(
            "mtls_certificate_not_after_timestamp_seconds",
            "notAfter of the served certificate and of each client CA (POSIX time).",
            labels=["role", "subject"],
        )
        leaf = material.chain[0]
        expiry.add_metric(["server", leaf.subject.rfc4514_string()], leaf.not_valid_after_utc.timestamp())
        for ca in material.client_cas:
            expiry.add_metric(["client_ca", ca.subject.rfc4514_string()], ca.not_valid_after_utc.timestamp())
        yield expiry
        crls = GaugeMetricFamily(
            "mtls_crl_next_update_timestamp_seconds",
            "nextUpdate of each CRL in use (POSIX time).",
            labels=["issuer"],
        )
        for crl in getattr(material, "crls", ()):
            if crl.next_update_utc is not None:
                crls.add_metric([crl.issuer.rfc4514_string()], crl.next_update_utc.timestamp())
        yield crls
        if stats.soonestClientNotAfter is not None:
            yield GaugeMetricFamily(
                "mtls_client_certificate_soonest_not_after_timestamp_seconds",
                "The soonest notAfter among the client certificates seen (POSIX time).",
                value=stats.soonestClientNotAfter,
            )


class MetricsPage(Resource):
    """
    C{/metrics}: the Prometheus text exposition of a registry.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self.registry)


class HealthPage(Resource):
    """
    C{/healthz}: 200 while the TLS listener is up with material loaded, 503 otherwise.
    """

    isLeaf = True

    def __init__(self, service) -> None:
        super().__init__()
        self.service = service

    def render_GET(self, request) -> bytes:
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        if self.service.port is not None and self.service.material is not None:
            return b"ok: listening with material loaded\n"
        request.setResponseCode(503)
        return b"unavailable: the TLS listener is not up\n"


def metrics_site(service, watcher=None) -> Site:
    """
    Return the HTTP site serving C{/metrics} and C{/healthz} for C{service},
    with a registry of its own.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MTLSCollector(service, watcher))
    root = Resource()
    root.putChild(b"metrics", MetricsPage(registry))
    root.putChild(b"healthz", HealthPage(service))
    site = _QuietSite(root)
    site.noisy = False
    return site


class _QuietSite(Site):
    """
    A site that does not log each scrape.
    """

    def log(self, request) -> None:
        pass


class MetricsService(Service):
    """
    Listens on C{[metrics] listen} (before privileges are dropped) and serves
    the metrics site; a listener that cannot be opened ends the start.
    """

    name = "metrics"
    port = None

    def __init__(self, listen: str, service, watcher=None, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.listen = listen
        self.site = metrics_site(service, watcher)

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        listen_or_exit(
            self.reactor, self.listen, self.site, self._listening, purpose=" for metrics"
        )

    def _listening(self, port) -> None:
        self.port = port
        host = port.getHost()
        log.info(
            "metrics on http://{address}/metrics and /healthz",
            event="metrics_listening",
            address=f"{getattr(host, 'host', '')}:{getattr(host, 'port', '')}",
        )

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
