#!/usr/bin/env bash
# Startup benchmark (issue 11 §3): time from spawn to the first `initialize` answer of a small
# Python MCP server (stdlib only), started directly, through capjail --mode full with its world
# (namespaces + fresh root + Landlock + seccomp), and through bubblewrap with a comparable world
# (binds of /usr and the libraries, private /tmp /dev /proc, every namespace unshared).
# A benchmark, not a test. Usage: scripts/bench_startup.sh [N]   (bench.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-30}"
[ -x target/release/capjail ] && [ -x target/release/capjail-bench ] || cargo build --release --quiet --bins
B=target/release/capjail-bench
C=target/release/capjail
OUT=.bench; mkdir -p "$OUT"
if ! command -v bwrap >/dev/null; then
  echo "bench_startup: installing bubblewrap (apt-get)" >&2
  apt-get install -y bubblewrap >/dev/null 2>&1 || echo "bench_startup: bwrap unavailable, skipping it" >&2
fi
PY=/usr/bin/python3
WS="$(mktemp -d "${TMPDIR:-/tmp}/capjail-startup-XXXXXX")"
trap 'rm -rf "$WS"' EXIT
SRV="$WS/srv"; mkdir -p "$SRV" "$WS/ws"
cp tests/fixtures/hijacked_server.py "$SRV/server.py"   # no probes given: a plain MCP server
POLICY="$WS/policy.yaml"
cat > "$POLICY" <<YAML
name: startup
network: {mode: none}
filesystem:
  mode: explicit
  mounts:
    - {path: $WS/ws, mode: rw}
kernel:
  extra_read: [$SRV]
YAML
SERVER=("$PY" "$SRV/server.py" "$WS/ws/report.json")
RES="$OUT/startup.jsonl"; : > "$RES"
run() { # who, command...
  local who="$1"; shift
  line=$($B load startup "$N" -- "$@" "${SERVER[@]}")
  echo "{\"who\":\"$who\",\"r\":$line}" >> "$RES"
}
BWRAP=(bwrap --unshare-all --die-with-parent --new-session --clearenv --setenv PATH /usr/bin:/bin
  --ro-bind /usr /usr --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/bin /bin
  --ro-bind /etc/ld.so.cache /etc/ld.so.cache --ro-bind /etc/ssl /etc/ssl
  --ro-bind /etc/passwd /etc/passwd --ro-bind /etc/group /etc/group
  --ro-bind "$SRV" "$SRV" --bind "$WS/ws" "$WS/ws"
  --dev /dev --proc /proc --tmpfs /tmp --cap-drop ALL --)
for round in 1 2 3; do
  run direct
  run capjail-full "$PWD/$C" -q run --mode full --audit off --policy "$POLICY" --
  run capjail-kernel "$PWD/$C" -q run --mode kernel --audit off --policy "$POLICY" --
  if command -v bwrap >/dev/null; then run bwrap "${BWRAP[@]}"; fi
done
python3 - "$RES" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["who"], []).append(r["r"]["p50_ms"])
print("startup to the first initialize answer (median of per-round medians, ms):")
for who, v in by.items():
    print(f"  {who:<15} {statistics.median(v):7.1f}   rounds: {', '.join(f'{x:.1f}' for x in v)}")
PY
