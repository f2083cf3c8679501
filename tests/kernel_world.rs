//! The server's own world (issue 11 §1), judged by effect with a hijacked server
//! (tests/fixtures/hijacked_server.py): what the policy does not grant does not exist, and
//! nothing the server starts outlives the session. Every probe also runs under `--mode proxy`,
//! where it must succeed (the probe is real). The fallback (`kernel.namespaces: false`) is
//! checked too: it says so, and Landlock still holds.
#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::Value;

const PY: &str = "/usr/bin/python3";

fn python_or_skip() -> bool {
    if Path::new(PY).exists() {
        return true;
    }
    crate::support::skip_test(module_path!(), &format!("{PY} not found"));
    false
}

/// ws rw, the server's own directory and /usr/bin read (sleepers run python), network none;
/// `extra` appended to `kernel:`. The fixture is copied into the lab (the repository is not
/// in the world).
fn policy(lab: &Lab, extra: &str) -> PathBuf {
    let srv = lab.path("srv");
    std::fs::create_dir_all(&srv).unwrap();
    std::fs::copy(
        fixture("hijacked_server.py"),
        srv.join("hijacked_server.py"),
    )
    .unwrap();
    lab.policy(
        "world",
        &format!(
            "name: world\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\nkernel:\n  extra_read: [/usr/bin, {}]\n{extra}",
            lab.ws.display(),
            srv.display()
        ),
    )
}

fn server_script(report: &Path) -> String {
    // lab/ws/report.json -> lab/srv/hijacked_server.py
    report
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("srv/hijacked_server.py")
        .display()
        .to_string()
}

fn session(mode: &str, policy: &Path, server: Vec<String>) -> SessionBuilder {
    SessionBuilder::capjail(
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
}

fn hijacked(report: &Path, probes: &[String]) -> Vec<String> {
    let mut v = vec![
        PY.to_string(),
        server_script(report),
        report.display().to_string(),
    ];
    v.extend(probes.iter().cloned());
    v
}

/// Run the hijacked server once in `mode`, initialize, end the session; the report.
fn run_probes(lab: &Lab, mode: &str, pol: &Path, probes: &[String]) -> (Value, String) {
    let report = lab.ws.join(format!("report-{mode}.json"));
    let _ = std::fs::remove_file(&report);
    let mut s = session(mode, pol, hijacked(&report, probes)).spawn();
    let init = s.initialize();
    assert!(
        init.get("protocolVersion").is_some(),
        "{init}\n{}",
        s.stderr_text()
    );
    s.finish();
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report ({e}); stderr:\n{}", s.stderr_text()));
    (serde_json::from_str(&text).unwrap(), s.stderr_text())
}

/// A stand-in agent on a pathname unix socket: answers every connection with the secret.
struct Agent {
    path: PathBuf,
    connected: Arc<AtomicBool>,
}

fn agent(lab: &Lab) -> Agent {
    let path = lab.path("agent.sock");
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    let connected = Arc::new(AtomicBool::new(false));
    let c = connected.clone();
    let secret = lab.secret.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match l.accept() {
                Ok((mut conn, _)) => {
                    c.store(true, Ordering::SeqCst);
                    conn.set_nonblocking(false).unwrap();
                    let mut b = [0u8; 16];
                    let _ = conn.read(&mut b);
                    let _ = conn.write_all(format!("SIGNED {secret}\n").as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    Agent { path, connected }
}

/// Host processes whose command line carries `marker`: the sleepers (not capjail or the
/// server, whose arguments carry it too).
fn with_marker(marker: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if contains_token(&c, marker) && contains_token(&c, "time.sleep(60)") {
                v.push(pid);
            }
        }
    }
    v
}

/// Wait (bounded: 10 s) until a process carries `marker` (the hijacked server starts its child
/// as it starts, but the child's exec may come after the `initialize` answer); those processes.
fn started(marker: &str) -> Vec<i32> {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let found = with_marker(marker);
        if !found.is_empty() || std::time::Instant::now() > until {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Wait (bounded) until no process carries `marker`; the survivors.
fn survivors(marker: &str) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = with_marker(marker);
        if v.is_empty() || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill_all(pids: &[i32]) {
    for p in pids {
        // SAFETY: kill(2).
        unsafe { libc::kill(*p, libc::SIGKILL) };
    }
}

fn get<'a>(r: &'a Value, k: &str) -> &'a str {
    r.get(k).and_then(Value::as_str).unwrap_or("missing")
}

#[test]
fn outside_sockets_files_and_processes_do_not_exist_in_the_world() {
    if !python_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = policy(&lab, "");
    let a = agent(&lab);
    let outside = lab.p("secret/id_rsa");
    let my_proc = format!("/proc/{}", std::process::id());
    let probes = vec![
        format!("unix={}", a.path.display()),
        format!("stat={outside}"),
        format!("read={outside}"),
        format!("stat={my_proc}"),
        format!("read={}", lab.ws.join("notes.txt").display()),
        format!("write={}", lab.ws.join("made.txt").display()),
    ];
    // Proxy only: every probe works (the probes are real).
    let (r, _) = run_probes(&lab, "proxy", &pol, &probes);
    assert!(get(&r, &probes[0]).contains(&lab.secret), "{r}");
    assert!(a.connected.swap(false, Ordering::SeqCst));
    assert_eq!(get(&r, &probes[1]), "ok", "{r}");
    assert_eq!(get(&r, &probes[3]), "ok", "{r}");
    std::fs::remove_file(lab.ws.join("made.txt")).unwrap();

    for mode in ["kernel", "full"] {
        let (r, err) = run_probes(&lab, mode, &pol, &probes);
        // The agent's socket is not in the world: no connection, no secret.
        assert!(!r.to_string().contains(&lab.secret), "{mode}: {r}");
        assert!(
            !a.connected.load(Ordering::SeqCst),
            "{mode}: the agent was reached"
        );
        // An outside file cannot even be stat'ed (Landlock alone does not govern stat).
        assert_eq!(get(&r, &probes[1]), "err:ENOENT", "{mode}: {r}");
        // capjail's test process is not in the sandbox's /proc.
        assert_eq!(get(&r, &probes[3]), "err:ENOENT", "{mode}: {r}");
        // Legitimate work in the mounts.
        assert!(get(&r, &probes[4]).contains(&lab.legit), "{mode}: {r}");
        assert_eq!(get(&r, &probes[5]), "ok", "{mode}: {r}");
        assert_eq!(
            std::fs::read_to_string(lab.ws.join("made.txt")).unwrap(),
            "written"
        );
        std::fs::remove_file(lab.ws.join("made.txt")).unwrap();
        assert!(err.contains("world: namespaces"), "{err}");
    }
}

#[test]
fn a_rewritten_npx_cache_package_never_reaches_the_users_cache() {
    if !python_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = policy(&lab, "");
    // The user's npm cache with a cached package, and an `npx` launcher (the plan recognises
    // npx by name and grants its cache) that runs the hijacked server.
    let cache = lab.path("home_like/.npm");
    let pkg = cache.join("_npx/abc/node_modules/victim/index.js");
    std::fs::create_dir_all(pkg.parent().unwrap()).unwrap();
    std::fs::write(&pkg, "console.log('genuine')\n").unwrap();
    let bin = lab.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let npx = bin.join("npx");
    std::fs::write(
        &npx,
        format!(
            "#!/bin/sh\nexec {PY} {} \"$@\"\n",
            lab.path("srv/hijacked_server.py").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&npx, std::fs::Permissions::from_mode(0o755)).unwrap();
    let probe = format!("rewrite={}", pkg.display());
    for mode in ["full", "proxy"] {
        let report = lab.ws.join(format!("npx-{mode}.json"));
        let argv = vec![
            npx.display().to_string(),
            report.display().to_string(),
            probe.clone(),
        ];
        let mut s = session(mode, &pol, argv)
            .env("npm_config_cache", cache.to_str().unwrap())
            .spawn();
        assert!(
            s.initialize().get("protocolVersion").is_some(),
            "{}",
            s.stderr_text()
        );
        s.finish();
        let r: Value = serde_json::from_str(
            &std::fs::read_to_string(&report)
                .unwrap_or_else(|e| panic!("{mode}: no report {e}: {}", s.stderr_text())),
        )
        .unwrap();
        let on_host = std::fs::read_to_string(&pkg).unwrap();
        if mode == "full" {
            // The server's write succeeded in its private layer, not in the user's cache.
            assert_eq!(get(&r, &probe), "ok", "{r}");
            assert_eq!(
                on_host, "console.log('genuine')\n",
                "the user's cache was changed"
            );
        } else {
            assert_eq!(on_host, "PLANTED", "proxy baseline: the probe is real");
        }
    }
}

#[test]
fn no_descendant_outlives_the_session_a_setsid_or_a_sigkill_of_capjail() {
    if !python_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = policy(&lab, "");
    for mode in ["full", "proxy"] {
        // Normal end: a grandchild in a new session (setsid).
        let m1 = format!("SETSID{}", random_hex(6));
        // SIGKILL of capjail: a plain grandchild.
        let m2 = format!("KILLED{}", random_hex(6));
        let report = lab.ws.join("r1.json");
        let mut s = session(mode, &pol, hijacked(&report, &[format!("grandchild={m1}")])).spawn();
        assert!(
            s.initialize().get("protocolVersion").is_some(),
            "{}",
            s.stderr_text()
        );
        assert!(
            !started(&m1).is_empty(),
            "{mode}: the grandchild did not start"
        );
        s.finish();
        let left1 = survivors(&m1);
        kill_all(&left1);

        let report = lab.ws.join("r2.json");
        let mut s = session(mode, &pol, hijacked(&report, &[format!("child={m2}")])).spawn();
        assert!(
            s.initialize().get("protocolVersion").is_some(),
            "{}",
            s.stderr_text()
        );
        assert!(
            !started(&m2).is_empty(),
            "{mode}: the grandchild did not start"
        );
        // SAFETY: kill(2) of the capjail process this test started.
        unsafe { libc::kill(s.pid() as i32, libc::SIGKILL) };
        s.finish();
        let left2 = survivors(&m2);
        kill_all(&left2);

        // Every mode: with the PID namespace (full) its init takes them all; without it (proxy)
        // capjail's watcher, the subreaper between capjail and the server, ends the tree when
        // capjail dies (src/sandbox/watcher.rs). The grandchildren did start (asserted above).
        assert!(
            left1.is_empty(),
            "{mode}: a setsid() grandchild outlived the session: {left1:?}"
        );
        assert!(
            left2.is_empty(),
            "{mode}: a grandchild outlived a SIGKILL of capjail: {left2:?}"
        );
    }
}

/// The sandbox's PID 1 (and the setup process above it) is a fork of capjail: the kernel shows
/// its name and nothing of capjail's arguments or environment (read from the host, which may),
/// and the server reaches neither its environment nor its memory (the copy of capjail's).
#[test]
fn pid1_shows_nothing_of_capjails_arguments_environment_or_memory() {
    if !python_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = policy(&lab, "");
    let report = lab.ws.join("pid1.json");
    let m = format!("ENVPROBE{}", random_hex(6));
    let probes: Vec<String> = ["cmdline", "environ", "maps", "mem"]
        .iter()
        .map(|f| format!("read=/proc/1/{f}"))
        .chain([format!("child={m}")])
        .collect();
    let mut s = session("full", &pol, hijacked(&report, &probes))
        .env("AWS_SECRET_ACCESS_KEY", &lab.secret)
        .spawn();
    assert!(
        s.initialize().get("protocolVersion").is_some(),
        "{}",
        s.stderr_text()
    );
    let pids = started(&m);
    assert!(!pids.is_empty(), "the sleeper did not start");
    let init = with_pid1_of(pids[0]).expect("PID 1 of the sandbox");
    let setup = ppid(init).expect("the setup process");
    for (who, pid) in [("PID 1", init), ("the setup process", setup)] {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert!(
            !contains_token(&environ, &lab.secret) && !contains_token(&cmdline, "--policy"),
            "{who} shows capjail's secret environment or arguments"
        );
        assert!(
            environ.iter().all(|&b| b == 0),
            "{who}'s environment is not empty: {:?}",
            String::from_utf8_lossy(&environ)
        );
        let shown: Vec<&[u8]> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .collect();
        assert_eq!(shown, [b"capjail-sandbox"], "{who}'s command line");
        assert_eq!(comm.trim_end(), "capjail-sandbox", "{who}'s name");
    }
    s.finish();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(!r.to_string().contains(&lab.secret), "{r}");
    for f in ["environ", "maps", "mem"] {
        assert_eq!(get(&r, &format!("read=/proc/1/{f}")), "err:EACCES", "{r}");
    }
    let cmdline = get(&r, "read=/proc/1/cmdline");
    assert!(
        cmdline == "err:EACCES" || cmdline.trim_end_matches('\0') == "ok:capjail-sandbox",
        "{cmdline:?}"
    );
}

/// The parent pid of `pid` (its `status`).
fn ppid(pid: i32) -> Option<i32> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    st.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The server starts with every signal's default disposition, as a client's spawn leaves it,
/// in every mode: capjail (a Rust program) ignores SIGPIPE, and an ignored signal would stay
/// ignored across the exec (a server's `producer | head` would then see EPIPE, not SIGPIPE).
#[test]
fn the_server_starts_with_the_default_signal_dispositions() {
    let lab = Lab::new();
    let world = policy(&lab, "");
    let fallback = lab.path("policy-fallback.yaml");
    let text = std::fs::read_to_string(&world).unwrap();
    std::fs::write(&fallback, format!("{text}  namespaces: false\n")).unwrap();
    // dash's builtins read the shell's own status: its ignored signals are the inherited ones.
    let server = || {
        vec![
            "/bin/sh".to_string(),
            "-c".into(),
            r#"while read -r l; do case "$l" in SigIgn*) echo "server $l" >&2;; esac; done < /proc/self/status"#.into(),
        ]
    };
    for (mode, pol) in [("proxy", &world), ("full", &fallback), ("full", &world)] {
        let mut s = session(mode, pol, server()).cwd(&lab.ws).spawn();
        s.close();
        let err = s.stderr_text();
        let line = err
            .lines()
            .find(|l| l.starts_with("server SigIgn:"))
            .unwrap_or_else(|| panic!("{mode}: no answer: {err}"));
        assert_eq!(
            line.split_whitespace().last(),
            Some("0000000000000000"),
            "{mode} ({}): {line}",
            pol.display()
        );
    }
}

/// The host pid of PID 1 in the namespace of `pid`.
fn with_pid1_of(pid: i32) -> Option<i32> {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(e.path().join("ns/pid")).ok().as_ref() != Some(&ns) {
            continue;
        }
        let st = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        if st
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.split_whitespace().last() == Some("1"))
        {
            return Some(p);
        }
    }
    None
}

#[test]
fn forced_fallback_is_reported_and_landlock_still_holds() {
    if !python_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = policy(&lab, "  namespaces: false\n");
    let outside = lab.p("secret/id_rsa");
    let probes = vec![format!("stat={outside}"), format!("read={outside}")];
    let (r, err) = run_probes(&lab, "full", &pol, &probes);
    assert!(err.contains("world: NONE"), "{err}");
    assert!(err.contains("kernel.namespaces: false"), "{err}");
    // No world: the file exists for stat, but Landlock refuses to read it.
    assert_eq!(get(&r, &probes[0]), "ok", "{r}");
    assert_eq!(get(&r, &probes[1]), "err:EACCES", "{r}");
    assert!(!r.to_string().contains(&lab.secret));
}

#[test]
fn an_unprivileged_user_gets_the_world_through_a_user_namespace() {
    if !python_or_skip() {
        return;
    }
    // SAFETY: geteuid.
    if unsafe { libc::geteuid() } != 0 {
        crate::support::skip_test(module_path!(), "needs root to drop to nobody");
        return;
    }
    let Some(setpriv) = which("setpriv") else {
        crate::support::skip_test(module_path!(), "setpriv not found");
        return;
    };
    let lab = Lab::new();
    use std::os::unix::fs::PermissionsExt;
    for d in [&lab.root, &lab.ws] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let pol = policy(&lab, "  require: true\n");
    std::fs::set_permissions(&pol, std::fs::Permissions::from_mode(0o644)).unwrap();
    let report = lab.ws.join("nobody.json");
    let outside = lab.p("secret/id_rsa");
    let mut argv = vec![
        setpriv.display().to_string(),
        "--reuid=nobody".into(),
        "--regid=nogroup".into(),
        "--clear-groups".into(),
        capjail_bin().display().to_string(),
        "run".into(),
        "--mode".into(),
        "kernel".into(),
        "--policy".into(),
        pol.display().to_string(),
        "--audit".into(),
        "off".into(),
        "--".into(),
    ];
    argv.extend(hijacked(
        &report,
        &[
            format!("stat={outside}"),
            format!("write={}", lab.ws.join("n.txt").display()),
        ],
    ));
    let mut s = SessionBuilder::direct(argv)
        .env("HOME", "/nonexistent")
        .cwd(&lab.ws)
        .spawn();
    let init = s.initialize();
    assert!(
        init.get("protocolVersion").is_some(),
        "{init}\n{}",
        s.stderr_text()
    );
    s.finish();
    let err = s.stderr_text();
    assert!(
        err.contains("namespaces mount,pid,ipc,uts,net,user"),
        "{err}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(r.to_string().contains("err:ENOENT"), "{r}");
    assert_eq!(
        std::fs::read_to_string(lab.ws.join("n.txt")).unwrap(),
        "written"
    );
}

/// When the user namespace cannot be made (here: a nested user namespace whose parent allows
/// one more only, so the server's would be one too many), the setup process started early
/// answers with the errno: capjail falls back to Landlock + seccomp with the warning, or
/// refuses under `--require-kernel`, as the namespace probe did.
#[test]
fn a_refused_user_namespace_falls_back_or_is_refused_under_require_kernel() {
    if !python_or_skip() {
        return;
    }
    // SAFETY: geteuid.
    if unsafe { libc::geteuid() } != 0 {
        crate::support::skip_test(module_path!(), "needs root (nested user namespaces)");
        return;
    }
    let help = std::process::Command::new("unshare").arg("--help").output();
    if !help.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--map-user")) {
        crate::support::skip_test(module_path!(), "unshare --map-user not available");
        return;
    }
    let lab = Lab::new();
    use std::os::unix::fs::PermissionsExt;
    for d in [&lab.root, &lab.ws] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let pol = policy(&lab, "");
    std::fs::set_permissions(&pol, std::fs::Permissions::from_mode(0o644)).unwrap();
    let outside = lab.p("secret/id_rsa");
    let argv = |report: &Path, require: bool| {
        let mut v: Vec<String> = [
            "unshare",
            "-U",
            "-r",
            "sh",
            "-c",
            "echo 1 > /proc/sys/user/max_user_namespaces || { echo capjail-test-no-sysctl >&2; exit 9; }; exec unshare -U --map-user=1000 --map-group=1000 \"$@\"",
            "sh",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(capjail_bin().display().to_string());
        v.extend(["run", "--mode", "full", "--audit", "off", "--policy"].map(String::from));
        v.push(pol.display().to_string());
        if require {
            v.push("--require-kernel".into());
        }
        v.push("--".into());
        v.extend(hijacked(report, &[format!("read={outside}")]));
        v
    };
    let report = lab.ws.join("fallback.json");
    let mut s = SessionBuilder::direct(argv(&report, false))
        .env("HOME", "/nonexistent")
        .cwd(&lab.ws)
        .spawn();
    let init = s.initialize();
    if init.get("protocolVersion").is_none() && s.stderr_text().contains("capjail-test-no-sysctl") {
        crate::support::skip_test(module_path!(), "user.max_user_namespaces not writable");
        return;
    }
    assert!(
        init.get("protocolVersion").is_some(),
        "{init}\n{}",
        s.stderr_text()
    );
    s.finish();
    let err = s.stderr_text();
    assert!(err.contains("the server's world is missing"), "{err}");
    assert!(err.contains("NOT in force"), "{err}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(get(&r, &format!("read={outside}")), "err:EACCES", "{r}");
    assert!(!r.to_string().contains(&lab.secret));

    let report = lab.ws.join("required.json");
    let out = std::process::Command::new(&argv(&report, true)[0])
        .args(&argv(&report, true)[1..])
        .env("HOME", "/nonexistent")
        .current_dir(&lab.ws)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(122), "{err}");
    assert!(err.contains("cannot be created here"), "{err}");
    assert!(!report.exists(), "the server ran");
}

// ---------------------------------------------------------------------------------------------
// Launchers (issue 12 §2): each common way of starting a real server works under --mode full
// with the least grant (the lab's workspace policy; nothing added for the launcher).

fn peers_or_skip() -> bool {
    let p = peers();
    if p.join("venv/bin/mcp-server-fetch").exists()
        && p.join("node/node_modules/.bin/mcp-server-filesystem")
            .exists()
    {
        return true;
    }
    crate::support::skip_test(
        module_path!(),
        &format!(
            "real peers not installed in {} (scripts/setup-peers.sh)",
            p.display()
        ),
    );
    false
}

/// Start `server` under --mode full with the lab's workspace policy; it must list its tools.
fn launches(lab: &Lab, server: Vec<String>) {
    let pol = lab.ws_rw_policy();
    let mut s = session("full", &pol, server.clone()).cwd(&lab.ws).spawn();
    let init = s.initialize();
    assert!(init.get("serverInfo").is_some(), "{server:?}: {init}");
    let tools = s.request("tools/list", serde_json::json!({}));
    let n = tools["result"]["tools"].as_array().map_or(0, Vec::len);
    assert!(n > 0, "{server:?}: no tools: {tools}\n{}", s.stderr_text());
    s.finish();
}

#[test]
fn launcher_node_modules_bin_link() {
    if !peers_or_skip() {
        return;
    }
    let lab = Lab::new();
    let bin = peer("node/node_modules/.bin/mcp-server-filesystem");
    launches(&lab, vec![bin.display().to_string(), lab.ws_s()]);
}

#[test]
fn launcher_node_dist_index_js() {
    if !peers_or_skip() {
        return;
    }
    let lab = Lab::new();
    launches(&lab, fs_server(&[&lab.ws]));
}

#[test]
fn launcher_venv_console_script_and_python_m() {
    if !peers_or_skip() {
        return;
    }
    let lab = Lab::new();
    launches(
        &lab,
        vec![peer("venv/bin/mcp-server-fetch").display().to_string()],
    );
    launches(
        &lab,
        vec![
            peer("venv/bin/python").display().to_string(),
            "-m".into(),
            "mcp_server_fetch".into(),
        ],
    );
}

#[test]
fn launcher_shell_wrapper_script() {
    if !peers_or_skip() {
        return;
    }
    let lab = Lab::new();
    let w = lab.path("bin/start-fetch.sh");
    std::fs::create_dir_all(w.parent().unwrap()).unwrap();
    std::fs::write(
        &w,
        format!(
            "#!/bin/sh\n# a user's wrapper\nexec {} \"$@\"\n",
            peer("venv/bin/mcp-server-fetch").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
    launches(&lab, vec![w.display().to_string()]);
}

#[test]
fn docker_is_refused_in_kernel_and_full_mode_with_an_explanation() {
    let lab = Lab::new();
    let pol = lab.ws_rw_policy();
    for mode in ["kernel", "full"] {
        let o = capjail(&[
            "run",
            "--mode",
            mode,
            "--policy",
            pol.to_str().unwrap(),
            "--audit",
            "off",
            "--",
            "docker",
            "run",
            "-i",
            "--rm",
            "mcp/fetch",
        ]);
        assert!(
            o.stderr.contains("kernel.container_launcher"),
            "{mode}: {}",
            o.stderr
        );
        assert_ne!(o.code, Some(0));
    }
}

#[test]
fn an_early_exit_names_what_is_missing_from_the_world() {
    if !python_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = lab.ws_rw_policy();
    // A server that needs a file the policy does not mount exits at start.
    let outside = lab.path("secret/id_rsa");
    let server = vec![
        PY.to_string(),
        "-c".into(),
        "import sys; open(sys.argv[1]).read()".into(),
        outside.display().to_string(),
    ];
    let mut s = session("full", &pol, server).cwd(&lab.ws).spawn();
    let st = s.close();
    assert!(st.is_some_and(|st| !st.success()));
    let err = s.stderr_text();
    assert!(
        err.contains(&format!("it was given {}", outside.display()))
            && err.contains("filesystem.mounts"),
        "{err}"
    );
}

/// The host's root is gone from the server's mount table: the world's root is the only mount
/// at `/`, and nothing of the scaffold (`/oldroot`, where the host's root hung while the
/// world was built) is left, and the root is read-only. The server's process is forked before
/// init detaches the old root (startup); it must still run the server only after the detach.
#[test]
fn the_hosts_root_is_not_in_the_servers_mount_table() {
    if !python_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = policy(&lab, "");
    let probes = vec!["read=/proc/self/mountinfo".to_string()];
    let (r, err) = run_probes(&lab, "full", &pol, &probes);
    let table = get(&r, &probes[0]);
    assert!(table.starts_with("ok:"), "{r}\n{err}");
    let at_root: Vec<&str> = table
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some("/"))
        .collect();
    assert_eq!(at_root.len(), 1, "one mount at /: {table}");
    // The root (a tmpfs of recreated symlinks and mount points) is read-only for the server.
    let options = at_root[0].split(' ').nth(5).unwrap_or("");
    assert!(
        options.split(',').any(|o| o == "ro"),
        "the root is mounted read-only: {}",
        at_root[0]
    );
    assert!(!table.contains("oldroot"), "{table}");
    assert!(!table.contains("newroot"), "{table}");
}

/// The early setup process gets its plan as soon as capjail has one (it builds the world while
/// capjail finishes its start), but the server's exec waits for capjail's word, given where the
/// server would have been spawned: a start that fails after the plan went out (here: an
/// unreadable pin file) never runs the server, and leaves no process behind.
#[test]
fn a_start_that_fails_after_the_plan_was_sent_never_runs_the_server() {
    if !python_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = policy(&lab, "");
    let pins = lab.path("bad-pins.json");
    std::fs::write(&pins, "not a pin file [").unwrap();
    // A server that acts at once (a shell writing a file), so that a wrongly released one
    // would have done so before capjail's exit ended its world.
    let ran = lab.ws.join("ran");
    let m = format!("EARLYGATE{}", random_hex(6));
    let server = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        format!("echo ran > {}; exec sleep 30 {m}", ran.display()),
    ];
    let mut s = SessionBuilder::capjail(
        &[
            "--mode",
            "full",
            "--policy",
            pol.to_str().unwrap(),
            "--audit",
            "off",
            "--pins",
            pins.to_str().unwrap(),
        ],
        server,
    )
    .cwd(&lab.ws)
    .spawn();
    let st = s.close();
    assert!(st.is_some_and(|st| !st.success()), "{}", s.stderr_text());
    assert!(
        s.stderr_text().contains("pin file"),
        "not the pin file's error: {}",
        s.stderr_text()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !ran.exists(),
        "the server ran although capjail stopped before starting it"
    );
    let left = survivors(&m);
    kill_all(&left);
    assert!(left.is_empty(), "processes left: {left:?}");
}
