#!/usr/bin/env bash
# Benchmarks the twisted-mtls daemon against baseline mutual-TLS line-echo
# servers (asyncio streams, asyncio and uvloop bulk echo, and `openssl s_server`
# for handshakes only),
# measuring the *server's* CPU and memory per operation.
#
#   benchmarks/run.sh                 # full run, about 5 minutes
#   QUICK=1 benchmarks/run.sh         # smoke run, about 1 minute
#   PYTHON=/work/venv/bin/python SERVERS="twisted-mtls uvloop-bulk" benchmarks/run.sh
#
# Run it from anywhere; it works from the repository root.  Environment:
#   PYTHON   interpreter with twisted_mtls importable (default: python on PATH)
#   TWISTD   twistd to run the daemon with (default: the one beside PYTHON)
#   SERVERS  which servers, in order (default: twisted-mtls asyncio-naive
#            asyncio-bulk uvloop-bulk openssl): *-bulk write back all complete lines
#            of a read in one write; asyncio-naive is the readline/write/drain loop
#   OUT      where the JSON results go (default: benchmarks/out)
#   SECONDS_PER_PHASE, CONNECTIONS, IDLE, HOLD   override the load settings
#   MTLS_EXTRA  more [server] lines for the daemon, e.g. MTLS_EXTRA='workers = 2'
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=$(command -v "${PYTHON:-python}") || { echo "run.sh: no python; set PYTHON" >&2; exit 2; }
TWISTD=${TWISTD:-$(dirname "$PYTHON")/twistd}
OPENSSL=${OPENSSL:-$(command -v openssl || true)}
SERVERS=${SERVERS:-"twisted-mtls asyncio-naive asyncio-bulk uvloop-bulk openssl"}
OUT=${OUT:-benchmarks/out}
if [ "${QUICK:-0}" = 1 ]; then
    SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-1.5} IDLE=${IDLE:-500} HOLD=${HOLD:-1}
else
    SECONDS_PER_PHASE=${SECONDS_PER_PHASE:-10} IDLE=${IDLE:-5000} HOLD=${HOLD:-3}
fi
CONNECTIONS=${CONNECTIONS:-16}

# Each idle connection is one descriptor in the server and one in the client.
want=$((IDLE + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
    echo "run.sh: hard RLIMIT_NOFILE $hard is below the $want needed for IDLE=$IDLE" >&2
    exit 2
fi
[ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want" ] && ulimit -n "$want"

# Server on core 0, load generator on core 1, when there are two cores.
SERVER_PIN=() CLIENT_PIN=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN=(taskset -c 0) CLIENT_PIN=(taskset -c 1)
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mtls-bench.XXXXXX")
SERVER_PID=
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
trap 'stop_server; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

PKI=$TMP/pki
"$PYTHON" -m twisted_mtls.pki init "$PKI" >/dev/null
mkdir -p "$OUT"

free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

have_daemon() {
    [ -x "$TWISTD" ] && "$PYTHON" -c 'import twisted_mtls.tap' 2>/dev/null \
        && "$TWISTD" --help 2>/dev/null | grep -w mtls >/dev/null  # not -q: under pipefail, SIGPIPE would fail it
}

# start_server NAME PORT: starts it in the background, sets SERVER_PID.
start_server() {
    local name=$1 port=$2 log=$TMP/$1.log
    case $name in
    twisted-mtls)
        # Every feature on: info logging (to the log file) and metrics; the
        # default max_connections (1000) would refuse most idle connections.
        cat >"$TMP/mtls.ini" <<EOF
[server]
listen = tcp:$port:interface=127.0.0.1:backlog=1024
certificate = $PKI/server.pem
private_key = $PKI/server.key
client_ca = $PKI/ca.pem
max_connections = $((IDLE + 1000))
${MTLS_EXTRA:-}
[metrics]
listen = tcp:$(free_port):interface=127.0.0.1
EOF
        "${SERVER_PIN[@]}" "$TWISTD" -n --pidfile= mtls --config "$TMP/mtls.ini" >"$log" 2>&1 &
        ;;
    asyncio-bulk | uvloop-bulk | asyncio-naive)
        flag=()
        [ "$name" = uvloop-bulk ] && flag=(--uvloop)
        [ "$name" = asyncio-naive ] && flag=(--naive)
        "${SERVER_PIN[@]}" "$PYTHON" benchmarks/asyncio_server.py --port "$port" "${flag[@]}" \
            --cert "$PKI/server.pem" --key "$PKI/server.key" --ca "$PKI/ca.pem" >"$log" 2>&1 &
        ;;
    openssl)
        # -rev echoes lines reversed; the load generator's probe line is a palindrome.
        "${SERVER_PIN[@]}" "$OPENSSL" s_server -quiet -rev -accept "127.0.0.1:$port" \
            -cert "$PKI/server.pem" -key "$PKI/server.key" -CAfile "$PKI/ca.pem" -Verify 1 \
            </dev/null >"$log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
}

results=()
for name in $SERVERS; do
    case $name in
    twisted-mtls)
        if ! have_daemon; then
            echo "== $name: skipped ('$TWISTD --help' lists no mtls plugin, or twisted_mtls.tap is missing)" >&2
            continue
        fi
        phases=all ;;
    asyncio-bulk | uvloop-bulk | asyncio-naive)
        if [ "$name" = uvloop-bulk ] && ! "$PYTHON" -c 'import uvloop' 2>/dev/null; then
            echo "== $name: skipped (pip install uvloop)" >&2
            continue
        fi
        phases=all ;;
    openssl)
        if [ -z "$OPENSSL" ]; then
            echo "== $name: skipped (no openssl)" >&2
            continue
        fi
        phases=handshake,resumed ;;
    *)
        echo "run.sh: unknown server '$name'" >&2
        exit 2 ;;
    esac
    port=$(free_port)
    echo "== $name on 127.0.0.1:$port ($phases)" >&2
    start_server "$name" "$port"
    rm -f "$OUT/$name.json"
    status=0
    "${CLIENT_PIN[@]}" "$PYTHON" -m twisted_mtls.bench --port "$port" --server-name localhost \
        --cert "$PKI/client.pem" --key "$PKI/client.key" --ca "$PKI/ca.pem" \
        --server-pid "$SERVER_PID" --label "$name" --wait 20 --phase "$phases" \
        --seconds "$SECONDS_PER_PHASE" --connections "$CONNECTIONS" --idle "$IDLE" --hold "$HOLD" \
        --json "$OUT/$name.json" || status=$?
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "== $name: the server exited during the run" >&2
        status=1
    fi
    stop_server
    if [ "$status" != 0 ]; then
        echo "== $name: failures (exit $status); the server's last output:" >&2
        tail -n 20 "$TMP/$name.log" >&2
    fi
    [ -s "$OUT/$name.json" ] && results+=("$OUT/$name.json")
done

[ "${#results[@]}" -gt 0 ] || { echo "run.sh: no results" >&2; exit 1; }
echo
"$PYTHON" benchmarks/report.py "${results[@]}"
