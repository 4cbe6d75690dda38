"""
C{python -m twisted_mtls.check --config FILE}: load everything the daemon
would, check it, and print a short report; exit 0 when the daemon would
start cleanly, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import dataclass
from typing import TextIO

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from OpenSSL import SSL

from . import config
from .errors import ConfigError
from .material import ServerMaterial, load_server_material

WARN_DAYS = 30


@dataclass(frozen=True)
class Finding:
    """
    One line of the report: C{ok}, C{warn} or C{FAIL}, and what was found.
    """

    level: str
    text: str


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _expiry(what: str, moment: datetime.datetime, now: datetime.datetime) -> Finding:
    left = moment - now
    text = f"{what}: valid until {moment:%Y-%m-%d %H:%M} UTC ({left.days} days)"
    if left < datetime.timedelta(days=WARN_DAYS):
        return Finding("warn", text + f", less than {WARN_DAYS} days left")
    return Finding("ok", text)


def chain_findings(chain: tuple[x509.Certificate, ...], cas) -> list[Finding]:
    """
    Check that each certificate of the server chain is signed by the next
    one, and the last by its issuer when that is one of C{cas}.
    """
    findings = []
    issuers = {ca.subject: ca for ca in cas}
    for child, parent in zip(chain, (*chain[1:], None)):
        parent = parent or issuers.get(child.issuer)
        if parent is None:
            findings.append(
                Finding("ok", f"{_subject(child)} is issued by {child.issuer.rfc4514_string()}, "
                        "which clients must trust (not in the file)")
            )
            continue
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as e:
            findings.append(
                Finding("FAIL", f"{_subject(child)} is not issued by {_subject(parent)}: {e or 'bad signature'}")
            )
        else:
            findings.append(Finding("ok", f"{_subject(child)} is signed by {_subject(parent)}"))
    return findings


def material_findings(
    material: ServerMaterial, now: datetime.datetime, crl_stale: str = "warn"
) -> list[Finding]:
    """
    Report on loaded material: the chain, and the validity of every
    certificate and CRL (a stale CRL fails only under C{crl_stale = reject},
    which refuses that CA's clients; the daemon still uses it under C{warn}).
    """
    leaf = material.chain[0]
    findings = [Finding("ok", f"server certificate {_subject(leaf)} matches its key and suits a server")]
    findings += chain_findings(material.chain, material.client_cas)
    for cert in material.chain:
        findings.append(_expiry(f"certificate {_subject(cert)}", cert.not_valid_after_utc, now))
    for ca in material.client_cas:
        findings.append(_expiry(f"client CA {_subject(ca)} (a CA)", ca.not_valid_after_utc, now))
    for crl in getattr(material, "crls", ()):
        name = f"CRL of {crl.issuer.rfc4514_string()}"
        if crl.next_update_utc is None:
            findings.append(Finding("warn", f"{name} has no nextUpdate"))
        elif crl.next_update_utc < now:
            findings.append(
                Finding(
                    "FAIL" if crl_stale == "reject" else "warn",
                    f"{name} is past its nextUpdate ({crl.next_update_utc:%Y-%m-%d %H:%M} UTC); "
                    f"crl_stale = {crl_stale}: "
                    + ("that CA's clients are refused" if crl_stale == "reject" else "still used"),
                )
            )
        else:
            findings.append(_expiry(name, crl.next_update_utc, now))
    return findings


def check(config_file: str, now: datetime.datetime | None = None) -> list[Finding]:
    """
    Return the findings for C{config_file}: a C{FAIL} when the daemon
    would not start with it.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        server = config.load(config.ServerConfig, config_file)
        for section in (config.LogConfig, config.MetricsConfig):
            config.load(section, config_file)
        material = load_server_material(server)
    except ConfigError as e:
        return [Finding("FAIL", str(e))]
    findings = [Finding("ok", f"configuration {config_file} loads; listen = {server.listen}")]
    findings += material_findings(material, now, server.crl_stale)
    try:
        from .service import MTLSService

        MTLSService(server, material).context_for(material)
    except SSL.Error as e:
        findings.append(Finding("FAIL", f"OpenSSL refuses the material: {e}"))
    return findings


def report(findings: list[Finding], out: TextIO) -> int:
    """
    Print C{findings}, then a verdict; return the exit status.
    """
    for finding in findings:
        out.write(f"{finding.level:<4}  {finding.text}\n")
    failed = sum(f.level == "FAIL" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    if failed:
        out.write(f"FAIL: the daemon would not start ({failed} problems)\n")
        return 1
    out.write(f"OK: the daemon would start ({warned} warnings)\n")
    return 0


def main(argv=None, out: TextIO | None = None) -> int:
    """
    Run the check; return its exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m twisted_mtls.check",
        description="Check a twisted-mtls configuration and the files it names.",
        epilog=f"Exit status 0 when the daemon would start cleanly (warnings about "
        f"certificates or CRLs expiring within {WARN_DAYS} days included), 1 otherwise.",
    )
    parser.add_argument("--config", "-c", required=True, help="INI configuration file")
    args = parser.parse_args(argv)
    return report(check(args.config), out or sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
