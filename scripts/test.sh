#!/usr/bin/env bash
# THE test command: installs what the tests need (real MCP peers from npm and PyPI into .peers/)
# and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-peers.sh
export CAPJAIL_PEERS="$PWD/.peers"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
