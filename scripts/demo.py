"""capjail's demo: real attacks on real MCP servers, each run three ways -- without capjail,
behind the proxy only (--mode proxy), and in full mode (--mode full: proxy + kernel) -- judged
by their EFFECT (a secret token reached the client, a file appeared, a loopback canary was hit),
plus legitimate work that must keep working. Usage: demo.py PATH/TO/capjail DEMO_DIR

Everything happens in a temporary lab (removed at the end); the audit log goes to
DEMO_DIR/audit.jsonl. Nothing leaves loopback: the only network target is a canary on 127.0.0.1."""
import json, os, secrets, shutil, socket, subprocess, sys, tempfile, threading, queue

CAPJAIL, DEMO_DIR = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
PEERS = os.environ.get("CAPJAIL_PEERS", ".peers")
FS_JS = f"{PEERS}/node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
AUDIT = f"{DEMO_DIR}/audit.jsonl"

lab = os.path.realpath(tempfile.mkdtemp(prefix="capjail-demo-"))
ws = f"{lab}/ws"
SECRET, LEGIT = "SECRET" + secrets.token_hex(8), "LEGIT" + secrets.token_hex(6)
def put(rel, text):
    os.makedirs(os.path.dirname(f"{lab}/{rel}"), exist_ok=True)
    with open(f"{lab}/{rel}", "w") as f: f.write(text)
put("ws/notes.txt", f"Project notes {LEGIT}\n")
put("secret/id_rsa", f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}\n-----END OPENSSH PRIVATE KEY-----\n")
os.makedirs(f"{lab}/etc_like/cron.d", exist_ok=True)
os.symlink("../secret/id_rsa", f"{ws}/link_file")

# The loopback canary: counts connections (the probe server's ping_home connects here).
canary = socket.socket(); canary.bind(("127.0.0.1", 0)); canary.listen(16)
hits = []
def serve():
    while True:
        try: c, _ = canary.accept()
        except OSError: return
        hits.append(1); c.sendall(b"HTTP/1.0 200 OK\r\n\r\ncanary\n"); c.close()
threading.Thread(target=serve, daemon=True).start()
PORT = canary.getsockname()[1]

FS = ["node", FS_JS, ws, lab]   # the file server, (over-)configured with the workspace and the whole lab
PROBE = [CAPJAIL, "probe-server", "--root", lab, "--canary-port", str(PORT)]
POLICY = ["--policy", "workspace", "--workspace", ws]

def call(tool, args): return {"method": "tools/call", "params": {"name": tool, "arguments": args}}
def text_of(resp): return json.dumps(resp)
def leaked(resp): return SECRET in text_of(resp)
def exists(rel): return os.path.exists(f"{lab}/{rel}")
def clean(rel):
    if os.path.lexists(f"{lab}/{rel}"): os.remove(f"{lab}/{rel}")

# (title, server, request, effect(resp) -> bool, undo) -- effect True: the attack worked.
ATTACKS = [
    ("read a key outside the workspace", FS, call("read_file", {"path": f"{lab}/secret/id_rsa"}), leaked, None),
    ("read it through a symlink in the workspace", FS, call("read_file", {"path": f"{ws}/link_file"}), leaked, None),
    ("plant a cron job outside the workspace", FS, call("write_file", {"path": f"{lab}/etc_like/cron.d/evil", "content": "* * * * * root sh\n"}),
     lambda r: exists("etc_like/cron.d/evil"), lambda: clean("etc_like/cron.d/evil")),
    ("tool `summarize` reads the key itself", PROBE, call("summarize", {"topic": "everything"}), leaked, None),
    ("tool `tidy` writes outside the workspace", PROBE, call("tidy", {"topic": "system"}),
     lambda r: exists("etc_like/evil.conf"), lambda: clean("etc_like/evil.conf")),
    ("tool `ping_home` phones a local service", PROBE, call("ping_home", {"topic": "exfil"}),
     lambda r: len(hits) > 0, lambda: hits.clear()),
]
LEGIT_WORK = [
    ("read ws/notes.txt", FS, call("read_file", {"path": f"{ws}/notes.txt"}), lambda r: LEGIT in text_of(r), None),
    ("write ws/report.md", FS, call("write_file", {"path": f"{ws}/report.md", "content": "# report\n"}),
     lambda r: exists("ws/report.md"), lambda: clean("ws/report.md")),
    ("tool `summarize` reads the notes", PROBE, call("summarize", {"topic": "notes"}), lambda r: LEGIT in text_of(r), None),
]

class Session:
    """One MCP client session over stdio: initialize, tools/list, then one request at a time."""
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=lab)
        self.q, self.n = queue.Queue(), 0
        threading.Thread(target=self._read, daemon=True).start()
        self.request({"method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                                         "clientInfo": {"name": "capjail-demo", "version": "1"}}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        self.request({"method": "tools/list", "params": {}})
    def _read(self):
        for line in self.p.stdout:
            try: self.q.put(json.loads(line))
            except ValueError: pass
        self.q.put(None)
    def send(self, o): self.p.stdin.write((json.dumps(o) + "\n").encode()); self.p.stdin.flush()
    def request(self, req):
        self.n += 1; self.send({"jsonrpc": "2.0", "id": self.n, **req})
        while True:
            m = self.q.get(timeout=60)
            if m is None: return {"error": {"code": 0, "message": "the server closed the connection"}}
            if m.get("id") == self.n: return m
    def close(self):
        try: self.p.stdin.close()
        except OSError: pass
        try: self.p.wait(timeout=20)
        except subprocess.TimeoutExpired: self.p.kill()

MODES = [("without capjail", None), ("--mode proxy", "proxy"), ("--mode full", "full")]
def argv_for(server, mode):
    return server if mode is None else [CAPJAIL, "run", "-q", "--mode", mode, *POLICY, "--audit", AUDIT, "--", *server]

def judge(resp, effect, attack, mode):
    worked = effect(resp)
    if not attack:
        return "allowed" if worked else "FALSE BLOCK"
    if worked:
        return "works" if mode is None else "LEAKED"
    if mode is None:
        return "no effect"
    return "contained (proxy)" if (resp.get("error") or {}).get("data", {}).get("rule") else "contained (kernel)"

rows = ATTACKS + LEGIT_WORK
results = {}
try:
    for mode_label, mode in MODES:
        for server in (FS, PROBE):
            s = Session(argv_for(server, mode))
            for title, srv, req, effect, undo in rows:
                if srv is not server: continue
                resp = s.request(req)
                results[(title, mode_label)] = judge(resp, effect, (title, srv, req, effect, undo) in ATTACKS, mode)
                if undo: undo()
            s.close()
    W = 42
    print(f"  {'':<{W}} {'without capjail':<19} {'--mode proxy':<19} --mode full")
    for heading, group in [("the file server (given the whole lab, a common over-broad setup):", ATTACKS[:3]),
                           ("a server that misbehaves inside its own process (capjail's probe server):", ATTACKS[3:]),
                           ("legitimate work (policy: workspace):", LEGIT_WORK)]:
        print(heading)
        for title, *_ in group:
            c = [results[(title, m)] for m, _ in MODES]
            print(f"  {title:<{W}} {c[0]:<19} {c[1]:<19} {c[2]}")
    def count(mode, pred, group): return sum(1 for t, *_ in group if pred(results[(t, mode)]))
    n = len(ATTACKS)
    worked = count("without capjail", lambda r: r == "works", ATTACKS)
    proxy = count("--mode proxy", lambda r: r.startswith("contained"), ATTACKS)
    full = count("--mode full", lambda r: r.startswith("contained"), ATTACKS)
    by_proxy = count("--mode full", lambda r: r == "contained (proxy)", ATTACKS)
    legit_ok = all(results[(t, m)] == "allowed" for t, *_ in LEGIT_WORK for m, _ in MODES)
    print(f"\nsummary: without capjail {worked}/{n} attacks work; the proxy alone contains {proxy}/{n}; "
          f"full mode contains {full}/{n} ({by_proxy} by the proxy, {full - by_proxy} by the kernel); "
          f"legitimate work {'allowed' if legit_ok else 'BLOCKED'} in every mode.")
    v = subprocess.run([CAPJAIL, "audit", "verify", AUDIT], capture_output=True, text=True)
    print(f"audit log: {os.path.relpath(AUDIT)} ({v.stdout.strip().split(': ', 1)[-1]}); "
          f"read it with: capjail audit show {os.path.relpath(AUDIT)}")
    ok = worked == n and full == n and legit_ok
finally:
    canary.close()
    shutil.rmtree(lab, ignore_errors=True)
sys.exit(0 if ok else 1)
