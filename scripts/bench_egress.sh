#!/usr/bin/env bash
# Benchmark (never a test): the latency a fetch gains by going through capjail's egress point.
# A loopback HTTP server; the same Python client fetches it N times directly, and N times from
# inside `capjail run --mode full` under `network: allowlist` (its own network namespace, every
# fetch through the egress point: a new connection, the policy check, the connect upstream).
# Reports the median and p90 per fetch for both, and the difference. capjail's stdin stays open
# while the client runs (an EOF on it would end the session after the grace period).
# Usage: scripts/bench_egress.sh [N] [PROFILE]   (PROFILE: release (default) or debug)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-300}"
PROFILE="${2:-release}"
if [ "$PROFILE" = release ]; then cargo build --release --quiet --bin capjail; else cargo build --quiet --bin capjail; fi
C="$PWD/target/$PROFILE/capjail"
OUT=.bench; mkdir -p "$OUT"
# capjail's state (pins) stays in the benchmark's own folder, never the user's.
export XDG_STATE_HOME="$PWD/$OUT/state"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$OUT/egress-origin.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = b"x" * 512
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
cat > "$OUT/egress-client.py" <<'PY'
import sys, time, urllib.request, json
url, n = sys.argv[1], int(sys.argv[2])
opener = urllib.request.build_opener()  # honours HTTP_PROXY when set
ts = []
for _ in range(n):
    t = time.perf_counter(); opener.open(url, timeout=10).read(); ts.append((time.perf_counter() - t) * 1e6)
ts.sort()
print("EGRESS-BENCH " + json.dumps({"median_us": ts[len(ts)//2], "p90_us": ts[int(len(ts)*0.9)]}), file=sys.stderr)
PY
cat > "$OUT/egress-policy.yaml" <<YAML
name: bench-egress
filesystem: {mode: explicit, mounts: [{path: $PWD/$OUT, mode: ro}]}
network: {mode: allowlist, allowed_hosts: ["127.0.0.1:$PORT"]}
YAML
python3 "$OUT/egress-origin.py" "$PORT" & ORIGIN=$!
trap 'kill $ORIGIN 2>/dev/null || true' EXIT
for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 1)" 2>/dev/null && break; sleep 0.1; done
URL="http://127.0.0.1:$PORT/x"
# The client reports on stderr (capjail's stdout carries the MCP protocol only).
DIRECT=$(env -u HTTP_PROXY -u http_proxy python3 "$OUT/egress-client.py" "$URL" "$N" 2>&1 | sed -n "s/^EGRESS-BENCH //p")
EGRESS=$("$C" -q run --mode full --policy "$OUT/egress-policy.yaml" --audit "$OUT/egress-audit.jsonl" -- python3 "$OUT/egress-client.py" "$URL" "$N" < <(sleep 600) 2>&1 | tee "$OUT/egress-run.log" | sed -n "s/^EGRESS-BENCH //p")
python3 - "$DIRECT" "$EGRESS" "$N" "$PROFILE" <<'PY'
import json, sys
d, e = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"fetch of a 512-byte page from a loopback server, {sys.argv[3]} fetches, capjail {sys.argv[4]} build")
print(f"  direct:              median {d['median_us']:8.0f} us   p90 {d['p90_us']:8.0f} us")
print(f"  via the egress point: median {e['median_us']:8.0f} us   p90 {e['p90_us']:8.0f} us")
print(f"  added per fetch:     median {e['median_us']-d['median_us']:8.0f} us")
PY
