"""
A bounded soak of mixed churn against a running daemon:
``python -m twisted_mtls.soak --port 8443 --cert client.pem --key client.key
--ca ca.pem --server-pid PID --minutes 10``.

For --minutes (default 10), at once: --churners workers connect, echo a
few random lines, check them and close; --idle connections are held open
for a random 1-30 s each and replaced; and a bad client every --bad-every
seconds sends plain text, random bytes or half a handshake, connects and
drops, or resets.  Each minute one line gives the daemon's RSS, open file
descriptors and established connections (from /proc), and the counts so
far.  Exits 1 if any echo came back wrong, or if the daemon's descriptors
or connections did not return to their starting level once the load ended.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import struct
import sys
import time

from .bench import check_client_files, client_context, raise_nofile, server_rss_kb

TIMEOUT = 10.0


def open_fds(pid: int) -> int:
    """
    Return how many file descriptors process C{pid} has open.
    """
    return len(os.listdir(f"/proc/{pid}/fd"))


def established(port: int) -> int:
    """
    Return how many established TCP connections have local port C{port} (IPv4 and IPv6).
    """
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        count += 1
        except FileNotFoundError:
            pass
    return count


class Soak:
    def __init__(self, args) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.deadline = time.monotonic() + args.minutes * 60
        self.counts = {"echoes": 0, "wrong": 0, "errors": 0, "idle": 0, "bad": 0}
        self.context = client_context(args.ca, args.cert, args.key)

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def connect(self):
        a = self.args
        opening = asyncio.open_connection(a.host, a.port, ssl=self.context, server_hostname=a.server_name)
        return await asyncio.wait_for(opening, TIMEOUT)

    async def echo(self, reader, writer, lines: int) -> None:
        sent = b"".join(b"%d %s\n" % (i, b"x" * self.rng.randrange(2000)) for i in range(lines))
        writer.write(sent)
        got = await asyncio.wait_for(reader.readexactly(len(sent)), TIMEOUT)
        self.counts["echoes"] += 1
        if got != sent:
            self.counts["wrong"] += 1

    async def close(self, writer) -> None:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            pass

    async def churner(self) -> None:
        while self.running():
            try:
                reader, writer = await self.connect()
                await self.echo(reader, writer, self.rng.randint(1, 20))
                await self.close(writer)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                self.counts["errors"] += 1
                await asyncio.sleep(0.1)

    async def holder(self) -> None:
        while self.running():
            try:
                reader, writer = await self.connect()
                await self.echo(reader, writer, 1)
                self.counts["idle"] += 1
                await asyncio.sleep(min(self.rng.uniform(1, 30), max(0.0, self.deadline - time.monotonic())))
                await self.echo(reader, writer, 1)
                await self.close(writer)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                self.counts["errors"] += 1
                await asyncio.sleep(0.1)

    async def bad_client(self) -> None:
        kinds = (
            b"hello?\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
            b"",
            None,
        )
        while self.running():
            await asyncio.sleep(self.args.bad_every)
            payload = self.rng.choice(kinds + (self.rng.randbytes(self.rng.randrange(1, 5000)),))
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.args.host, self.args.port), TIMEOUT
                )
                if payload is None:  # reset
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    writer.transport.abort()
                    continue
                writer.write(payload)
                writer.write_eof()
                await asyncio.wait_for(reader.read(), TIMEOUT)
                await self.close(writer)
                self.counts["bad"] += 1
            except (OSError, asyncio.TimeoutError):
                self.counts["bad"] += 1

    def report(self, minute: int) -> str:
        pid, c = self.args.server_pid, self.counts
        return (
            f"minute {minute}: daemon rss {server_rss_kb(pid) / 1024:.1f} MB, {open_fds(pid)} fds, "
            f"{established(self.args.port)} established connections; so far {c['echoes']:,} echoes "
            f"({c['wrong']} wrong), {c['idle']:,} idle holds, {c['bad']:,} bad clients, "
            f"{c['errors']} client errors"
        )

    async def reporter(self) -> None:
        minute = 0
        while self.running():
            await asyncio.sleep(min(60.0, max(0.0, self.deadline - time.monotonic())))
            minute += 1
            print(self.report(minute), flush=True)

    async def run(self) -> int:
        a = self.args
        start_fds, start_conns = open_fds(a.server_pid), established(a.port)
        print(
            f"start: daemon rss {server_rss_kb(a.server_pid) / 1024:.1f} MB, {start_fds} fds, "
            f"{start_conns} established connections",
            flush=True,
        )
        await asyncio.gather(
            self.reporter(),
            self.bad_client(),
            *(self.churner() for _ in range(a.churners)),
            *(self.holder() for _ in range(a.idle)),
        )
        for _ in range(100):  # up to 10 s for the daemon to finish closing
            if open_fds(a.server_pid) <= start_fds and established(a.port) <= start_conns:
                break
            await asyncio.sleep(0.1)
        end_fds, end_conns = open_fds(a.server_pid), established(a.port)
        print(
            f"end: daemon rss {server_rss_kb(a.server_pid) / 1024:.1f} MB, {end_fds} fds "
            f"(start {start_fds}), {end_conns} established connections (start {start_conns})",
            flush=True,
        )
        leaked = end_fds > start_fds or end_conns > start_conns
        return 1 if self.counts["wrong"] or leaked else 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m twisted_mtls.soak", description=__doc__.split("\n\n")[1])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server-name", default="localhost")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--server-pid", type=int, required=True, help="the daemon's process id")
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.add_argument("--churners", type=int, default=20, help="connect/echo/close workers (default 20)")
    p.add_argument("--idle", type=int, default=200, help="connections held open (default 200)")
    p.add_argument("--bad-every", type=float, default=0.05, help="seconds between bad clients (default 0.05)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if not 0 < args.minutes <= 24 * 60 or args.churners < 0 or args.idle < 0 or args.bad_every <= 0:
        p.error("--minutes must be in (0, 1440]; --churners and --idle >= 0; --bad-every > 0")
    check_client_files(p, args)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    raise_nofile(args.idle + args.churners + 256)
    return asyncio.run(Soak(args).run())


if __name__ == "__main__":
    sys.exit(main())
