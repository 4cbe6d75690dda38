"""
An example of your own service behind twisted-mtls: C{whoami} answers each
line with who the daemon verified you to be, as one JSON line.

Run it (from the repository root, so that C{examples} can be imported)::

    twistd -n --pidfile= mtls --config etc/mtls.ini --service python:examples.whoami:WhoAmIFactory
    python -m twisted_mtls.client --config etc/mtls.ini --message hello
    {"cn": "client", "sans": [], "fingerprint": "B3:A5:...", "said": "hello"}

The contract (see L{twisted_mtls.services}): the attribute named after
C{python:package.module:} is a callable returning a protocol factory (a
L{Factory} subclass is one); its protocols are built only for verified
clients and have C{self.peerIdentity} (a L{twisted_mtls.identity.PeerIdentity})
before C{connectionMade}.
"""

from __future__ import annotations

import json

from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver


class WhoAmI(LineOnlyReceiver):
    """
    Answers each line with the client's identity and the line it sent.
    """

    delimiter = b"\n"
    peerIdentity = None  # set by twisted-mtls before connectionMade

    def lineReceived(self, line: bytes) -> None:
        identity = self.peerIdentity
        answer = {
            "cn": identity.common_name,
            "sans": identity.sans(),
            "fingerprint": identity.fingerprint_sha256,
            "said": line.rstrip(b"\r").decode("utf-8", "replace"),
        }
        self.sendLine(json.dumps(answer).encode("utf-8"))


class WhoAmIFactory(Factory):
    """
    Builds a L{WhoAmI} for each verified client.
    """

    protocol = WhoAmI
