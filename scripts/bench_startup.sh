#!/usr/bin/env bash
# Startup benchmark (issues 11 §3 and 19): time from spawn to the first `initialize` answer of a
# small Python MCP server (stdlib only). A benchmark, not a test.
#
# Like for like: every variant runs the SAME server command with the SAME environment (the
# environment capjail's policy passes, computed by `capjail run --dry-run`; the whole benchmark
# runs under `env -i` with exactly it, so capjail's own filter changes nothing), and bubblewrap
# gets the SAME world as capjail's plan (its binds, symlinks, private /tmp, /dev, /proc, empty
# $HOME, read-only root, the same namespaces), derived from the `--dry-run` output.
#
# Every variant starts in the workspace (inside the world), and the load client refuses a start
# that does not answer `initialize` (a server failing at once would otherwise look fast).
# Variants, interleaved in rounds in one invocation:
#   direct          the server spawned by the load client
#   relay           capjail-bench's plain two-thread byte relay (the cheapest extra hop)
#   proxy           capjail --mode proxy (the JSON-RPC checks, no kernel layer)
#   kernel-nons     capjail --mode kernel, kernel.namespaces: false (Landlock + seccomp only)
#   kernel          capjail --mode kernel (namespaces + fresh root + Landlock + seccomp)
#   full-nons       capjail --mode full, kernel.namespaces: false
#   full            capjail --mode full (everything; the figure the targets are about)
#   full-audit      full with the audit log on (a temp file)
#   bwrap           bubblewrap with capjail's world (namespaces, no Landlock/seccomp)
# Usage: scripts/bench_startup.sh [N] [ROUNDS]   (bench.sh calls it)
#        CAPJAIL_BENCH_PROFILE=debug measures the debug build (no release build needed).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-30}"
ROUNDS="${2:-3}"
PROFILE="${CAPJAIL_BENCH_PROFILE:-release}"
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bins; fi
B=$PWD/target/$PROFILE/capjail-bench
C=$PWD/target/$PROFILE/capjail
OUT=.bench; mkdir -p "$OUT"
if ! command -v bwrap >/dev/null; then
  echo "bench_startup: installing bubblewrap (apt-get)" >&2
  apt-get install -y bubblewrap >/dev/null 2>&1 || echo "bench_startup: bwrap unavailable, skipping it" >&2
fi
PY=/usr/bin/python3
WS="$(mktemp -d "${TMPDIR:-/tmp}/capjail-startup-XXXXXX")"
trap 'rm -rf "$WS"' EXIT
# capjail's state (pins) stays in the benchmark's own folder, never the user's.
export XDG_STATE_HOME="$WS/state"
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
POLICY_NONS="$WS/policy-nons.yaml"
sed 's/^kernel:$/kernel:\n  namespaces: false/' "$POLICY" > "$POLICY_NONS"
SERVER=("$PY" "$SRV/server.py" "$WS/ws/report.json")

# The plan, once: the environment it passes and the world it builds.
"$C" -q run --dry-run --mode full --policy "$POLICY" -- "${SERVER[@]}" > "$WS/plan.txt"
mapfile -t ENV < <(python3 - "$WS/plan.txt" <<'PY'
import os, re, sys
m = re.search(r"^\s*environment: \d+ passed \(([^)]*)\)", open(sys.argv[1]).read(), re.M)
for k in (m.group(1).split() if m else []):
    if k in os.environ:
        print(f"{k}={os.environ[k]}")
PY
)
# bubblewrap's arguments for the same world: the plan's binds (with the symlinks on their way
# recreated, as capjail does), /dev, /proc, private /tmp, empty $HOME, read-only root.
mapfile -t BWRAP < <(python3 - "$WS/plan.txt" <<'PY'
import os, re, sys
lines = open(sys.argv[1]).read().splitlines()
i = next(n for n, l in enumerate(lines) if l.strip().startswith("world: namespaces"))
binds, tmp, home = [], False, None
for l in lines[i + 1:]:
    m = re.match(r"^\s{4}(\S+)\s+(ro|rw|cow)?\s+(.*)$", l)
    if not m:
        break
    path, mode, reason = m.groups()
    if path == "/tmp" and reason.startswith("private tmpfs"):
        tmp = True
    elif reason.startswith("empty (HOME)"):
        home = path
    elif path not in ("/dev", "/proc") and mode:
        binds.append((path, mode))
# capjail mounts the private /tmp first, then the binds (parents first), as bwrap will here.
args, links = (["--tmpfs", "/tmp"] if tmp else []), set()
def place(path, depth=0):
    """The symlinks on the way to path (as --symlink), and its real path."""
    cur = "/"
    parts = [p for p in path.split("/") if p]
    for k, name in enumerate(parts):
        nxt = os.path.join(cur, name)
        if os.path.islink(nxt):
            target = os.readlink(nxt)
            if nxt not in links:
                links.add(nxt)
                args.extend(["--symlink", target, nxt])
            rest = os.path.join(cur, target) if not target.startswith("/") else target
            return place(os.path.normpath(os.path.join(rest, *parts[k + 1:])), depth + 1)
        cur = nxt
    return cur
for path, mode in binds:
    real = place(path)
    if os.path.exists(real):
        args.extend(["--bind" if mode == "rw" else "--ro-bind", real, real])
args.extend(["--dev", "/dev", "--proc", "/proc"])
if home:
    args.extend(["--dir", home])
args.extend(["--remount-ro", "/"])
print("\n".join(args))
PY
)
BW=(bwrap --unshare-pid --unshare-ipc --unshare-uts --unshare-net --die-with-parent --new-session
  --cap-drop ALL "${BWRAP[@]}" --chdir "$WS/ws" --)

RES="$OUT/startup.jsonl"; : > "$RES"
run() { # who, command...
  local who="$1"; shift
  # CAPJAIL_BENCH_ONLY="relay full ...": only these variants (more rounds in the same time).
  if [ -n "${CAPJAIL_BENCH_ONLY:-}" ] && [[ " $CAPJAIL_BENCH_ONLY " != *" $who "* ]]; then return 0; fi
  line=$(cd "$WS/ws" && env -i "${ENV[@]}" "$B" load startup "$N" -- "$@" "${SERVER[@]}") ||
    { echo "bench_startup: $who did not start: $*" >&2; exit 1; }
  echo "{\"who\":\"$who\",\"r\":$line}" >> "$RES"
}
CJ=("$C" -q run --audit off)
for round in $(seq 1 "$ROUNDS"); do
  run direct
  run relay "$B" relay --
  run proxy "${CJ[@]}" --mode proxy --policy "$POLICY" --
  run kernel-nons "${CJ[@]}" --mode kernel --policy "$POLICY_NONS" --
  run kernel "${CJ[@]}" --mode kernel --policy "$POLICY" --
  run full-nons "${CJ[@]}" --mode full --policy "$POLICY_NONS" --
  run full "${CJ[@]}" --mode full --policy "$POLICY" --
  run full-audit "$C" -q run --audit "$WS/audit.jsonl" --mode full --policy "$POLICY" --
  if command -v bwrap >/dev/null; then run bwrap "${BW[@]}"; fi
  # CAPJAIL_BENCH_BASELINE=/path/to/an/older/capjail: the same full and kernel starts with it,
  # interleaved (before/after figures of a change from one run).
  if [ -n "${CAPJAIL_BENCH_BASELINE:-}" ]; then
    run kernel-base "$CAPJAIL_BENCH_BASELINE" -q run --audit off --mode kernel --policy "$POLICY" --
    run full-base "$CAPJAIL_BENCH_BASELINE" -q run --audit off --mode full --policy "$POLICY" --
  fi
done
python3 - "$RES" "$N" "$ROUNDS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by, cpu = {}, {}
for r in rows:
    by.setdefault(r["who"], []).append(r["r"]["p50_ms"])
    cpu.setdefault(r["who"], []).append(r["r"].get("cpu_p50_ms", float("nan")))
med = {w: statistics.median(v) for w, v in by.items()}
cmed = {w: statistics.median(v) for w, v in cpu.items()}
print(f"startup to the first initialize answer, median of {sys.argv[3]} per-round medians of {sys.argv[2]} starts")
print("(wall: spawn to answer; cpu: user+system time of every process of one start, to its exit)")
print(f"  {'variant':<12} {'wall ms':>8} {'x relay':>8} {'x bwrap':>8} {'cpu ms':>7} {'x relay':>8}   wall per round")
for who, v in by.items():
    rel = med[who] / med["relay"] if "relay" in med else float("nan")
    bw = med[who] / med["bwrap"] if "bwrap" in med else float("nan")
    crel = cmed[who] / cmed["relay"] if "relay" in cmed else float("nan")
    print(f"  {who:<12} {med[who]:8.1f} {rel:7.2f}x {bw:7.2f}x {cmed[who]:7.1f} {crel:7.2f}x   {', '.join(f'{x:.1f}' for x in v)}")
if "full" in med and "relay" in med:
    ok = med["full"] <= 1.5 * med["relay"] and ("bwrap" not in med or med["full"] < med["bwrap"])
    print(f"target (full <= 1.5x relay and below bwrap, wall): {'met' if ok else 'NOT met'}")
PY
