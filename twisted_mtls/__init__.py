"""
twisted-mtls: a mutual-TLS daemon on Twisted.
"""

__version__ = "0.1.0"
