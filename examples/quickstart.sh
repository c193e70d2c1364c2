#!/usr/bin/env bash
# Install streamwork and run the examples end to end: a producer sends tasks, a worker runs
# them, and the output shows the results and the queues empty afterwards.
#
# Redis: $STREAMWORK_REDIS_URL when set, else a Redis answering on localhost:6379, else a
# private redis-server started here on a free port (installing Debian's redis-server
# package when it is missing and this machine can) and stopped at the end.
# QUICKSTART_REDIS=private skips the first two and always starts a private server.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

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

if [ "${QUICKSTART_REDIS:-}" = private ]; then
    unset STREAMWORK_REDIS_URL
    start_private=1
elif [ -n "${STREAMWORK_REDIS_URL:-}" ]; then
    echo "== using Redis at \$STREAMWORK_REDIS_URL"
elif answers redis://localhost:6379/0; then
    export STREAMWORK_REDIS_URL=redis://localhost:6379/0
    echo "== using the Redis answering on localhost:6379"
else
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

# The test suite starts its own redis-server and prometheus processes: have the binaries.
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v prometheus >/dev/null || missing+=(prometheus)
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
streamwork worker orders:app --burst --concurrency 8 --log-level warning
echo "== results"
"$PYTHON" orders.py report
echo
echo "== fan-out: one event to billing, shipping and notifications, two workers each"
"$PYTHON" fanout.py publish 12
streamwork worker fanout:app --processes 2 --burst --log-level warning
"$PYTHON" fanout.py report
