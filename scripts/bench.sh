#!/usr/bin/env bash
# Benchmarks (never part of the tests). Runs the same scenarios direct, through a plain byte relay
# and through capjail, interleaved in rounds in ONE invocation, and reports medians and ratios.
# Usage: scripts/bench.sh [ROUNDS]      (env: CAPJAIL_BENCH_MODE=proxy|kernel|full, default full
#        when the kernel layer is available, CAPJAIL_BENCH_PIN=0 to skip CPU pinning)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-5}"
cargo build --release --quiet --bins
B=target/release/capjail-bench
C=target/release/capjail
OUT=.bench; mkdir -p "$OUT"
# full when this machine and build can enforce the kernel layer, else proxy (and say so).
if [ -z "${CAPJAIL_BENCH_MODE:-}" ]; then
  if $C -q run --audit off --mode full --policy strict -- true </dev/null >/dev/null 2>&1; then MODE=full; else MODE=proxy; echo "bench: kernel layer unavailable, measuring --mode proxy" >&2; fi
else MODE="$CAPJAIL_BENCH_MODE"; fi
AUDIT_ARGS=()
if $C run --help | grep -q -- '--audit'; then AUDIT_ARGS=(--audit "$OUT/bench-audit.jsonl"); fi
POLICY="$OUT/bench-policy.yaml"
cat > "$POLICY" <<'YAML'
name: bench
filesystem: {mode: any}
network: {mode: none}
tools: {mode: allowlist, allowed: [echo]}
YAML
SERVER=("$PWD/$B" echo-server)
declare -A WRAP
WRAP[direct]=""
WRAP[relay]="$PWD/$B relay --"
WRAP[capjail]="$PWD/$C -q run --policy $POLICY --mode $MODE ${AUDIT_ARGS[*]} --profile $OUT/bench-profile.yaml --"
# The same, with auditing off: the cost of the audit log (issue 4) from the same run.
WRAP_NOAUDIT="$PWD/$C -q run --policy $POLICY --mode $MODE --audit off --profile $OUT/bench-profile.yaml --"
# The same policy with the content checks off (issue 17): their cost, from the same run.
POLICY_NOCONTENT="$OUT/bench-policy-nocontent.yaml"
{ cat "$POLICY"; printf 'content: {enabled: false}\nflows: {defaults: false}\n'; } > "$POLICY_NOCONTENT"
WRAP_NOCONTENT="$PWD/$C -q run --policy $POLICY_NOCONTENT --mode $MODE ${AUDIT_ARGS[*]} --profile $OUT/bench-profile.yaml --"
cat > "$OUT/bench-profile.yaml" <<'YAML'
name: bench
tools:
  echo: {capability: compute, args: {message: data, bytes: data}}
YAML
pin() { if [ "${CAPJAIL_BENCH_PIN:-1}" = 1 ] && command -v taskset >/dev/null; then taskset -c 0 "$@"; else "$@"; fi; }
RES="$OUT/results.jsonl"; : > "$RES"
for round in $(seq 1 "$ROUNDS"); do
  for who in direct relay capjail; do
    # shellcheck disable=SC2206
    w=(${WRAP[$who]})
    for sc in "roundtrip 2000" "pipelined 20000" "large 20 1048576" "large 3 16777216" "startup 20"; do
      # shellcheck disable=SC2086
      line=$(pin $B load $sc -- "${w[@]}" "${SERVER[@]}")
      echo "{\"round\":$round,\"who\":\"$who\",\"pinned\":${CAPJAIL_BENCH_PIN:-1},\"r\":$line}" >> "$RES"
    done
    # Unpinned round trip, for comparison (cross-CPU wake-ups).
    line=$($B load roundtrip 2000 -- "${w[@]}" "${SERVER[@]}")
    echo "{\"round\":$round,\"who\":\"$who\",\"pinned\":0,\"r\":$line}" >> "$RES"
  done
  # shellcheck disable=SC2206
  w=($WRAP_NOAUDIT)
  for sc in "roundtrip 2000" "pipelined 20000"; do
    # shellcheck disable=SC2086
    line=$(pin $B load $sc -- "${w[@]}" "${SERVER[@]}")
    echo "{\"round\":$round,\"who\":\"capjail_noaudit\",\"pinned\":${CAPJAIL_BENCH_PIN:-1},\"r\":$line}" >> "$RES"
  done
  # Content checks off (capjail above runs with them on, the default).
  # shellcheck disable=SC2206
  w=($WRAP_NOCONTENT)
  for sc in "roundtrip 2000" "large 20 1048576"; do
    # shellcheck disable=SC2086
    line=$(pin $B load $sc -- "${w[@]}" "${SERVER[@]}")
    echo "{\"round\":$round,\"who\":\"capjail_nocontent\",\"pinned\":${CAPJAIL_BENCH_PIN:-1},\"r\":$line}" >> "$RES"
  done
done
# Peak RSS of capjail itself passing small messages and a 16 MiB response.
rss() { /usr/bin/time -f '%M' -o "$OUT/rss.txt" "$@" >/dev/null 2>&1 || true; cat "$OUT/rss.txt" 2>/dev/null | tail -1; }
RSS_SMALL=$(bash -c "$B load roundtrip 2000 -- /usr/bin/time -f '%M' -o $OUT/rss-small.txt ${WRAP[capjail]} ${SERVER[*]} >/dev/null; tail -1 $OUT/rss-small.txt" 2>/dev/null || echo 0)
RSS_LARGE=$(bash -c "$B load large 3 16777216 -- /usr/bin/time -f '%M' -o $OUT/rss-large.txt ${WRAP[capjail]} ${SERVER[*]} >/dev/null; tail -1 $OUT/rss-large.txt" 2>/dev/null || echo 0)
python3 scripts/bench_report.py "$RES" "$MODE" "$RSS_SMALL" "$RSS_LARGE"
# Startup to the first initialize answer: direct vs capjail --mode full (with its world) vs bwrap.
scripts/bench_startup.sh

# The egress point (issue 18): added latency of a fetch through it vs a direct fetch.
bash scripts/bench_egress.sh 300 || echo "bench: egress benchmark failed" >&2
