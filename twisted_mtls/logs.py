"""
Structured logs: with C{[log] format = json} every log event becomes one
JSON object per line, written where twistd would write its text
(C{--logfile}, stdout, or C{--syslog}).
"""

from __future__ import annotations

import json
import sys
from typing import IO, Callable

from twisted.logger import FileLogObserver, ILogObserver, LogLevel
from zope.interface import implementer

from .logformat import ClassicText, ISOMilliseconds, message

# Fields that keep their name and meaning from one release to the next.
STABLE_FIELDS = (
    "peer",
    "subject",
    "cn",
    "sans",
    "serial",
    "issuer",
    "fingerprint",
    "not_after",
    "tls_version",
    "cipher",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "lines",
    "reason",
)

_SYSLOG_PRIORITIES = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


def _plain(value):
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


_iso_time = ISOMilliseconds()


def json_record(event: dict) -> dict:
    """
    Return C{event} as a flat JSON-friendly mapping: C{time}, C{level},
    C{event} (C{log} for events not our own), C{message}, the stable fields
    it has, then its other public fields.
    """
    record = {
        "time": _iso_time(event.get("log_time", 0)),
        "level": getattr(event.get("log_level"), "name", "info"),
        "event": str(event.get("event", "log")),
        "message": message(event),
    }
    for key in STABLE_FIELDS:
        if key in event:
            record[key] = _plain(event[key])
    for key, value in event.items():
        if key not in record and not key.startswith(("log_", "_")) and key not in ("format", "message", "isError", "system", "time"):
            record[key] = _plain(value)
    if isinstance(record.get("duration_ms"), float):
        record["duration_ms"] = round(record["duration_ms"], 3)
    failure = event.get("log_failure")
    if failure is not None:
        record["error"] = failure.getErrorMessage()
        record["traceback"] = failure.getTraceback()
    if event.get("log_namespace") and record["event"] == "log":
        record["namespace"] = event["log_namespace"]
    return record


def json_line(event: dict) -> str:
    """
    Return C{event} as one line of JSON, newline included.
    """
    return json.dumps(json_record(event), ensure_ascii=False, separators=(",", ":")) + "\n"


@implementer(ILogObserver)
class JSONFileObserver:
    """
    Writes each event as one JSON line to a text file.
    """

    def __init__(self, output: IO[str]) -> None:
        self.output = output

    def __call__(self, event: dict) -> None:
        self.output.write(json_line(event))
        self.output.flush()


@implementer(ILogObserver)
class JSONSyslogObserver:
    """
    Sends each event to syslog as one JSON message.
    """

    def __init__(self, prefix: str, send: Callable[[int, str], None] | None = None) -> None:
        if send is None:
            import syslog

            syslog.openlog(prefix, syslog.LOG_PID, syslog.LOG_DAEMON)
            send = syslog.syslog
        self.send = send

    def __call__(self, event: dict) -> None:
        priority = _SYSLOG_PRIORITIES.get(event.get("log_level"), 6)
        self.send(priority, json_line(event).rstrip("\n"))


def text_file_observer(output) -> FileLogObserver:
    """
    Return an observer that writes to C{output} exactly the lines twistd's
    text observer (L{twisted.logger.textFileLogObserver}) would, more cheaply.
    """
    return FileLogObserver(output, ClassicText())


def twistd_observer(log_format: str, twistd_options) -> ILogObserver | None:
    """
    Return the observer for C{log_format} that writes where twistd's
    C{--logfile} / C{--syslog} / C{--prefix} / C{-n} options say, as
    twistd's own observer would (a log file rotates at 1 MB and on
    SIGUSR1), or L{None} to keep twistd's (text to syslog).
    """
    if twistd_options.get("syslog"):
        if log_format != "json":
            return None
        return JSONSyslogObserver(twistd_options.get("prefix") or "twisted")
    observer = JSONFileObserver if log_format == "json" else text_file_observer
    name = twistd_options.get("logfile")
    if not name and not twistd_options.get("nodaemon"):
        name = "twistd.log"
    if not name or name == "-":
        return observer(sys.stdout)
    import signal

    from twisted.python.logfile import LogFile

    logfile = LogFile.fromFullPath(name)
    if hasattr(signal, "SIGUSR1") and not signal.getsignal(signal.SIGUSR1):
        signal.signal(signal.SIGUSR1, lambda *_: _reactor().callFromThread(logfile.rotate))
    return observer(logfile)


def _reactor():
    from twisted.internet import reactor

    return reactor
