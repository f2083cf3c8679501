"""Summarise scripts/bench.sh results: medians over rounds, ratios vs direct and vs the relay."""
import json, statistics, sys, platform, datetime, os
res, mode, rss_small, rss_large = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = [json.loads(l) for l in open(res)]
def med(who, scen, key, pinned=1, extra=None):
    vals = [r["r"][key] for r in rows if r["who"] == who and r["r"]["scenario"] == scen and r["pinned"] == pinned
            and (extra is None or r["r"].get("bytes") == extra)]
    return statistics.median(vals) if vals else float("nan")
metrics = [
    ("round trip p50 (µs, 1 CPU)", "roundtrip", "p50_us", 1, None, False),
    ("round trip p99 (µs, 1 CPU)", "roundtrip", "p99_us", 1, None, False),
    ("round trip p50 (µs, 2 CPUs)", "roundtrip", "p50_us", 0, None, False),
    ("round trip p99 (µs, 2 CPUs)", "roundtrip", "p99_us", 0, None, False),
    ("pipelined (msg/s, 1 CPU)", "pipelined", "msgs_per_s", 1, None, True),
    ("1 MiB responses (MB/s)", "large", "mb_per_s", 1, 1048576, True),
    ("16 MiB responses (MB/s)", "large", "mb_per_s", 1, 16777216, True),
    ("startup to initialize p50 (ms)", "startup", "p50_ms", 1, None, False),
    ("startup to initialize p90 (ms)", "startup", "p90_ms", 1, None, False),
]
out = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} {os.cpu_count()} CPUs, Linux {platform.release()}",
       "capjail_mode": mode, "rounds": max(r["round"] for r in rows), "metrics": {}}
lines = [f"capjail mode `{mode}`, {out['rounds']} rounds interleaved, medians; {out['date']}, {out['machine']}", "",
         "| metric | direct | relay | capjail | capjail/direct | capjail/relay |", "|---|---|---|---|---|---|"]
for name, scen, key, pinned, extra, higher in metrics:
    d, r, c = (med(w, scen, key, pinned, extra) for w in ("direct", "relay", "capjail"))
    out["metrics"][name] = {"direct": d, "relay": r, "capjail": c, "vs_direct": c / d if d else None, "vs_relay": c / r if r else None}
    lines.append(f"| {name} | {d:.1f} | {r:.1f} | {c:.1f} | {c/d:.2f}x | {c/r:.2f}x |")
lines.append(f"| capjail peak RSS, small messages (MiB) | | | {int(rss_small or 0)/1024:.1f} | | |")
lines.append(f"| capjail peak RSS, 16 MiB responses (MiB) | | | {int(rss_large or 0)/1024:.1f} | | |")
lines += ["", "| audit log cost (same run, capjail audit on vs `--audit off`) | off | on | on/off |", "|---|---|---|---|"]
out["audit_cost"] = {}
for name, scen, key in [("round trip p50 (µs, 1 CPU)", "roundtrip", "p50_us"), ("round trip p99 (µs, 1 CPU)", "roundtrip", "p99_us"),
                        ("pipelined (msg/s, 1 CPU)", "pipelined", "msgs_per_s")]:
    off, on = med("capjail_noaudit", scen, key), med("capjail", scen, key)
    out["audit_cost"][name] = {"off": off, "on": on, "on_over_off": on / off if off else None}
    lines.append(f"| {name} | {off:.1f} | {on:.1f} | {on/off:.2f}x |")
lines += ["", "| content checks cost (same run, on (default) vs `content: {enabled: false}`) | off | on | on/off |", "|---|---|---|---|"]
out["content_cost"] = {}
for name, scen, key, extra in [("round trip p50 (µs, 1 CPU)", "roundtrip", "p50_us", None), ("round trip p99 (µs, 1 CPU)", "roundtrip", "p99_us", None),
                               ("1 MiB responses (MB/s)", "large", "mb_per_s", 1048576)]:
    off, on = med("capjail_nocontent", scen, key, 1, extra), med("capjail", scen, key, 1, extra)
    out["content_cost"][name] = {"off": off, "on": on, "on_over_off": on / off if off else None}
    lines.append(f"| {name} | {off:.1f} | {on:.1f} | {on/off:.2f}x |")
out["rss_kib"] = {"small": int(rss_small or 0), "large_16mib": int(rss_large or 0)}
print(json.dumps(out, indent=1))
print("\n".join(lines))
