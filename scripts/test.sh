#!/usr/bin/env bash
# THE test command (see README): sets up the real MCP peers, makes sure the few system tools the
# end-to-end tests need exist (installing Debian packages only when one is really missing), then
# runs every test of the workspace with cargo-nextest (or cargo test when nextest is absent).
#   bash scripts/test.sh [extra args for nextest / cargo test]
# Every step is bounded in time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf 'test.sh: %s\n' "$*" >&2; }

# 1. System tools: `ip` (iproute2) and `unshare` (util-linux) for the network-namespace tests,
#    python3 + venv for the Python peers and fixtures, node/npm for the npm peers.
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]})); then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO="sudo"
    log "installing missing Debian packages: ${missing[*]}"
    timeout 300 $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive timeout 600 $SUDO apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >&2
  else
    log "warning: missing ${missing[*]} and no apt-get; the tests that need them will fail"
  fi
fi

# 2. Real peers (idempotent; a no-op when the stamp matches).
timeout 1200 bash "$ROOT/scripts/setup-peers.sh"
export CAPJAIL_PEERS="${CAPJAIL_PEERS:-$ROOT/.peers}"
log "CAPJAIL_PEERS=$CAPJAIL_PEERS"

# 3. capjail's state (default audit log, pin store, private caches) goes under target/ for every
#    capjail a test starts, whatever way it starts it: never the user's ~/.local/state/capjail.
export XDG_STATE_HOME="$ROOT/target/test-state"
mkdir -p "$XDG_STATE_HOME"
log "XDG_STATE_HOME=$XDG_STATE_HOME"

# 4. The tests (one integration binary, tests/suite.rs, plus the unit tests). Each test bounds its
#    own waits; the whole run is bounded here as well. A test that cannot run here records a
#    skip (tests/support: skip!); they are counted and listed at the end. CAPJAIL_TEST_NO_SKIP=1
#    makes every skip a failure instead.
TOTAL_TIMEOUT="${CAPJAIL_TEST_TIMEOUT:-2400}"
SKIPS="$ROOT/target/tmp/capjail-skips.txt"
mkdir -p "$(dirname "$SKIPS")"
: >"$SKIPS"
status=0
if cargo nextest --version >/dev/null 2>&1; then
  log "running: cargo nextest run --workspace --no-fail-fast $*"
  timeout -k 30 "$TOTAL_TIMEOUT" cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  log "cargo-nextest not found; running: cargo test --workspace --no-fail-fast $*"
  timeout -k 30 "$TOTAL_TIMEOUT" cargo test --workspace --no-fail-fast "$@" || status=$?
fi

# 5. The skips, visibly (a skip is not a pass).
n=$(grep -c . "$SKIPS" || true)
if ((n > 0)); then
  log "$n skipped:"
  sed 's/^/  SKIP: /' "$SKIPS" >&2
else
  log "0 skipped"
fi
exit "$status"
