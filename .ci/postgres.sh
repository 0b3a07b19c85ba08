#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests that claim PostgreSQL: Debian's `postgresql` (installed when
# missing), a fresh cluster in a temporary folder, listening on loopback only, trust auth for one user.
# Prints the SQLAlchemy URL of its maintenance database on stdout (the tests make one database per test):
#   export LAB_TEST_PG_URL=$(bash .ci/postgres.sh)
# The cluster goes in $LAB_PG_DIR when set (an empty folder; `.ci/run` stops it with `bash .ci/postgres.sh stop`),
# else in a new temporary folder (named on stderr; stop it with pg_ctl -D that-folder/data stop).
set -euo pipefail
log() { echo "postgres: $*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
AS=()
[ "$(id -u)" = 0 ] && AS=(runuser -u postgres --)   # initdb refuses to run as root: the cluster is the postgres user's
if [ "${1:-}" = stop ]; then   # `bash .ci/postgres.sh stop`: stop the server of the cluster in $LAB_PG_DIR, if any
  [ -f "${LAB_PG_DIR:?}/data/postmaster.pid" ] || exit 0
  exec "${AS[@]}" "$(pg_bin)/pg_ctl" -D "$LAB_PG_DIR/data" -m fast stop >/dev/null
fi
if [ -z "$(pg_bin)" ]; then
  log "installing Debian's postgresql"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } >&2 \
    || { log "postgresql could not be installed"; exit 1; }
fi
BIN=$(pg_bin)
PORT=${LAB_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
DIR=${LAB_PG_DIR:-$(mktemp -d /tmp/lab-pg.XXXXXX)}
[ "$(id -u)" = 0 ] && chown postgres "$DIR"
"${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U lab -A trust -E UTF8 --no-instructions >/dev/null
"${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
log "server $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT, cluster $DIR/data"
echo "postgresql+psycopg://lab@127.0.0.1:$PORT/postgres"
