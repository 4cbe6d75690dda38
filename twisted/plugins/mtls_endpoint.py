"""
The C{mtls:} server endpoint string parser (see L{twisted_mtls.endpoint}).

Imports nothing heavy: the endpoint module is loaded when a description is parsed.
"""

from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class MTLSServerParser:
    """
    Parses C{mtls:PORT:interface=...:privateKey=...:certKey=...:clientCA=...}.
    """

    prefix = "mtls"

    def parseStreamServer(self, reactor, *args, **kwargs):
        """
        Return the endpoint the C{mtls:} description asks for.
        """
        from twisted_mtls.endpoint import mtls_server_endpoint

        return mtls_server_endpoint(reactor, *args, **kwargs)


mtlsServerParser = MTLSServerParser()
