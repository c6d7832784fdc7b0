# shellcheck shell=bash
# Starts and stops a private Redis for the tests: loopback only, its own port and directory,
# nothing saved to disk.
#
#   source scripts/lib/common.sh scripts/lib/redis.sh
#   ensure_redis        # installs redis-server when missing
#   redis_start         # exports REDIS_URL, REDIS_PORT, REDIS_DIR, REDIS_START_COMMAND
#   trap redis_stop EXIT
#
# When REDIS_URL is already set, redis_start uses that server and starts nothing (the restart
# test of composable-redis then needs REDIS_PORT and REDIS_START_COMMAND too). The server keeps
# everything in memory only (no RDB snapshots, no AOF): fine for tests, wrong for anything else.

_REDIS_STARTED_PORT=""
_REDIS_DIR=""
_REDIS_CREATED_BASE=""

_redis_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null && return
    local port
    for port in $(seq 26379 26479); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "redis_start: no free port found" >&2
    return 1
}

# ensure_redis: makes redis-server and redis-cli available, installing Debian's redis-server
# when missing (it installs without starting a daemon here).
ensure_redis() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    step "installing Redis"
    apt_install redis-server
}

redis_start() {
    if [ -n "${REDIS_URL:-}" ]; then
        echo "redis_start: using REDIS_URL=$REDIS_URL from the environment" >&2
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis_start: redis-server not found; run ensure_redis (apt-get install -y redis-server)" >&2
        return 1
    fi
    local base port
    if [ -n "${SERVICES_DIR:-}" ]; then
        base="$SERVICES_DIR"
        mkdir -p "$base"
    else
        base=$(mktemp -d)
        _REDIS_CREATED_BASE="$base"
    fi
    _REDIS_DIR=$(mktemp -d "$base/redis.XXXXXX")
    port=$(_redis_free_port) || return 1
    # One line, so that the restart test can start the server again exactly like this.
    local dir
    dir=$(printf '%q' "$_REDIS_DIR")
    local command="redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir $dir --pidfile $dir/redis.pid --logfile $dir/redis.log"
    eval "$command" >/dev/null || {
        echo "redis_start: redis-server did not start on port $port, see its log:" >&2
        cat "$_REDIS_DIR/redis.log" >&2 2>/dev/null
        return 1
    }
    _REDIS_STARTED_PORT="$port"
    local tries=0
    until [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; do
        tries=$((tries + 1))
        if [ "$tries" -ge 100 ]; then
            echo "redis_start: Redis is not answering on port $port, see $_REDIS_DIR/redis.log:" >&2
            cat "$_REDIS_DIR/redis.log" >&2 2>/dev/null
            redis_stop
            return 1
        fi
        sleep 0.1
    done
    export REDIS_PORT="$port"
    export REDIS_DIR="$_REDIS_DIR"
    export REDIS_START_COMMAND="$command"
    export REDIS_URL="redis://127.0.0.1:$port/"
    echo "redis_start: Redis on 127.0.0.1:$port, files in $REDIS_DIR" >&2
}

# redis_stop: stops the server redis_start started (nothing when it used REDIS_URL).
redis_stop() {
    local port="${_REDIS_STARTED_PORT:-}"
    [ -n "$port" ] || return 0
    _REDIS_STARTED_PORT=""
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    # A restart test may have left a server it started again; its pid file says which.
    if [ -f "$_REDIS_DIR/redis.pid" ]; then
        local pid tries=0
        pid=$(cat "$_REDIS_DIR/redis.pid" 2>/dev/null || true)
        while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 50 ]; do
            tries=$((tries + 1))
            sleep 0.1
        done
    fi
    rm -rf "$_REDIS_DIR"
    _REDIS_DIR=""
    if [ -n "${_REDIS_CREATED_BASE:-}" ]; then
        rmdir "$_REDIS_CREATED_BASE" 2>/dev/null || true
        _REDIS_CREATED_BASE=""
    fi
    unset REDIS_URL REDIS_PORT REDIS_DIR REDIS_START_COMMAND
}
