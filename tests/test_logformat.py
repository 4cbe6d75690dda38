"""
Our log formatting says exactly what Twisted's does, for every kind of event.
"""

from __future__ import annotations

import datetime
import io

from twisted.logger import LogLevel, formatEvent, textFileLogObserver
from twisted.python.failure import Failure

from twisted_mtls.logformat import ClassicText, ISOMilliseconds, message
from twisted_mtls.logs import text_file_observer

from .support import TestCase


class Strange:
    def __str__(self) -> str:
        raise ValueError("no text")

    def __repr__(self) -> str:
        return "<strange>"


def _failure() -> Failure:
    try:
        1 / 0
    except ZeroDivisionError:
        return Failure()


def sample_events() -> list[dict]:
    """
    Return events of every shape the daemon and Twisted log.
    """
    base = {"log_namespace": "twisted_mtls", "log_level": LogLevel.info, "log_time": 1700000000.25}
    return [
        {**base, "log_format": "{peer} closed after {duration_ms:.0f} ms: {lines} lines; {reason}",
         "peer": "127.0.0.1:5", "duration_ms": 12.5, "lines": 3, "reason": "client closed"},
        {**base, "log_format": "{peer} connected: {subject} [{sans_text}] {x!r} {y[0]} {z.real}",
         "peer": "[::1]:7", "subject": "CN=é", "sans_text": "DNS:a", "x": "q", "y": [4], "z": 3},
        {**base, "log_format": "two\nlines {a}", "a": "and\nthree"},
        {**base, "log_format": "missing {nothere}"},
        {**base, "log_format": "bad spec {a:q}", "a": 1},
        {**base, "log_format": "call {f()}", "f": lambda: "called"},
        {**base, "log_format": "unprintable {s}", "s": Strange()},
        {**base, "log_format": b"bytes {a}", "a": 1},
        {**base, "log_format": None},
        {**base, "log_format": ""},
        {**base, "log_format": "system {a}", "a": 1, "log_system": "-"},
        {**base, "log_format": "odd system", "log_system": 42},
        {**base, "log_format": "unprintable system", "log_system": Strange()},
        {"log_format": "no time, level or namespace"},
        {**base, "log_format": "failed: {why}", "why": "x", "log_failure": _failure()},
        {**base, "log_format": "at a second's end", "log_time": 1700000000.9999997},
        {**base, "log_format": "just before", "log_time": 1700000000.9999994},
        {**base, "log_format": "before 1970", "log_time": -1.5},
        {**base, "log_format": "at zero", "log_time": 0},
        {**base, "log_format": "at an int", "log_time": 1700000001},
    ]


class FormatTests(TestCase):
    def test_text_lines_as_twisted(self):
        """The text observer writes byte for byte what twistd's text observer writes, whatever the event."""
        ours, theirs = io.StringIO(), io.StringIO()
        observer, reference = text_file_observer(ours), textFileLogObserver(theirs)
        for event in sample_events() * 2:  # the second time from the per-second cache
            observer(event)
            reference(event)
        self.assertEqual(ours.getvalue(), theirs.getvalue())
        self.assertIn("called", ours.getvalue())

    def test_text_across_seconds(self):
        """Consecutive events in different seconds each get their own timestamp."""
        text = ClassicText()
        for when in (100.0, 100.5, 101.0, 100.9, 3600.0 * 24 * 200):
            event = {"log_format": "t", "log_time": when}
            self.assertEqual(text(event), ClassicText()(event))

    def test_message_as_twisted(self):
        """The message of every event is what Twisted's formatEvent makes of it."""
        for event in sample_events():
            self.assertEqual(message(event), formatEvent(event))

    def test_iso_milliseconds(self):
        """JSON timestamps are UTC ISO 8601 with milliseconds, as datetime formats them."""
        iso = ISOMilliseconds()
        for when in (0, 0.0005, 1700000000.25, 1700000000.2399999, 1700000000.9999997,
                     1700000000.9994999, 1700000001.001, -1.5, 1700000000.0015):
            expected = datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            )
            self.assertEqual(iso(when), expected, when)
