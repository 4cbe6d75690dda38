"""
Proof that the line echo loses nothing: ``python -m twisted_mtls.stress
--port 8443 --cert client.pem --key client.key --ca ca.pem``.

Opens --connections concurrent mutual-TLS connections; each sends random
lines (lengths from empty to --max-line bytes, LF or CRLF, any byte but LF)
in random write sizes, reading at the same time, until its share of
--megabytes is sent or --seconds have passed.  Each connection compares the
SHA-256 and length of everything echoed with what it sent: any byte lost,
duplicated or reordered is a mismatch.  Prints a summary; exits 1 on any
mismatch or failed connection.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sys
import time
from dataclasses import dataclass

from .bench import check_client_files, client_context, raise_nofile

TIMEOUT = 30.0  # bound on connecting, and on waiting for the rest of the echo

# (weight, shortest, longest): mostly short lines, some long, a few near the limit
LENGTHS = ((50, 0, 80), (30, 81, 2000), (15, 2001, 16384), (5, 16385, None))
# (weight, smallest, largest) write sizes
CHUNKS = ((30, 1, 16), (40, 17, 4096), (30, 4097, 65536))


@dataclass(frozen=True)
class Result:
    """
    What one connection sent and got back, and what went wrong.
    """

    sent: int
    received: int
    lines: int
    writes: int
    problem: str | None


def verdict(sent: int, sentDigest: bytes, received: int, receivedDigest: bytes) -> str | None:
    """
    Return what differs between what was sent and what came back, or L{None}.
    """
    if received < sent:
        return f"{sent - received} bytes lost (sent {sent}, echoed {received})"
    if received > sent:
        return f"{received - sent} bytes more than sent (sent {sent}, echoed {received})"
    if sentDigest != receivedDigest:
        return f"echo differs from what was sent (same length {sent}): reordered or corrupted"
    return None


def _pick(rng: random.Random, table, limit: int) -> int:
    weight = rng.randrange(sum(w for w, _, _ in table))
    for w, low, high in table:
        if weight < w:
            return rng.randint(min(low, limit), min(high or limit, limit))
        weight -= w
    raise AssertionError("unreachable")


def lines(rng: random.Random, budget: int, max_line: int):
    """
    Yield random lines (each with its LF or CRLF) adding up to about C{budget} bytes.
    """
    pool = rng.randbytes(max_line + 4096).replace(b"\n", b"\x00")
    made = 0
    while made < budget:
        length = _pick(rng, LENGTHS, max_line)
        start = rng.randrange(len(pool) - length)
        body = pool[start : start + length]
        line = body + (b"\r\n" if rng.random() < 0.3 and not body.endswith(b"\r") else b"\n")
        made += len(line)
        yield line


async def one_connection(args, context, index: int, deadline: float) -> Result:
    """
    Run one connection's share of the stress; return its L{Result}.
    """
    rng = random.Random(args.seed * 1_000_003 + index)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(args.host, args.port, ssl=context, server_hostname=args.server_name, limit=2**20),
        TIMEOUT,
    )
    sent, sentHash, counts = 0, hashlib.sha256(), {"lines": 0, "writes": 0}
    finished = asyncio.Event()

    async def send() -> None:
        nonlocal sent
        budget = int(args.megabytes * 1e6 / args.connections)
        pending = bytearray()
        for line in lines(rng, budget, args.max_line):
            counts["lines"] += 1
            pending += line
            while len(pending) >= 65536 or (pending and rng.random() < 0.5):
                size = _pick(rng, CHUNKS, len(pending))
                chunk = bytes(pending[:size])
                del pending[:size]
                writer.write(chunk)
                sentHash.update(chunk)
                sent += len(chunk)
                counts["writes"] += 1
                await writer.drain()
            if time.monotonic() >= deadline:
                break
        if pending:
            writer.write(bytes(pending))
            sentHash.update(pending)
            sent += len(pending)
            counts["writes"] += 1
        finished.set()

    received, receivedHash = 0, hashlib.sha256()

    async def receive() -> None:
        nonlocal received
        while not (finished.is_set() and received >= sent):
            data = await reader.read(2**20)
            if not data:
                return
            receivedHash.update(data)
            received += len(data)

    problem = None
    sender = asyncio.ensure_future(send())
    try:
        await asyncio.wait_for(
            asyncio.gather(sender, receive()), max(0.0, deadline - time.monotonic()) + args.grace
        )
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
        problem = f"{type(e).__name__}: {e}"
        sender.cancel()
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (OSError, asyncio.TimeoutError):
            pass
    problem = verdict(sent, sentHash.digest(), received, receivedHash.digest()) or problem
    return Result(sent, received, counts["lines"], counts["writes"], problem)


async def stress(args) -> list[Result]:
    """
    Run every connection at once; return their results.
    """
    context = client_context(args.ca, args.cert, args.key)
    deadline = time.monotonic() + args.seconds

    async def guarded(index: int) -> Result:
        try:
            return await one_connection(args, context, index, deadline)
        except (OSError, asyncio.TimeoutError) as e:
            return Result(0, 0, 0, 0, f"could not connect: {type(e).__name__}: {e}")

    return list(await asyncio.gather(*(guarded(i) for i in range(args.connections))))


def summary(results: list[Result], seconds: float) -> str:
    """
    Return the run's summary, one mismatch per line after the first.
    """
    sent = sum(r.sent for r in results)
    bad = [(i, r) for i, r in enumerate(results) if r.problem]
    head = (
        f"stress: {len(results)} connections, {sum(r.lines for r in results):,} lines in "
        f"{sum(r.writes for r in results):,} writes, {sent / 1e6:.1f} MB sent, "
        f"{sum(r.received for r in results) / 1e6:.1f} MB echoed in {seconds:.1f} s "
        f"({2 * sent / 1e6 / max(seconds, 1e-9):.1f} MB/s both ways); "
        + (f"{len(bad)} connections FAILED" if bad else "0 bytes lost, duplicated or reordered: OK")
    )
    return "\n".join([head] + [f"  connection {i}: {r.problem}" for i, r in bad[:20]])


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m twisted_mtls.stress", description=__doc__.split("\n\n")[1])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server-name", default="localhost", help="name the server certificate must carry")
    p.add_argument("--cert", required=True, help="client certificate (PEM)")
    p.add_argument("--key", required=True, help="client private key (PEM)")
    p.add_argument("--ca", required=True, help="CA the server certificate chains to")
    p.add_argument("--connections", type=int, default=100, help="concurrent connections (default 100)")
    p.add_argument("--megabytes", type=float, default=100.0, help="MB to send in all (default 100)")
    p.add_argument("--seconds", type=float, default=120.0, help="stop sending after this long (default 120)")
    p.add_argument("--grace", type=float, default=TIMEOUT, help="seconds to wait for the rest of the echo (default 30)")
    p.add_argument("--max-line", type=int, default=65536, help="longest line; <= the server's max_line_length")
    p.add_argument("--seed", type=int, default=1, help="random seed: the same seed sends the same bytes")
    args = p.parse_args(argv)
    if args.connections < 1 or args.megabytes <= 0 or args.seconds <= 0 or args.max_line < 1:
        p.error("--connections, --megabytes, --seconds and --max-line must be positive")
    check_client_files(p, args)
    return args


def run(args) -> tuple[list[Result], str]:
    """
    Run the stress described by parsed C{args}; return the results and the summary.
    """
    raise_nofile(args.connections + 256)
    started = time.monotonic()
    results = asyncio.run(stress(args))
    return results, summary(results, time.monotonic() - started)


def main(argv=None) -> int:
    args = parse_args(argv)
    results, text = run(args)
    print(text)
    return 1 if any(r.problem for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
