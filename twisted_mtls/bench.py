"""
Load generator for mutual-TLS line-echo servers: ``python -m twisted_mtls.bench
--port 8443 --cert client.pem --key client.key --ca ca.pem --server-pid PID``.

Phases (``--phase``, comma-separated, default all): ``idle`` opens --idle
connections, one echo each, and holds them --hold seconds; ``handshake`` does
full handshakes (connect, handshake, close) on --connections workers;
``resumed`` does handshakes resuming a session saved from a first connection,
each checked with ``session_reused``; ``line64`` and ``line16k`` pipeline
64-byte and 16 KiB lines (newline included) over --connections connections.
Every echoed byte is checked.  With ``--server-pid`` the server's utime+stime
(/proc/PID/stat) is read around each phase and its VmRSS around the idle
phase: the per-operation CPU and per-connection memory figures.  Progress
goes to stderr, a table to stdout, JSON to ``--json FILE`` (``-``: stdout).
Runs on uvloop when installed: measured, it needs less client CPU than asyncio.
"""

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import socket
import ssl
import sys
import time

PHASES = ("idle", "handshake", "resumed", "line64", "line16k")
LINE_SIZES = {"line64": 64, "line16k": 16384}
TIMEOUT = 30.0  # bound on any single connect, echo or close
# A palindrome, so that ``openssl s_server -rev`` (which reverses lines)
# echoes it unchanged: the probe works against it too.
PROBE_LINE = b"racecar\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message):
    print(message, file=sys.stderr, flush=True)


def server_cpu(pid):
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    if not pid:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def server_rss_kb(pid):
    if pid:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


class Meter:
    """Wall time, our own CPU and the server's CPU between start() and stop()."""

    def __init__(self, pid):
        self.pid = pid

    def read(self):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return time.monotonic(), usage.ru_utime + usage.ru_stime, server_cpu(self.pid)

    def start(self):
        self.begin = self.read()

    def stop(self):
        end = self.read()
        wall = end[0] - self.begin[0]
        result = {"wall_s": wall, "client_cpu_pct": 100 * (end[1] - self.begin[1]) / wall}
        if self.pid:
            result["server_cpu_s"] = end[2] - self.begin[2]
            result["server_cpu_pct"] = 100 * result["server_cpu_s"] / wall
        return result


class Budget:
    """Hands out operations until ``count`` are used or ``seconds`` have passed."""

    def __init__(self, count=None, seconds=None):
        self.left = count
        self.deadline = time.monotonic() + seconds if seconds else float("inf")
        self.stopped = False

    def take(self, wanted):
        if self.stopped or time.monotonic() >= self.deadline or self.left == 0:
            self.stopped = True
            return 0
        if self.left is not None:
            wanted = min(wanted, self.left)
            self.left -= wanted
        return wanted


class ClientContext(ssl.SSLContext):
    """Offers ``resume_session`` on every new connection: asyncio's
    ``create_connection`` has no way to pass a session itself."""

    resume_session = None

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):
        session = session or self.resume_session
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


def client_context(ca: str, cert: str, key: str) -> ClientContext:
    """
    Return a TLS client context that trusts C{ca} and presents C{cert} with
    C{key}; raise ValueError naming the option and file that cannot be loaded.
    """
    context = ClientContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=ca)
    except OSError as e:
        raise ValueError(f"--ca: cannot load {ca}: {_why(e, 'no PEM certificate in it')}") from None
    try:
        context.load_cert_chain(cert, key)
    except OSError as e:
        mismatch = "not a PEM certificate and the PEM private key that matches it"
        raise ValueError(f"--cert/--key: cannot load {cert} with {key}: {_why(e, mismatch)}") from None
    return context


def check_client_files(parser: argparse.ArgumentParser, args) -> None:
    """
    Exit through C{parser} with a usage error when C{args}' --ca, --cert or
    --key cannot be loaded.
    """
    try:
        client_context(args.ca, args.cert, args.key)
    except ValueError as e:
        parser.error(str(e))


def _why(error: OSError, bad_content: str) -> str:
    return bad_content if isinstance(error, ssl.SSLError) else error.strerror or str(error)


class Conn(asyncio.Protocol):
    """A client connection that keeps up to ``window`` copies of ``line`` in
    flight, as long as its budget allows, and checks every echoed byte."""

    def __init__(self, line=b"\n", window=1):
        loop = asyncio.get_running_loop()
        self.line, self.size, self.window = line, len(line), window
        self.block = line * window
        self.expected = line * (window + 1)
        self.sent = self.received = 0  # lines sent, bytes received
        self.lost = loop.create_future()
        self.transport = None
        self.budget, self.done = Budget(0), None  # ``done`` exists once someone waits

    def reset(self, budget):
        """Take operations from ``budget``; ``done`` resolves when it is spent."""
        self.budget = budget
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost.set_result(exc)
        self.fail(f"connection lost ({exc or 'closed by server'})")

    def fail(self, reason):
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(reason))
            self.transport.abort()

    def data_received(self, data):
        offset = self.received % self.size
        if self.received + len(data) > self.sent * self.size:
            return self.fail("server sent more than was echoed to it")
        if data != self.expected[offset : offset + len(data)]:
            return self.fail("echo differs from the line sent")
        self.received += len(data)
        self.pump()

    def pump(self):
        outstanding = self.sent - self.received // self.size
        if outstanding > self.window // 2:
            return
        more = self.budget.take(self.window - outstanding)
        if more:
            self.sent += more
            self.transport.write(self.block if more == self.window else self.block[: more * self.size])
        elif outstanding == 0 and not self.done.done():
            self.done.set_result(self.sent)

    @property
    def lines(self):
        return self.received // self.size


class Bench:
    def __init__(self, args):
        self.args = args
        self.meter = Meter(args.server_pid)

    def context(self):
        args = self.args
        context = client_context(args.ca, args.cert, args.key)
        context.minimum_version = ssl.TLSVersion.TLSv1_3 if args.tls == "1.3" else ssl.TLSVersion.TLSv1_2
        if args.tls == "1.2":
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        return context

    async def connect(self, context, conn):
        a = self.args
        loop = asyncio.get_running_loop()
        opening = loop.create_connection(lambda: conn, a.host, a.port, ssl=context, server_hostname=a.server_name)
        await asyncio.wait_for(opening, TIMEOUT)
        return conn

    async def echo_once(self, context, line=PROBE_LINE, window=1):
        """Connect and echo ``line`` once; returns the open connection."""
        conn = await self.connect(context, Conn(line, window))
        conn.reset(Budget(1))
        conn.pump()
        await asyncio.wait_for(conn.done, TIMEOUT)
        return conn

    async def close(self, conns):
        """Close cleanly (TLS close_notify), abort what is still open after TIMEOUT."""
        still_open = [conn for conn in conns if not conn.lost.done()]
        for conn in still_open:
            conn.transport.close()
        if still_open:
            await asyncio.wait([conn.lost for conn in still_open], timeout=TIMEOUT)
        for conn in still_open:
            if not conn.lost.done():
                conn.transport.abort()

    async def probe(self, context):
        conn = await self.echo_once(context)
        ssl_object = conn.transport.get_extra_info("ssl_object")
        info = {"tls_version": ssl_object.version(), "cipher": ssl_object.cipher()[0], "session": ssl_object.session}
        await self.close([conn])
        return info

    async def phase_handshake(self, resume=False):
        args, context = self.args, self.context()
        result = await self.probe(context)
        session = result.pop("session")
        context.resume_session = session if resume else None
        budget = Budget(args.count, args.seconds)
        counts, errors = {"ops": 0, "resumed": 0, "errors": 0}, []

        async def worker():
            while budget.take(1):
                try:
                    conn = await self.connect(context, Conn())
                    counts["resumed"] += conn.transport.get_extra_info("ssl_object").session_reused
                    await self.close([conn])
                    counts["ops"] += 1
                except (OSError, asyncio.TimeoutError) as e:
                    counts["errors"] += 1
                    errors.append(f"{type(e).__name__}: {e}")
                    if counts["errors"] > max(10, counts["ops"] // 100):
                        budget.stopped = True

        self.meter.start()
        await asyncio.gather(*(worker() for _ in range(args.connections)))
        result.update(self.meter.stop(), **counts, first_error=errors[0] if errors else None)
        result["rate"] = counts["ops"] / result["wall_s"]
        if "server_cpu_s" in result and counts["ops"]:
            result["us_cpu_per_op"] = 1e6 * result["server_cpu_s"] / counts["ops"]
        return result

    async def phase_lines(self, size):
        args, context = self.args, self.context()
        window = max(2, args.window * 1024 // size)
        conns = []
        try:
            for i in range(args.connections):
                head = b"%06d " % i
                line = head + bytes(ord("a") + j % 26 for j in range(size - len(head) - 1)) + b"\n"
                conns.append(await self.echo_once(context, line, window))
            budget = Budget(args.count, args.seconds)
            before = sum(conn.lines for conn in conns)
            self.meter.start()
            for conn in conns:
                conn.reset(budget)
                conn.pump()
            await asyncio.wait_for(asyncio.gather(*(conn.done for conn in conns)), args.seconds + TIMEOUT)
            result = self.meter.stop()
        finally:
            await self.close(conns)
        lines = sum(conn.lines for conn in conns) - before
        megabytes = lines * size / 1e6
        result.update(ops=lines, window_lines=window, rate=lines / result["wall_s"])
        result["mb_per_s"] = megabytes / result["wall_s"]
        if "server_cpu_s" in result and lines:
            result["ns_cpu_per_line"] = 1e9 * result["server_cpu_s"] / lines
            result["ms_cpu_per_mb"] = 1e3 * result["server_cpu_s"] / megabytes
        return result

    async def phase_idle(self):
        args, context = self.args, self.context()
        pid = args.server_pid
        await self.probe(context)
        rss_before = server_rss_kb(pid)
        conns = []
        budget = Budget(args.idle)

        async def opener():
            while budget.take(1):
                conns.append(await self.echo_once(context, b"idle %d\n" % len(conns)))

        self.meter.start()
        try:
            await asyncio.wait_for(asyncio.gather(*(opener() for _ in range(args.connections))), args.idle + TIMEOUT)
            result = {"ops": len(conns), "open_rate": len(conns) / (time.monotonic() - self.meter.begin[0])}
            log(f"  {len(conns)} connections open, holding {args.hold:g}s")
            await asyncio.sleep(args.hold)
            rss_held = server_rss_kb(pid)
            result.update(self.meter.stop(), still_open=sum(not conn.lost.done() for conn in conns))
        finally:
            await self.close(conns)
        if pid:
            result.update(rss_before_kb=rss_before, rss_held_kb=rss_held, rss_after_close_kb=server_rss_kb(pid))
            result["kb_rss_per_conn"] = (rss_held - rss_before) / len(conns)
        return result

    async def run(self, phases):
        results = {}
        for name in phases:
            log(f"{name}: running")
            try:
                if name == "idle":
                    result = await self.phase_idle()
                elif name in LINE_SIZES:
                    result = await self.phase_lines(LINE_SIZES[name])
                else:
                    result = await self.phase_handshake(resume=name == "resumed")
            except (OSError, asyncio.TimeoutError, ConnectionError) as e:
                result = {"error": f"{type(e).__name__}: {e}"}
            log(f"{name}: {summary(name, result)}")
            results[name] = result
        return results


# phase: (key of the server-cost figure, its format, the throughput format)
HEADLINES = {
    "idle": ("kb_rss_per_conn", "{:.1f} KB RSS/conn", "{still_open}/{ops} held, opened at {open_rate:.0f}/s"),
    "handshake": ("us_cpu_per_op", "{:.0f} us CPU/handshake", "{rate:.0f}/s, {errors} errors"),
    "resumed": ("us_cpu_per_op", "{:.0f} us CPU/handshake", "{rate:.0f}/s, {resumed}/{ops} resumed, {errors} errors"),
    "line64": ("ns_cpu_per_line", "{:.0f} ns CPU/line", "{rate:.0f} lines/s"),
    "line16k": ("ms_cpu_per_mb", "{:.2f} ms CPU/MB", "{mb_per_s:.1f} MB/s"),
}


def summary(name, r):
    """The headline figures of one phase, as text."""
    if "error" in r:
        return "FAILED: " + r["error"]
    key, cost, rate = HEADLINES[name]
    return (cost.format(r[key]) if key in r else "n/a (no --server-pid)") + "; " + rate.format(**r)


def table(results):
    rows = [("phase", "ops", "seconds", "server CPU%", "client CPU%", "figure")]
    for name, r in results.items():
        if "error" in r:
            rows.append((name, "-", "-", "-", "-", summary(name, r)))
            continue
        server = f"{r['server_cpu_pct']:.0f}" if "server_cpu_pct" in r else "-"
        rows.append((name, str(r["ops"]), f"{r['wall_s']:.2f}", server, f"{r['client_cpu_pct']:.0f}", summary(name, r)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def wait_for_port(host, port, seconds):
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise SystemExit(f"nothing listening on {host}:{port} after {seconds:g}s")
            time.sleep(0.05)


def raise_nofile(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        needed = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m twisted_mtls.bench", description=__doc__.split(":")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--server-name", help="name to verify the server certificate against (default: --host)")
    p.add_argument("--cert", required=True, help="client certificate (PEM)")
    p.add_argument("--key", required=True, help="client private key (PEM)")
    p.add_argument("--ca", required=True, help="CA that the server certificate must chain to")
    p.add_argument("--phase", default="all", help=f"comma-separated: {','.join(PHASES)} or all")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each timed phase (default 5)")
    p.add_argument("--count", type=int, help="stop each timed phase after this many handshakes or lines")
    p.add_argument("--connections", type=int, default=16, help="concurrent connections or workers (default 16)")
    p.add_argument("--window", type=int, default=64, help="KiB of lines in flight per connection (default 64)")
    p.add_argument("--idle", type=int, default=5000, help="connections in the idle phase (default 5000)")
    p.add_argument("--hold", type=float, default=3.0, help="seconds to hold idle connections (default 3)")
    p.add_argument("--tls", choices=("any", "1.2", "1.3"), default="any", help="TLS version to offer")
    p.add_argument("--server-pid", type=int, help="server process whose CPU and RSS to measure")
    p.add_argument("--label", help="name of the server, stored in the JSON")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    p.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for the port to open")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE ('-': stdout)")
    args = p.parse_args(argv)
    args.server_name = args.server_name or args.host
    phases = PHASES if args.phase == "all" else tuple(args.phase.split(","))
    if set(phases) - set(PHASES):
        p.error(f"unknown phase(s): {', '.join(sorted(set(phases) - set(PHASES)))}")
    if (args.count is None and not args.seconds) or args.connections < 1 or args.idle < 1:
        p.error("need --seconds or --count, and --connections and --idle of at least 1")
    check_client_files(p, args)
    return args, phases


def main(argv=None):
    args, phases = parse_args(argv)
    raise_nofile(args.idle + args.connections + 256 if "idle" in phases else 1024)
    if args.wait:
        wait_for_port(args.host, args.port, args.wait)
    loop_name = args.loop
    if loop_name == "auto":
        loop_name = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    run = asyncio.run
    if loop_name == "uvloop":
        import uvloop

        run = uvloop.run
    results = run(Bench(args).run(phases))
    settings = {k: getattr(args, k) for k in ("seconds", "count", "connections", "window", "idle", "hold", "tls")}
    report = {"label": args.label, "host": args.host, "port": args.port, "client_loop": loop_name}
    report.update(settings=settings, phases=results)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(table(results))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=2)
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
