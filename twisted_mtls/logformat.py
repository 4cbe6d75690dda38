"""
Log event formatting that says exactly what Twisted's says, at a fraction of
the cost: a connection logs two lines, and Twisted's text formatting (a
C{strftime} and a time zone per event, C{string.Formatter} over a wrapping
mapping) was about a seventh of a handshake's CPU (see BENCHMARKS.md).

Timestamps are formatted once per second; a message whose format is plain
C{str.format} (no C{"()"} calls) is formatted with C{str.format_map}. Any
other event (a failure, a flattened event, a format that does not format)
goes through Twisted's own functions, so the text is always Twisted's.
"""

from __future__ import annotations

import datetime
from typing import Callable

from twisted.logger import formatEvent, formatEventAsClassicLogText, formatTime
from twisted.logger._format import timeFormatRFC3339


def message(event: dict) -> str:
    """
    Return C{event}'s message, as L{twisted.logger.formatEvent} would.
    """
    text = event.get("log_format")
    if type(text) is str and "()" not in text and "log_flattened" not in event:
        try:
            return text.format_map(event)
        except Exception:
            pass  # Twisted says it could not format it, and how
    return formatEvent(event)


class PerSecond:
    """
    Caches C{format(second)} for the last whole second asked for.
    """

    __slots__ = ("format", "second", "text")

    def __init__(self, format: Callable[[int], str]) -> None:
        self.format = format
        self.second: int | None = None
        self.text = ""

    def __call__(self, when: float) -> str:
        second = int(when)
        if second != self.second:
            self.text = self.format(second)
            self.second = second
        return self.text


def _whole_second(when: float) -> bool:
    # fromtimestamp rounds to microseconds: x.9999995 is the next second.
    return 0 <= when - int(when) < 0.9999995


class ClassicText:
    """
    Formats an event as twistd's text log line (L{formatEventAsClassicLogText}
    with C{timeFormat}), newline included; L{None} when it says nothing.
    """

    def __init__(self, timeFormat: str | None = timeFormatRFC3339) -> None:
        self.timeFormat = timeFormat
        self._stamp = PerSecond(self._formatTime)

    def _formatTime(self, when: float | None) -> str:
        return formatTime(when, self.timeFormat)

    def formatTime(self, when: float | None) -> str:
        """
        Return C{when} formatted as L{twisted.logger.formatTime} would.
        """
        if when is None or self.timeFormat is None or not _whole_second(when):
            return self._formatTime(when)
        return self._stamp(when)

    def __call__(self, event: dict) -> str | None:
        if "log_failure" in event:
            return formatEventAsClassicLogText(event, self.formatTime)
        text = message(event)
        if not text:
            return None
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        else:
            try:
                system = str(system)
            except Exception:
                system = "UNFORMATTABLE"
        line = f"{self.formatTime(event.get('log_time'))} [{system}] {text}"
        return line.replace("\n", "\n\t") + "\n"


def _iso_second(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, datetime.timezone.utc).isoformat()


class ISOMilliseconds:
    """
    Formats a POSIX time as UTC ISO 8601 with milliseconds, as
    C{datetime.fromtimestamp(when, utc).isoformat(timespec="milliseconds")}.
    """

    def __init__(self) -> None:
        self._second = PerSecond(_iso_second)

    def __call__(self, when: float) -> str:
        if not _whole_second(when):
            return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            )
        # "2024-01-02T03:04:05+00:00": insert ".mmm" before the offset
        base = self._second(when)
        micros = round((when - int(when)) * 1e6)
        return f"{base[:19]}.{micros // 1000:03d}{base[19:]}"
