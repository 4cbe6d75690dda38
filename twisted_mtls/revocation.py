"""
Certificate revocation lists: loading and checking them at start-up, and
explaining what OpenSSL found with them during a handshake.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from OpenSSL.crypto import X509StoreFlags
from OpenSSL.SSL import X509VerificationCodes as V
from twisted.logger import Logger

log = Logger(namespace="twisted_mtls")

_PEM_CRL = b"-----BEGIN X509 CRL-----"


def _when(moment: datetime.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _name(name: x509.Name) -> str:
    return name.rfc4514_string() or "(empty name)"


def read_crls(path: Path) -> list[x509.CertificateRevocationList]:
    """
    Return the CRLs in a file: one DER CRL, or one or more PEM CRLs.
    """
    where = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {where}: {e.strerror}") from None
    try:
        if _PEM_CRL not in data:
            return [x509.load_der_x509_crl(data)]
        blocks = data.split(_PEM_CRL)[1:]
        return [x509.load_pem_x509_crl(_PEM_CRL + block) for block in blocks]
    except ValueError:
        raise ValueError(f"{where} holds no valid CRL (expected PEM or DER)") from None


def _issuing_ca(
    crl: x509.CertificateRevocationList, cas: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    for ca in cas:
        if ca.subject == crl.issuer and crl.is_signature_valid(ca.public_key()):
            return ca
    return None


def load_crls(
    source, key: str, paths: Sequence[Path], cas: Sequence[x509.Certificate]
) -> tuple[x509.CertificateRevocationList, ...]:
    """
    Load the CRL files C{paths} and check that each CRL is signed by one of
    C{cas} and that each of C{cas} has a CRL; raise L{ConfigError} naming C{key}.
    """
    crls: list[x509.CertificateRevocationList] = []
    for path in paths:
        try:
            found = read_crls(path)
        except ValueError as e:
            raise source.error(key, str(e)) from None
        for crl in found:
            if _issuing_ca(crl, cas) is None:
                raise source.error(
                    key,
                    f"{os.fspath(path)} holds a CRL issued by {_name(crl.issuer)} that is "
                    "not signed by any CA in client_ca (a CRL of an intermediate CA needs "
                    "that intermediate in client_ca)",
                )
        crls.extend(found)
    if crls:
        for ca in cas:
            if not any(crl.issuer == ca.subject for crl in crls):
                raise source.error(
                    key,
                    f"no CRL from {_name(ca.subject)}, a CA in client_ca: with crl set "
                    "every CA in a client's chain needs its CRL, or its clients are refused",
                )
    return tuple(crls)


@dataclass(frozen=True)
class Revocations:
    """
    The configured CRLs and what to do when one is past its nextUpdate
    (C{stale} is C{"warn"} or C{"reject"}).
    """

    crls: tuple[x509.CertificateRevocationList, ...]
    stale: str = "warn"

    def install(self, context: SSL.Context) -> None:
        """
        Make C{context} check every certificate of a chain against the CRLs.
        """
        if not self.crls:
            return
        store = context.get_cert_store()
        for crl in self.crls:
            store.add_crl(crl)
        store.set_flags(X509StoreFlags.CRL_CHECK | X509StoreFlags.CRL_CHECK_ALL)

    def digest(self) -> bytes:
        """
        Return a digest of the CRLs and the stale mode, for the TLS session ID context.
        """
        digest = hashlib.sha256(self.stale.encode())
        for crl in self.crls:
            digest.update(crl.public_bytes(serialization.Encoding.DER))
        return digest.digest()

    def _newest_from(self, issuer: x509.Name) -> x509.CertificateRevocationList | None:
        mine = [crl for crl in self.crls if crl.issuer == issuer]
        return max(mine, key=lambda crl: crl.last_update_utc, default=None)

    def revocation_of(self, cert: x509.Certificate) -> x509.RevokedCertificate | None:
        """
        Return the CRL entry that revokes C{cert}, or L{None}.
        """
        for crl in self.crls:
            if crl.issuer == cert.issuer:
                entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if entry is not None:
                    return entry
        return None

    def stale_warnings(self, now: datetime.datetime | None = None) -> list[str]:
        """
        Return a sentence for each CRL past its nextUpdate at C{now}.
        """
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return [
            self._stale(crl)
            for crl in self.crls
            if crl.next_update_utc is not None and crl.next_update_utc < now
        ]

    def _stale(self, crl: x509.CertificateRevocationList) -> str:
        return (
            f"the CRL from {_name(crl.issuer)} is stale: its nextUpdate was "
            f"{_when(crl.next_update_utc)} (crl_stale = {self.stale})"
        )

    def log_stale(self) -> None:
        """
        Log a warning for each stale CRL.
        """
        for warning in self.stale_warnings():
            log.warn("{problem}", event="crl_stale", problem=warning)

    def tolerates(self, code: int, cert: x509.Certificate) -> bool:
        """
        Return whether a verification error C{code} about C{cert} is to be
        let pass: a stale CRL when C{stale} is C{"warn"} (which is logged).
        """
        crl = self._newest_from(cert.issuer)
        if code != V.ERR_CRL_HAS_EXPIRED or self.stale != "warn" or crl is None:
            return False
        log.warn(
            "{problem}; checked {subject} against it anyway",
            event="crl_stale",
            problem=self._stale(crl),
            subject=_name(cert.subject),
        )
        return True

    def explain(self, code: int, cert: x509.Certificate, depth: int) -> str | None:
        """
        Explain a revocation-related verification error C{code} about C{cert}
        at C{depth}, or return L{None} for other errors.
        """
        what = (
            f"its CA certificate {_name(cert.subject)}" if depth else f"certificate {_name(cert.subject)}"
        )
        if code == V.ERR_CERT_REVOKED:
            entry = self.revocation_of(cert)
            if entry is None:
                return f"{what} (serial {cert.serial_number:X}) is revoked"
            return (
                f"revoked: {what} (serial {cert.serial_number:X}) was revoked on "
                f"{_when(entry.revocation_date_utc)}{_reason(entry)} "
                f"by the CRL from {_name(cert.issuer)}"
            )
        if code == V.ERR_CRL_HAS_EXPIRED:
            crl = self._newest_from(cert.issuer)
            if crl is not None and crl.next_update_utc is not None:
                return (
                    f"the CRL from {_name(crl.issuer)} is stale (its nextUpdate was "
                    f"{_when(crl.next_update_utc)}) and crl_stale = reject"
                )
        return None


def _reason(entry: x509.RevokedCertificate) -> str:
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return ""
    return f" (reason: {reason.value})"
