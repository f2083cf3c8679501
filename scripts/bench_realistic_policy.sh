#!/usr/bin/env bash
# The benchmarks' realistic policy (scripts/bench.sh, scripts/bench_calls.sh), on stdout: explicit
# mounts of WS/project (rw) and WS/data (ro), no network, a tool blocklist, the benchmark's text
# variable passed to the server; content checks, flows, pinning and the tool scan at their
# defaults. Usage: bench_realistic_policy.sh WS
set -euo pipefail
cat <<YAML
name: bench-realistic
proxy: {grace_seconds: 0.2}
filesystem:
  mode: explicit
  mounts:
    - {path: $1/project, mode: rw}
    - {path: $1/data, mode: ro}
network: {mode: none}
tools: {mode: blocklist, blocked: [execute_command, run_shell]}
environment: {allow: [CAPJAIL_BENCH_TEXT]}
YAML
