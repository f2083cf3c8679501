#!/usr/bin/env bash
# The demo: real attacks on real MCP servers, each run without capjail, behind the proxy only and
# in full mode, judged by their effect; legitimate work alongside; a one-line summary.
# The lab is a temporary folder removed at the end; the audit log goes to target/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo: building capjail (cargo build --release) ..." >&2
cargo build --release --quiet --bin capjail
echo "demo: installing the real MCP servers into .peers/ (scripts/setup-peers.sh; a no-op when done) ..." >&2
bash scripts/setup-peers.sh
export CAPJAIL_PEERS="$PWD/.peers"
DEMO_DIR=target/demo
mkdir -p "$DEMO_DIR"
rm -f "$DEMO_DIR"/audit.jsonl*
# capjail's state (tool pins) stays in the demo's folder, never the user's.
export XDG_STATE_HOME="$PWD/$DEMO_DIR/state"
echo "demo: running 6 attacks and 3 legitimate calls three ways (about 20 s) ..." >&2
exec python3 scripts/demo.py target/release/capjail "$DEMO_DIR"
