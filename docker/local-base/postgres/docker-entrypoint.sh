#!/usr/bin/env bash
# Entrypoint for drophost-local/postgres:15: a small subset of the official
# postgres image's docker-entrypoint.sh, enough for a compose `db` service.
#   POSTGRES_USER (default postgres), POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE
#   (required unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default
#   $POSTGRES_USER), POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD
#   (default scram-sha-256), PGDATA (default /var/lib/postgresql/data).
# On an empty PGDATA it runs initdb, listens on all addresses, creates the
# database and runs /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz once.
set -Eeuo pipefail

log() { printf '%s [entrypoint] %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [ "${1:-}" = "" ] || [ "${1:0:1}" = "-" ]; then
    set -- postgres "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

if [ "$1" != "postgres" ]; then
    exec "$@"
fi

# Started as root: prepare the directories, then re-run this script as postgres.
if [ "$(id -u)" = "0" ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA" || true
    chown -R postgres:postgres "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    export HOME=/var/lib/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    [ -z "${POSTGRES_PASSWORD:-}" ] || die "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, not both"
    POSTGRES_PASSWORD="$(<"$POSTGRES_PASSWORD_FILE")"
fi
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != "trust" ]; then
        die "database is uninitialized and POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)"
    fi
    log "initializing database cluster in $PGDATA"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list on purpose
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        ${POSTGRES_INITDB_ARGS:-} >&2
    printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >> "$PGDATA/pg_hba.conf"

    # Temporary server on the Unix socket only, for the one-time setup.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >&2
    psql_base=(psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --no-password)
    if [ "$POSTGRES_DB" != "postgres" ]; then
        "${psql_base[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";' >&2
        log "created database $POSTGRES_DB"
    fi
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)     log "running $f"; # shellcheck disable=SC1090
                      if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
            *.sql)    log "running $f"; "${psql_base[@]}" --dbname "$POSTGRES_DB" -f "$f" >&2 ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql_base[@]}" --dbname "$POSTGRES_DB" >&2 ;;
            *)        log "ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >&2
    log "initialization complete; starting postgres"
fi

exec "$@"
