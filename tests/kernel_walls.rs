//! The kernel walls (issue 11 §2), judged by effect. capjail's probe server, hijacked, tries
//! every class of the issue against stand-ins outside its mounts:
//!
//! - a listening pathname unix socket that answers with a secret (an ssh-agent), and one that
//!   writes a file when asked (a root daemon);
//! - chmod 04777, utimes and setxattr on a file outside the mounts; stat of a secret;
//! - prlimit(RLIMIT_CPU) on an outside process and prlimit(RLIMIT_FSIZE) on capjail itself;
//!   setpriority and sched_setaffinity on the outside process;
//! - SysV shared memory holding a secret;
//! - a grandchild that calls `setsid()` and keeps writing after the session ended;
//! - a file planted in a package cache outside the mounts;
//!
//! plus legitimate work in the mount. Under `--mode proxy` every class must succeed (the
//! probe is real); under `--mode kernel` and `--mode full` every class the walls close must be
//! contained. Three classes are closed only by the namespaces (the mount namespace hides the
//! outside file from `stat` and `utimes` — timestamps by path stay allowed by seccomp because
//! npm's lock refreshes its mtime by path; the PID namespace takes a `setsid()` grandchild
//! down with it):
//! where capjail falls back to the host's world (it says so on stderr), they are reported,
//! not asserted.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;
use serde_json::{json, Value};

/// capjail says on stderr when the server's world (namespaces) is not in force; then the
/// namespace-only classes are reported, not asserted (the fallback is Landlock + seccomp).
fn world_in_force(stderr: &str) -> bool {
    !stderr.contains("NOT in force")
}

/// A stand-in daemon on a pathname unix socket: answers every line with `answer`, and
/// creates `touch` (if any) when asked. Serves on a thread until the test process ends;
/// bounded by the listener's lifetime (the lab's temp dir).
fn stand_in(sock: &Path, answer: String, touch: Option<PathBuf>) {
    let l = UnixListener::bind(sock).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().take(16) {
            let Ok(mut c) = c else { return };
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            let _ = BufReader::new(&c).read_line(&mut line);
            if let Some(t) = &touch {
                let _ = std::fs::write(t, "done on request\n");
            }
            let _ = c.write_all(answer.as_bytes());
        }
    });
}

/// A SysV shared memory segment holding `secret`; removed on drop.
struct Shm(i32);

impl Shm {
    fn new(secret: &str) -> Shm {
        // SAFETY: private segment of one page, attached, written within bounds, detached.
        unsafe {
            let id = libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600);
            assert!(id >= 0, "shmget: {}", std::io::Error::last_os_error());
            let p = libc::shmat(id, std::ptr::null(), 0);
            assert!(p as isize != -1);
            std::ptr::copy_nonoverlapping(secret.as_ptr(), p as *mut u8, secret.len());
            libc::shmdt(p);
            Shm(id)
        }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: removing our own segment.
        unsafe { libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

struct Sleeper(Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn limits(pid: u32, label: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_default()
        .to_string()
}

fn nice_of(pid: u32) -> i64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Field 19 (nice), counted after the ")" that ends the command name.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .nth(16)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn cpus_allowed(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn has_xattr(p: &Path) -> bool {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new("user.capjail").unwrap();
    // SAFETY: size query with a NULL buffer.
    unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

fn ok(r: &Value) -> bool {
    r.get("error").is_none() && r["result"]["isError"] == json!(false)
}

fn grows(p: &Path) -> bool {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let a = size(p);
    std::thread::sleep(Duration::from_millis(700));
    size(p) > a
}

/// The pid in "logger started (pid N...)", to clean up a surviving grandchild.
fn logger_pid(r: &Value) -> Option<i32> {
    let t = r.to_string();
    let i = t.find("(pid ")? + 5;
    t[i..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Which classes the probe achieved under `mode` (effect observed).
fn run_walls(mode: &str) -> Vec<(&'static str, bool)> {
    let lab = Lab::new();
    let outside = lab.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let agent = outside.join("agent.sock");
    let daemon = outside.join("daemon.sock");
    let door = outside.join("daemon-did-it");
    stand_in(&agent, format!("identities: {}\n", lab.secret), None);
    stand_in(&daemon, "ok\n".into(), Some(door.clone()));
    let target = outside.join("target.txt");
    std::fs::write(&target, "outside file\n").unwrap();
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let cache = lab.path("home_like/.npm/_npx/pkg");
    std::fs::create_dir_all(&cache).unwrap();
    let shm = Shm::new(&format!("shm {}", lab.secret));
    let sleeper = Sleeper(
        Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let spid = sleeper.0.id();
    let cpu_mark = 7000 + (std::process::id() % 1000) as u64;
    let fsize_mark = 900_000_000 + (std::process::id() % 1000) as u64;

    let server = vec![
        capjail_bin().display().to_string(),
        "probe-server".into(),
        "--root".into(),
        lab.root_s(),
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
    .spawn();
    s.initialize();
    let capjail_pid = s.pid();
    let t = |p: &Path| p.display().to_string();
    let mut e: Vec<(&'static str, bool)> = Vec::new();

    let r = s.call_tool("status", json!({"topic": t(&agent)}));
    e.push((
        "unix socket: agent's secret",
        r.to_string().contains(&lab.secret),
    ));
    s.call_tool("status", json!({"topic": t(&daemon)}));
    e.push(("unix socket: daemon acted", door.exists()));
    s.call_tool(
        "touch_up",
        json!({"topic": format!("chmod {}", t(&target))}),
    );
    let m = std::fs::metadata(&target).unwrap();
    e.push(("chmod outside file", m.mode() & 0o4002 != 0));
    s.call_tool(
        "touch_up",
        json!({"topic": format!("utimes {}", t(&target))}),
    );
    let utimes = std::fs::metadata(&target).unwrap().mtime() == 1_000_000_000;
    s.call_tool(
        "touch_up",
        json!({"topic": format!("xattr {}", t(&target))}),
    );
    e.push(("setxattr outside file", has_xattr(&target)));
    let r = s.call_tool(
        "throttle",
        json!({"topic": format!("cpu {spid} {cpu_mark}")}),
    );
    e.push((
        "prlimit outside process",
        ok(&r) && limits(spid, "Max cpu time").contains(&cpu_mark.to_string()),
    ));
    s.call_tool(
        "throttle",
        // capjail by pid: the server's parent is capjail's watcher (or PID 1) where there is one.
        json!({"topic": format!("fsize {capjail_pid} {fsize_mark}")}),
    );
    e.push((
        "prlimit capjail",
        limits(capjail_pid, "Max file size").contains(&fsize_mark.to_string()),
    ));
    s.call_tool("renice", json!({"topic": format!("nice {spid}")}));
    e.push(("setpriority outside process", nice_of(spid) == 7));
    let before = cpus_allowed(spid);
    s.call_tool("renice", json!({"topic": format!("affinity {spid}")}));
    e.push((
        "sched_setaffinity outside process",
        before != "0" && cpus_allowed(spid) == "0",
    ));
    let r = s.call_tool("shared", json!({"topic": shm.0.to_string()}));
    e.push(("SysV shared memory", r.to_string().contains(&lab.secret)));
    s.call_tool("stash", json!({"topic": t(&cache)}));
    e.push((
        "plant in a cache outside the mounts",
        cache.join("capjail-probe-planted.js").exists(),
    ));
    let r = s.call_tool("summarize", json!({"topic": "notes"}));
    let legit = r.to_string().contains(&lab.legit);
    // (A grandchild that stays in the server's process group dies with the session in every
    // mode: capjail kills the group. One that calls setsid() does not.)
    let bg_setsid = lab.path("ws/bg-setsid.log");
    let r2 = s.call_tool(
        "background",
        json!({"topic": format!("setsid {}", t(&bg_setsid))}),
    );
    let stat = s.call_tool("inspect", json!({"topic": lab.p("secret/id_rsa")}));
    s.finish();
    let world = world_in_force(&s.stderr_text());
    std::thread::sleep(Duration::from_millis(300));
    let setsid_survives = grows(&bg_setsid);
    if let Some(pid) = logger_pid(&r2) {
        // SAFETY: plain kill of the probe's logger (it may be gone already).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    drop(shm);
    eprintln!(
        "--mode {mode}: {e:#?}\n  stat: {}\n  setsid grandchild survives: {setsid_survives}",
        ok(&stat)
    );
    assert!(legit, "--mode {mode} broke a legitimate read in the mount");
    // In every mode capjail is the reaper of the session's orphans: a setsid() grandchild is
    // adopted by capjail (or its watcher) and ended with the session (after a SIGKILL of capjail
    // too: tests/lifecycle.rs).
    assert!(
        !setsid_survives,
        "--mode {mode}: a setsid() grandchild outlived the session"
    );
    if mode == "proxy" || world {
        e.push(("stat outside the mounts", ok(&stat)));
        e.push(("utimes outside file", utimes));
    } else if ok(&stat) || utimes {
        eprintln!("NOT CONTAINED WITHOUT NAMESPACES (--mode {mode}): stat outside the mounts: {}, utimes outside file: {utimes}", ok(&stat));
    }
    e
}

#[test]
fn walls_under_proxy_mode_every_probe_succeeds() {
    for (what, happened) in run_walls("proxy") {
        assert!(happened, "--mode proxy: the probe could not {what}: the probe is broken, so the kernel tests would prove nothing");
    }
}

#[test]
fn walls_under_kernel_mode_every_class_is_contained() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    for (what, happened) in run_walls("kernel") {
        assert!(!happened, "--mode kernel: the server could {what}");
    }
}

#[test]
fn walls_under_full_mode_every_class_is_contained() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    for (what, happened) in run_walls("full") {
        assert!(!happened, "--mode full: the server could {what}");
    }
}

/// `network.unix_sockets` names a socket: the server may use it under the kernel layer (the
/// key is what opens the wall, nothing else does).
#[test]
fn walls_unix_socket_named_by_the_policy_is_reachable() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    let lab = Lab::new();
    std::fs::create_dir_all(lab.path("outside")).unwrap();
    let agent = lab.path("outside/agent.sock");
    stand_in(&agent, "agent says hello\n".into(), None);
    let policy = lab.policy(
        "unix",
        &format!(
            "name: lab-unix\nnetwork:\n  mode: none\n  unix_sockets: [{}]\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n",
            agent.display(),
            lab.ws.display()
        ),
    );
    let server = vec![
        capjail_bin().display().to_string(),
        "probe-server".into(),
        "--root".into(),
        lab.root_s(),
    ];
    let mut s = SessionBuilder::capjail(
        &[
            "--mode",
            "kernel",
            "--policy",
            policy.to_str().unwrap(),
            "--audit",
            "off",
        ],
        server,
    )
    .spawn();
    s.initialize();
    let r = s.call_tool("status", json!({"topic": agent.display().to_string()}));
    assert!(r.to_string().contains("agent says hello"), "{r}");
    s.finish();
}
