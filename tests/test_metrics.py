"""
The Prometheus metrics and the health check, after a scripted session.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent

from twisted_mtls.metrics import MetricsService
from twisted_mtls.reload import MaterialWatcher

from .support import (
    TestCase,
    client_config,
    inline,
    pki,
    start_server,
    stranger_config,
    talk,
)


async def get(service: MetricsService, path: str) -> tuple[int, bytes]:
    """
    GET C{path} from the metrics listener; return the status and body.
    """
    port = service.port.getHost().port
    response = await Agent(reactor).request(b"GET", f"http://127.0.0.1:{port}{path}".encode())
    body = _Body()
    response.deliverBody(body)
    return response.code, await body.done


class _Body(Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.done: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason) -> None:
        self.done.callback(self.data)


def samples(text: bytes) -> dict:
    """
    Return every sample of a Prometheus text page as {(name, labels): value}.
    """
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def start_metrics(testcase, service) -> MetricsService:
    """
    Serve the metrics of C{service} on a free loopback port until the test ends.
    """
    metrics = MetricsService("tcp:0:interface=127.0.0.1", service, MaterialWatcher(service, handleSignals=False))
    metrics.privilegedStartService()
    metrics.startService()
    testcase.addCleanup(metrics.stopService)
    return metrics


class MetricsTests(TestCase):
    @inline
    async def test_metrics_after_session(self):
        """After two good sessions and one untrusted client /metrics reports every series."""
        service = start_server(self)
        metrics = start_metrics(self, service)
        settings = client_config(service)
        await talk(settings, b"hello")
        await talk(settings, b"a\nb")
        refused = await talk(stranger_config(self, service), b"no")
        self.assertIsNotNone(refused.failure)
        status, body = await get(metrics, "/metrics")
        self.assertEqual(status, 200)
        found = samples(body)
        self.assertEqual(found[("mtls_connections_accepted_total", ())], 3)
        self.assertEqual(found[("mtls_connections_active", ())], 0)
        self.assertEqual(found[("mtls_connections_closed_total", (("reason", "client_closed"),))], 2)
        self.assertEqual(found[("mtls_handshake_failures_total", (("reason", "unknown_ca"),))], 1)
        self.assertEqual(found[("mtls_handshake_duration_seconds_count", ())], 2)
        self.assertEqual(found[("mtls_lines_echoed_total", ())], 3)
        self.assertEqual(found[("mtls_bytes_received_total", ())], 10)
        self.assertEqual(found[("mtls_bytes_echoed_total", ())], 10)
        self.assertEqual(found[("mtls_policy_denials_total", ())], 0)
        self.assertEqual(found[("mtls_reloads_total", (("result", "failed"),))], 0)
        self.assertIn(("mtls_last_reload_success_timestamp_seconds", ()), found)
        p = pki()
        self.assertEqual(
            found[("mtls_certificate_not_after_timestamp_seconds", (("role", "server"), ("subject", "CN=localhost")))],
            p.server.certificate.not_valid_after_utc.timestamp(),
        )
        self.assertEqual(
            found[("mtls_certificate_not_after_timestamp_seconds", (("role", "client_ca"), ("subject", "CN=Test Root CA")))],
            p.ca.certificate.not_valid_after_utc.timestamp(),
        )
        self.assertEqual(
            found[("mtls_client_certificate_soonest_not_after_timestamp_seconds", ())],
            p.client.certificate.not_valid_after_utc.timestamp(),
        )
        self.assertIn(b"mtls_crl_next_update_timestamp_seconds", body)

    @inline
    async def test_healthz(self):
        """/healthz answers 200 while the TLS listener is up and 503 once it is stopped."""
        service = start_server(self)
        metrics = start_metrics(self, service)
        self.assertEqual((await get(metrics, "/healthz"))[0], 200)
        await service.stopService()
        status, body = await get(metrics, "/healthz")
        self.assertEqual(status, 503)
        self.assertIn(b"not up", body)
