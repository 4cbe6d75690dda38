"""
JSON logs, and the daemon under twistd with its logging options.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher

from twisted_mtls import config
from twisted_mtls.logs import STABLE_FIELDS, JSONFileObserver, JSONSyslogObserver, twistd_observer

from .support import (
    TestCase,
    client_config,
    eventually,
    inline,
    make_folder,
    pki,
    server_config,
    start_server,
    stranger_config,
    talk,
)

REPO = Path(__file__).resolve().parent.parent


class JSONLogTests(TestCase):
    @inline
    async def test_every_line_parses(self):
        """Every line written during a session is one JSON object with the stable field names."""
        output = io.StringIO()
        observer = JSONFileObserver(output)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        service = start_server(self, server_config(min_tls_version="1.3"))
        await talk(client_config(service), b"hello")
        await talk(stranger_config(self, service), b"x")
        await eventually(lambda: output.getvalue().count('"event":"connection_closed"'))
        records = [json.loads(line) for line in output.getvalue().splitlines()]
        self.assertTrue(all(isinstance(r, dict) and r["event"] and r["time"] for r in records))
        by_event = {r["event"]: r for r in records}
        opened, closed = by_event["connection_open"], by_event["connection_closed"]
        for key in ("peer", "subject", "cn", "sans", "fingerprint", "tls_version", "cipher"):
            self.assertIn(key, opened)
        self.assertEqual(opened["tls_version"], "TLSv1.3")
        for key in ("duration_ms", "bytes_in", "bytes_out", "lines", "reason"):
            self.assertIn(key, closed)
        self.assertEqual((closed["lines"], closed["bytes_in"]), (1, 6))
        self.assertIn("reason", by_event["handshake_failed"])
        self.assertTrue(set(STABLE_FIELDS) <= set(opened) | set(closed))

    def test_twistd_destinations(self):
        """The JSON and text observers write where --logfile says; text to --syslog keeps twistd's own."""
        self.assertIsNone(twistd_observer("text", {"syslog": True}))
        folder = make_folder(self)
        text = twistd_observer("text", {"logfile": str(folder / "text.log"), "nodaemon": True})
        text({"log_format": "reloaded {trigger}", "log_time": 0, "trigger": "SIGHUP", "log_system": "s"})
        self.assertTrue((folder / "text.log").read_text().endswith(" [s] reloaded SIGHUP\n"))
        observer = twistd_observer("json", {"logfile": str(folder / "mtls.log"), "nodaemon": True})
        observer({"event": "reloaded", "log_format": "reloaded", "log_time": 0, "trigger": "SIGHUP"})
        observer.output.close()
        record = json.loads((folder / "mtls.log").read_text())
        self.assertEqual((record["event"], record["trigger"]), ("reloaded", "SIGHUP"))
        sent = []
        JSONSyslogObserver("mtls", lambda priority, text: sent.append((priority, text)))(
            {"event": "listening", "log_format": "up", "log_time": 0}
        )
        self.assertEqual(json.loads(sent[0][1])["message"], "up")


class TwistdTests(TestCase):
    @inline
    async def test_sigterm_under_twistd(self):
        """Under twistd with --logfile and JSON logs, SIGTERM ends the daemon with status 0 and every log line parses."""
        folder = make_folder(self).resolve()
        p = pki()
        (folder / "mtls.ini").write_text(
            f"[server]\nlisten = tcp:0:interface=127.0.0.1\ncertificate = {p.folder}/server.pem\n"
            f"private_key = {p.folder}/server.key\nclient_ca = {p.folder}/ca.pem\n\n[log]\nformat = json\n"
        )
        logfile = folder / "mtls.log"
        process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
             f"--pidfile={folder / 'twistd.pid'}", f"--logfile={logfile}", "mtls", "--config", str(folder / "mtls.ini")],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        await eventually(lambda: logfile.exists() and '"event":"listening"' in logfile.read_text(), timeout=20)
        listening = next(
            json.loads(line) for line in logfile.read_text().splitlines() if '"event":"listening"' in line
        )
        port = listening["address"].rpartition(":")[2]
        settings = config.load(config.ClientConfig, None, {
            "connect": f"127.0.0.1:{port}", "server_name": "localhost", "ca": f"{p.folder}/ca.pem",
            "certificate": f"{p.folder}/client.pem", "private_key": f"{p.folder}/client.key",
        })
        self.assertEqual((await talk(settings, b"under twistd")).output, b"under twistd\n")
        process.send_signal(signal.SIGTERM)
        await eventually(lambda: process.poll() is not None, timeout=20)
        self.assertEqual(process.returncode, 0, process.stdout.read())
        records = [json.loads(line) for line in logfile.read_text().splitlines()]
        events = [r["event"] for r in records]
        self.assertIn("connection_closed", events)
        self.assertIn("shutdown", events)
        process.stdout.close()
        await task.deferLater(reactor, 0, lambda: None)
