"""
Returning freed memory to the system after many connections closed.
"""

from twisted.internet.task import Clock

from twisted_mtls.memory import MemoryReleaser, malloc_trim

from .support import TestCase


class MemoryReleaserTests(TestCase):
    def releaser(self, minimum_peak: int = 8):
        self.open = 0
        self.calls: list[int] = []
        self.clock = Clock()
        return MemoryReleaser(
            self.clock, lambda: self.open, self.calls.append, minimum_peak=minimum_peak, interval=5
        )

    def crowd(self, releaser, up: int, down_to: int) -> None:
        for _ in range(up):
            self.open += 1
            releaser.opened()
        while self.open > down_to:
            self.open -= 1
            releaser.closed()

    def test_release_after_crowd_leaves(self):
        """Once the open connections fall to a quarter of a large peak, memory is trimmed once, a few seconds later."""
        releaser = self.releaser(minimum_peak=20)
        self.crowd(releaser, 40, 10)
        self.assertEqual(self.calls, [])
        self.clock.advance(5)
        self.assertEqual(self.calls, [0])
        self.assertEqual(releaser.peak, 10)
        self.crowd(releaser, 0, 0)
        self.clock.advance(60)
        self.assertEqual(self.calls, [0])  # 10 is under the minimum peak: no more trims

    def test_small_peaks_and_busy_servers_do_not_trim(self):
        """A small crowd, or one that only halves, is left alone."""
        releaser = self.releaser(minimum_peak=100)
        self.crowd(releaser, 50, 0)
        releaser2 = self.releaser(minimum_peak=8)
        self.crowd(releaser2, 40, 20)
        self.clock.advance(60)
        self.assertEqual(self.calls, [])

    def test_stop_cancels(self):
        """Stopping cancels a scheduled release."""
        releaser = self.releaser()
        self.crowd(releaser, 40, 0)
        releaser.stop()
        self.clock.advance(60)
        self.assertEqual(self.calls, [])

    def test_glibc_has_malloc_trim(self):
        """On this (glibc) machine the real malloc_trim is found and runs."""
        trim = malloc_trim()
        if trim is None:
            self.skipTest("no malloc_trim in this C library")
        self.assertIn(trim(0), (0, 1))
