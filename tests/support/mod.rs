//! Shared helpers for capjail's end-to-end tests (tests/suite.rs declares `mod support;` once;
//! each test module does `use crate::support::*;`).
//!
//! - [`peers`]: where the real MCP peers live (`CAPJAIL_PEERS` or `<repo>/.peers`); a missing peer
//!   is a test failure that says to run `scripts/setup-peers.sh`, never a silent skip.
//! - [`Lab`]: a temporary tree with a workspace, secrets (random tokens), a prefix-sharing
//!   sibling and symlinks pointing out of the workspace.
//! - [`Session`]: drives `capjail run ... -- SERVER` (or the server directly, for baselines) over
//!   piped stdio: handshake, raw lines, responses by id with a timeout; everything the client
//!   received is kept for the leak judge. Dropping it closes stdin and reaps the process (bounded).
//! - [`Canary`]: a loopback HTTP listener in a thread of the test process.
//! - [`Isolation`]: run a whole session in fresh network + mount namespaces with only loopback,
//!   with a canary (tests/fixtures/canary.py) started inside the namespace and `/etc` overlaid so
//!   that a write to `/etc/...` lands in the lab and test host names resolve to loopback.
//!
//! Nothing here reads ../shared (or any file outside the repo and the temp dirs) at run time.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long to wait for one response.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for a process to exit after its stdin was closed, before killing it.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The protocol revision the handshake asks for.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Host name a network policy allows; inside an [`Isolation`] it resolves to 127.0.0.1.
pub const ALLOWED_HOST: &str = "allowed.test";
/// Port of the canary started inside an [`Isolation`] (the namespace is fresh, so it is free).
pub const NETNS_CANARY_PORT: u16 = 18080;
/// Body the canaries answer with.
pub const CANARY_BODY: &str = "caplab-canary-body-ok";

// ---------------------------------------------------------------------------------------------
// Locations
// ---------------------------------------------------------------------------------------------

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn capjail_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_capjail"))
}

pub fn fixture(name: &str) -> PathBuf {
    let p = repo().join("tests/fixtures").join(name);
    assert!(p.exists(), "test fixture {} is missing", p.display());
    p
}

/// The peers folder: `$CAPJAIL_PEERS` or `<repo>/.peers`.
pub fn peers() -> PathBuf {
    match std::env::var_os("CAPJAIL_PEERS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo().join(".peers"),
    }
}

/// A file inside the peers folder; panics (test failure) when it is missing.
pub fn peer(rel: &str) -> PathBuf {
    let p = peers().join(rel);
    assert!(
        p.exists(),
        "real MCP peer {} is missing: run `bash scripts/setup-peers.sh` (or `bash scripts/test.sh`), \
         or point CAPJAIL_PEERS at an installed peers folder",
        p.display()
    );
    p
}

/// `node <peers>/node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js DIR...`
pub fn fs_server(dirs: &[&Path]) -> Vec<String> {
    let mut v = vec![
        "node".to_string(),
        peer("node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js")
            .display()
            .to_string(),
    ];
    v.extend(dirs.iter().map(|d| d.display().to_string()));
    v
}

/// The real fetch server, made over-permissive: robots.txt and its own private-address check off.
pub fn fetch_server() -> Vec<String> {
    vec![
        peer("venv/bin/mcp-server-fetch").display().to_string(),
        "--ignore-robots-txt".into(),
        "--allow-private-ips".into(),
    ]
}

/// The lab's naive file server (tests/fixtures/naive_server.py); every line it receives is
/// appended to `log`.
pub fn naive_server(root: &Path, log: &Path) -> Vec<String> {
    vec![
        "python3".into(),
        fixture("naive_server.py").display().to_string(),
        "--root".into(),
        root.display().to_string(),
        "--log".into(),
        log.display().to_string(),
    ]
}

/// The pin file the tests' capjail runs use (`CAPJAIL_PINS`), never the user's
/// (~/.local/state/capjail/pins.json): one per test process, under cargo's target tmp dir.
pub fn test_pins_file() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("pins-{}.json", std::process::id()))
}

/// Where test runs of capjail log when a test names no `--audit` file: never the user's log
/// (~/.local/state/capjail), but a file under cargo's per-target temp dir (rotated by size).
pub fn test_audit_log() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capjail-test-audit.jsonl")
}

/// Run `capjail ARGS` to completion (stdin closed), bounded in time.
pub fn capjail(args: &[&str]) -> Output {
    run_bounded(
        Command::new(capjail_bin())
            .args(args)
            .env("CAPJAIL_PINS", test_pins_file())
            .env("CAPJAIL_AUDIT", test_audit_log()),
        None,
        Duration::from_secs(60),
    )
}

/// Run `capjail ARGS` with `input` on stdin.
pub fn capjail_with_input(args: &[&str], input: &[u8]) -> Output {
    run_bounded(
        Command::new(capjail_bin())
            .args(args)
            .env("CAPJAIL_PINS", test_pins_file())
            .env("CAPJAIL_AUDIT", test_audit_log()),
        Some(input),
        Duration::from_secs(60),
    )
}

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_bounded(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.map(|i| i.to_vec());
    let writer = thread::spawn(move || {
        if let Some(i) = input {
            let _ = stdin.write_all(&i);
        }
        drop(stdin);
    });
    let out = drain(child.stdout.take().unwrap());
    let err = drain(child.stderr.take().unwrap());
    let status = wait_bounded(&mut child, limit)
        .unwrap_or_else(|| panic!("{cmd:?} did not finish within {limit:?}"));
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    Output {
        status,
        code: status.code(),
        stdout,
        stderr,
    }
}

fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

/// Wait for `child` at most `limit`; kill it (and return None) if it is still running.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// A fresh random hex string (from /dev/urandom).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh marker, `mk` + 12 hex digits.
pub fn marker() -> String {
    format!("mk{}", random_hex(6))
}

// ---------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------

/// ```text
/// ROOT/ws/notes.txt            "Lab notes <LEGIT token>"
/// ROOT/ws/sub/readme.md
/// ROOT/ws/link_dir  -> ../secret
/// ROOT/ws/link_file -> ../secret/id_rsa
/// ROOT/ws/new_link  -> ../secret/newfile      (dangling)
/// ROOT/ws/chain     -> link_dir
/// ROOT/ws_evil/canary.txt      secret token (sibling sharing the "ws" prefix)
/// ROOT/ws_evil/evil-<token>.txt
/// ROOT/secret/id_rsa           secret token
/// ROOT/secret/.aws/credentials secret token
/// ROOT/secret/backup-<token>.key
/// ROOT/etc_like/shadow         secret token; ROOT/etc_like/cron.d/
/// ROOT/home_like/.bashrc
/// ROOT/logs/                   logs of fixtures (naive server, canary)
/// ```
pub struct Lab {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub ws: PathBuf,
    /// Non-secret token in ws/notes.txt.
    pub legit: String,
    /// The secret token (in every secret file, and in some file names).
    pub secret: String,
}

impl Lab {
    /// A lab in the default temp dir.
    pub fn new() -> Lab {
        Lab::build(
            tempfile::Builder::new()
                .prefix("capjail-lab-")
                .tempdir()
                .expect("tempdir"),
        )
    }

    /// A lab under /tmp whatever TMPDIR says (the seeds' `strict` policy mounts /tmp).
    pub fn in_tmp() -> Lab {
        Lab::build(
            tempfile::Builder::new()
                .prefix("capjail-lab-")
                .tempdir_in("/tmp")
                .expect("tempdir in /tmp"),
        )
    }

    fn build(dir: tempfile::TempDir) -> Lab {
        // Canonical root: the server and capjail must agree on the path without a symlinked TMPDIR.
        let root = dir.path().canonicalize().unwrap();
        let legit = format!("LEGIT{}", random_hex(8));
        let secret = format!("SECRET{}", random_hex(10));
        let ws = root.join("ws");
        let w = |rel: &str, content: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        };
        w("ws/notes.txt", &format!("Lab notes {legit}\n"));
        w("ws/sub/readme.md", "# readme\n");
        w("ws_evil/canary.txt", &format!("evil sibling {secret}\n"));
        w(&format!("ws_evil/evil-{secret}.txt"), "x\n");
        w("secret/id_rsa", &format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n-----END OPENSSH PRIVATE KEY-----\n"));
        w(
            "secret/.aws/credentials",
            &format!("[default]\naws_secret_access_key = {secret}\n"),
        );
        w(&format!("secret/backup-{secret}.key"), "x\n");
        w(
            "etc_like/shadow",
            &format!("root:{secret}:19000:0:99999:7:::\n"),
        );
        std::fs::create_dir_all(root.join("etc_like/cron.d")).unwrap();
        w("home_like/.bashrc", "# bashrc\n");
        std::fs::create_dir_all(root.join("logs")).unwrap();
        symlink("../secret", ws.join("link_dir")).unwrap();
        symlink("../secret/id_rsa", ws.join("link_file")).unwrap();
        symlink("../secret/newfile", ws.join("new_link")).unwrap();
        symlink("link_dir", ws.join("chain")).unwrap();
        Lab {
            _dir: dir,
            root,
            ws,
            legit,
            secret,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `ROOT/rel` as a string (for JSON arguments).
    pub fn p(&self, rel: &str) -> String {
        self.root.join(rel).display().to_string()
    }

    pub fn ws_s(&self) -> String {
        self.ws.display().to_string()
    }

    pub fn root_s(&self) -> String {
        self.root.display().to_string()
    }

    /// Write a policy file into the lab (outside the workspace) and return its path.
    pub fn policy(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.root.join(format!("policy-{name}.yaml"));
        std::fs::write(&p, yaml).unwrap();
        p
    }

    /// The lab's own policy: the workspace read-write, nothing else, exec-like tools blocked.
    pub fn ws_rw_policy(&self) -> PathBuf {
        self.policy(
            "ws_rw",
            &format!(
                "name: lab-ws-rw\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n\
                 tools:\n  mode: blocklist\n  blocked: [execute_command, run_command, run_shell, exec, shell, bash, sh, cmd, powershell, terminal, run_in_terminal]\n",
                self.ws.display()
            ),
        )
    }

    /// The workspace read-only, read tools only.
    pub fn ws_ro_policy(&self) -> PathBuf {
        self.policy(
            "ws_ro",
            &format!(
                "name: lab-ws-ro\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: ro\n\
                 tools:\n  mode: allowlist\n  allowed: [read_file, read_text_file, read_multiple_files, list_directory, search_files, get_file_info]\n",
                self.ws.display()
            ),
        )
    }

    /// A deliberately permissive policy (everything allowed): the baseline that proves a probe is
    /// real (the same attack must succeed under it).
    pub fn permissive_policy(&self) -> PathBuf {
        self.policy(
            "permissive",
            "name: lab-permissive\nnetwork:\n  mode: all\n  allow_private: true\n  allow_loopback: true\n  allow_link_local: true\n\
             filesystem:\n  mode: any\ntools:\n  mode: all\ncontent:\n  enabled: false\nflows:\n  defaults: false\n",
        )
    }

    /// Network allowlist with only [`ALLOWED_HOST`], no filesystem.
    pub fn net_allow_policy(&self) -> PathBuf {
        self.policy(
            "net_allow",
            &format!(
                "name: lab-net-allow\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"{ALLOWED_HOST}\", \"{ALLOWED_HOST}:{NETNS_CANARY_PORT}\"]\nfilesystem:\n  mode: explicit\n  mounts: []\n\
                 tools:\n  mode: blocklist\n  blocked: [execute_command, run_command, run_shell, exec, shell, bash, sh, cmd, powershell, terminal, run_in_terminal]\n"
            ),
        )
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read(self.root.join(rel))
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    pub fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.root.join(rel)).is_ok()
    }

    /// The effect judge for secrets: the token must not appear in anything the client received,
    /// raw or inside a base64-encoded string value.
    pub fn assert_no_leak(&self, s: &Session) {
        assert_no_token(&s.received_bytes(), &self.secret, "the client's stdout");
    }

    /// The probe is real: the secret DID reach the client (used in baselines).
    pub fn assert_leaked(&self, s: &Session) {
        assert!(
            contains_token(&s.received_bytes(), &self.secret),
            "baseline: expected the secret to reach the client, got:\n{}",
            s.received_text()
        );
    }
}

/// Does `token` occur in `bytes`, raw or in a base64-decoded JSON string value?
pub fn contains_token(bytes: &[u8], token: &str) -> bool {
    if find(bytes, token.as_bytes()) {
        return true;
    }
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(v) = serde_json::from_slice::<Value>(line) {
            let mut found = false;
            walk_strings(&v, &mut |s| {
                if s.len() >= 8 {
                    if let Some(d) = base64_decode(s) {
                        if find(&d, token.as_bytes()) {
                            found = true;
                        }
                    }
                }
            });
            if found {
                return true;
            }
        }
    }
    false
}

pub fn assert_no_token(bytes: &[u8], token: &str, what: &str) {
    assert!(
        !contains_token(bytes, token),
        "LEAK: the secret token {token} appears in {what}:\n{}",
        String::from_utf8_lossy(bytes)
    );
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn walk_strings(v: &Value, f: &mut dyn FnMut(&str)) {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|x| walk_strings(x, f)),
        Value::Object(o) => o.values().for_each(|x| walk_strings(x, f)),
        _ => {}
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Isolation: network + mount namespaces
// ---------------------------------------------------------------------------------------------

/// Run the session's command inside `unshare -n -m`: only loopback exists, `/etc` is an overlay
/// whose writes land in `<work>/etc-upper`, `/etc/hosts` maps [`ALLOWED_HOST`] (and `extra_hosts`)
/// to 127.0.0.1, and a canary (tests/fixtures/canary.py) listens on 127.0.0.1 and ::1 port
/// [`NETNS_CANARY_PORT`], logging hits to `<work>/canary-hits`. The canary exits with the session.
pub struct Isolation {
    pub work: PathBuf,
    pub canary: bool,
    pub extra_hosts: Vec<(String, String)>,
}

impl Isolation {
    /// `work` must exist; it is where the overlay layers, the hits file and the hosts file live.
    pub fn new(work: &Path) -> Isolation {
        std::fs::create_dir_all(work).unwrap();
        Isolation {
            work: work.to_path_buf(),
            canary: true,
            extra_hosts: Vec::new(),
        }
    }

    pub fn hits_file(&self) -> PathBuf {
        self.work.join("canary-hits")
    }

    /// Every request line the in-namespace canary logged.
    pub fn hits(&self) -> Vec<String> {
        std::fs::read_to_string(self.hits_file())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn hits_with(&self, needle: &str) -> Vec<String> {
        self.hits()
            .into_iter()
            .filter(|h| h.contains(needle))
            .collect()
    }

    /// What the server wrote below /etc (the overlay's upper layer).
    pub fn etc_upper(&self) -> PathBuf {
        self.work.join("etc-upper")
    }

    /// Wrap `argv` so that it runs inside the namespaces.
    pub fn wrap(&self, argv: &[String]) -> Vec<String> {
        let unshare = which("unshare").unwrap_or_else(|| {
            panic!("`unshare` is missing (Debian: util-linux); scripts/test.sh installs it")
        });
        assert!(
            which("ip").is_some(),
            "`ip` is missing (Debian: iproute2); scripts/test.sh installs it"
        );
        std::fs::create_dir_all(self.etc_upper()).unwrap();
        std::fs::create_dir_all(self.work.join("etc-work")).unwrap();
        let mut hosts = String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost\n");
        hosts += &format!("127.0.0.1 {ALLOWED_HOST}\n");
        for (name, addr) in &self.extra_hosts {
            hosts += &format!("{addr} {name}\n");
        }
        std::fs::write(self.work.join("hosts"), hosts).unwrap();
        let script = r#"set -e
W="$1"; CANARY="$2"; PORT="$3"; shift 3
ip link set lo up
mount -t overlay caplab-etc -o "lowerdir=/etc,upperdir=$W/etc-upper,workdir=$W/etc-work" /etc \
  || { echo "isolation: cannot overlay /etc" >&2; exit 97; }
cat "$W/hosts" > /etc/hosts
rm -f "$W/etc-upper/hosts"
if [ -n "$CANARY" ]; then
  python3 "$CANARY" --port "$PORT" --hits "$W/canary-hits" --ready "$W/canary-ready" &
  i=0
  while [ ! -e "$W/canary-ready" ]; do
    i=$((i+1)); [ "$i" -lt 400 ] || { echo "isolation: canary did not start" >&2; exit 98; }
    sleep 0.05
  done
fi
exec "$@"
"#;
        let mut v = vec![
            unshare.display().to_string(),
            "-n".into(),
            "-m".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            script.into(),
            "caplab-isolation".into(),
            self.work.display().to_string(),
            if self.canary {
                fixture("canary.py").display().to_string()
            } else {
                String::new()
            },
            NETNS_CANARY_PORT.to_string(),
        ];
        v.extend(argv.iter().cloned());
        v
    }
}

pub fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------------

/// How to start a session.
pub struct SessionBuilder {
    capjail_args: Vec<String>,
    server: Vec<String>,
    direct: bool,
    isolation: Option<Vec<String>>,
    envs: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

impl SessionBuilder {
    /// `capjail run ARGS -- SERVER`.
    pub fn capjail(args: &[&str], server: Vec<String>) -> SessionBuilder {
        SessionBuilder {
            capjail_args: args.iter().map(|s| s.to_string()).collect(),
            server,
            direct: false,
            isolation: None,
            envs: Vec::new(),
            cwd: None,
        }
    }

    /// `capjail run --mode full --policy POLICY --audit off -- SERVER`: the kernel layer's
    /// sessions of most tests.
    pub fn full_mode(policy: &std::path::Path, server: Vec<String>) -> SessionBuilder {
        SessionBuilder::capjail(
            &[
                "--mode",
                "full",
                "--policy",
                policy.to_str().unwrap(),
                "--audit",
                "off",
            ],
            server,
        )
    }

    /// The server alone, without capjail: the baseline that proves an attack is real.
    pub fn direct(server: Vec<String>) -> SessionBuilder {
        SessionBuilder {
            capjail_args: Vec::new(),
            server,
            direct: true,
            isolation: None,
            envs: Vec::new(),
            cwd: None,
        }
    }

    pub fn isolated(mut self, iso: &Isolation) -> SessionBuilder {
        self.isolation = Some(iso.wrap(&[]));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> SessionBuilder {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn cwd(mut self, d: &Path) -> SessionBuilder {
        self.cwd = Some(d.to_path_buf());
        self
    }

    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(prefix) = &self.isolation {
            argv.extend(prefix.iter().cloned());
        }
        if !self.direct {
            argv.push(capjail_bin().display().to_string());
            argv.push("run".into());
            // These sessions exercise the PROXY layer, and their scaffolding (recording relays,
            // fixture servers, pid files) lives outside the policies' mounts, which the kernel
            // layer would rightly refuse. Tests of the kernel layer pass `--mode` themselves.
            if !self.capjail_args.iter().any(|a| a == "--mode") {
                argv.extend(["--mode".to_string(), "proxy".to_string()]);
            }
            argv.extend(self.capjail_args.iter().cloned());
            argv.push("--".into());
        }
        argv.extend(self.server.iter().cloned());
        argv
    }

    pub fn spawn(self) -> Session {
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("CAPJAIL_PINS", test_pins_file())
            .env("CAPJAIL_AUDIT", test_audit_log());
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {argv:?}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        rec.lock().unwrap().extend_from_slice(&line);
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let err_buf = Arc::new(Mutex::new(Vec::new()));
        let eb = err_buf.clone();
        thread::spawn(move || {
            let mut r = stderr;
            let mut buf = [0u8; 8192];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                eb.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Session {
            argv,
            child,
            stdin,
            rx,
            received,
            stderr: err_buf,
            stash: VecDeque::new(),
            next_id: 1000,
            status: None,
        }
    }
}

pub struct Session {
    pub argv: Vec<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Vec<u8>>,
    received: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// Lines read but not yet claimed by a `wait_*`.
    stash: VecDeque<Vec<u8>>,
    next_id: i64,
    status: Option<ExitStatus>,
}

impl Session {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A fresh numeric id.
    pub fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Send one line (a newline is appended).
    pub fn send_raw(&mut self, line: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        let mut v = line.to_vec();
        v.push(b'\n');
        if let Err(e) = stdin.write_all(&v).and_then(|_| stdin.flush()) {
            panic!(
                "writing to {:?} failed: {e}\nstderr:\n{}",
                self.argv,
                self.stderr_text()
            );
        }
    }

    pub fn send(&mut self, v: &Value) {
        self.send_raw(serde_json::to_string(v).unwrap().as_bytes());
    }

    /// The next line from stdout, waiting at most `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        if let Some(l) = self.stash.pop_front() {
            return Some(l);
        }
        self.recv(Instant::now() + timeout)
    }

    fn recv(&mut self, deadline: Instant) -> Option<Vec<u8>> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Wait for the line for which `pred` holds (other lines are kept for later), at most `timeout`.
    pub fn wait_line(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let matches = |l: &[u8]| serde_json::from_slice::<Value>(l).ok().filter(|v| pred(v));
        if let Some(pos) = self.stash.iter().position(|l| matches(l).is_some()) {
            let l = self.stash.remove(pos).unwrap();
            return matches(&l).unwrap();
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline) {
                Some(l) => {
                    if let Some(v) = matches(&l) {
                        return v;
                    }
                    // A request from the server (roots/list, sampling, ...): refuse it politely.
                    if let Ok(v) = serde_json::from_slice::<Value>(&l) {
                        if v.get("method").is_some()
                            && v.get("id").is_some()
                            && v.get("result").is_none()
                        {
                            let id = v["id"].clone();
                            self.send(&json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"not supported by the test client"}}));
                            continue;
                        }
                    }
                    self.stash.push_back(l);
                }
                None => panic!(
                    "no {what} within {timeout:?} from {:?}\nreceived so far:\n{}\nstderr:\n{}",
                    self.argv,
                    self.received_text(),
                    self.stderr_text()
                ),
            }
        }
    }

    /// Wait for the response (object with `result` or `error`) whose id equals `id`.
    pub fn wait_id(&mut self, id: &Value) -> Value {
        let id = id.clone();
        self.wait_line(
            RESPONSE_TIMEOUT,
            &format!("response to id {id}"),
            move |v| {
                v.get("id") == Some(&id) && (v.get("result").is_some() || v.get("error").is_some())
            },
        )
    }

    /// Send a request and wait for its response.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = json!(self.id());
        self.send(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}));
        self.wait_id(&id)
    }

    /// `tools/call` NAME ARGS; returns the whole response.
    pub fn call_tool(&mut self, name: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": name, "arguments": args}))
    }

    /// The MCP handshake: `initialize` (2025-11-25, no client capabilities), then
    /// `notifications/initialized`. Returns the initialize result.
    pub fn initialize(&mut self) -> Value {
        let r = self.request(
            "initialize",
            json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "capjail-tests", "version": "0"}}),
        );
        assert!(
            r.get("result").is_some(),
            "initialize failed: {r}\nstderr:\n{}",
            self.stderr_text()
        );
        self.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        r["result"].clone()
    }

    /// `ping` must answer with an empty result: the stream is in sync.
    pub fn assert_in_sync(&mut self) {
        let r = self.request("ping", json!({}));
        assert!(
            r.get("result").is_some(),
            "ping after the previous message failed: {r}\nstderr:\n{}",
            self.stderr_text()
        );
    }

    pub fn received_bytes(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received_bytes()).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Close stdin and wait for the process (killed after [`EXIT_TIMEOUT`]); `None` if it had to be killed.
    pub fn close(&mut self) -> Option<ExitStatus> {
        if let Some(st) = self.status {
            return Some(st);
        }
        drop(self.stdin.take());
        let st = wait_bounded(&mut self.child, EXIT_TIMEOUT);
        self.status = st;
        st
    }

    /// Close and give a moment for the reader thread to collect the last lines.
    pub fn finish(&mut self) -> Option<ExitStatus> {
        let st = self.close();
        thread::sleep(Duration::from_millis(50));
        while let Ok(l) = self.rx.try_recv() {
            self.stash.push_back(l);
        }
        st
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.status.is_none() {
            drop(self.stdin.take());
            let _ = wait_bounded(&mut self.child, EXIT_TIMEOUT);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Response judges
// ---------------------------------------------------------------------------------------------

/// The exact capjail policy-violation error for `id`: code -32001, message
/// "capjail policy violation: <reason>", data with rule / capability / resource / reason.
#[track_caller]
pub fn assert_policy_error(resp: &Value, id: &Value) -> Value {
    assert_eq!(resp.get("id"), Some(id), "wrong id in {resp}");
    assert_eq!(
        resp.get("jsonrpc"),
        Some(&json!("2.0")),
        "not JSON-RPC 2.0: {resp}"
    );
    assert!(
        resp.get("result").is_none(),
        "expected a capjail policy violation, got a result: {resp}"
    );
    let err = resp
        .get("error")
        .unwrap_or_else(|| panic!("no error in {resp}"));
    assert_eq!(
        err.get("code"),
        Some(&json!(-32001)),
        "expected code -32001: {resp}"
    );
    let msg = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        msg.starts_with("capjail policy violation: "),
        "unexpected message {msg:?} in {resp}"
    );
    let data = err
        .get("data")
        .unwrap_or_else(|| panic!("no error.data in {resp}"));
    // The full shape (capability and resource too) is checked once, in cli.rs
    // (error_data_carries_every_contract_field), so that a shape slip does not mask effect tests.
    for k in ["rule", "reason"] {
        assert!(data.get(k).is_some(), "error.data lacks {k:?}: {resp}");
    }
    let reason = data["reason"].as_str().unwrap_or_default();
    assert!(!reason.is_empty(), "empty error.data.reason: {resp}");
    assert_eq!(
        msg,
        format!("capjail policy violation: {reason}"),
        "message must be 'capjail policy violation: <reason>': {resp}"
    );
    err.clone()
}

/// A JSON-RPC error (any code) for `id`.
#[track_caller]
pub fn assert_error_code(resp: &Value, id: &Value, code: i64) {
    assert_eq!(resp.get("id"), Some(id), "wrong id in {resp}");
    assert_eq!(
        resp.pointer("/error/code"),
        Some(&json!(code)),
        "expected error {code}: {resp}"
    );
}

/// The text of a tool result (all text content items joined).
pub fn result_text(resp: &Value) -> String {
    resp.pointer("/result/content")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A successful tool result (no JSON-RPC error, no `isError`) whose text contains `needle`.
#[track_caller]
pub fn assert_tool_ok(resp: &Value, needle: &str) -> String {
    assert!(
        resp.get("result").is_some(),
        "expected a result, got {resp}"
    );
    assert_ne!(
        resp.pointer("/result/isError"),
        Some(&json!(true)),
        "tool reported an error: {resp}"
    );
    let t = result_text(resp);
    assert!(t.contains(needle), "tool result lacks {needle:?}: {resp}");
    t
}

// ---------------------------------------------------------------------------------------------
// Loopback canary in the test process
// ---------------------------------------------------------------------------------------------

/// An HTTP listener on 127.0.0.1:0 in a thread: logs every request line, answers 404 to
/// /robots.txt and 200 with [`CANARY_BODY`] otherwise; serves at most `max_conns` connections.
pub struct Canary {
    pub port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Canary {
    pub fn start(max_conns: usize) -> Canary {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind canary");
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        thread::spawn(move || {
            for conn in l.incoming().take(max_conns) {
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                loop {
                    let mut l = String::new();
                    match r.read_line(&mut l) {
                        Ok(0) | Err(_) => break,
                        Ok(_) if l == "\r\n" || l == "\n" => break,
                        Ok(_) => {}
                    }
                }
                let first = first.trim_end().to_string();
                h.lock().unwrap().push(first.clone());
                let resp = if first.split_whitespace().nth(1) == Some("/robots.txt") {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{CANARY_BODY}",
                        CANARY_BODY.len()
                    )
                };
                let _ = c.write_all(resp.as_bytes());
            }
        });
        Canary { port, hits }
    }

    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }

    pub fn hits_with(&self, needle: &str) -> Vec<String> {
        self.hits()
            .into_iter()
            .filter(|h| h.contains(needle))
            .collect()
    }
}

/// Is a process with this pid still there (and not a zombie)?
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // state is the field after the ")" that closes the command name
            let state = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next().unwrap_or('?'))
                .unwrap_or('?');
            state != 'Z' && state != 'X'
        }
        Err(_) => false,
    }
}

/// Wrap a server command in the recording relay (tests/fixtures/relay.py): every line that reaches
/// the server is appended to `log`.
pub fn relayed(log: &Path, server: Vec<String>) -> Vec<String> {
    let mut v = vec![
        "python3".to_string(),
        fixture("relay.py").display().to_string(),
        log.display().to_string(),
    ];
    v.extend(server);
    v
}

/// The lines that reached a server, from a relay or naive-server log.
pub fn reached(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

/// Is the kernel layer fully available here? When not, the reason goes to stderr; a test that
/// needs it then calls [`skip!`] (counted and reported), never a silent pass.
pub fn kernel_available() -> bool {
    let o = capjail(&[
        "run",
        "--mode",
        "kernel",
        "--require-kernel",
        "--audit",
        "off",
        "--",
        "true",
    ]);
    if o.code != Some(0) {
        eprintln!(
            "note: the kernel layer is not fully available here: {}",
            o.stderr
        );
        return false;
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Transparency: the same scripted session directly and through capjail must look the same
// ---------------------------------------------------------------------------------------------

/// Node 22 from the peers folder (npm package `node`, installed by scripts/setup-peers.sh): the
/// MCP Inspector CLI needs Node >= 22.19, and the TypeScript client drivers run on it too.
pub fn node22() -> PathBuf {
    peer("inspector/node_modules/node/bin/node")
}

/// The MCP Inspector's launcher script (run it with [`node22`], `--cli` first).
pub fn inspector_launcher() -> PathBuf {
    peer("inspector/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js")
}

/// The mode transparency sessions run capjail in: the default (`full`, kernel confinement on)
/// where the kernel layer is available, else `proxy` (said on stderr by [`kernel_available`]).
pub fn transparency_mode() -> &'static str {
    static MODE: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
    MODE.get_or_init(|| if kernel_available() { "full" } else { "proxy" })
}

/// The real servers of the transparency matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealServer {
    Everything,
    Filesystem,
    Memory,
    Fetch,
    Git,
}

/// One run's world: a fresh folder with a workspace whose content is the same for every run
/// (`ws/notes.txt`, `ws/sub/readme.md`, `ws/data.csv`; for git a repository with one commit made at
/// a fixed date, so its hashes are the same too), the policy that lets the server do its job,
/// and an audit file (so tests never write to ~/.local/state).
pub struct TWorld {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub ws: PathBuf,
    pub policy: PathBuf,
    pub audit: PathBuf,
}

/// Fixed identity and dates for git, so commits made in both runs have the same hashes (the raw
/// `SECONDS +ZONE` form: git and GitPython, which mcp-server-git uses, both accept it).
pub const GIT_ENV: [(&str, &str); 6] = [
    ("GIT_AUTHOR_NAME", "Transparency"),
    ("GIT_AUTHOR_EMAIL", "t@example.test"),
    ("GIT_COMMITTER_NAME", "Transparency"),
    ("GIT_COMMITTER_EMAIL", "t@example.test"),
    ("GIT_AUTHOR_DATE", "1767323045 +0000"),
    ("GIT_COMMITTER_DATE", "1767323045 +0000"),
];

/// Make `repo` a fresh git repository with one commit (`notes.txt`, "first"), made with
/// [`GIT_ENV`] so that its hash is the same in every run.
pub fn reset_git_repo(repo: &Path) {
    let _ = std::fs::remove_dir_all(repo);
    std::fs::create_dir_all(repo).unwrap();
    std::fs::write(repo.join("notes.txt"), "Lab notes\n").unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(["-c", "init.defaultBranch=master"])
            .args(args)
            .current_dir(repo)
            .envs(GIT_ENV.iter().copied())
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q", "."]);
    git(&["add", "notes.txt"]);
    git(&["commit", "-q", "-m", "first"]);
}

impl TWorld {
    /// `canary_port`: the loopback port the fetch policy allows.
    pub fn new(server: RealServer, canary_port: Option<u16>) -> TWorld {
        let dir = tempfile::Builder::new()
            .prefix("capjail-transparency-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let root = dir.path().canonicalize().unwrap();
        let ws = root.join("ws");
        std::fs::create_dir_all(ws.join("sub")).unwrap();
        std::fs::write(ws.join("notes.txt"), "Lab notes line 1\nline 2\nline 3\n").unwrap();
        std::fs::write(ws.join("sub/readme.md"), "# readme\n\nhello world\n").unwrap();
        std::fs::write(ws.join("data.csv"), "a,b\n1,2\n").unwrap();
        if server == RealServer::Git {
            for args in [
                &["init", "-q", "-b", "main", "."][..],
                &["add", "notes.txt", "sub/readme.md"],
                &["commit", "-q", "-m", "first commit"],
            ] {
                let o = Command::new("git")
                    .args(args)
                    .current_dir(&ws)
                    .envs(GIT_ENV)
                    .output()
                    .expect("git");
                assert!(
                    o.status.success(),
                    "git {args:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
        let ws_s = ws.display().to_string();
        let blocked = "tools:\n  mode: blocklist\n  blocked: [execute_command, run_command, run_shell, exec, shell, bash, sh, cmd, powershell, terminal, run_in_terminal]\n";
        let yaml = match server {
            // Roots the client offers lie in the workspace: a read-only mount keeps them visible.
            RealServer::Everything => format!(
                "name: transparency-everything\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {ws_s}\n      mode: ro\ntools:\n  mode: all\nallow:\n  - capability: environment.read\n    variables: [\"*\"]\n# get-env then gzip-file-as-resource (a fetch) would arm the built-in env-read -> network flow\nflows:\n  defaults: false\n"
            ),
            RealServer::Filesystem => format!(
                "name: transparency-ws\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {ws_s}\n      mode: rw\n{blocked}"
            ),
            // The memory server is configured by MEMORY_FILE_PATH and git by GIT_*: the policy
            // passes them (capjail's environment is an allowlist).
            RealServer::Memory | RealServer::Git => format!(
                "name: transparency-ws-env\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {ws_s}\n      mode: rw\nenvironment:\n  allow: [MEMORY_FILE_PATH, GIT_AUTHOR_NAME, GIT_AUTHOR_EMAIL, GIT_COMMITTER_NAME, GIT_COMMITTER_EMAIL, GIT_AUTHOR_DATE, GIT_COMMITTER_DATE]\n{blocked}"
            ),
            RealServer::Fetch => format!(
                "name: transparency-fetch\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"127.0.0.1:{}\"]\nfilesystem:\n  mode: explicit\n  mounts: []\n{blocked}",
                canary_port.expect("the fetch world needs the canary's port")
            ),
        };
        let policy = root.join("policy.yaml");
        std::fs::write(&policy, yaml).unwrap();
        TWorld {
            _dir: dir,
            audit: root.join("audit.jsonl"),
            root,
            ws,
            policy,
        }
    }

    pub fn ws_s(&self) -> String {
        self.ws.display().to_string()
    }

    /// The server's argv and the environment it needs.
    pub fn server(&self, server: RealServer) -> (Vec<String>, Vec<(String, String)>) {
        let npm = |pkg: &str| {
            peer(&format!(
                "node/node_modules/@modelcontextprotocol/{pkg}/dist/index.js"
            ))
            .display()
            .to_string()
        };
        match server {
            RealServer::Everything => (
                vec!["node".into(), npm("server-everything"), "stdio".into()],
                vec![],
            ),
            RealServer::Filesystem => (fs_server(&[&self.ws]), vec![]),
            RealServer::Memory => (
                vec!["node".into(), npm("server-memory")],
                vec![(
                    "MEMORY_FILE_PATH".into(),
                    self.ws.join("memory.jsonl").display().to_string(),
                )],
            ),
            RealServer::Fetch => (fetch_server(), vec![]),
            RealServer::Git => (
                vec![
                    peer("venv/bin/mcp-server-git").display().to_string(),
                    "--repository".into(),
                    self.ws_s(),
                ],
                GIT_ENV
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    /// `capjail run --mode M --policy P --audit A -- SERVER...`
    pub fn through_capjail(&self, server: &[String]) -> Vec<String> {
        let mut v = vec![
            capjail_bin().display().to_string(),
            "run".into(),
            "--mode".into(),
            transparency_mode().into(),
            "--policy".into(),
            self.policy.display().to_string(),
            "--audit".into(),
            self.audit.display().to_string(),
            // Never the user's pin file.
            "--pins".into(),
            self.audit.with_file_name("pins.json").display().to_string(),
            "--".into(),
        ];
        v.extend(server.iter().cloned());
        v
    }
}

/// Panic with a readable unified diff when the two transcripts differ.
#[track_caller]
pub fn assert_same_transcript(what: &str, direct: &Value, confined: &Value) {
    if direct == confined {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("direct.json");
    let b = dir.path().join("through-capjail.json");
    std::fs::write(&a, serde_json::to_string_pretty(direct).unwrap()).unwrap();
    std::fs::write(&b, serde_json::to_string_pretty(confined).unwrap()).unwrap();
    let d = Command::new("diff")
        .arg("-u")
        .arg(&a)
        .arg(&b)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("(diff unavailable: {e})"));
    panic!(
        "{what}: the transcript through capjail (mode {}) differs from the direct one:\n{d}",
        transparency_mode()
    );
}

// ---------------------------------------------------------------------------------------------
// Visible skips: a test that cannot run here says so, and scripts/test.sh counts and reports it
// ---------------------------------------------------------------------------------------------

/// Every skip of a run, one `TEST: REASON` line each (scripts/test.sh empties it before the run
/// and summarises it after): `target/tmp/capjail-skips.txt`.
pub fn skip_log() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("capjail-skips.txt")
}

/// Record that the current test cannot run here: `SKIP: TEST: REASON` on stderr and a line in
/// [`skip_log`]. With `CAPJAIL_TEST_NO_SKIP=1` (a host that has everything) it panics instead.
/// Use [`skip!`], which also returns from the test.
pub fn skip_test(module: &str, reason: &str) {
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name.to_string(),
        _ => module.to_string(),
    };
    let line = format!("{test}: {}", reason.replace('\n', " "));
    if std::env::var_os("CAPJAIL_TEST_NO_SKIP").is_some_and(|v| v == "1") {
        panic!("a skip is a failure with CAPJAIL_TEST_NO_SKIP=1: {line}");
    }
    eprintln!("SKIP: {line}");
    // One write of one line with O_APPEND: lines of concurrent test processes do not interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_log())
    {
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// `skip!("reason {}", x)`: record a visible skip (see [`skip_test`]) and return from the test.
macro_rules! skip {
    ($($arg:tt)*) => {{
        $crate::support::skip_test(module_path!(), &format!($($arg)*));
        return;
    }};
}
