"""
``python -m twisted_mtls.pki``: create and run a small file-based PKI.

A PKI directory holds ca.pem/ca.key, the issued NAME.pem/NAME.key pairs,
index.json (revocations and the CRL number) and crl.pem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from twisted_mtls import certbuilder
from twisted_mtls.certbuilder import Issued

CA_NAME = "twisted-mtls CA"
SERVER_SANS = ("DNS:localhost", "IP:127.0.0.1", "IP:::1")
REASONS = tuple(r.name for r in x509.ReasonFlags if r is not x509.ReasonFlags.remove_from_crl)
_RESERVED_NAMES = ("ca", "crl", "index")


class PkiError(Exception):
    """A failure reported to the user as one line, without a traceback."""


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate as recorded in index.json."""

    serial: int
    subject: str
    revoked_at: datetime
    reason: str

    def to_json(self) -> dict[str, str]:
        """This entry as a JSON object (serial in upper-case hex)."""
        return {
            "serial": format(self.serial, "X"),
            "subject": self.subject,
            "revoked_at": self.revoked_at.isoformat(),
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Revocation:
        """An entry read back from its JSON object."""
        return cls(
            int(data["serial"], 16),
            data["subject"],
            datetime.fromisoformat(data["revoked_at"]),
            data["reason"],
        )


@dataclass(frozen=True)
class Index:
    """The revocation index: every revocation and the last CRL number used."""

    revoked: tuple[Revocation, ...] = ()
    crl_number: int = 0


def _path(directory: str, name: str) -> str:
    return os.path.join(directory, name)


def _key_kind(rsa: bool) -> str:
    return "rsa" if rsa else "ec"


def _parse_sans(texts: Sequence[str]) -> list[str]:
    for text in texts:
        try:
            certbuilder.parse_san(text)
        except ValueError as e:
            raise PkiError(f"bad SAN: {e}") from None
    return list(dict.fromkeys(texts))


def _refuse_existing(paths: Sequence[str], force: bool) -> None:
    if force:
        return
    for path in paths:
        if os.path.lexists(path):
            raise PkiError(f"refusing to overwrite {path} (use --force)")


def _san_text(name: x509.GeneralName) -> str:
    prefix = {
        x509.DNSName: "DNS",
        x509.IPAddress: "IP",
        x509.UniformResourceIdentifier: "URI",
        x509.RFC822Name: "email",
    }.get(type(name), type(name).__name__)
    return f"{prefix}:{name.value}"


def _describe(certificate: x509.Certificate) -> list[str]:
    try:
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        sans = ", ".join(_san_text(n) for n in san) or "-"
    except x509.ExtensionNotFound:
        sans = "-"
    return [
        f"  subject:  {certificate.subject.rfc4514_string()}",
        f"  SANs:     {sans}",
        f"  notAfter: {certificate.not_valid_after_utc.isoformat()}",
        f"  SHA-256:  {certbuilder.fingerprint(certificate)}",
    ]


def _write_issued(directory: str, stem: str, issued: Issued, force: bool) -> None:
    cert_path, key_path = _pair_paths(directory, stem)
    certbuilder.write_pem(cert_path, issued.pem(), force=force)
    certbuilder.write_private_key(key_path, issued.key, force=force)
    print(f"wrote {cert_path}")
    print("\n".join(_describe(issued.certificate)))
    print(f"wrote {key_path}")


def _pair_paths(directory: str, stem: str) -> tuple[str, str]:
    return _path(directory, f"{stem}.pem"), _path(directory, f"{stem}.key")


def _load_ca(directory: str) -> Issued:
    cert_path, key_path = _pair_paths(directory, "ca")
    try:
        return certbuilder.load_issued(cert_path, key_path)
    except FileNotFoundError as e:
        raise PkiError(f"missing CA file {e.filename}") from None
    except ValueError as e:
        raise PkiError(f"cannot load the CA from {directory}: {e}") from None


def _load_certificate(path: str) -> x509.Certificate:
    try:
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificates(f.read())[0]
    except OSError as e:
        raise PkiError(f"cannot read {path}: {e.strerror}") from None
    except ValueError:
        raise PkiError(f"cannot read {path}: not a PEM certificate") from None


def _load_index(directory: str) -> Index:
    path = _path(directory, "index.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        entries = tuple(Revocation.from_json(e) for e in data["revoked"])
        return Index(entries, int(data["crl_number"]))
    except FileNotFoundError:
        return Index()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PkiError(f"cannot read {path}: {e}") from None


def _save_index(directory: str, index: Index) -> None:
    data = {
        "crl_number": index.crl_number,
        "revoked": [r.to_json() for r in index.revoked],
    }
    text = json.dumps(data, indent=2) + "\n"
    certbuilder.write_file(_path(directory, "index.json"), text.encode(), force=True)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _regenerate_crl(directory: str, ca: Issued, index: Index, days: int) -> None:
    index = Index(index.revoked, index.crl_number + 1)
    entries = [
        (r.serial, r.revoked_at, x509.ReasonFlags[r.reason]) for r in index.revoked
    ]
    crl = certbuilder.make_crl(
        ca, entries, last_update=_now(), days=days, crl_number=index.crl_number
    )
    _save_index(directory, index)
    crl_path = _path(directory, "crl.pem")
    pem = crl.public_bytes(serialization.Encoding.PEM)
    certbuilder.write_pem(crl_path, pem, force=True)
    print(f"wrote {crl_path}")
    print(f"  CRL number: {index.crl_number}, revoked: {len(entries)}")
    print(f"  nextUpdate: {crl.next_update_utc.isoformat()}")


MAX_DAYS = 36500  # a century: far enough, and always a representable date


def _days(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"expected a number of days from 1 to {MAX_DAYS}, got {text!r}"
        )
    return int(text)


def _cmd_init(args: argparse.Namespace) -> int:
    directory = args.dir
    sans = _parse_sans([*SERVER_SANS, *args.san])
    stems = ("ca", "server", "client")
    # index.json and crl.pem belong to the CA being replaced: never keep them.
    stale = [_path(directory, "index.json"), _path(directory, "crl.pem")]
    _refuse_existing([p for s in stems for p in _pair_paths(directory, s)] + stale, args.force)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for path in stale:
        if os.path.exists(path):
            os.remove(path)
            print(f"removed {path} (it belonged to the replaced CA)")
    kind = _key_kind(args.rsa)
    days = {} if args.days is None else {"days": args.days}
    ca = certbuilder.make_ca(CA_NAME, key=certbuilder.new_key(kind), **days)
    server = certbuilder.make_server(
        ca, "localhost", sans, key=certbuilder.new_key(kind), **days
    )
    client = certbuilder.make_client(
        ca, "client", key=certbuilder.new_key(kind), **days
    )
    for stem, issued in zip(stems, (ca, server, client)):
        _write_issued(directory, stem, issued, args.force)
    return 0


def _check_name(name: str) -> str:
    if not name or name.startswith(".") or "/" in name or os.sep in name:
        raise PkiError(f"invalid name {name!r}: must be a plain file name")
    if name in _RESERVED_NAMES:
        raise PkiError(f"invalid name {name!r}: reserved for the PKI itself")
    return name


def _issue(args: argparse.Namespace, build: Callable[[Issued, str], Issued]) -> int:
    name = _check_name(args.name)
    _refuse_existing(_pair_paths(args.dir, name), args.force)
    ca = _load_ca(args.dir)
    _write_issued(args.dir, name, build(ca, name), args.force)
    return 0


def _leaf_options(args: argparse.Namespace) -> dict[str, object]:
    options: dict[str, object] = {"key": certbuilder.new_key(_key_kind(args.rsa))}
    if args.days is not None:
        options["days"] = args.days
    return options


def _cmd_issue_client(args: argparse.Namespace) -> int:
    sans = _parse_sans(
        [f"DNS:{d}" for d in args.dns]
        + [f"URI:{u}" for u in args.uri]
        + [f"IP:{i}" for i in args.ip]
    )

    def build(ca: Issued, name: str) -> Issued:
        return certbuilder.make_client(
            ca, name, sans=sans, organizational_units=args.ou, **_leaf_options(args)
        )

    return _issue(args, build)


def _cmd_issue_server(args: argparse.Namespace) -> int:
    sans = _parse_sans(args.san)

    def build(ca: Issued, name: str) -> Issued:
        return certbuilder.make_server(ca, name, sans, **_leaf_options(args))

    return _issue(args, build)


def _issued_by(certificate: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _cmd_revoke(args: argparse.Namespace) -> int:
    ca = _load_ca(args.dir)
    certificate = _load_certificate(args.certfile)
    if certificate == ca.certificate:
        raise PkiError(f"{args.certfile} is the CA's own certificate: revoke the certificates it issued")
    if not _issued_by(certificate, ca.certificate):
        raise PkiError(f"{args.certfile} was not issued by the CA in {args.dir}")
    index = _load_index(args.dir)
    serial = certificate.serial_number
    subject = certificate.subject.rfc4514_string()
    for entry in index.revoked:
        if entry.serial == serial:
            print(f"{subject} (serial {serial:X}) was already revoked "
                  f"on {entry.revoked_at.isoformat()}; nothing changed")
            return 0
    revocation = Revocation(serial, subject, _now(), args.reason)
    index = Index((*index.revoked, revocation), index.crl_number)
    _save_index(args.dir, index)
    print(f"revoked {subject} (serial {serial:X}, reason {args.reason})")
    print(f"wrote {_path(args.dir, 'index.json')}")
    _regenerate_crl(args.dir, ca, index, args.days)
    return 0


def _cmd_crl(args: argparse.Namespace) -> int:
    ca = _load_ca(args.dir)
    _regenerate_crl(args.dir, ca, _load_index(args.dir), args.days)
    return 0


def _cmd_ticket_key(args: argparse.Namespace) -> int:
    from .tickets import write_ticket_key

    from pathlib import Path

    write_ticket_key(Path(args.file))
    print(f"wrote a new session ticket key to {args.file} (mode 0600); "
          "reload the servers that use it (SIGHUP) to rotate")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m twisted_mtls.pki", description=__doc__.strip().splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str):
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("dir", metavar="DIR", help="the PKI directory")
        sub.set_defaults(run=run)
        return sub

    def issuing(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--days", type=_days, help="validity in days")
        sub.add_argument("--rsa", action="store_true", help="RSA-2048 keys, not EC")
        sub.add_argument("--force", action="store_true", help="overwrite files")

    init = command("init", _cmd_init, "create a CA, a server and a client cert")
    init.add_argument("--san", action="append", default=[], help="extra server SAN")
    issuing(init)

    client = command("issue-client", _cmd_issue_client, "issue a client cert")
    client.add_argument("name", metavar="NAME")
    for flag in ("dns", "uri", "ip", "ou"):
        client.add_argument(f"--{flag}", action="append", default=[])
    issuing(client)

    server = command("issue-server", _cmd_issue_server, "issue a server cert")
    server.add_argument("name", metavar="NAME")
    server.add_argument("--san", action="append", required=True)
    issuing(server)

    revoke = command("revoke", _cmd_revoke, "revoke a cert and rewrite crl.pem")
    revoke.add_argument("certfile", metavar="CERTFILE")
    revoke.add_argument("--reason", choices=REASONS, default="unspecified")
    revoke.add_argument("--days", type=_days, default=30, help="CRL validity")

    crl = command("crl", _cmd_crl, "rewrite crl.pem from index.json")
    crl.add_argument("--days", type=_days, default=30, help="CRL validity in days")

    help = "write a new random session ticket key (session_ticket_key_file), mode 0600"
    ticket = commands.add_parser("ticket-key", help=help, description=help)
    ticket.add_argument("file", metavar="FILE")
    ticket.set_defaults(run=_cmd_ticket_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pki command line; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.run(args)
    except PkiError as e:
        message = str(e)
    except OSError as e:
        message = f"{e.filename}: {e.strerror}" if e.filename else str(e)
    print(f"pki: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
