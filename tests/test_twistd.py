"""
The twistd plugin, its options, and the daemon and client as real processes.
"""

from __future__ import annotations

import re

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from twisted_mtls import config, tap

from .processes import run_process, start, twistd
from .support import TestCase, eventually, inline, make_folder, pki
from .test_config import server_ini

_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+) ")


class PluginTests(TestCase):
    def test_plugin_found(self):
        """twistd's plugin search finds a service maker with tapname "mtls"."""
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertIn("mtls", makers)
        self.assertEqual(makers["mtls"].module, "twisted_mtls.tap")

    @inline
    async def test_help_documents_every_key(self):
        """twistd mtls --help lists an option for every [server] key, with its help."""
        status, out, err = await run_process(*twistd(), "mtls", "--help", python=False)
        self.assertEqual(status, 0, err)
        usage = out.decode()
        self.assertIn("--config=", usage)
        for f in config.settings(config.ServerConfig):
            option = "--" + f.name.replace("_", "-") + "="
            self.assertIn(option, usage)
            self.assertIn(" ".join(f.metadata["help"].split()[:3]), " ".join(usage.split()))

    def test_option_overrides_file(self):
        """An option given on the command line wins over the same key in the file."""
        ini = server_ini(make_folder(self), max_line_length="10", idle_timeout="5")
        options = tap.Options()
        options.parseOptions(["--config", str(ini), "--max-line-length", "77"])
        self.assertEqual(options.serverConfig.max_line_length, 77)
        self.assertEqual(options.serverConfig.idle_timeout, 5)


class EndToEndTests(TestCase):
    @inline
    async def test_daemon_and_client(self):
        """twistd serves the real client's --message and stdin lines, and shuts down cleanly on SIGTERM."""
        folder = make_folder(self)
        p = pki()
        ini = server_ini(folder)
        for name in ("client.pem", "client.key"):
            (folder / name).write_bytes((p.folder / name).read_bytes())
        daemon = start([*twistd(), "-n", "--pidfile=", "mtls", "--config", str(ini)])
        self.addCleanup(daemon.signal, "KILL")
        found = await eventually(lambda: _LISTENING.search(daemon.out) or daemon.ended.called, 15)
        self.assertFalse(daemon.ended.called, daemon.err)
        port = found.group(1).decode()
        with open(ini, "a") as f:
            f.write(
                f"\n[client]\nconnect = 127.0.0.1:{port}\nserver_name = localhost\n"
                "certificate = client.pem\nprivate_key = client.key\nca = ca.pem\n"
            )
        client = ("-m", "twisted_mtls.client", "--config", str(ini))
        status, out, err = await run_process(*client, "--message", "hi")
        self.assertEqual((status, out, err), (0, b"hi\n", b""))
        lines = b"".join(b"line %d\n" % n for n in range(500)) + b"crlf\r\nlast"
        status, out, err = await run_process(*client, stdin=lines)
        self.assertEqual((status, out, err), (0, lines + b"\n", b""))
        daemon.signal("TERM")
        self.assertEqual(await daemon.wait(10), 0, daemon.err)
        self.assertIn(b"Server Shut Down.", daemon.out)
        self.assertEqual(daemon.out.count(b" connected: CN=alice"), 2)
        self.assertNotIn(b"Traceback", daemon.out + daemon.err)
