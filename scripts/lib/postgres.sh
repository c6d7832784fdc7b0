# shellcheck shell=bash
# Starts and stops a private PostgreSQL 15 for the tests: loopback only, its own data directory
# and port, run as the `postgres` user (PostgreSQL refuses to run as root).
#
#   source scripts/lib/postgres.sh
#   pg_start            # exports DATABASE_URL and PGDATA_DIR
#   trap pg_stop EXIT
#
# When DATABASE_URL is already set, pg_start uses that server and starts nothing.
# The settings trade durability for speed (fsync=off, synchronous_commit=off,
# full_page_writes=off): fine for tests, wrong for anything else. PG_DURABLE=1 starts it with
# PostgreSQL's durable defaults instead (fsync, synchronous_commit and full_page_writes on), for
# measuring what durability costs.

_PG_STARTED_DIR=""
_PG_CREATED_BASE=""

_pg_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' 2>/dev/null && return
    local port
    for port in $(seq 25432 25532); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "pg_start: no free port found" >&2
    return 1
}

_pg_as_postgres() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    if [ -n "${DATABASE_URL:-}" ]; then
        echo "pg_start: using DATABASE_URL from the environment" >&2
        return 0
    fi
    local bindir
    if ! command -v initdb >/dev/null 2>&1; then
        bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
        if [ -z "$bindir" ]; then
            echo "pg_start: initdb not found; install PostgreSQL 15 (apt-get install -y postgresql)" >&2
            return 1
        fi
        PATH="$bindir:$PATH"
        export PATH
    fi
    local base dir port
    if [ -n "${SERVICES_DIR:-}" ]; then
        base="$SERVICES_DIR"
        mkdir -p "$base"
    else
        base=$(mktemp -d)
        _PG_CREATED_BASE="$base"
    fi
    dir=$(mktemp -d "$base/postgres.XXXXXX")
    if [ "$(id -u)" = 0 ]; then
        chown postgres:postgres "$dir"
        chmod 700 "$dir"
        # The postgres user must be able to reach the directory.
        chmod o+x "$base"
    fi
    _pg_as_postgres initdb -D "$dir/data" -A trust -U postgres >"$dir/initdb.log" 2>&1 || {
        echo "pg_start: initdb failed, see $dir/initdb.log" >&2
        cat "$dir/initdb.log" >&2
        return 1
    }
    port=$(_pg_free_port) || return 1
    # In the configuration file, not on the command line (`-c`, which outranks ALTER SYSTEM), so
    # a bench can switch them with ALTER SYSTEM and pg_reload_conf() (benches/versus does).
    local durability=off
    if [ "${PG_DURABLE:-0}" = 1 ]; then
        durability=on
    fi
    printf 'fsync = %s\nsynchronous_commit = %s\nfull_page_writes = %s\n' \
        "$durability" "$durability" "$durability" >>"$dir/data/postgresql.conf"
    _pg_as_postgres pg_ctl -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" \
        start >/dev/null || {
        echo "pg_start: PostgreSQL did not start, see $dir/postgres.log" >&2
        cat "$dir/postgres.log" >&2
        return 1
    }
    local tries=0
    until pg_isready -q -h 127.0.0.1 -p "$port" -U postgres; do
        tries=$((tries + 1))
        if [ "$tries" -ge 100 ]; then
            echo "pg_start: PostgreSQL is not ready on port $port, see $dir/postgres.log" >&2
            return 1
        fi
        sleep 0.1
    done
    _PG_STARTED_DIR="$dir"
    export PGDATA_DIR="$dir/data"
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    echo "pg_start: PostgreSQL on 127.0.0.1:$port, data in $PGDATA_DIR" >&2
}

pg_stop() {
    local dir="${_PG_STARTED_DIR:-}"
    [ -n "$dir" ] || return 0
    _PG_STARTED_DIR=""
    if [ -f "$dir/data/postmaster.pid" ]; then
        _pg_as_postgres pg_ctl -D "$dir/data" stop -m fast -w >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    if [ -n "${_PG_CREATED_BASE:-}" ]; then
        rmdir "$_PG_CREATED_BASE" 2>/dev/null || true
        _PG_CREATED_BASE=""
    fi
    unset DATABASE_URL PGDATA_DIR
}
