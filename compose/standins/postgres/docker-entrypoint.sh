#!/usr/bin/env bash
# First start (empty PGDATA): initdb with POSTGRES_USER as superuser and POSTGRES_PASSWORD, create POSTGRES_DB,
# allow password logins from any host; then run the server in the foreground as `postgres`, as the official
# image's docker-entrypoint.sh does.
set -euo pipefail
if [[ "${1:-}" == "postgres" && "$(id -u)" == "0" ]]; then
    mkdir -p "${PGDATA}" && chown -R postgres:postgres "${PGDATA}" && chmod 700 "${PGDATA}"
    exec gosu postgres "$0" "$@"
fi
if [[ "${1:-}" == "postgres" && ! -s "${PGDATA}/PG_VERSION" ]]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set (the official image refuses to start without it)}"
    user="${POSTGRES_USER:-postgres}"
    db="${POSTGRES_DB:-${user}}"
    pwfile="$(mktemp)"
    printf '%s' "${POSTGRES_PASSWORD}" > "${pwfile}"
    initdb --username="${user}" --pwfile="${pwfile}" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "${pwfile}"
    echo "host all all all scram-sha-256" >> "${PGDATA}/pg_hba.conf"
    pg_ctl -D "${PGDATA}" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
    if [[ "${db}" != "postgres" ]]; then
        psql -v ON_ERROR_STOP=1 --username "${user}" --dbname postgres -h /var/run/postgresql \
            -c "CREATE DATABASE \"${db}\"" >/dev/null
    fi
    pg_ctl -D "${PGDATA}" -m fast -w stop >/dev/null
    echo "PostgreSQL init process complete; ready for start up."
fi
if [[ "${1:-}" == "postgres" ]]; then
    shift
    exec postgres -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
fi
exec "$@"
