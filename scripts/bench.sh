#!/usr/bin/env bash
# Benchmarks (never part of the tests). Runs the same scenarios direct, through a plain byte relay
# and through capjail in two configurations, interleaved in rounds in ONE invocation, and reports
# medians and ratios (scripts/bench_report.py), with a profile of where capjail's time goes.
#
# Usage: scripts/bench.sh [--quick] [ROUNDS]
#   --quick   a few minutes on a loaded machine: 3 rounds, 20,000 pipelined calls, 2x16 MiB,
#             no startup/egress benchmarks. Without it: 5 rounds, 200,000 pipelined calls
#             (sustained; tens of minutes on a busy 2-CPU machine), then bench_startup.sh and
#             bench_egress.sh.
# Env: CAPJAIL_BENCH_MODE=proxy|kernel|full (default full when the kernel layer is available),
#      CAPJAIL_BENCH_PERF=0 skips the profile, CAPJAIL_BENCH_CALLS=0 the per-call instruction
#      budget (scripts/bench_calls.sh), CAPJAIL_BENCH_SUSTAINED=N overrides the call count;
#      for a partial run (the report then shows nan where a number is missing):
#      CAPJAIL_BENCH_WHO="relay real", CAPJAIL_BENCH_SCENARIOS="roundtrip 1000;large 10 1048576",
#      CAPJAIL_BENCH_PINS="1", CAPJAIL_BENCH_AUDIT_CPU=0 (runs of the audit-cpu measure);
#      CAPJAIL_BENCH_TEXT=source: large answers are a source file's text (escapes, prose) instead
#      of N `x`s (the echo server reads it; the default keeps earlier runs comparable);
#      CAPJAIL_BENCH_TEXT=base64: pseudo-random base64 in lines of 76 (a binary file as text). The
#      policies pass it to the server (`environment.allow`): without that capjail withheld it
#      and every "source" run measured N `x`s.
#
# Configurations:
#   best       `filesystem: any`, a hand-written profile for the echo tool (the floor).
#   realistic  explicit mounts, no profile (the tool is described only by its inputSchema, learnt
#              from tools/list), the audit log on with write before forward, content checks,
#              flows, pinning and the tool-definition scan at their defaults.
# Each also runs with `--audit off`, and realistic with `content: {enabled: false}`, with pinning
# and the tool scan off, and with every call gated by a require_approval rule (approved once by a
# command for the session; not in the pipelined scenarios), so the cost of the audit log, the
# content checks, pinning and approvals comes from the same run.
# Scenarios: round trips, pipelined calls, `unanswered` (as many calls to a server that answers
# none, then a ping: the memory a proxy keeps for calls in flight, which `proxy.max_in_flight`
# bounds), large answers.
# Every scenario runs pinned to one CPU (taskset -c 0: client, capjail and server share it) and
# unpinned. CPU time of the measured process (with the server it runs) comes from /usr/bin/time;
# its own peak RSS from its VmHWM, read by the load client before the stream closes (time's %M,
# the largest process of the tree, is kept beside it). The round trips are also listed round by
# round, with the load client's CPU migrations per round trip: unpinned, a run keeps the
# placement of the chain's tasks it started with, and that placement, not the proxy's work,
# decides most of its latency (see the README's Performance section).
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0
if [ "${1:-}" = --quick ]; then QUICK=1; shift; fi
ROUNDS="${1:-$([ $QUICK = 1 ] && echo 3 || echo 5)}"
SUSTAINED="${CAPJAIL_BENCH_SUSTAINED:-$([ $QUICK = 1 ] && echo 20000 || echo 200000)}"
RT_N=$([ $QUICK = 1 ] && echo 1000 || echo 2000)
BIG_N=$([ $QUICK = 1 ] && echo 2 || echo 3)
MIB_N=$([ $QUICK = 1 ] && echo 10 || echo 20)
# The profiling profile is the release build with symbols (perf needs them; release is stripped).
# CAPJAIL_BENCH_BIN_DIR=DIR measures the capjail and capjail-bench found there instead.
BIN="${CAPJAIL_BENCH_BIN_DIR:-}"
if [ -z "$BIN" ]; then cargo build --profile profiling --quiet --bins; BIN=$PWD/target/profiling; fi
B=$BIN/capjail-bench
C=$BIN/capjail
OUT=$PWD/.bench; mkdir -p "$OUT"
WS="$(mktemp -d "${TMPDIR:-/tmp}/capjail-bench-XXXXXX")"
trap 'rm -rf "$WS"' EXIT
# capjail's state (pins) stays in the benchmark's own folder, never the user's.
export XDG_STATE_HOME="$WS/state"
mkdir -p "$WS/project" "$WS/data"
if [ -z "${CAPJAIL_BENCH_MODE:-}" ]; then
  if $C -q run --audit off --mode full --policy strict -- true </dev/null >/dev/null 2>&1; then MODE=full; else MODE=proxy; echo "bench: kernel layer unavailable, measuring --mode proxy" >&2; fi
else MODE="$CAPJAIL_BENCH_MODE"; fi

# proxy.grace_seconds: the load client closes capjail's stdin after measuring; a short grace
# stops the run sooner (it changes nothing measured).
cat > "$OUT/best-policy.yaml" <<'YAML'
name: bench-best
proxy: {grace_seconds: 0.2}
filesystem: {mode: any}
network: {mode: none}
tools: {mode: allowlist, allowed: [echo]}
environment: {allow: [CAPJAIL_BENCH_TEXT]}
YAML
cat > "$OUT/best-profile.yaml" <<'YAML'
name: bench
tools:
  echo: {capability: compute, args: {message: data, bytes: data}}
YAML
scripts/bench_realistic_policy.sh "$WS" > "$OUT/real-policy.yaml"
{ cat "$OUT/real-policy.yaml"; printf 'content: {enabled: false}\nflows: {defaults: false}\n'; } > "$OUT/real-nocontent-policy.yaml"
# The cost of pinning and the tool-definition scan (on in every other configuration): both off.
{ cat "$OUT/real-policy.yaml"; printf 'pins: {enabled: false}\ntool_scan: {enabled: false}\n'; } > "$OUT/real-notrust-policy.yaml"
# The cost of approvals: every call of the echo tool gated by a require_approval rule, the
# first answered by an approver command ("approve session"), the rest from the session's memory
# (each still an `approval` record in the log).
cat "$OUT/real-policy.yaml" - > "$OUT/real-approved-policy.yaml" <<'YAML'
require_approval:
  - capability: "*"
    tool: echo
approval:
  approvers: [command]
  command:
    argv: [/bin/sh, -c, "cat >/dev/null; echo approve session"]
YAML

SERVER=("$B" echo-server)
declare -A WRAP
WRAP[direct]=""
WRAP[relay]="$B relay --"
WRAP[best]="$C -q run --policy $OUT/best-policy.yaml --mode $MODE --audit $WS/audit.jsonl --profile $OUT/best-profile.yaml --"
WRAP[best_noaudit]="$C -q run --policy $OUT/best-policy.yaml --mode $MODE --audit off --profile $OUT/best-profile.yaml --"
WRAP[real]="$C -q run --policy $OUT/real-policy.yaml --mode $MODE --audit $WS/audit.jsonl --"
WRAP[real_noaudit]="$C -q run --policy $OUT/real-policy.yaml --mode $MODE --audit off --"
WRAP[real_nocontent]="$C -q run --policy $OUT/real-nocontent-policy.yaml --mode $MODE --audit $WS/audit.jsonl --"
WRAP[real_notrust]="$C -q run --policy $OUT/real-notrust-policy.yaml --mode $MODE --audit $WS/audit.jsonl --"
WRAP[real_approved]="$C -q run --policy $OUT/real-approved-policy.yaml --mode $MODE --audit $WS/audit.jsonl --"
read -r -a WHO <<< "${CAPJAIL_BENCH_WHO:-direct relay best best_noaudit real real_noaudit real_nocontent real_notrust real_approved}"
IFS=';' read -r -a SCENARIOS <<< "${CAPJAIL_BENCH_SCENARIOS:-roundtrip $RT_N;pipelined $SUSTAINED;unanswered $SUSTAINED;large $MIB_N 1048576;large $BIG_N 16777216}"
read -r -a PINS <<< "${CAPJAIL_BENCH_PINS:-1 0}"

RES="$OUT/results.jsonl"; : > "$RES"
# One measurement: the load client drives `wrapper server` (the measured process runs under
# /usr/bin/time, which only waits: its CPU time and peak RSS).
one() { # who pinned scenario...
  local who=$1 pinned=$2; shift 2
  local w; read -r -a w <<< "${WRAP[$who]}"
  rm -f "$WS/audit.jsonl" "$WS/audit.jsonl.head"
  local pre=(); [ "$pinned" = 1 ] && pre=(taskset -c 0)
  local line
  if ! line=$("${pre[@]}" "$B" load "$@" -- /usr/bin/time -f '%U %S %M' -o "$WS/time.txt" "${w[@]}" "${SERVER[@]}"); then
    echo "bench: $who $* failed" >&2; return 0
  fi
  read -r u s m < <(tail -1 "$WS/time.txt")
  echo "{\"who\":\"$who\",\"pinned\":$pinned,\"round\":$round,\"cpu_s\":$(python3 -c "print($u+$s)"),\"rss_kib\":$m,\"r\":$line}" >> "$RES"
}
START=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  for pinned in "${PINS[@]}"; do
    for sc in "${SCENARIOS[@]}"; do
      for who in "${WHO[@]}"; do
        # Approvals only where calls come one at a time: a pipelined burst would put thousands
        # of calls on hold before the first answer, each asking the command.
        case "$who ${sc%% *}" in "real_approved pipelined" | "real_approved unanswered") continue ;; esac
        # shellcheck disable=SC2086
        one "$who" "$pinned" $sc
      done
    done
  done
  echo "bench: round $round done ($(( $(date +%s) - START )) s)" >&2
done
# The audit log alone: CPU per record through the queue and writer, in-process.
: > "$OUT/audit-cpu.jsonl.tmp"
for _ in $(seq 1 "${CAPJAIL_BENCH_AUDIT_CPU:-3}"); do
  "$B" audit-cpu "$([ $QUICK = 1 ] && echo 50000 || echo 200000)" "$WS/cpu-audit.jsonl" >> "$OUT/audit-cpu.jsonl.tmp"
done
mv "$OUT/audit-cpu.jsonl.tmp" "$OUT/audit-cpu.jsonl"

# Where the time goes: perf profiles of capjail (realistic configuration, `--mode proxy`: the
# proxy's code is the same in every mode, and perf then finds the binary; one CPU) under the
# sustained small-message load and under 1 MiB responses: the split by thread (audit writer,
# the two pumps) and the top symbols by self time (scripts/bench_profile.py names them).
PROF="$OUT/profile.txt"; : > "$PROF"
if [ "${CAPJAIL_BENCH_PERF:-1}" = 1 ]; then
  if ! command -v perf >/dev/null; then apt-get install -y linux-perf >/dev/null 2>&1 || true; fi
  if command -v perf >/dev/null; then
    read -r -a w <<< "${WRAP[real]/--mode $MODE/--mode proxy}"
    for sc in "pipelined $SUSTAINED" "large $MIB_N 1048576"; do
      rm -f "$WS/audit.jsonl" "$WS/audit.jsonl.head"
      # shellcheck disable=SC2086
      taskset -c 0 "$B" load $sc -- perf record -q -F 1999 -o "$WS/perf.data" -- "${w[@]}" "${SERVER[@]}" >/dev/null 2>>"$OUT/perf-record.log" || true
      { echo "### realistic, $sc, pinned"; python3 scripts/bench_profile.py "$WS/perf.data" 22 "$C" "$B" || true; } >> "$PROF"
    done
  else
    echo "(perf unavailable: no profile)" > "$PROF"
  fi
fi
python3 scripts/bench_report.py "$RES" "$OUT/audit-cpu.jsonl" "$PROF" "$MODE" "$SUSTAINED" "$QUICK" | tee "$OUT/report.md"
# Where a small call's instructions go: callgrind, per call, by source file (bench_calls.sh).
if [ "${CAPJAIL_BENCH_CALLS:-1}" = 1 ]; then
  { echo; echo "### Where a small call's instructions go, and its heap allocations (callgrind, realistic, --mode proxy, audit off)"; echo
    CAPJAIL_BENCH_BIN_DIR="$BIN" scripts/bench_calls.sh || echo "(callgrind unavailable: no per-call budget)"; } | tee -a "$OUT/report.md"
fi
if [ $QUICK = 0 ]; then
  # Startup to the first initialize answer: direct vs capjail --mode full (with its world) vs bwrap.
  scripts/bench_startup.sh
  # The egress point (issue 18): added latency of a fetch through it vs a direct fetch.
  bash scripts/bench_egress.sh 300 || echo "bench: egress benchmark failed" >&2
fi
