"""
The ``twistd mtls`` plugin: a mutual-TLS daemon.
"""

from twisted.application.service import ServiceMaker

mtls = ServiceMaker(
    "twisted-mtls",
    "twisted_mtls.tap",
    "A mutual-TLS daemon: every client must present a trusted certificate.",
    "mtls",
)
