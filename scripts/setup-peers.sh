#!/usr/bin/env bash
# Install the real MCP peers used by the tests into .peers/ (git-ignored). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PEERS="${CAPJAIL_PEERS:-$PWD/.peers}"
NPM_PKGS="@modelcontextprotocol/server-filesystem@2026.8.31 @modelcontextprotocol/server-everything@2026.8.31 @modelcontextprotocol/server-memory@2026.8.31"
PIP_PKGS="mcp-server-fetch==2026.10.24 mcp-server-git==2026.10.19 mcp==2.3.0"
STAMP="$PEERS/.stamp"
WANT="$NPM_PKGS | $PIP_PKGS"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "setup-peers: up to date in $PEERS" >&2
  exit 0
fi
mkdir -p "$PEERS/node"
echo "setup-peers: npm install $NPM_PKGS" >&2
# shellcheck disable=SC2086
timeout 600 npm install --no-audit --no-fund --loglevel=error --prefix "$PEERS/node" $NPM_PKGS >&2
echo "setup-peers: python venv with $PIP_PKGS" >&2
[ -x "$PEERS/venv/bin/python" ] || python3 -m venv "$PEERS/venv"
# shellcheck disable=SC2086
timeout 600 "$PEERS/venv/bin/pip" install -q --disable-pip-version-check $PIP_PKGS >&2
echo "$WANT" > "$STAMP"
echo "setup-peers: done" >&2
