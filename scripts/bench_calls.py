"""Where a small call's instructions go: two callgrind profiles of the same capjail run with
N_LOW and N_HIGH pipelined calls, their difference divided by N_HIGH - N_LOW (what one more
call costs, with startup and the tool listing cancelled out). Self costs (the instructions of
each line), grouped by the source file the line is in, so that code inlined elsewhere (the
envelope scanner in the server filter) counts as what it is; callgrind's inclusive costs
count a recursive function (the content reader's walk) more than once. It also counts the heap
allocations one more call makes (the calls of malloc, calloc and realloc).

Usage: bench_calls.py LOW.out HIGH.out N_LOW N_HIGH [TOP]   (TOP 0: the groups only)"""
import collections
import re
import subprocess
import sys

low, high, n_low, n_high = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
top = int(sys.argv[5]) if len(sys.argv) > 5 else 25

# (label, pattern on the source file, pattern on the function); the first match wins.
GROUPS = [
    ("allocator (malloc, free)", r"/malloc/|raw_vec", r"^(malloc|free|realloc|calloc|_int_\w+)$|__rust_\w*alloc"),
    ("memcpy, memcmp, memset (libc)", r"multiarch/(memmove|memcpy|memcmp|memset|strlen)", r"^__(memmove|memcpy|memcmp|memset)"),
    ("content checks (src/content)", r"(^|/)src/content/", r"^capjail::content::"),
    ("envelope scan, client parse (src/jsonrpc, serde_json)", r"(^|/)src/jsonrpc/|/serde_json-|/serde_core-|str/validations\.rs|str/converts\.rs", r"capjail::jsonrpc::|serde_json::"),
    ("decision (src/check, src/trust, src/approval, src/policy)", r"(^|/)src/(check|trust|approval|policy)/", r"^capjail::(check|trust|approval|policy)::"),
    ("SHA-256 (sha2: software under valgrind; the CPUs measured run SHA-NI)", r"/sha2-", r"^sha2::"),
    ("audit record (src/audit)", r"(^|/)src/audit/", r"^capjail::audit::"),
    ("proxy pipeline, framing, outbox (src/proxy)", r"(^|/)src/proxy/", r"^capjail::proxy::"),
    ("hash maps, memchr, smallvec (crates)", r"/(hashbrown|foldhash|memchr|smallvec|aho-corasick)-", r"(hashbrown|foldhash|memchr|smallvec|aho_corasick)::"),
    ("trees: BTreeMap, drops (std)", r"collections/btree|ptr/mod\.rs", r"btree|drop_in_place"),
]
OTHER = "other (std, tokio, threads, syscall wrappers)"


def self_costs(path):
    out = subprocess.run(
        ["callgrind_annotate", "--threshold=100", "--auto=no", path],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = collections.Counter()
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        n, name = int(m.group(1).replace(",", "")), m.group(2).strip()
        if "PROGRAM TOTALS" in name:
            total = n
            continue
        name = re.sub(r"\s+\[[^\]]*\]$", "", name)  # `file:function [object]`
        f = re.match(r"^(\S*\.(?:rs|c|S|h)|\?\?\?):(.*)$", name)
        costs[(f.group(1), f.group(2)) if f else ("", name)] += n
    return total, costs


ALLOCATORS = {"malloc", "calloc", "realloc"}


def heap_allocations(path):
    """Calls of libc's malloc, calloc and realloc in a callgrind profile (its `calls=` lines,
    names compressed as `(id) name` once, then `(id)`)."""
    names, total, callee = {}, 0, None
    with open(path) as f:
        for line in f:
            if line.startswith("cfn="):
                m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m:
                    if m.group(2):
                        names[m.group(1)] = m.group(2)
                    callee = names.get(m.group(1), "")
            elif line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
            elif line.startswith("calls=") and callee is not None:
                if callee.split("'")[0] in ALLOCATORS:
                    total += int(line.split("=", 1)[1].split()[0])
                callee = None
    return total


def group(file, function):
    for label, file_pat, fn_pat in GROUPS:
        if file and re.search(file_pat, file):
            return label
    for label, _, fn_pat in GROUPS:
        if re.search(fn_pat, function):
            return label
    return OTHER


t_low, low_costs = self_costs(low)
t_high, high_costs = self_costs(high)
calls = n_high - n_low
per_call = (t_high - t_low) / calls
diff = {k: (high_costs[k] - low_costs[k]) / calls for k in set(low_costs) | set(high_costs)}
grouped = collections.Counter()
functions = collections.Counter()
others = collections.Counter()
for (file, function), v in diff.items():
    g = group(file, function)
    grouped[g] += v
    functions[function] += v
    if g == OTHER:
        others[function] += v
print(f"instructions per call: {per_call:,.0f} ({n_low} -> {n_high} calls)")
allocations = (heap_allocations(high) - heap_allocations(low)) / calls
# (Startup differs a little between the two runs: a few allocations either way, ~0.1 a call.)
print(f"heap allocations per call: {max(allocations, 0.0):.1f} (calls of malloc, calloc, realloc)")
print()
print("| group | instructions per call | share |")
print("|---|---|---|")
for label, v in grouped.most_common():
    print(f"| {label} | {v:,.0f} | {100 * v / per_call:.0f}% |")
print()
print("largest of the other group: " + ", ".join(f"{k[:50]} {v:,.0f}" for k, v in others.most_common(5)))
if top == 0:
    sys.exit(0)
print()
print(f"top {top} functions by their own instructions per call (inlined code included):")
for name, v in functions.most_common(top):
    print(f"{v:9,.0f}  {name[:140]}")
