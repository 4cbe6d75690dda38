"""
Hot reload of the served certificate, key and client CAs.
"""

from __future__ import annotations

import datetime
import os
import signal

from twisted_mtls import certbuilder
from twisted_mtls.reload import MaterialWatcher

from .support import (
    LogEvents,
    TestCase,
    client_config,
    inline,
    make_folder,
    open_session,
    pki,
    server_config,
    start_server,
    talk,
)


def write_server(folder, name: str, issued) -> None:
    """
    Write C{issued} as FOLDER/server.pem and server.key, each by an atomic rename.
    """
    for suffix, write in (
        ("pem", lambda p: certbuilder.write_pem(p, issued.pem())),
        ("key", lambda p: certbuilder.write_private_key(p, issued.key)),
    ):
        temporary = folder / f".{name}.{suffix}.tmp"
        write(temporary)
        os.replace(temporary, folder / f"{name}.{suffix}")


def new_server(common_name: str = "localhost", **kwargs):
    """
    Return a fresh server certificate from the test CA.
    """
    return certbuilder.make_server(
        pki().ca, common_name, ("DNS:localhost", "IP:127.0.0.1"), **kwargs
    )


def serve_from(testcase, folder, **overrides):
    """
    Start a server whose certificate and key are FOLDER/server.*, and its watcher.
    """
    write_server(folder, "server", pki().server)
    settings = server_config(
        certificate=str(folder / "server.pem"), private_key=str(folder / "server.key"), **overrides
    )
    service = start_server(testcase, settings)
    watcher = MaterialWatcher(service, handleSignals=False)
    watcher.startService()
    testcase.addCleanup(watcher.stopService)
    return service, watcher


class ReloadTests(TestCase):
    @inline
    async def test_new_connections_get_new_certificate(self):
        """After a reload new handshakes see the new certificate while an open connection keeps echoing."""
        folder = make_folder(self)
        service, watcher = serve_from(self, folder)
        settings = client_config(service)
        before = await open_session(self, settings)
        self.assertEqual(await before.echo(b"one"), b"one\n")
        replacement = new_server()
        write_server(folder, "server", replacement)
        self.assertTrue(watcher.reload("test"))
        after = await open_session(self, settings)
        self.assertEqual(after.served_certificate().serial_number, replacement.certificate.serial_number)
        self.assertEqual(before.served_certificate().serial_number, pki().server.certificate.serial_number)
        self.assertEqual(await before.echo(b"two"), b"two\n")
        self.assertEqual(await after.echo(b"three"), b"three\n")
        self.assertEqual((watcher.ok, watcher.failed), (1, 0))

    @inline
    async def test_broken_reload_keeps_old_certificate(self):
        """A corrupt, mismatched or expired replacement is refused with a logged reason and the old certificate stays."""
        folder = make_folder(self)
        events = LogEvents(self)
        service, watcher = serve_from(self, folder)
        expired = new_server(
            not_before=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
            not_after=datetime.datetime(2021, 1, 1, tzinfo=datetime.timezone.utc),
        )
        write_server(folder, "server", expired)
        self.assertFalse(watcher.reload("test"))
        (folder / "server.pem").write_bytes(pki().server.pem())
        certbuilder.write_private_key(folder / "server.key", new_server().key, force=True)
        self.assertFalse(watcher.reload("test"))
        (folder / "server.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n")
        self.assertFalse(watcher.reload("test"))
        reasons = [e["reason"] for e in events.named("reload_failed")]
        self.assertIn("expired on 2021-01-01", reasons[0])
        self.assertIn("does not match the certificate", reasons[1])
        self.assertIn("holds no PEM certificate", reasons[2])
        self.assertEqual((watcher.ok, watcher.failed), (0, 3))
        session = await open_session(self, client_config(service))
        self.assertEqual(session.served_certificate().serial_number, pki().server.certificate.serial_number)
        self.assertEqual(await session.echo(b"still"), b"still\n")

    @inline
    async def test_symlink_swap_is_seen(self):
        """A Kubernetes-style swap of a ..data symlink is picked up by polling, and only once."""
        folder = make_folder(self)
        first, second = folder / "..2024_01", folder / "..2024_02"
        first.mkdir()
        second.mkdir()
        write_server(first, "server", pki().server)
        (folder / "..data").symlink_to(first.name)
        for name in ("server.pem", "server.key"):
            (folder / name).symlink_to(f"..data/{name}")
        settings = server_config(
            certificate=str(folder / "server.pem"), private_key=str(folder / "server.key")
        )
        service = start_server(self, settings)
        watcher = MaterialWatcher(service, handleSignals=False)
        self.assertIsNone(watcher.poll())
        replacement = new_server()
        write_server(second, "server", replacement)
        (folder / "..data_tmp").symlink_to(second.name)
        os.replace(folder / "..data_tmp", folder / "..data")
        self.assertTrue(watcher.poll())
        self.assertIsNone(watcher.poll())
        session = await open_session(self, client_config(service))
        self.assertEqual(session.served_certificate().serial_number, replacement.certificate.serial_number)

    @inline
    async def test_reload_interval_polls(self):
        """With reload_interval set, a changed file is reloaded without a signal."""
        folder = make_folder(self)
        events = LogEvents(self)
        service, watcher = serve_from(self, folder, reload_interval="0.02")
        write_server(folder, "server", new_server())
        reloaded = await events.first("reloaded")
        self.assertEqual(reloaded["trigger"], "files changed")

    @inline
    async def test_sighup_reloads(self):
        """SIGHUP reloads the material and logs it."""
        folder = make_folder(self)
        events = LogEvents(self)
        write_server(folder, "server", pki().server)
        service = start_server(
            self,
            server_config(certificate=str(folder / "server.pem"), private_key=str(folder / "server.key")),
        )
        watcher = MaterialWatcher(service)
        watcher.startService()
        self.addCleanup(watcher.stopService)
        replacement = new_server()
        write_server(folder, "server", replacement)
        os.kill(os.getpid(), signal.SIGHUP)
        reloaded = await events.first("reloaded")
        self.assertEqual(reloaded["trigger"], "SIGHUP")
        outcome = await talk(client_config(service), b"after")
        self.assertEqual(outcome.output, b"after\n")


class ConfigReloadTests(TestCase):
    def serve_file(self, text: str):
        """
        Start a server from an INI file holding C{text}; return it, its
        watcher and the file.
        """
        from twisted_mtls import config

        path = make_folder(self) / "mtls.ini"
        path.write_text(text)
        load = lambda: config.load(config.ServerConfig, path)  # noqa: E731
        settings = load()
        service = start_server(self, settings)
        watcher = MaterialWatcher(service, handleSignals=False, loadConfig=load)
        watcher.startService()
        self.addCleanup(watcher.stopService)
        return service, watcher, path

    @inline
    async def test_policy_edit_applies_on_reload(self):
        """Editing the policy in the configuration file and reloading refuses new clients the new policy excludes."""
        p = pki()
        base = (
            "[server]\nlisten = tcp:0:interface=127.0.0.1\n"
            f"certificate = {p.folder / 'server.pem'}\nprivate_key = {p.folder / 'server.key'}\n"
            f"client_ca = {p.folder / 'ca.pem'}\n"
        )
        service, watcher, path = self.serve_file(base + "allow_cn = alice\n")
        self.assertIsNone((await talk(client_config(service))).failure)
        path.write_text(base + "allow_cn = bob\n")
        self.assertTrue(watcher.poll())
        refused = await talk(client_config(service))
        self.assertIn("refused our certificate", refused.reason)

    @inline
    async def test_restart_only_key_is_kept(self):
        """A changed listen key is kept as it was, with a warning, while the rest reloads."""
        events = LogEvents(self)
        p = pki()
        base = (
            f"certificate = {p.folder / 'server.pem'}\nprivate_key = {p.folder / 'server.key'}\n"
            f"client_ca = {p.folder / 'ca.pem'}\n"
        )
        service, watcher, path = self.serve_file("[server]\nlisten = tcp:0:interface=127.0.0.1\n" + base)
        path.write_text("[server]\nlisten = tcp:1:interface=127.0.0.1\nmax_line_length = 10\n" + base)
        self.assertTrue(watcher.poll())
        self.assertEqual(service.config.listen, "tcp:0:interface=127.0.0.1")
        self.assertEqual(service.factory.config.max_line_length, 10)
        warning = await events.first("reload_needs_restart")
        self.assertEqual(warning["key"], "listen")

    @inline
    async def test_broken_config_edit_keeps_serving(self):
        """A reload of a configuration file with a bad value keeps the previous configuration and says why."""
        events = LogEvents(self)
        p = pki()
        text = (
            "[server]\nlisten = tcp:0:interface=127.0.0.1\n"
            f"certificate = {p.folder / 'server.pem'}\nprivate_key = {p.folder / 'server.key'}\n"
            f"client_ca = {p.folder / 'ca.pem'}\n"
        )
        service, watcher, path = self.serve_file(text)
        path.write_text(text + "max_line_length = lots\n")
        self.assertFalse(watcher.poll())
        failed = await events.first("reload_failed")
        self.assertIn("[server] max_line_length", failed["reason"])
        self.assertIsNone((await talk(client_config(service))).failure)

    @inline
    async def test_file_named_by_failed_reload_is_watched(self):
        """After a reload fails because the edited configuration names a file not there yet, creating that file reloads."""
        p = pki()
        folder = make_folder(self).resolve()
        text = (
            "[server]\nlisten = tcp:0:interface=127.0.0.1\n"
            f"private_key = {p.folder / 'server.key'}\nclient_ca = {p.folder / 'ca.pem'}\n"
        )
        service, watcher, path = self.serve_file(text + f"certificate = {p.folder / 'server.pem'}\n")
        path.write_text(text + f"certificate = {folder / 'renewed.pem'}\n")
        self.assertFalse(watcher.poll())
        self.assertIsNone(watcher.poll())
        certbuilder.write_pem(folder / "renewed.pem", pki().server.pem())
        self.assertTrue(watcher.poll())
        self.assertEqual(service.config.certificate, folder / "renewed.pem")
        self.assertIsNone(watcher.poll())
