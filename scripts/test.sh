#!/usr/bin/env bash
# Runs the suite on the embedded default (SQLite + in-memory broker/layer), then on
# PostgreSQL + Redis when they are reachable (always when REQUIRE_SERVICES=1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
PG_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/trading}"
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379/14}"

reachable() {  # host port
  "$PY" -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)" "$1" "$2" 2>/dev/null
}

echo "=== pass 1/2: embedded default (SQLite, in-memory broker and channel layer)"
env -u DATABASE_URL -u REDIS_URL TEST_REDIS_URL="$REDIS" "$PY" -m pytest "$@"

if reachable 127.0.0.1 5432 && reachable 127.0.0.1 6379; then
  echo "=== pass 2/2: PostgreSQL + Redis ($PG_URL, $REDIS)"
  DATABASE_URL="$PG_URL" REDIS_URL="$REDIS" "$PY" -m pytest "$@"
elif [ "${REQUIRE_SERVICES:-0}" = "1" ]; then
  echo "REQUIRE_SERVICES=1 but PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) is not reachable" >&2
  exit 1
else
  echo "=== pass 2/2 skipped: PostgreSQL and Redis not reachable on 127.0.0.1 (start them to run it)"
fi
