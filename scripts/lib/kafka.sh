# shellcheck shell=bash
# Starts and stops a Kafka-protocol broker for the tests: tansu (a Kafka-compatible broker
# written in Rust, installed from crates.io when missing) with in-memory storage, on a free
# loopback port.
#
#   source scripts/lib/kafka.sh
#   kafka_start         # exports KAFKA_BROKERS
#   trap kafka_stop EXIT
#
# When KAFKA_BROKERS is already set (a Kafka, Redpanda or MSK cluster), kafka_start uses it and
# starts nothing. The broker keeps messages in memory only: fine for tests, wrong for anything
# else.

_KAFKA_PID=""
_KAFKA_DIR=""
_KAFKA_CREATED_BASE=""

_kafka_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null && return
    local port
    for port in $(seq 29092 29192); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "kafka_start: no free port found" >&2
    return 1
}

# ensure_tansu: makes the `tansu` broker available, building it from crates.io when missing
# (7-10 minutes on two cores, once per machine: cargo's bin directory keeps it).
ensure_tansu() {
    if command -v tansu >/dev/null 2>&1; then
        return 0
    fi
    local cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    if [ -x "$cargo_bin/tansu" ]; then
        PATH="$cargo_bin:$PATH"
        export PATH
        return 0
    fi
    echo "kafka_start: installing the tansu broker (cargo install tansu, several minutes)" >&2
    # --locked: newer versions of tansu's dependencies break its build; dynostore: the
    # in-memory storage engine.
    cargo install tansu --version '^0.6' --locked --features dynostore >&2
}

kafka_start() {
    if [ -n "${KAFKA_BROKERS:-}" ]; then
        echo "kafka_start: using KAFKA_BROKERS=$KAFKA_BROKERS from the environment" >&2
        return 0
    fi
    ensure_tansu || {
        echo "kafka_start: could not install tansu; set KAFKA_BROKERS to a running broker" >&2
        return 1
    }
    local base port
    if [ -n "${SERVICES_DIR:-}" ]; then
        base="$SERVICES_DIR"
    else
        base=$(mktemp -d)
        _KAFKA_CREATED_BASE="$base"
    fi
    _KAFKA_DIR=$(mktemp -d "$base/kafka.XXXXXX")
    port=$(_kafka_free_port) || return 1
    tansu broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/ \
        >"$_KAFKA_DIR/tansu.log" 2>&1 &
    _KAFKA_PID=$!
    local tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        tries=$((tries + 1))
        if ! kill -0 "$_KAFKA_PID" 2>/dev/null || [ "$tries" -ge 300 ]; then
            echo "kafka_start: tansu did not start on port $port, see its log:" >&2
            cat "$_KAFKA_DIR/tansu.log" >&2
            kafka_stop
            return 1
        fi
        sleep 0.1
    done
    export KAFKA_BROKERS="127.0.0.1:$port"
    echo "kafka_start: tansu on $KAFKA_BROKERS, log in $_KAFKA_DIR/tansu.log" >&2
}

kafka_stop() {
    local pid="${_KAFKA_PID:-}"
    [ -n "$pid" ] || return 0
    _KAFKA_PID=""
    kill "$pid" 2>/dev/null || true
    local tries=0
    while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 50 ]; do
        tries=$((tries + 1))
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [ -n "${_KAFKA_DIR:-}" ] && rm -rf "$_KAFKA_DIR"
    _KAFKA_DIR=""
    if [ -n "${_KAFKA_CREATED_BASE:-}" ]; then
        rmdir "$_KAFKA_CREATED_BASE" 2>/dev/null || true
        _KAFKA_CREATED_BASE=""
    fi
    unset KAFKA_BROKERS
}
