"""
Plain-word explanations of certificate and TLS failures, for both ends.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL
from OpenSSL.SSL import X509VerificationCodes as V
from twisted.internet import defer
from twisted.internet import error as neterror

# X509_V_ERR_* codes pyOpenSSL does not name.
_EE_KEY_TOO_SMALL, _CA_KEY_TOO_SMALL, _CA_MD_TOO_WEAK = 66, 67, 68


class Kind(enum.IntEnum):
    """
    The kinds of failure, each with the client's exit status.
    """

    LOCAL = 2  # our own files or options
    CONNECT = 3  # no TCP connection
    PEER_CERTIFICATE = 4  # the peer's certificate is not acceptable to us
    REFUSED_BY_PEER = 5  # the peer refused our certificate or handshake
    PROTOCOL = 6  # anything else that broke the TLS conversation


@dataclass(frozen=True)
class Explanation:
    """
    What went wrong, in one plain sentence, and which kind of failure it is.
    """

    kind: Kind
    text: str


def _when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def describe_verify_error(code: int, cert: x509.Certificate, depth: int, role: str) -> str:
    """
    Explain why the certificate C{cert}, at C{depth} in the chain a C{role}
    ("client" or "server") sent, failed verification with OpenSSL error C{code}.
    """
    subject = "its CA certificate " + _name(cert) if depth else "certificate"
    if code == V.ERR_CERT_HAS_EXPIRED:
        return f"{subject} expired on {_when(cert.not_valid_after_utc)}"
    if code == V.ERR_CERT_NOT_YET_VALID:
        return f"{subject} is not yet valid (valid from {_when(cert.not_valid_before_utc)})"
    if code == V.ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        return "self-signed certificate, not issued by a trusted CA"
    if code in (
        V.ERR_SELF_SIGNED_CERT_IN_CHAIN,
        V.ERR_UNABLE_TO_GET_ISSUER_CERT,
        V.ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        V.ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
        V.ERR_CERT_UNTRUSTED,
    ):
        return (
            f"unknown CA: {cert.issuer.rfc4514_string()} is not a trusted CA "
            f"(or the {role} did not send the intermediate certificate)"
        )
    if code == V.ERR_INVALID_PURPOSE:
        return (
            f"not a {role} certificate: its key usage or extended key usage "
            f"does not allow TLS {role} authentication"
            + (f" (in CA certificate {_name(cert)})" if depth else "")
        )
    if code == V.ERR_CERT_REVOKED:
        return f"{subject} is revoked"
    if code == V.ERR_INVALID_CA:
        return f"issued by {_name(cert)}, which is not a CA certificate"
    if code == V.ERR_PATH_LENGTH_EXCEEDED:
        return f"the chain is longer than {_name(cert)} allows (pathLenConstraint)"
    if code == V.ERR_CERT_CHAIN_TOO_LONG:
        return "the chain has more intermediate certificates than verify_depth allows"
    if code in (V.ERR_CERT_SIGNATURE_FAILURE, V.ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE):
        return f"{subject} has a bad signature"
    if code == V.ERR_UNABLE_TO_GET_CRL:
        return f"no CRL is configured for the issuer {cert.issuer.rfc4514_string()}"
    if code == V.ERR_CRL_HAS_EXPIRED:
        return "the CRL for its issuer is past its nextUpdate"
    if code == V.ERR_CRL_NOT_YET_VALID:
        return "the CRL for its issuer is not yet valid"
    if code in (_EE_KEY_TOO_SMALL, _CA_KEY_TOO_SMALL):
        bits = getattr(cert.public_key(), "key_size", "?")
        return f"{subject} has a key that is too small ({bits} bits)"
    if code == _CA_MD_TOO_WEAK:
        return f"{subject} is signed with a digest that is too weak"
    if code == V.ERR_HOSTNAME_MISMATCH:
        return "certificate is for another name"
    return f"certificate verification failed (OpenSSL X509 error {code}) at {_name(cert)}"


_ALERT = re.compile(r"alert (.+)$")

# Alerts a peer sends when it refuses our certificate, in plain words.
_CERTIFICATE_ALERTS = {
    "certificate required": "it requires a client certificate and we sent none",
    "unknown ca": "it does not trust the CA that issued our certificate",
    "bad certificate": "it found our certificate bad",
    "certificate expired": "our certificate has expired or is not yet valid",
    "certificate revoked": "our certificate is revoked",
    "unsupported certificate": "our certificate is not allowed for this use",
    "certificate unknown": "it could not accept our certificate",
    "access denied": "our certificate is valid but not allowed by its access policy",
    # OpenSSL (through pyOpenSSL) sends this when the server's own check refuses
    # a certificate whose chain verified, e.g. twisted-mtls' access policy.
    "internal error": (
        "it gave no specific reason; a twisted-mtls server sends this alert when "
        "our certificate is valid but its access policy does not allow it"
    ),
}


def openssl_reasons(error: BaseException) -> list[str]:
    """
    Return the OpenSSL reason strings carried by an L{SSL.Error}.
    """
    reasons = []
    for entry in error.args[0] if error.args and isinstance(error.args[0], list) else []:
        if isinstance(entry, tuple) and entry:
            reasons.append(str(entry[-1]))
    return reasons or [str(error)]


def describe_tls_failure(error: BaseException, role: str) -> Explanation:
    """
    Explain an error that ended a TLS conversation with a C{role} ("client"
    or "server") before or after its handshake.
    """
    if isinstance(error, neterror.ConnectionDone):
        return Explanation(Kind.PROTOCOL, f"the {role} closed the connection")
    if isinstance(error, neterror.ConnectionLost):
        return Explanation(Kind.PROTOCOL, f"the {role} closed the connection abruptly")
    if not isinstance(error, SSL.Error):
        return Explanation(Kind.PROTOCOL, f"{type(error).__name__}: {error}")
    reasons = openssl_reasons(error)
    text = "; ".join(reasons)
    for reason in reasons:
        alert = _ALERT.search(reason)
        if alert:
            name = alert.group(1)
            if name in _CERTIFICATE_ALERTS and (name != "internal error" or role == "server"):
                return Explanation(
                    Kind.REFUSED_BY_PEER,
                    f"the {role} refused our certificate: {_CERTIFICATE_ALERTS[name]} "
                    f"(TLS alert: {name})",
                )
            if name == "protocol version":
                return Explanation(
                    Kind.REFUSED_BY_PEER,
                    f"the {role} accepts none of the TLS versions we offered (TLS alert: {name})",
                )
            return Explanation(
                Kind.REFUSED_BY_PEER, f"the {role} refused the handshake (TLS alert: {name})"
            )
        if "peer did not return a certificate" in reason:
            return Explanation(Kind.PEER_CERTIFICATE, "no client certificate was presented")
        if "unsupported protocol" in reason:
            return Explanation(
                Kind.PROTOCOL,
                f"the {role} offered only TLS versions this end does not accept",
            )
        if "http request" in reason or "https proxy request" in reason:
            return Explanation(
                Kind.PROTOCOL, f"not TLS: the {role} sent a plain-text HTTP request"
            )
        if "wrong version number" in reason or "packet length too long" in reason:
            return Explanation(Kind.PROTOCOL, f"not TLS: the {role} sent bytes that are not a TLS record")
        if "data length too long" in reason or "record layer failure" in reason:
            return Explanation(Kind.PROTOCOL, f"not TLS: the {role} sent a malformed TLS record")
        if "no shared cipher" in reason or "no suitable" in reason:
            return Explanation(
                Kind.PROTOCOL, f"the {role} offered no cipher suite or group this end accepts"
            )
        if "unexpected eof" in reason:
            return Explanation(Kind.PROTOCOL, f"the {role} closed the connection during the handshake")
    return Explanation(Kind.PROTOCOL, f"TLS failed: {text}")


def describe_connect_failure(
    error: BaseException, where: str, hint: str = "is the server running?"
) -> Explanation:
    """
    Explain why a connection to C{where} could not be made (refused, timed
    out, unknown host, no route, ...); C{hint} follows a refusal.
    """
    if isinstance(error, neterror.ConnectionRefusedError):
        text = f"cannot connect to {where}: connection refused ({hint})"
    elif isinstance(error, (neterror.TimeoutError, defer.TimeoutError, defer.CancelledError)):
        text = f"cannot connect to {where}: timed out"
    elif isinstance(error, neterror.DNSLookupError):
        text = f"cannot connect to {where}: the host name does not resolve"
    elif isinstance(error, neterror.NoRouteError):
        text = f"cannot connect to {where}: no route to host"
    elif isinstance(error, neterror.ConnectError) and error.args:
        detail = " ".join(str(a) for a in error.args)
        text = f"cannot connect to {where}: {re.sub(r'^[0-9]+: ', '', detail)}"
    else:
        text = f"cannot connect to {where}: {str(error) or type(error).__name__}"
    return Explanation(Kind.CONNECT, text)


def describe_server_failure(rejection: str | None, error: BaseException) -> Explanation:
    """
    Explain, on the client side, why a connection to the server ended:
    C{rejection} is why we refused its certificate (if we did), C{error}
    what ended the connection.
    """
    if rejection:
        return Explanation(
            Kind.PEER_CERTIFICATE, f"the server's certificate is not acceptable: {rejection}"
        )
    return describe_tls_failure(error, "server")
