"""
The twistd plugin, its options, and the daemon and client as real processes.
"""

from __future__ import annotations

import os

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

from twisted_mtls import config, tap

from .processes import LISTENING, client_of, run_process, start_daemon, twistd
from .support import TestCase, eventually, inline, make_folder
from .test_config import server_ini


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
        daemon, ini = start_daemon(self)
        found = await eventually(lambda: LISTENING.search(daemon.out) or daemon.ended.called, 15)
        self.assertFalse(daemon.ended.called, daemon.err)
        port = found.group(1).decode()
        client = client_of(ini, port)
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


class SystemdNotifyTests(TestCase):
    @inline
    async def test_ready_and_stopping_are_sent(self):
        """Under twistd with $NOTIFY_SOCKET set, the daemon sends READY=1 once it listens and STOPPING=1 on SIGTERM."""
        import shutil
        import socket as socketlib
        import tempfile

        folder = tempfile.mkdtemp(prefix="mtls-notify-")  # AF_UNIX paths are short
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "notify.sock")
        receiver = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM)
        self.addCleanup(receiver.close)
        receiver.bind(path)
        receiver.settimeout(0.05)
        daemon, _ = start_daemon(self, env={"NOTIFY_SOCKET": path})
        messages = []

        def received():
            try:
                messages.append(receiver.recv(4096).decode())
            except OSError:
                pass
            return messages

        ready = await eventually(received, timeout=10)
        self.assertIn("READY=1", ready[0])
        daemon.signal("TERM")
        self.assertEqual(await daemon.wait(10), 0, daemon.err)
        await eventually(lambda: any("STOPPING=1" in m for m in received()), timeout=5)
