#!/usr/bin/env bash
# The main job, end to end: build capjail, install the real servers, and send the seeds' attack
# requests through capjail to them. Prints what was blocked and why.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bash scripts/setup-peers.sh
export CAPJAIL_PEERS="$PWD/.peers"
if command -v unshare >/dev/null && unshare -n true 2>/dev/null; then
  # Fetch requests run in a private network namespace: even a miss could reach nothing but loopback.
  exec unshare -n -- sh -c 'ip link set lo up 2>/dev/null || true; exec python3 scripts/demo.py target/release/capjail'
fi
exec python3 scripts/demo.py target/release/capjail
