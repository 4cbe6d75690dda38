"""
The service setting: its configuration checks and a user's protocol factory (examples/whoami.py).
"""

from __future__ import annotations

import json

from twisted_mtls.errors import ConfigError

from .support import LogEvents, TestCase, client_config, inline, server_config, start_server, talk


class ServiceConfigTests(TestCase):
    def assertConfigError(self, expected_key: str, fragment: str, **overrides: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            server_config(**overrides)
        self.assertEqual(caught.exception.key, expected_key)
        self.assertIn(fragment, caught.exception.message)

    def test_forward_needs_target(self):
        """service = forward without target is a configuration error naming target."""
        self.assertConfigError("--target", "is required when service = forward", service="forward")

    def test_remote_target_refused(self):
        """A target on another host is refused unless unsafe_target = true."""
        self.assertConfigError(
            "--target",
            "neither a loopback address nor a unix socket; set unsafe_target = true",
            service="forward",
            target="tcp:192.0.2.7:80",
        )
        self.assertEqual(
            server_config(service="forward", target="tcp:192.0.2.7:80", unsafe_target="true").target,
            "tcp:192.0.2.7:80",
        )

    def test_local_targets_accepted(self):
        """Loopback addresses (IPv4, IPv6, localhost) and unix sockets are accepted as targets."""
        for target in ("tcp:127.0.0.1:80", "tcp:host=localhost:port=80", r"tcp:\:\:1:80", "unix:/run/app.sock"):
            self.assertEqual(server_config(service="forward", target=target).target, target)

    def test_target_kind(self):
        """A target that is not a tcp: or unix: client endpoint is a configuration error."""
        self.assertConfigError("--target", "only tcp: and unix: are supported", target="ssl:127.0.0.1:443")

    def test_bad_service(self):
        """An unknown service name is a configuration error listing the choices."""
        self.assertConfigError("--service", "expected echo, forward or python:package.module:attribute", service="chat")

    def test_user_module_missing(self):
        """A python: service whose module cannot be imported is a configuration error naming service."""
        self.assertConfigError("--service", "cannot import 'no_such_module'", service="python:no_such_module:f")

    def test_user_attribute_missing(self):
        """A python: service whose attribute does not exist is a configuration error."""
        self.assertConfigError(
            "--service", "'examples.whoami' has no attribute 'Nope'", service="python:examples.whoami:Nope"
        )

    def test_proxy_protocol_choice(self):
        """target_proxy_protocol accepts off or v2 only."""
        self.assertConfigError("--target_proxy_protocol".replace("_", "-"), "expected one of off, v2", target_proxy_protocol="v1")


class UserServiceTests(TestCase):
    @inline
    async def test_whoami_example(self):
        """examples/whoami.py, loaded with service = python:..., answers with the verified client's identity."""
        events = LogEvents(self)
        service = start_server(self, server_config(service="python:examples.whoami:WhoAmIFactory"))
        outcome = await talk(client_config(service), b"hello")
        self.assertIsNone(outcome.failure)
        answer = json.loads(outcome.output)
        self.assertEqual(answer["cn"], "alice")
        self.assertEqual(answer["sans"], ["DNS:alice.example"])
        self.assertEqual(answer["said"], "hello")
        opened = await events.first("connection_open")
        self.assertEqual(answer["fingerprint"], opened["fingerprint"])


class LoopbackDescriptionTests(TestCase):
    def test_repeated_interface_listener_is_not_local(self):
        """A listener whose last interface= (the one Twisted uses) is not loopback is not local."""
        from twisted_mtls.descriptions import is_local_listener

        self.assertFalse(is_local_listener("tcp:9000:interface=127.0.0.1:interface=0.0.0.0"))
        self.assertTrue(is_local_listener("tcp:9000:interface=0.0.0.0:interface=127.0.0.1"))

    def test_positional_interface_listener(self):
        """An interface given positionally (tcp:PORT:ADDR, tcp6:PORT:BACKLOG:ADDR) is the one checked; tcp6 defaults to every address."""
        from twisted_mtls.descriptions import is_local_listener

        self.assertTrue(is_local_listener("tcp:9000:127.0.0.1"))
        self.assertFalse(is_local_listener("tcp:9000:0.0.0.0"))
        self.assertTrue(is_local_listener(r"tcp6:9000:50:\:\:1"))
        self.assertFalse(is_local_listener("tcp6:9000"))

    def test_repeated_host_target_refused(self):
        """A target whose last host= (the one Twisted connects to) is remote is refused unless unsafe_target = true."""
        with self.assertRaises(ConfigError) as caught:
            server_config(service="forward", target="tcp:host=127.0.0.1:host=192.0.2.7:port=80")
        self.assertEqual(caught.exception.key, "--target")
        self.assertIn("neither a loopback address nor a unix socket", caught.exception.message)

    def test_positional_host_wins_over_keyword(self):
        """With two positionals Twisted connects to the first (host= is overridden), so that host is the one checked."""
        from twisted_mtls.descriptions import is_local_target

        self.assertTrue(is_local_target("tcp:127.0.0.1:80:host=192.0.2.7"))
        self.assertFalse(is_local_target("tcp:192.0.2.7:80:host=127.0.0.1"))
