"""Top symbols by self time from a perf.data (perf script + nm), for scripts/bench.sh.
perf 6.1's own symbol resolution fails on newer rustc binaries here ("cannot get elf header"),
so addresses are resolved against `nm` of each binary.
Usage: bench_profile.py PERF_DATA TOP [BINARY...]"""
import bisect, collections, os, re, subprocess, sys

data, top, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
tables = {}
for b in bins:
    syms = []
    out = subprocess.run(["nm", "-C", "--defined-only", b], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), re.sub(r"::h[0-9a-f]{16}$", "", parts[2])))
    syms.sort()
    # perf prints an unresolved sample as a file offset; symbols are virtual addresses.
    segs = []
    for line in subprocess.run(["readelf", "-lW", b], capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            segs.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
    tables[os.path.basename(b)] = ([a for a, _ in syms], [n for _, n in syms], segs)

report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "comm,dso,sym"],
                        capture_output=True, text=True).stdout
threads, symbols = collections.Counter(), collections.Counter()
for line in report.splitlines():
    m = re.match(r"\s*([\d.]+)%\s+(.+?)\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
    if not m:
        continue
    pct, comm, dso, sym = float(m.group(1)), m.group(2).strip(), m.group(3), m.group(5)
    if dso in tables and sym in ("_fini", "_init"):
        # perf's name for a sample it could not place (no address to resolve here).
        sym = "(not resolved by perf)"
    elif dso in tables and sym.startswith("0x"):
        addrs, names, segs = tables[dso]
        ip = int(sym.split()[0], 16)
        for off, vaddr, size in segs:
            if off <= ip < off + size:
                ip = ip - off + vaddr
                break
        i = bisect.bisect_right(addrs, ip) - 1
        sym = names[i] if i >= 0 else sym
    threads[comm] += pct
    symbols[(comm, sym[:110])] += pct
for comm, c in threads.most_common(8):
    print(f"{c:6.2f}%  thread {comm}")
print("--- top symbols (self), by thread")
for (comm, sym), c in symbols.most_common(top):
    print(f"{c:6.2f}%  {comm:<15} {sym}")
