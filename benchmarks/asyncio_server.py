"""
Baseline for the benchmarks: an asyncio mutual-TLS line echo on the standard
``ssl`` module (TLS 1.2+, client certificate required).

Two servers:

- bulk (default): a Protocol that writes back all the complete lines that one
  read brings, delimiters included, in one write (as twisted-mtls's echo
  protocol does): the fastest asyncio echo, not what most people write;
- ``--naive``: what a Python user would write: ``asyncio.start_server`` and,
  per line, ``await reader.readline()``, ``writer.write(line)``,
  ``await writer.drain()``.

A line longer than 65536 bytes, not counting its ``\\n``, closes the
connection.  ``--uvloop`` runs the same code on uvloop.  Prints nothing but
errors; exits on SIGTERM or SIGINT.

    python benchmarks/asyncio_server.py --port 8443 --cert server.pem \\
        --key server.key --ca ca.pem [--uvloop] [--naive]
"""

import argparse
import asyncio
import logging
import signal
import ssl

MAX_LINE = 65536


class LineEcho(asyncio.Protocol):
    transport = None
    buffer = b""

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buffer = self.buffer + data if self.buffer else data
        end = buffer.rfind(b"\n") + 1
        complete, self.buffer = buffer[:end], buffer[end:]
        too_long = len(self.buffer) > MAX_LINE
        if len(complete) > MAX_LINE and not too_long:
            too_long = max(map(len, complete.split(b"\n"))) > MAX_LINE
        if too_long:
            self.transport.close()
        elif complete:
            self.transport.write(complete)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()


async def naive_echo(reader, writer):
    """One line at a time, as the asyncio streams documentation shows."""
    try:
        while True:
            try:
                line = await reader.readline()
            except ValueError:  # longer than the limit
                break
            if not line:
                break
            writer.write(line)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def server_context(cert, key, ca):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=ca)
    return context


async def serve(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    context = server_context(args.cert, args.key, args.ca)
    if args.naive:
        server = await asyncio.start_server(
            naive_echo, args.host, args.port, ssl=context, backlog=args.backlog, limit=MAX_LINE + 1
        )
    else:
        server = await loop.create_server(
            LineEcho, args.host, args.port, ssl=context, backlog=args.backlog
        )
    await stop.wait()
    server.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="server certificate (PEM)")
    parser.add_argument("--key", required=True, help="server private key (PEM)")
    parser.add_argument("--ca", required=True, help="CA that client certificates must chain to")
    parser.add_argument("--backlog", type=int, default=511)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    parser.add_argument("--naive", action="store_true", help="streams, one readline/write/drain per line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.uvloop:
        import uvloop

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
