#!/usr/bin/env bash
# Where a small call's instructions go (issue 19): capjail under callgrind, realistic
# configuration (the policy of scripts/bench.sh), `--mode proxy` (valgrind follows one process;
# the proxy's code is the same in every mode), audit log off, then on (its SHA-256 grouped apart:
# under valgrind sha2 takes its software SHA-256, which the CPUs measured here never run),
# N_LOW then N_HIGH pipelined calls;
# scripts/bench_calls.py divides the difference by the calls between (startup and the tool
# listing cancel out) and groups it by source file. Instructions, not time: deterministic to
# within the pipelining's batches (+-1%), so a change's effect on the per-call path shows even
# where the timed benchmarks cannot see it. Never part of the tests.
#
# Usage: scripts/bench_calls.sh [N_LOW N_HIGH]   (default 2000 12000)
# Env: CAPJAIL_BENCH_BIN_DIR=DIR measures the capjail and capjail-bench found there.
set -euo pipefail
cd "$(dirname "$0")/.."
N_LOW="${1:-2000}"
N_HIGH="${2:-12000}"
if ! command -v valgrind >/dev/null; then apt-get install -y valgrind >/dev/null 2>&1 || true; fi
if ! command -v valgrind >/dev/null; then echo "bench_calls: valgrind unavailable" >&2; exit 1; fi
BIN="${CAPJAIL_BENCH_BIN_DIR:-}"
if [ -z "$BIN" ]; then cargo build --profile profiling --quiet --bins; BIN=$PWD/target/profiling; fi
WS="$(mktemp -d "${TMPDIR:-/tmp}/capjail-calls-XXXXXX")"
trap 'rm -rf "$WS"' EXIT
export XDG_STATE_HOME="$WS/state"
mkdir -p "$WS/project" "$WS/data"
scripts/bench_realistic_policy.sh "$WS" > "$WS/policy.yaml"
for audit in off on; do
  for n in "$N_LOW" "$N_HIGH"; do
    log=off
    if [ "$audit" = on ]; then log="$WS/audit-$n.jsonl"; fi
    "$BIN/capjail-bench" load pipelined "$n" -- valgrind --tool=callgrind --callgrind-out-file="$WS/calls-$audit-$n.out" \
      "$BIN/capjail" -q run --policy "$WS/policy.yaml" --mode proxy --audit "$log" -- "$BIN/capjail-bench" echo-server \
      >/dev/null 2>"$WS/valgrind-$audit-$n.log"
  done
done
python3 scripts/bench_calls.py "$WS/calls-off-$N_LOW.out" "$WS/calls-off-$N_HIGH.out" "$N_LOW" "$N_HIGH" 20
# The same with the audit log on (one record a call): what the record's encoding and queue
# cost; its SHA-256 runs in software under valgrind (not comparable with a real CPU's).
echo
echo "With the audit log on (a record a call; SHA-256 in software under valgrind):"
echo
python3 scripts/bench_calls.py "$WS/calls-on-$N_LOW.out" "$WS/calls-on-$N_HIGH.out" "$N_LOW" "$N_HIGH" 0
