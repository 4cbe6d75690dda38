"""
The rejected-handshake log under a flood.
"""

from twisted.internet.task import Clock

from twisted_mtls.rejections import RejectionLog

from .support import LogEvents, TestCase


class RejectionLogTests(TestCase):
    def test_few_rejections_are_each_logged(self):
        """Up to the burst, each rejection gets its own line with its reason."""
        events = LogEvents(self)
        rejections = RejectionLog(Clock(), burst=3)
        for n in range(3):
            rejections.rejected(f"127.0.0.1:{n}", "no client certificate was presented")
        self.assertEqual(len(events.named("handshake_failed")), 3)
        self.assertEqual(events.named("handshake_failures_summarised"), [])

    def test_flood_is_summarised_per_reason(self):
        """Past the burst in one second, the rest are counted by reason and summed up one second later."""
        events = LogEvents(self)
        clock = Clock()
        rejections = RejectionLog(clock, burst=2)
        for n in range(10):
            rejections.rejected(f"127.0.0.1:{n}", "not TLS" if n % 3 else "unknown CA")
        self.assertEqual(len(events.named("handshake_failed")), 2)
        clock.advance(1)
        (summary,) = events.named("handshake_failures_summarised")
        self.assertEqual(summary["count"], 8)
        self.assertEqual(summary["by_reason"], {"not TLS": 5, "unknown CA": 3})
        self.assertIn("5 × not TLS; 3 × unknown CA", summary["reasons"])
        rejections.rejected("127.0.0.1:99", "unknown CA")  # a new second: logged again
        self.assertEqual(len(events.named("handshake_failed")), 3)

    def test_summary_at_stop(self):
        """Stopping logs the pending summary at once and leaves no timer behind."""
        events = LogEvents(self)
        clock = Clock()
        rejections = RejectionLog(clock, burst=0)
        rejections.rejected("127.0.0.1:1", "not TLS")
        rejections.summarise()
        self.assertEqual(events.named("handshake_failures_summarised")[0]["count"], 1)
        self.assertEqual(clock.getDelayedCalls(), [])
