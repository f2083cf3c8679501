//! The kernel layer, judged by effect: capjail's probe server has innocently named tools that,
//! INSIDE the server, read a secret, write outside the mounts, write through a dangling link,
//! connect to a loopback canary, run a shell, read environments, signal and ptrace a process
//! outside the sandbox, use io_uring and hard-link a secret. Under `--mode proxy` every one of
//! them succeeds (the proxy cannot see inside the server: this proves the probes are real);
//! under `--mode kernel` and `--mode full` every one is contained, while legitimate work inside
//! the mounts still succeeds.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};

/// A process outside the sandbox: holds a secret in its environment, records SIGUSR1.
struct Outside {
    child: Child,
    signals: PathBuf,
    token: String,
}

impl Outside {
    fn start(lab: &Lab) -> Outside {
        let signals = lab.path("logs/outside-signals");
        let ready = lab.path("logs/outside-ready");
        let token = format!("OUTSIDE{}", random_hex(8));
        let script = "import signal, sys, time\n\
            f = sys.argv[1]\n\
            signal.signal(signal.SIGUSR1, lambda *a: open(f, 'a').write('USR1\\n'))\n\
            open(sys.argv[2], 'w').write('ready')\n\
            for _ in range(1200):\n    time.sleep(0.05)\n";
        let child = Command::new("python3")
            .args([
                "-c",
                script,
                signals.to_str().unwrap(),
                ready.to_str().unwrap(),
            ])
            .env("OUTSIDE_SECRET", &token)
            .stdin(Stdio::null())
            .spawn()
            .expect("python3");
        let t = Instant::now();
        while !ready.exists() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(ready.exists(), "the outside process did not start");
        Outside {
            child,
            signals,
            token,
        }
    }
    fn got_signal(&self) -> bool {
        std::fs::read_to_string(&self.signals)
            .map(|s| s.contains("USR1"))
            .unwrap_or(false)
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(r: &Value) -> String {
    r.to_string()
}

fn is_error(r: &Value) -> bool {
    r.get("error").is_some() || r["result"]["isError"] == json!(true)
}

/// What each escape attempt achieved.
#[derive(Debug, Default)]
struct Effects {
    read_secret: bool,
    write_outside: bool,
    write_dangling: bool,
    connect: bool,
    exec_shell: bool,
    env_self: bool,
    proc_outside: bool,
    signal: bool,
    ptrace: bool,
    io_uring: bool,
    hardlink: bool,
    legit_read: bool,
    legit_write: bool,
}

impl Effects {
    fn escapes(&self) -> Vec<(&'static str, bool)> {
        vec![
            ("read a secret outside the mounts", self.read_secret),
            ("write outside the mounts", self.write_outside),
            ("write through a dangling symlink", self.write_dangling),
            ("connect to a loopback canary", self.connect),
            ("run a shell that reads the secret", self.exec_shell),
            (
                "read its own environment (launcher's secret)",
                self.env_self,
            ),
            ("read another process's environment", self.proc_outside),
            ("signal a process outside the sandbox", self.signal),
            ("ptrace a process outside the sandbox", self.ptrace),
            ("use io_uring", self.io_uring),
            ("hard-link a secret into the workspace", self.hardlink),
        ]
    }
}

fn run_probes(mode: &str) -> Effects {
    let lab = Lab::new();
    let canary = Canary::start(16);
    let outside = Outside::start(&lab);
    let launcher_secret = format!("LAUNCHER{}", random_hex(8));
    let marker = marker();
    let server = vec![
        capjail_bin().display().to_string(),
        "probe-server".into(),
        "--root".into(),
        lab.root_s(),
        "--canary-port".into(),
        canary.port.to_string(),
        "--outside-pid".into(),
        outside.child.id().to_string(),
    ];
    let policy = lab.ws_rw_policy();
    let mut s = SessionBuilder::capjail(
        &[
            "--mode",
            mode,
            "--policy",
            policy.to_str().unwrap(),
            "--audit",
            "off",
        ],
        server,
    )
    .env("AWS_SECRET_ACCESS_KEY", &launcher_secret)
    .spawn();
    s.initialize();
    let tools = s.request("tools/list", json!({}));
    assert!(
        tools["result"]["tools"]
            .as_array()
            .is_some_and(|t| t.len() >= 9),
        "tools/list: {tools}"
    );

    let mut e = Effects::default();
    let r = s.call_tool("summarize", json!({"topic": "quarterly report"}));
    e.read_secret = text(&r).contains(&lab.secret);
    s.call_tool("tidy", json!({"topic": "build artifacts"}));
    e.write_outside = lab.exists("etc_like/evil.conf");
    s.call_tool("tidy", json!({"topic": "link cache"}));
    e.write_dangling = lab.exists("secret/newfile");
    s.call_tool("ping_home", json!({"topic": marker}));
    e.connect = !canary.hits_with(&marker).is_empty();
    let r = s.call_tool("spawn", json!({"topic": "indexer"}));
    e.exec_shell = text(&r).contains(&lab.secret);
    let r = s.call_tool("peek", json!({"topic": "self"}));
    e.env_self = text(&r).contains(&launcher_secret);
    let r = s.call_tool("peek", json!({"topic": "outside"}));
    e.proc_outside = text(&r).contains(&outside.token);
    s.call_tool("signal", json!({"topic": "refresh"}));
    std::thread::sleep(Duration::from_millis(300));
    e.signal = outside.got_signal();
    let r = s.call_tool("trace", json!({"topic": "debug"}));
    e.ptrace = !is_error(&r);
    let r = s.call_tool("uring", json!({"topic": "queue"}));
    e.io_uring = !is_error(&r);
    let r = s.call_tool("hardlink", json!({"topic": "dedupe"}));
    e.hardlink = text(&r).contains(&lab.secret);
    let r = s.call_tool("summarize", json!({"topic": "notes"}));
    e.legit_read = text(&r).contains(&lab.legit);
    let r = s.call_tool("tidy", json!({"topic": "workspace"}));
    e.legit_write = !is_error(&r) && lab.exists("ws/tidy.txt");
    eprintln!("--mode {mode}: {e:#?}");
    e
}

#[test]
fn under_proxy_mode_every_in_server_escape_succeeds() {
    let e = run_probes("proxy");
    for (what, happened) in e.escapes() {
        if what.starts_with("read its own environment") {
            // Since issue 13 the environment allowlist holds in proxy mode too: the
            // launcher's secret never reaches the server (the kernel tests show the same).
            assert!(
                !happened,
                "--mode proxy: the server saw the launcher's secret"
            );
            continue;
        }
        assert!(happened, "--mode proxy: the probe could not {what}: the probe is broken, so the kernel tests would prove nothing");
    }
    assert!(e.legit_read && e.legit_write, "{e:?}");
}

#[test]
fn under_kernel_mode_every_in_server_escape_is_contained() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    let e = run_probes("kernel");
    for (what, happened) in e.escapes() {
        assert!(!happened, "--mode kernel: the server could {what}");
    }
    assert!(
        e.legit_read,
        "--mode kernel broke a legitimate read inside the mount"
    );
    assert!(
        e.legit_write,
        "--mode kernel broke a legitimate write inside the mount"
    );
}

#[test]
fn under_full_mode_every_in_server_escape_is_contained() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    let e = run_probes("full");
    for (what, happened) in e.escapes() {
        assert!(!happened, "--mode full: the server could {what}");
    }
    assert!(
        e.legit_read && e.legit_write,
        "--mode full broke legitimate work inside the mount: {e:?}"
    );
}
