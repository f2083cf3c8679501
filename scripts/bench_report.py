"""Summarise scripts/bench.sh: medians over interleaved rounds, ratios vs the plain relay and vs
a direct run, the issue-19 targets with met / not met, audit CPU per record, and the profile."""
import datetime, json, os, platform, statistics, sys

res, cpu_file, prof_file, mode, sustained, quick = sys.argv[1:7]
rows = [json.loads(l) for l in open(res)]
cpu_rows = [json.loads(l) for l in open(cpu_file)] if os.path.exists(cpu_file) else []
# The pipelined call count as measured (a custom CAPJAIL_BENCH_SCENARIOS may differ from the
# script's default): the label and the per-record CPU use it.
_ns = sorted({r["r"].get("n") for r in rows if r["r"]["scenario"] == "pipelined" and r["r"].get("n")})
sustained = _ns[-1] if len(_ns) == 1 else sustained


def vals(who, scen, key, pinned, nbytes=None, top=False):
    out = []
    for r in rows:
        if r["who"] != who or r["pinned"] != pinned or r["r"]["scenario"] != scen:
            continue
        if nbytes is not None and r["r"].get("bytes") != nbytes:
            continue
        v = r.get(key) if top else r["r"].get(key)
        if v is not None:
            out.append(v)
    return out


def med(*a, **k):
    v = vals(*a, **k)
    return statistics.median(v) if v else float("nan")


def ratio(a, b):
    return a / b if b and b == b and a == a else float("nan")


# metric name, scenario, key, bytes, higher is better
METRICS = [
    ("round trip p50 (µs)", "roundtrip", "p50_us", None, False),
    ("round trip p99 (µs)", "roundtrip", "p99_us", None, False),
    (f"pipelined, {int(sustained):,} calls (msg/s)", "pipelined", "msgs_per_s", None, True),
    ("1 MiB responses (MB/s)", "large", "mb_per_s", 1048576, True),
    ("16 MiB responses (MB/s)", "large", "mb_per_s", 16777216, True),
]
# Targets of issue 19, as ratios against the relay: (config, metric prefix) -> (op, value)
TARGETS = {
    ("real", "round trip p50"): ("<=", 1.25), ("real_noaudit", "round trip p50"): ("<=", 1.10),
    ("best", "round trip p50"): ("<=", 1.25), ("best_noaudit", "round trip p50"): ("<=", 1.10),
    ("real", "round trip p99"): ("<=", 1.5), ("best", "round trip p99"): ("<=", 1.5),
    ("real_noaudit", "round trip p99"): ("<=", 1.5), ("best_noaudit", "round trip p99"): ("<=", 1.5),
    ("real", "pipelined"): (">=", 0.6), ("best", "pipelined"): (">=", 0.6),
    ("real_noaudit", "pipelined"): (">=", 0.85), ("best_noaudit", "pipelined"): (">=", 0.85),
    ("real", "1 MiB"): (">=", 0.9), ("real", "16 MiB"): (">=", 0.9),
    ("best", "1 MiB"): (">=", 0.9), ("best", "16 MiB"): (">=", 0.9),
}
NAMES = {"best": "best case, audit on", "best_noaudit": "best case, audit off",
         "real": "realistic, audit on", "real_noaudit": "realistic, audit off",
         "real_nocontent": "realistic, audit on, content checks off",
         "real_notrust": "realistic, audit on, pinning and tool scan off",
         "real_approved": "realistic, audit on, every call gated by an approval remembered for the session"}

machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}"
date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
rounds = max(r["round"] for r in rows)
L = [f"## capjail benchmark ({'quick' if quick == '1' else 'full'} mode)", "",
     f"{date}; {machine}; capjail `--mode {mode}`; {rounds} interleaved rounds, medians; "
     "ratios against the plain relay (and a direct run) from the same invocation. The machine "
     "may be shared: absolute numbers are noisy, the ratios of interleaved runs less so.", ""]
summary = {"date": date, "machine": machine, "mode": mode, "rounds": rounds, "results": {}}
for pinned, label in ((1, "pinned to one CPU (taskset -c 0)"), (0, "unpinned")):
    L += [f"### {label}", "",
          "| metric | config | direct | relay | capjail | /direct | /relay | target | met |",
          "|---|---|---|---|---|---|---|---|---|"]
    for name, scen, key, nb, higher in METRICS:
        d, r = med("direct", scen, key, pinned, nb), med("relay", scen, key, pinned, nb)
        for who in ("best", "best_noaudit", "real", "real_noaudit", "real_nocontent"):
            c = med(who, scen, key, pinned, nb)
            vr = ratio(c, r)
            t = next((v for (w, p), v in TARGETS.items() if w == who and name.startswith(p)), None)
            met = ""
            if t and vr != vr:
                met = "not measured"
            elif t:
                ok = vr <= t[1] if t[0] == "<=" else vr >= t[1]
                met = "met" if ok else "**not met**"
            summary["results"][f"{label}|{name}|{who}"] = {"direct": d, "relay": r, "capjail": c, "vs_relay": vr}
            L.append(f"| {name} | {NAMES[who]} | {d:,.1f} | {r:,.1f} | {c:,.1f} | {ratio(c, d):.2f}x | {vr:.2f}x | "
                     f"{(t[0] + ' ' + str(t[1]) + 'x') if t else ''} | {met} |")
    L.append("")

# The round trips round by round: an unpinned round trip is mostly where the scheduler put the
# chain's tasks (a hop to a task that waits on the other CPU wakes that CPU; in a VM that is an
# exit and an entry), and a run keeps the placement it started with; the load client's CPU
# migrations per round trip show which it was (~0: each task stays on its CPU).
L += ["### the round trips, round by round", "",
      "| config | pinned | p50 per round (µs) | p99 per round (µs) | load client's CPU migrations per round trip, per round |",
      "|---|---|---|---|---|"]
for pinned in (1, 0):
    for who in ("relay", "best", "best_noaudit", "real", "real_noaudit"):
        p50, p99 = vals(who, "roundtrip", "p50_us", pinned), vals(who, "roundtrip", "p99_us", pinned)
        if not p50:
            continue
        mig = vals(who, "roundtrip", "client_migrations_per_rt", pinned)
        L.append(f"| {'plain relay' if who == 'relay' else NAMES[who]} | {'yes' if pinned else 'no'} | {', '.join(f'{v:.1f}' for v in p50)} | "
                 f"{', '.join(f'{v:.1f}' for v in p99)} | {', '.join(f'{v:.2f}' for v in mig) if mig else 'not read'} |")
L.append("")

# Peak RSS: the measured process's own (`VmHWM` read by the load client before it closes the
# stream; `own_rss_kib`), the target's measure; in brackets `/usr/bin/time`'s, the largest
# process of the tree (with 16 MiB answers, the echo server). CPU: the whole tree's.
L += ["### memory and CPU of the measured process (median, pinned)", "",
      "| scenario | relay peak RSS (MiB) | capjail realistic peak RSS (MiB) [largest process of the tree] | target | met | relay CPU (s) | capjail realistic CPU (s) | realistic, audit off CPU (s) |",
      "|---|---|---|---|---|---|---|---|"]
# `unanswered`: the same number of calls to a server that answers none (capjail keeps at most
# `proxy.max_in_flight` of them and refuses the rest).
for scen, nb, tgt in (("pipelined", None, 12.0), ("unanswered", None, 12.0), ("large", 16777216, 2 * 16 + 8.0), ("large", 1048576, 2 * 1 + 8.0)):
    tree = med("real", scen, "rss_kib", 1, nb, top=True) / 1024
    own = med("real", scen, "own_rss_kib", 1, nb) / 1024
    rr = med("relay", scen, "own_rss_kib", 1, nb) / 1024
    if own != own:  # an older capjail-bench: only the tree's
        own, rr = tree, med("relay", scen, "rss_kib", 1, nb, top=True) / 1024
    summary.setdefault("rss_mib", {})[f"{scen}|{nb}"] = {"own": own, "tree": tree}
    rc, cc, nc = (med(w, scen, "cpu_s", 1, nb, top=True) for w in ("relay", "real", "real_noaudit"))
    lab = f"{scen} {'' if nb is None else str(nb // 1048576) + ' MiB'}".strip()
    L.append(f"| {lab} | {rr:.1f} | {own:.1f} [{tree:.1f}] | <= {tgt:.0f} | {('met' if own <= tgt else '**not met**') if own == own else 'not measured'} | {rc:.2f} | {cc:.2f} | {nc:.2f} |")
on, off = med("real", "pipelined", "cpu_s", 1, top=True), med("real_noaudit", "pipelined", "cpu_s", 1, top=True)
L += ["", "### the audit log's CPU per record", ""]
if cpu_rows:
    c = statistics.median(r["cpu_us_per_record"] for r in cpu_rows)
    summary["audit_cpu_us_per_record"] = c
    L.append(f"- in-process (`capjail-bench audit-cpu`: queue + encoding + hash + write, batches of 64 waited for): "
             f"**{c:.2f} µs/record** (median of {len(cpu_rows)})")
L.append(f"- in the proxy (realistic, pipelined, CPU of capjail with the audit log on minus off, / calls): "
         f"**{(on - off) * 1e6 / int(sustained):.2f} µs/record**")
n_c = med("real_nocontent", "large", "mb_per_s", 1, 1048576)
n_o = med("real", "large", "mb_per_s", 1, 1048576)
L += ["", "### cost of the content checks (realistic, pinned; on is the default)", "",
      f"- 1 MiB responses: {n_o:,.1f} MB/s on vs {n_c:,.1f} MB/s off ({ratio(n_o, n_c):.2f}x); "
      f"16 MiB: {med('real', 'large', 'mb_per_s', 1, 16777216):,.1f} vs {med('real_nocontent', 'large', 'mb_per_s', 1, 16777216):,.1f} MB/s",
      f"- round trip p50: {med('real', 'roundtrip', 'p50_us', 1):.1f} µs on vs {med('real_nocontent', 'roundtrip', 'p50_us', 1):.1f} µs off", ""]
# Pinning and the tool scan are on in `real` (the defaults); approvals are not. Their cost
# when on: `real` against `real_notrust`, and `real_approved` against `real`.
L += ["### cost of pinning and the tool scan, and of approvals (realistic, audit on, pinned)", "",
      "| metric | pinning and tool scan off | realistic (both on, the default) | on / off | every call approved (session memory) | approved / realistic |",
      "|---|---|---|---|---|---|"]
for name, scen, key, nb, higher in METRICS:
    off_t, real, appr = (med(w, scen, key, 1, nb) for w in ("real_notrust", "real", "real_approved"))
    summary["results"][f"cost|{name}"] = {"notrust": off_t, "real": real, "approved": appr}
    cell = lambda v: "not run" if v != v else f"{v:,.1f}"
    rr = lambda a, b: "" if a != a or b != b else f"{ratio(a, b):.2f}x"
    L.append(f"| {name} | {cell(off_t)} | {cell(real)} | {rr(real, off_t)} | {cell(appr)} | {rr(appr, real)} |")
L += ["", "(A ratio below 1.00x for a rate, or above it for a latency, is what the feature costs. "
      "The approved runs' first call is asked (the approver command starts, a few ms): the round "
      "trips leave it out with their warm-up, the large answers' rates include it. Approvals are "
      "not run pipelined: a burst would hold thousands of calls before the first answer.)", ""]
L += ["### where the time goes (perf, realistic configuration, pinned)", "", "```"]
L += [l.rstrip() for l in open(prof_file)] if os.path.exists(prof_file) else ["(no profile)"]
L += ["```"]
json.dump(summary, open(os.path.join(os.path.dirname(res), "summary.json"), "w"), indent=1)
print("\n".join(L))
