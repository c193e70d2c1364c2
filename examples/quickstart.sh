#!/usr/bin/env bash
# Install streamwork and run the examples end to end: a producer sends tasks, a worker runs
# them, and the output shows the results and the queues empty afterwards.
#
#   bash examples/quickstart.sh [--redis-url URL]
#
# Python: into the active virtual environment ($VIRTUAL_ENV), else into ./.venv (created
# here), never into the system's python3.
# Redis: a private redis-server started here on a free port (installing Debian's
# redis-server package when it is missing and this machine can), stopped at the end; it
# never writes into a Redis it was not told about. --redis-url URL (or
# $STREAMWORK_REDIS_URL) uses that Redis instead.
set -euo pipefail
cd "$(dirname "$0")/.."

redis_url="${STREAMWORK_REDIS_URL:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --redis-url) [ $# -ge 2 ] || { echo "--redis-url needs a URL" >&2; exit 2; }; redis_url="$2"; shift 2 ;;
        --redis-url=*) redis_url="${1#--redis-url=}"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (usage: bash examples/quickstart.sh [--redis-url URL])" >&2; exit 2 ;;
    esac
done

if [ -n "${PYTHON:-}" ]; then
    :  # given explicitly (the test suite passes its own interpreter)
elif [ -n "${VIRTUAL_ENV:-}" ]; then
    PYTHON="$VIRTUAL_ENV/bin/python"
    echo "== using the active virtual environment $VIRTUAL_ENV"
else
    if [ ! -x .venv/bin/python ]; then
        echo "== creating a virtual environment in .venv"
        python3 -m venv .venv
    fi
    PYTHON="$PWD/.venv/bin/python"
    echo "== using the virtual environment .venv (activate it with: . .venv/bin/activate)"
fi

echo "== installing streamwork (pip install -e '.[test]')"
"$PYTHON" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[test]"

server_pid=""
server_dir=""
start_private=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    if [ -n "$server_dir" ]; then rm -rf "$server_dir"; fi
}
trap cleanup EXIT

# Install Debian packages (as root with apt) without starting their system services.
install_packages() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then return 1; fi
    echo "== installing Debian packages: $*"
    local added_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    local status=$?
    if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    return $status
}

install_redis_server() {
    command -v redis-server >/dev/null || install_packages redis-server
}

answers() {
    "$PYTHON" -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()" "$1" 2>/dev/null
}

if [ -n "$redis_url" ]; then
    export STREAMWORK_REDIS_URL="$redis_url"
    echo "== using the Redis you named: $("$PYTHON" -c 'import sys; from streamwork.urls import redact; print(redact(sys.argv[1]))' "$redis_url")"
else
    unset STREAMWORK_REDIS_URL
    start_private=1
fi
if [ -n "${start_private:-}" ]; then
    if ! install_redis_server; then
        echo "no Redis found: install redis-server (apt-get install redis-server / brew install redis) or set STREAMWORK_REDIS_URL" >&2
        exit 1
    fi
    port=$("$PYTHON" -c "from streamwork.testing import free_port; print(free_port())")
    server_dir=$(mktemp -d)
    redis-server --port "$port" --bind 127.0.0.1 --dir "$server_dir" --save "" --appendonly no \
        --logfile "$server_dir/redis.log" &
    server_pid=$!
    export STREAMWORK_REDIS_URL="redis://127.0.0.1:$port/0"
    for _ in $(seq 100); do answers "$STREAMWORK_REDIS_URL" && break; sleep 0.1; done
    answers "$STREAMWORK_REDIS_URL" || { echo "private redis-server did not start: $(tail -3 "$server_dir/redis.log")" >&2; exit 1; }
    echo "== started a private redis-server on 127.0.0.1:$port (pid $server_pid)"
fi

# The test suite starts its own redis-server and prometheus processes, and drives the web
# console in Debian's Chromium: have the binaries.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ] && ! install_packages "${missing[@]}"; then
    echo "note: the test suite needs ${missing[*]} (apt-get install ${missing[*]})"
fi

cd examples
echo
echo "== hello world: send one message, consume it"
"$PYTHON" hello.py
echo
echo "== orders: the producer sends 20 orders"
"$PYTHON" orders.py send 20
echo "== a worker processes them (streamwork worker orders:app --burst)"
"$PYTHON" -m streamwork worker orders:app --burst --concurrency 8 --log-level warning
echo "== results"
"$PYTHON" orders.py report
echo
echo "== fan-out: one event to billing, shipping and notifications, two workers each"
"$PYTHON" fanout.py publish 12
"$PYTHON" -m streamwork worker fanout:app --processes 2 --burst --log-level warning
"$PYTHON" fanout.py report
echo
echo "== done; run the test suite with: $PYTHON -m pytest"
