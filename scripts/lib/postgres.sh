# shellcheck shell=bash
# Throwaway PostgreSQL cluster helpers, sourced by scripts/with-postgres and scripts/test.
#
#   pg_find_bindir          prints the directory holding initdb/pg_ctl (exit 1 if none)
#   pg_start                starts a cluster on a free 127.0.0.1 port, creates database
#                           neutrino_test and exports NEUTRINO_TEST_PG_URL (and PG_TMPDIR,
#                           PG_BINDIR, PG_PORT)
#   pg_stop                 stops the cluster and removes its directory (idempotent)
#
# PostgreSQL refuses to run as root: as root the cluster directory belongs to the `postgres`
# system user and initdb/pg_ctl run as that user (runuser, else su).  Authentication is `trust`
# on 127.0.0.1 only; the data lives in a temp dir that pg_stop deletes.

pg_find_bindir() {
    local d
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
        return 0
    fi
    # Debian keeps the server binaries off PATH, one directory per major version.
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

_pg_free_port() {
    local py
    py=$(command -v python3 || command -v python || true)
    if [[ -n "$py" ]]; then
        "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local p
    for p in $(seq 55432 55532); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    return 1
}

# Runs a command as the cluster owner (postgres when we are root).
_pg_as_owner() {
    if [[ $(id -u) -ne 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        local q
        q=$(printf '%q ' "$@")
        su postgres -s /bin/sh -c "$q"
    fi
}

pg_start() {
    PG_BINDIR=$(pg_find_bindir) || { echo "pg_start: no PostgreSQL server binaries (initdb, pg_ctl) found" >&2; return 1; }
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        echo "pg_start: running as root but there is no 'postgres' system user" >&2
        return 1
    fi
    local base="${TMPDIR:-/tmp}"
    # As root the postgres user must be able to reach the directory: stay in /tmp.
    [[ $(id -u) -eq 0 ]] && base=/tmp
    PG_TMPDIR=$(mktemp -d "$base/neutrino-pg.XXXXXX")
    chmod 0755 "$PG_TMPDIR"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$PG_TMPDIR"
    fi
    local log="$PG_TMPDIR/postgres.log" tries
    if ! _pg_as_owner "$PG_BINDIR/initdb" -D "$PG_TMPDIR/data" -U postgres --auth=trust \
            -E UTF8 --locale=C --no-sync >"$PG_TMPDIR/initdb.log" 2>&1; then
        echo "pg_start: initdb failed:" >&2
        cat "$PG_TMPDIR/initdb.log" >&2
        return 1
    fi
    cat >>"$PG_TMPDIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_TMPDIR'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
    # A free port can be taken between the probe and the bind: try a few.
    for tries in 1 2 3 4 5; do
        PG_PORT=$(_pg_free_port)
        if _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_TMPDIR/data" -l "$log" -w -t 60 \
                -o "-p $PG_PORT" start >/dev/null; then
            break
        fi
        if [[ $tries -eq 5 ]]; then
            echo "pg_start: pg_ctl start failed:" >&2
            tail -n 30 "$log" >&2 || true
            return 1
        fi
        sleep 1
    done
    if ! _pg_as_owner "$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres \
            -v ON_ERROR_STOP=1 -c 'CREATE DATABASE neutrino_test' >/dev/null; then
        echo "pg_start: CREATE DATABASE failed" >&2
        return 1
    fi
    export PG_BINDIR PG_TMPDIR PG_PORT
    export NEUTRINO_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/neutrino_test"
    echo "$("$PG_BINDIR/pg_ctl" --version) running: $NEUTRINO_TEST_PG_URL (dir $PG_TMPDIR)" >&2
}

pg_stop() {
    if [[ -n "${PG_TMPDIR:-}" && -d "$PG_TMPDIR" ]]; then
        if [[ -f "$PG_TMPDIR/data/postmaster.pid" ]]; then
            _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_TMPDIR/data" -w -t 30 -m fast stop >/dev/null 2>&1 ||
                _pg_as_owner "$PG_BINDIR/pg_ctl" -D "$PG_TMPDIR/data" -m immediate stop >/dev/null 2>&1 || true
        fi
        rm -rf "$PG_TMPDIR"
    fi
    PG_TMPDIR=
}
