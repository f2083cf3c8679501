//! The server's life ends with the session (issues 11 and 13), judged by effect.
//!
//! A hijacked server (tests/fixtures/stubborn_server.py) that ignores stdin EOF and SIGTERM
//! leaves four grandchildren writing in the workspace every 50 ms: a plain child, one after
//! `setsid()`, one double-forked daemon, and a daemon that re-forks at every write (its pid
//! keeps changing). After a SIGKILL of capjail, and after a normal end (the grace period's
//! SIGKILL), none of them may remain, and nothing may write any more:
//! - under `--mode full`: the setup process dies with capjail, PID 1 with it, the kernel
//!   empties the PID namespace;
//! - in the fallback without namespaces (`kernel.namespaces: false`), also as an unprivileged
//!   user, and under `--mode proxy`: capjail's watcher (`sandbox::watcher`), the reaper of
//!   every orphan of the session, ends the whole tree when capjail dies or the server ends.
//!
//! A well-behaved real server sees EOF when the client closes stdin: the session ends with the
//! server's own exit status (the audit log's `session_end`), and a call sent just before the
//! EOF still gets its answer.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};

const PY: &str = "/usr/bin/python3";
const ROLES: [&str; 4] = ["plain", "setsid", "daemon", "hopper"];
/// Bound of every poll: the grandchildren starting, the sandbox emptying.
const POLL: Duration = Duration::from_secs(10);

/// ws rw, /usr/bin and the server's directory readable, network none, a short grace period;
/// `extra` appended to `kernel:`.
fn stubborn_policy(lab: &Lab, extra: &str) -> PathBuf {
    let srv = lab.path("srv");
    std::fs::create_dir_all(&srv).unwrap();
    std::fs::copy(
        fixture("stubborn_server.py"),
        srv.join("stubborn_server.py"),
    )
    .unwrap();
    lab.policy(
        "stubborn",
        &format!(
            "name: stubborn\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\nproxy:\n  grace_seconds: 0.5\nkernel:\n  extra_read: [/usr/bin, {}]\n{extra}",
            lab.ws.display(),
            srv.display()
        ),
    )
}

/// Who runs capjail: this test's user, or `nobody` (through `setpriv ARGS`).
#[derive(Clone, Copy, PartialEq, Debug)]
enum As {
    Me,
    Nobody,
}

fn stubborn_session(
    lab: &Lab,
    mode: &str,
    pol: &Path,
    tag: &str,
    audit: &Path,
    user: As,
) -> Session {
    let args = [
        "--mode",
        mode,
        "--policy",
        pol.to_str().unwrap(),
        "--audit",
        audit.to_str().unwrap(),
    ];
    let server = vec![
        PY.to_string(),
        lab.p("srv/stubborn_server.py"),
        lab.ws_s(),
        tag.to_string(),
    ];
    match user {
        As::Me => SessionBuilder::capjail(&args, server).spawn(),
        As::Nobody => {
            let mut argv: Vec<String> = NOBODY.iter().map(|a| a.to_string()).collect();
            argv.insert(0, which("setpriv").unwrap().display().to_string());
            argv.push(capjail_bin().display().to_string());
            argv.push("run".into());
            argv.extend(args.iter().map(|a| a.to_string()));
            argv.push("--".into());
            argv.extend(server);
            SessionBuilder::direct(argv)
                .env("HOME", "/nonexistent")
                .cwd(&lab.ws)
                .spawn()
        }
    }
}

const NOBODY: [&str; 3] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"];

/// Can this test drop to `nobody`? (Root and setpriv needed; otherwise a counted skip.) The
/// lab's directories and the policy are opened to it.
fn nobody_or_skip(lab: &Lab, pol: &Path) -> bool {
    // SAFETY: geteuid.
    if unsafe { libc::geteuid() } != 0 {
        skip_test(module_path!(), "needs root to drop to nobody");
        return false;
    }
    if which("setpriv").is_none() {
        skip_test(module_path!(), "setpriv not found");
        return false;
    }
    use std::os::unix::fs::PermissionsExt;
    for d in [&lab.root, &lab.ws] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(pol, std::fs::Permissions::from_mode(0o644)).unwrap();
    true
}

/// Host processes of this test's sandbox, by command line: `(pid, role)`, where role is
/// "server", a grandchild's role, or "capjail" (capjail, or a process it forked without exec:
/// the fallback's watcher).
fn processes(tag: &str) -> Vec<(i32, String)> {
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if !pid_alive(pid as u32) {
            continue;
        }
        let Ok(c) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = c
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.iter().any(|a| a.ends_with("stubborn_server.py")) {
            continue;
        }
        if args.iter().any(|a| a == "--toucher") {
            if let Some(role) = args.iter().find_map(|a| a.strip_prefix(&format!("{tag}-"))) {
                v.push((pid, role.to_string()));
            }
        } else if args.iter().any(|a| a == tag) {
            // The server itself; capjail's own argv carries the tag too, after `run`.
            let role = if args.iter().any(|a| a == "run") {
                "capjail"
            } else {
                "server"
            };
            v.push((pid, role.to_string()));
        }
    }
    v
}

fn roles(p: &[(i32, String)]) -> Vec<String> {
    let mut r: Vec<String> = p.iter().map(|(_, r)| r.clone()).collect();
    r.sort();
    r
}

/// Wait (bounded) until the server and its three grandchildren run and each wrote its file.
fn wait_started(lab: &Lab, tag: &str, s: &Session) {
    let deadline = Instant::now() + POLL;
    loop {
        let p = roles(&processes(tag));
        let files = ROLES
            .iter()
            .all(|r| lab.ws.join(format!("touch-{r}")).exists());
        if files && ROLES.iter().all(|r| p.contains(&r.to_string())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the grandchildren did not start: {p:?}\nstderr:\n{}",
            s.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (bounded) until no process of the sandbox with a role in `must_end` (every role when
/// empty) remains; what remains then.
fn remaining(tag: &str, must_end: &[&str]) -> Vec<(i32, String)> {
    let deadline = Instant::now() + POLL;
    loop {
        let p = processes(tag);
        let ended = if must_end.is_empty() {
            p.is_empty()
        } else {
            !p.iter().any(|(_, r)| must_end.contains(&r.as_str()))
        };
        if ended || Instant::now() > deadline {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The grandchildren whose file still changes (over 300 ms, six of their periods).
fn still_writing(lab: &Lab) -> Vec<String> {
    let read = || -> Vec<Option<String>> {
        ROLES
            .iter()
            .map(|r| std::fs::read_to_string(lab.ws.join(format!("touch-{r}"))).ok())
            .collect()
    };
    let before = read();
    std::thread::sleep(Duration::from_millis(300));
    let after = read();
    ROLES
        .iter()
        .zip(before.iter().zip(after.iter()))
        .filter(|(_, (b, a))| b != a)
        .map(|(r, _)| r.to_string())
        .collect()
}

/// Kill what a failed test left (the hopper changes pid: stop all, kill all, look again;
/// bounded).
fn kill_all(tag: &str) {
    for _ in 0..50 {
        let p = processes(tag);
        if p.is_empty() {
            return;
        }
        for sig in [libc::SIGSTOP, libc::SIGKILL] {
            for (pid, _) in &p {
                // SAFETY: kill(2) of a process this test's server started.
                unsafe { libc::kill(*pid, sig) };
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `session_end` record of an audit log.
fn session_end(audit: &Path) -> Value {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "session_end")
        .unwrap_or_else(|| panic!("no session_end in {}:\n{text}", audit.display()))
}

fn kernel_or_skip() -> bool {
    if !Path::new(PY).exists() {
        skip_test(module_path!(), &format!("{PY} not found"));
        return false;
    }
    if !kernel_available() {
        skip_test(module_path!(), "the kernel layer is not available here");
        return false;
    }
    true
}

/// How the session ends: SIGKILL of capjail, or the client closing stdin.
#[derive(Clone, Copy, PartialEq, Debug)]
enum End {
    KillCapjail,
    CloseStdin,
}

/// What a session left behind.
struct Left {
    /// Roles of the sandbox's processes still there.
    procs: Vec<String>,
    /// Grandchildren whose file still changes.
    writing: Vec<String>,
    stderr: String,
}

/// Start the stubborn server, end the session `how`, wait (bounded) for the roles in
/// `must_end` (every one when empty) to be gone; what remains (killed before returning).
fn run_stubborn(lab: &Lab, mode: &str, pol: &Path, how: End, user: As) -> Left {
    let tag = format!("STUBBORN{}", random_hex(6));
    let audit = lab.path(&format!("audit-{tag}.jsonl"));
    for r in ROLES {
        let _ = std::fs::remove_file(lab.ws.join(format!("touch-{r}")));
    }
    let mut s = stubborn_session(lab, mode, pol, &tag, &audit, user);
    s.initialize();
    wait_started(lab, &tag, &s);
    match how {
        End::KillCapjail => {
            // SAFETY: kill(2) of the capjail process this test started.
            unsafe { libc::kill(s.pid() as i32, libc::SIGKILL) };
            s.finish();
        }
        End::CloseStdin => {
            // capjail closes the server's stdin (ignored), SIGTERM after the grace period
            // (ignored), SIGKILL after the next one: capjail itself ends.
            let st = s.finish();
            assert!(
                st.is_some(),
                "{mode}: capjail did not end after the client closed stdin\nstderr:\n{}",
                s.stderr_text()
            );
            let end = session_end(&audit);
            assert_eq!(
                end["signal"],
                json!(libc::SIGKILL),
                "{mode}: the server was not ended by capjail's SIGKILL: {end}"
            );
            assert_eq!(st.unwrap().code(), Some(128 + libc::SIGKILL), "{mode}");
        }
    }
    let left = remaining(&tag, &[]);
    let writing = still_writing(lab);
    kill_all(&tag);
    Left {
        procs: roles(&left),
        writing,
        stderr: s.stderr_text(),
    }
}

/// capjail in `mode` (with `kernel` appended to the policy's `kernel:`), run as `user`, ended
/// `how`: no process of the sandbox is left and nothing writes in the workspace. `world`: what
/// capjail's log must say about the server's world (the setup this test is about).
fn leaves_nothing(mode: &str, kernel: &str, world: &str, how: End, user: As) {
    if !kernel_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = stubborn_policy(&lab, kernel);
    if user == As::Nobody && !nobody_or_skip(&lab, &pol) {
        return;
    }
    let Left {
        procs: left,
        writing,
        stderr,
    } = run_stubborn(&lab, mode, &pol, how, user);
    assert!(stderr.contains(world), "{stderr}");
    let after = match how {
        End::KillCapjail => "a SIGKILL of capjail",
        End::CloseStdin => "the session",
    };
    assert!(
        left.is_empty(),
        "{mode} {kernel:?} as {user:?}: processes of the sandbox outlived {after}: {left:?}\nstderr:\n{stderr}"
    );
    assert!(
        writing.is_empty(),
        "{mode} {kernel:?} as {user:?}: still writing in the workspace after {after}: {writing:?}"
    );
}

const NAMESPACES: &str = "world: namespaces";
const NO_NAMESPACES: &str = "  namespaces: false\n";
const NO_WORLD: &str = "world: NONE";

#[test]
fn no_descendant_survives_a_sigkill_of_capjail_in_full_mode() {
    leaves_nothing("full", "", NAMESPACES, End::KillCapjail, As::Me);
}

#[test]
fn no_descendant_survives_a_normal_end_in_full_mode() {
    leaves_nothing("full", "", NAMESPACES, End::CloseStdin, As::Me);
}

/// Without namespaces there is no PID 1 whose death empties the sandbox: capjail's watcher,
/// the reaper of every orphan of the session, ends the whole tree when capjail dies.
#[test]
fn no_descendant_survives_a_sigkill_of_capjail_in_the_fallback_without_namespaces() {
    leaves_nothing("kernel", NO_NAMESPACES, NO_WORLD, End::KillCapjail, As::Me);
}

#[test]
fn no_descendant_survives_a_normal_end_in_the_fallback_without_namespaces() {
    leaves_nothing("kernel", NO_NAMESPACES, NO_WORLD, End::CloseStdin, As::Me);
}

/// The same, unprivileged: no capability, no cgroup, the watcher alone.
#[test]
fn no_descendant_survives_a_sigkill_of_capjail_in_the_fallback_as_nobody() {
    leaves_nothing(
        "kernel",
        NO_NAMESPACES,
        NO_WORLD,
        End::KillCapjail,
        As::Nobody,
    );
}

/// `--mode proxy` (no kernel layer): no process of the session outlives it either.
#[test]
fn no_descendant_survives_a_sigkill_of_capjail_in_proxy_mode() {
    leaves_nothing("proxy", "", "server started", End::KillCapjail, As::Me);
}

// ---------------------------------------------------------------------------------------------
// A well-behaved real server
// ---------------------------------------------------------------------------------------------

fn everything() -> Vec<String> {
    vec![
        "node".into(),
        peer("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
            .display()
            .to_string(),
        "stdio".into(),
    ]
}

/// server-everything behind capjail in `mode` (the EOF hand-over is the proxy's; under `full`
/// it also crosses the setup process and the sandbox's PID 1), tools allowed, a grace period
/// long enough that a server ended by capjail shows as a signal.
fn everything_session(lab: &Lab, mode: &str, audit: &Path) -> Session {
    let pol = lab.policy(
        "everything",
        &format!(
            "name: everything\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: ro\ntools:\n  mode: all\nproxy:\n  grace_seconds: 3\n",
            lab.ws_s()
        ),
    );
    SessionBuilder::capjail(
        &[
            "--mode",
            mode,
            "--policy",
            pol.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
        ],
        everything(),
    )
    .spawn()
}

/// The modes to try: proxy, and full where the kernel layer is available (said otherwise).
fn modes() -> Vec<&'static str> {
    if kernel_available() {
        vec!["proxy", "full"]
    } else {
        skip_test(
            module_path!(),
            "the kernel layer is not available: proxy mode only",
        );
        vec!["proxy"]
    }
}

#[test]
fn a_well_behaved_server_ends_by_itself_when_the_client_closes_stdin() {
    for mode in modes() {
        let lab = Lab::new();
        let audit = lab.path("audit.jsonl");
        let mut s = everything_session(&lab, mode, &audit);
        s.initialize();
        assert!(
            mode != "full" || s.stderr_text().contains("world: namespaces"),
            "{}",
            s.stderr_text()
        );
        let st = s.finish().expect("capjail ended");
        let end = session_end(&audit);
        assert_eq!(
            end["signal"],
            Value::Null,
            "{mode}: the server was ended by a signal, not by its own EOF: {end}\nstderr:\n{}",
            s.stderr_text()
        );
        assert_eq!(end["exit_code"], json!(0), "{mode}: {end}");
        assert_eq!(st.code(), Some(0), "{mode}: {}", s.stderr_text());
    }
}

#[test]
fn a_call_sent_just_before_the_clients_eof_still_gets_its_answer() {
    for mode in modes() {
        let lab = Lab::new();
        let audit = lab.path("audit.jsonl");
        let mut s = everything_session(&lab, mode, &audit);
        s.initialize();
        assert!(
            mode != "full" || s.stderr_text().contains("world: namespaces"),
            "{}",
            s.stderr_text()
        );
        // A call that takes a second: the server sees EOF while it is still working on it.
        let id = json!(s.id());
        s.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":1,"steps":2}}}));
        let st = s.finish().expect("capjail ended");
        let r = s.wait_id(&id);
        assert!(
            result_text(&r).contains("Long running operation completed"),
            "{mode}: {r}"
        );
        let end = session_end(&audit);
        assert_eq!(end["signal"], Value::Null, "{mode}: {end}");
        assert_eq!(end["exit_code"], json!(0), "{mode}: {end}");
        assert_eq!(st.code(), Some(0), "{mode}: {}", s.stderr_text());
    }
}
