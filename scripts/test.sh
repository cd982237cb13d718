#!/usr/bin/env bash
# Runs the suite on the embedded default (SQLite + in-memory broker/layer), then on
# PostgreSQL + Redis when they are reachable (always when REQUIRE_SERVICES=1).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
PG_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/trading}"
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379/14}"

reachable() {  # URL: does its host:port accept connections?
  "$PY" -c "
import socket, sys
from urllib.parse import urlparse
url = urlparse(sys.argv[1])
socket.create_connection((url.hostname or '127.0.0.1', url.port or {'redis': 6379}.get(url.scheme, 5432)), 2)
" "$1" 2>/dev/null
}

redact() {  # a URL without its password, for the log
  sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"
}
SHOWN="$(redact "$PG_URL"), $(redact "$REDIS")"

echo "=== pass 1/2: embedded default (SQLite, in-memory broker and channel layer)"
env -u DATABASE_URL -u REDIS_URL TEST_REDIS_URL="$REDIS" "$PY" -m pytest "$@"

if reachable "$PG_URL" && reachable "$REDIS"; then
  echo "=== pass 2/2: PostgreSQL + Redis ($SHOWN)"
  DATABASE_URL="$PG_URL" REDIS_URL="$REDIS" "$PY" -m pytest "$@"
elif [ "${REQUIRE_SERVICES:-0}" = "1" ]; then
  echo "REQUIRE_SERVICES=1 but PostgreSQL or Redis is not reachable ($SHOWN)" >&2
  exit 1
else
  echo "=== pass 2/2 skipped: PostgreSQL or Redis not reachable ($SHOWN): start them, or set TEST_DATABASE_URL / TEST_REDIS_URL"
fi
