//! Issue 13: the proxy judges what the REAL server will do with an argument, not what the string
//! says, and nothing reaches the server before its audit record is written. Each test drives a
//! real server through capjail and judges by effect: the secret did not reach the client, the
//! command did not run, the file was not written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};

fn call(s: &mut Session, name: &str, args: Value) -> (Value, Value) {
    let id = json!(s.id());
    s.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":name,"arguments":args}}));
    let r = s.wait_id(&id);
    (id, r)
}

fn git_server() -> Vec<String> {
    vec![peer("venv/bin/mcp-server-git").display().to_string()]
}

// ----- §6 nothing acts before its record exists ---------------------------------------------------

/// The audit log lives on a small tmpfs (in a mount namespace of the session's own); once the
/// session runs, the test fills that file system and pipelines 400 `write_file` calls (more
/// than the 64 KiB capjail reserves ahead of the log's end can hold). Every file the server
/// wrote must have its record in the log; capjail ends with the audit status; and the log
/// verifies: no record was torn by the full disk (the reservation fails before a write does).
#[test]
fn full_audit_disk_no_write_without_its_record() {
    if which("unshare").is_none() {
        crate::support::skip_test(module_path!(), "unshare(1) is not installed");
        return;
    }
    let lab = Lab::new();
    let fs = lab.path("auditfs");
    std::fs::create_dir_all(&fs).unwrap();
    let copy = lab.path("logs/audit-copy.jsonl");
    let pol = lab.ws_rw_policy();
    // sh mounts the tmpfs, runs capjail, and copies the log out before the namespace goes.
    // The naive server writes synchronously as each line arrives (and logs every line first).
    let script = r#"mount -t tmpfs -o size=256k capjail-test "$1" || exit 97
out="$2"; shift 2
"$@"; rc=$?
cp "$LOG" "$out"; exit $rc"#;
    let mut argv: Vec<String> = [
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log_path = fs.join("audit.jsonl");
    argv.push(fs.display().to_string());
    argv.push(copy.display().to_string());
    argv.extend([
        capjail_bin().display().to_string(),
        "run".into(),
        "--mode".into(),
        "proxy".into(),
        "--policy".into(),
        pol.display().to_string(),
        "--audit".into(),
        log_path.display().to_string(),
        "--".into(),
    ]);
    argv.extend(naive_server(&lab.root, &lab.path("logs/naive.log")));
    let mut s = SessionBuilder::direct(argv)
        .env("LOG", &log_path.display().to_string())
        .cwd(&lab.root)
        .spawn();
    s.initialize();
    let listed = s.request("tools/list", json!({}));
    assert!(listed.get("result").is_some(), "{listed}");
    // Fill the session's tmpfs through its mount namespace.
    let fill = PathBuf::from(format!("/proc/{}/root{}/fill", s.pid(), fs.display()));
    let mut f = std::fs::File::create(&fill).expect("the session's tmpfs");
    let chunk = vec![0u8; 4096];
    let mut full = false;
    for _ in 0..1000 {
        if f.write_all(&chunk).is_err() {
            full = true;
            break;
        }
    }
    assert!(full, "the 256 KiB tmpfs did not fill up");
    drop(f);
    let n = 400;
    let mut batch = Vec::new();
    for i in 0..n {
        let line = json!({"jsonrpc":"2.0","id":5000 + i,"method":"tools/call","params":{"name":"write_file","arguments":{"path": lab.p(&format!("ws/out-{i}.txt")), "content": "x"}}});
        batch.extend_from_slice(serde_json::to_string(&line).unwrap().as_bytes());
        batch.push(b'\n');
    }
    s.send_raw(&batch[..batch.len() - 1]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = s.close() {
            break st;
        }
        assert!(Instant::now() < deadline, "capjail did not end");
    };
    let log = std::fs::read_to_string(&copy).unwrap_or_default();
    let written: Vec<String> = (0..n)
        .map(|i| format!("ws/out-{i}.txt"))
        .filter(|rel| lab.exists(rel))
        .collect();
    let unrecorded: Vec<&String> = written
        .iter()
        .filter(|rel| !log.contains(&lab.p(rel)))
        .collect();
    assert!(
        unrecorded.is_empty(),
        "{} of {n} pipelined write_file calls were carried out without a record: {unrecorded:?}\nstderr:\n{}",
        unrecorded.len(),
        s.stderr_text()
    );
    assert_eq!(
        status.code(),
        Some(123),
        "capjail must end with the audit status; stderr:\n{}",
        s.stderr_text()
    );
    // The client was told why its requests were not carried out.
    assert!(
        s.received_text().contains("cannot write its audit log"),
        "{}",
        s.received_text()
    );
    // Written whole or not at all: the log ends with a complete record.
    let v = capjail(&["audit", "verify", copy.to_str().unwrap()]);
    assert!(
        v.status.success(),
        "the log on the full disk does not verify:\n{}{}",
        v.stdout,
        v.stderr
    );
}

// ----- §1 every reading ----------------------------------------------------------------------------

/// server-filesystem resolves a relative path against its allowed directory, not its working
/// directory: `secret/.aws/credentials` with the workspace as cwd is the lab's credentials.
#[test]
fn relative_path_is_judged_against_the_servers_directories() {
    let lab = Lab::new();
    let pol = lab.ws_rw_policy();
    let mut s = SessionBuilder::capjail(
        &["--policy", pol.to_str().unwrap()],
        fs_server(&[&lab.root]),
    )
    .cwd(&lab.ws)
    .spawn();
    s.initialize();
    let (id, r) = call(
        &mut s,
        "read_text_file",
        json!({"path": "secret/.aws/credentials"}),
    );
    assert_policy_error(&r, &id);
    let (_, ok) = call(
        &mut s,
        "read_text_file",
        json!({"path": lab.p("ws/notes.txt")}),
    );
    assert_tool_ok(&ok, &lab.legit);
    s.finish();
    lab.assert_no_leak(&s);
}

/// A repository outside the workspace whose history holds the secret, under `$HOME`.
fn private_repo(lab: &Lab) -> PathBuf {
    let home = lab.path("home_like");
    let repo = home.join("private-repo");
    reset_git_repo(&repo);
    std::fs::write(repo.join("notes.txt"), format!("private {}\n", lab.secret)).unwrap();
    let o = Command::new("git")
        .args(["commit", "-qam", &format!("private {}", lab.secret)])
        .current_dir(&repo)
        .envs(GIT_ENV.iter().copied())
        .output()
        .unwrap();
    assert!(o.status.success());
    home
}

/// mcp-server-git (GitPython) expands `$HOME` in `repo_path`.
#[test]
fn git_repo_path_with_variables_is_judged_expanded() {
    let lab = Lab::new();
    let home = private_repo(&lab);
    let pol = lab.ws_rw_policy();
    let mut s = SessionBuilder::capjail(&["--policy", pol.to_str().unwrap()], git_server())
        .cwd(&lab.ws)
        .env("HOME", &home.display().to_string())
        .spawn();
    s.initialize();
    for rp in [
        "$HOME/private-repo",
        "${HOME}/private-repo",
        "~/private-repo",
    ] {
        let (id, r) = call(&mut s, "git_log", json!({"repo_path": rp}));
        assert_policy_error(&r, &id);
    }
    s.finish();
    lab.assert_no_leak(&s);
}

fn doors_server(log: &Path, bad_utf8: bool) -> Vec<String> {
    let mut v = vec![
        "python3".into(),
        fixture("doors_server.py").display().to_string(),
        log.display().to_string(),
    ];
    if bad_utf8 {
        v.push("bad-utf8".into());
    }
    v
}

fn doors_session(lab: &Lab, policy: &Path, log: &Path, bad_utf8: bool) -> Session {
    let mut s = SessionBuilder::capjail(
        &["--policy", policy.to_str().unwrap()],
        doors_server(log, bad_utf8),
    )
    .cwd(&lab.ws)
    .spawn();
    s.initialize();
    s
}

/// `file:` URIs as URL parsers read them, on resources/read, subscriptions/listen, completion
/// and path arguments: none of these requests may reach the server.
#[test]
fn uri_forms_do_not_reach_the_server() {
    let lab = Lab::new();
    let log = lab.path("logs/doors.log");
    let pol = lab.ws_rw_policy();
    let mut s = doors_session(&lab, &pol, &log, false);
    let listed = s.request("tools/list", json!({}));
    assert!(listed.get("error").is_none(), "{listed}");
    let target = lab.p("secret/id_rsa");
    let forms = [
        format!(" file://{target}"),
        format!("\tfile://{target}"),
        format!("fi\tle://{target}"),
        format!("file:\t//{target}"),
        format!("\u{1}file://{target}"),
        format!("file:{}", target.trim_start_matches('/')),
        format!("FILE:{target}"),
    ];
    let mut n = 0;
    for (i, f) in forms.iter().enumerate() {
        let marker = format!("URIFORM{i}X");
        let reqs = [
            ("resources/read", json!({"uri": f, "_m": marker})),
            ("resources/subscribe", json!({"uri": f, "_m": marker})),
            (
                "subscriptions/listen",
                json!({"notifications": {"resourceSubscriptions": [f]}, "_m": marker}),
            ),
            (
                "completion/complete",
                json!({"ref": {"type": "ref/resource", "uri": f}, "argument": {"name": "x", "value": ""}, "_m": marker}),
            ),
            (
                "tools/call",
                json!({"name": "read_file", "arguments": {"path": f}, "_m": marker}),
            ),
        ];
        for (method, params) in reqs {
            let r = s.request(method, params);
            assert!(
                r.get("error").is_some(),
                "{method} {f:?} was not refused: {r}"
            );
            n += 1;
        }
    }
    s.assert_in_sync();
    s.finish();
    let reached = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(n == 35);
    assert!(
        !reached.contains("URIFORM"),
        "requests naming a file URI reached the server:\n{reached}"
    );
}

/// Unmounts on drop (before the lab's directory is removed).
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A `deny` rule below a case-insensitive directory (ext4 `casefold`, `chattr +F`):
/// `ws/SECRET/key` is the file `ws/secret/key`, and server-filesystem reads it. Needs a kernel
/// with CONFIG_UNICODE, `mkfs.ext4 -O casefold` and a loop device; skipped visibly otherwise
/// (src/check/decide_tests.rs judges the same with a world that reports a case-insensitive
/// directory).
#[test]
fn deny_rules_hold_in_any_case_on_a_casefold_directory() {
    let lab = Lab::new();
    let mnt = lab.path("cifs");
    let img = lab.path("cifs.img");
    std::fs::create_dir_all(&mnt).unwrap();
    let run = |prog: &str, args: &[&str]| {
        which(prog).is_some()
            && Command::new(prog)
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
    };
    let (m, i) = (mnt.display().to_string(), img.display().to_string());
    if !(run("truncate", &["-s", "16M", &i])
        && run("mkfs.ext4", &["-q", "-O", "casefold", &i])
        && run("mount", &["-o", "loop", &i, &m]))
    {
        skip!("cannot mount a casefold ext4 file system here (kernel without CONFIG_UNICODE, or no mkfs.ext4/loop device)");
    }
    let _unmount = Unmount(mnt.clone());
    let ws = mnt.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    if !run("chattr", &["+F", &ws.display().to_string()]) {
        skip!("chattr +F failed: no casefold directories here");
    }
    std::fs::create_dir_all(ws.join("secret")).unwrap();
    std::fs::write(ws.join("secret/key"), &lab.secret).unwrap();
    std::fs::write(ws.join("notes.txt"), &lab.legit).unwrap();
    assert!(
        ws.join("SECRET/KEY").exists(),
        "the directory does not fold case"
    );
    let pol = lab.policy(
        "casefold",
        &format!(
            "name: casefold\nnetwork:\n  mode: none\nfilesystem:\n  mounts:\n    - path: {ws}\n      mode: rw\ntools:\n  mode: all\ndeny:\n  - capability: filesystem.read\n    path_prefix: {ws}/secret\nallow:\n  - capability: filesystem.*\n",
            ws = ws.display()
        ),
    );
    let mut s = SessionBuilder::capjail(&["--policy", pol.to_str().unwrap()], fs_server(&[&ws]))
        .cwd(&ws)
        .spawn();
    s.initialize();
    for p in ["secret/key", "SECRET/key", "Secret/KEY"] {
        let (id, r) = call(
            &mut s,
            "read_text_file",
            json!({"path": ws.join(p).display().to_string()}),
        );
        assert_policy_error(&r, &id);
    }
    let (_, ok) = call(
        &mut s,
        "read_text_file",
        json!({"path": ws.join("NOTES.txt").display().to_string()}),
    );
    assert_tool_ok(&ok, &lab.legit);
    s.finish();
    lab.assert_no_leak(&s);
}

// ----- §2 writes that execute -----------------------------------------------------------------------

/// Writing `.git/config` (core.fsmonitor) with server-filesystem, then `git_status` with
/// mcp-server-git: the command must not run.
#[test]
fn git_config_write_is_execution() {
    let lab = Lab::new();
    let repo = lab.ws.join("repo");
    reset_git_repo(&repo);
    let marker = lab.path("logs/fsmonitor-ran");
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = \"touch {}\"\n",
        marker.display()
    );
    let pol = lab.ws_rw_policy();
    let mut fs =
        SessionBuilder::capjail(&["--policy", pol.to_str().unwrap()], fs_server(&[&lab.ws]))
            .cwd(&lab.ws)
            .spawn();
    fs.initialize();
    for (path, content) in [
        (repo.join(".git/config"), config.clone()),
        (
            repo.join(".git/hooks/pre-commit"),
            format!("#!/bin/sh\ntouch {}\n", marker.display()),
        ),
        (repo.join(".gitattributes"), "* filter=x\n".to_string()),
    ] {
        let (id, r) = call(
            &mut fs,
            "write_file",
            json!({"path": path.display().to_string(), "content": content}),
        );
        assert_policy_error(&r, &id);
        assert_eq!(r["error"]["data"]["rule"], "default.shell", "{r}");
    }
    // An ordinary file in the same repository is still written.
    let (_, ok) = call(
        &mut fs,
        "write_file",
        json!({"path": repo.join("new.txt").display().to_string(), "content": "x"}),
    );
    assert!(ok.get("result").is_some(), "{ok}");
    fs.finish();
    assert!(!std::fs::read_to_string(repo.join(".git/config"))
        .unwrap()
        .contains("fsmonitor"));
    let mut git = SessionBuilder::capjail(&["--policy", pol.to_str().unwrap()], git_server())
        .cwd(&lab.ws)
        .spawn();
    git.initialize();
    let (_, st) = call(
        &mut git,
        "git_status",
        json!({"repo_path": repo.display().to_string()}),
    );
    assert!(st.get("result").is_some(), "{st}");
    git.finish();
    assert!(!marker.exists(), "the fsmonitor command ran");
}

/// Git directories that are not named `.git`: a bare repository, and the separate git directory
/// a `.git` file (`gitdir: ...`) points to. Writing their `config` (core.fsmonitor) or a hook
/// with server-filesystem is execution; then `git_status` with mcp-server-git on the work tree
/// must not run the command.
#[test]
fn bare_and_separate_git_dirs_are_execution() {
    let lab = Lab::new();
    let git = |args: &[&str], dir: &Path| {
        let o = Command::new("git")
            .args(["-c", "init.defaultBranch=master"])
            .args(args)
            .current_dir(dir)
            .envs(GIT_ENV.iter().copied())
            .output()
            .expect("git");
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // ws/repo/.git is a file: `gitdir: <ws>/store/repo.git`.
    let repo = lab.ws.join("repo");
    let store = lab.ws.join("store/repo.git");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    std::fs::write(repo.join("notes.txt"), "Lab notes\n").unwrap();
    git(
        &[
            "init",
            "-q",
            "--separate-git-dir",
            &store.display().to_string(),
            ".",
        ],
        &repo,
    );
    git(&["add", "notes.txt"], &repo);
    git(&["commit", "-q", "-m", "first"], &repo);
    assert!(std::fs::read_to_string(repo.join(".git"))
        .unwrap()
        .starts_with("gitdir:"));
    let bare = lab.ws.join("bare.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&["init", "-q", "--bare", "."], &bare);

    let marker = lab.path("logs/fsmonitor-ran");
    let config = format!(
        "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = \"touch {}\"\n",
        marker.display()
    );
    let hook = format!("#!/bin/sh\ntouch {}\n", marker.display());
    let pol = lab.ws_rw_policy();
    let mut fs =
        SessionBuilder::capjail(&["--policy", pol.to_str().unwrap()], fs_server(&[&lab.ws]))
            .cwd(&lab.ws)
            .spawn();
    fs.initialize();
    for (path, content) in [
        (store.join("config"), config.clone()),
        (store.join("hooks/pre-commit"), hook.clone()),
        (bare.join("config"), config.clone()),
        (bare.join("hooks/post-update"), hook.clone()),
        (
            lab.ws.join("staged/HEAD"),
            "ref: refs/heads/master\n".into(),
        ),
    ] {
        let (id, r) = call(
            &mut fs,
            "write_file",
            json!({"path": path.display().to_string(), "content": content}),
        );
        assert_policy_error(&r, &id);
        assert_eq!(r["error"]["data"]["rule"], "default.shell", "{path:?}: {r}");
    }
    // An ordinary file in the work tree is still written.
    let (_, ok) = call(
        &mut fs,
        "write_file",
        json!({"path": repo.join("new.txt").display().to_string(), "content": "x"}),
    );
    assert!(ok.get("result").is_some(), "{ok}");
    fs.finish();
    for c in [store.join("config"), bare.join("config")] {
        assert!(
            !std::fs::read_to_string(&c).unwrap().contains("fsmonitor"),
            "{c:?}"
        );
    }
    assert!(!lab.ws.join("staged/HEAD").exists());
    let mut g = SessionBuilder::capjail(&["--policy", pol.to_str().unwrap()], git_server())
        .cwd(&lab.ws)
        .spawn();
    g.initialize();
    let (_, st) = call(
        &mut g,
        "git_status",
        json!({"repo_path": repo.display().to_string()}),
    );
    assert!(st.get("result").is_some(), "{st}");
    g.finish();
    assert!(!marker.exists(), "the fsmonitor command ran");
}

// ----- §3 the environment -------------------------------------------------------------------------

fn everything_server() -> Vec<String> {
    vec![
        "node".into(),
        peer("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
            .display()
            .to_string(),
        "stdio".into(),
    ]
}

/// server-everything's `get-env` under --mode proxy: capjail's secret environment does not
/// reach the client; without a rule naming the variables the tool is refused; with one, the
/// answer shows only the named variables — a variable the server has (passed by
/// `environment.allow`) but the rule does not name does not reach the client.
#[test]
fn environment_is_filtered_in_proxy_mode() {
    let lab = Lab::new();
    let base = format!(
        "network:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: ro\ntools:\n  mode: all\nenvironment:\n  allow: [CAPJAIL_SHOWN_VALUE, CAPJAIL_UNNAMED_VALUE]\n",
        lab.ws.display()
    );
    let refused = lab.policy("env-refused", &format!("name: env-refused\n{base}"));
    let unnamed = lab.policy(
        "env-unnamed",
        &format!("name: env-unnamed\n{base}allow:\n  - capability: environment.read\n"),
    );
    let named = lab.policy(
        "env-named",
        &format!("name: env-named\n{base}allow:\n  - capability: environment.read\n    variables: [CAPJAIL_SHOWN_VALUE, LC_*]\n"),
    );
    let shown = "shown-value-4b1d7c";
    for (pol, allow) in [(refused, false), (unnamed, false), (named, true)] {
        let mut s =
            SessionBuilder::capjail(&["--policy", pol.to_str().unwrap()], everything_server())
                .cwd(&lab.ws)
                .env("AWS_SECRET_ACCESS_KEY", &lab.secret)
                .env("CAPJAIL_TEST_TOKEN", &lab.secret)
                // Passed to the server by `environment.allow`, never named by the rule.
                .env("CAPJAIL_UNNAMED_VALUE", &lab.secret)
                .env("CAPJAIL_SHOWN_VALUE", shown)
                .spawn();
        s.initialize();
        let (id, r) = call(&mut s, "get-env", json!({}));
        if allow {
            assert!(r.get("result").is_some(), "{r}");
            let text = result_text(&r);
            let env: serde_json::Map<String, Value> = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("get-env is not a JSON object ({e}): {text}"));
            assert_eq!(
                env.get("CAPJAIL_SHOWN_VALUE"),
                Some(&json!(shown)),
                "{text}"
            );
            assert!(
                env.keys()
                    .all(|k| k == "CAPJAIL_SHOWN_VALUE" || k.starts_with("LC_")),
                "a variable the rule does not name reached the client: {text}"
            );
        } else {
            assert_policy_error(&r, &id);
            assert_eq!(r["error"]["data"]["rule"], "default.environment", "{r}");
        }
        s.finish();
        lab.assert_no_leak(&s);
    }
}

// ----- §4 §5 the other direction and the new generation's doors ------------------------------------

/// A tools/list answer with one invalid UTF-8 byte is dropped, not forwarded unfiltered: the
/// blocked tool never reaches the client.
#[test]
fn unparseable_tools_list_is_not_forwarded() {
    let lab = Lab::new();
    let log = lab.path("logs/doors.log");
    let pol = lab.policy(
        "block-write",
        &format!(
            "name: block-write\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\ntools:\n  mode: blocklist\n  blocked: [write_file]\n",
            lab.ws.display()
        ),
    );
    let mut s = doors_session(&lab, &pol, &log, true);
    let id = json!(s.id());
    s.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}));
    s.assert_in_sync();
    s.finish();
    assert!(
        !s.received_text().contains("write_file"),
        "the blocked tool reached the client:\n{}",
        s.received_text()
    );
}

/// 2026-07-28: roots in `inputResponses` of a retried request are narrowed to the mounts
/// before the server sees them.
#[test]
fn roots_in_input_responses_are_narrowed() {
    let lab = Lab::new();
    let log = lab.path("logs/doors.log");
    let pol = lab.ws_rw_policy();
    let mut s = doors_session(&lab, &pol, &log, false);
    s.request("tools/list", json!({}));
    let r = s.request(
        "tools/call",
        json!({"name": "read_file", "arguments": {"path": lab.p("ws/notes.txt")},
               "inputResponses": {"roots-1": {"roots": [{"uri": "file:///", "name": "everything"}, {"uri": format!("file://{}", lab.p("secret"))}]}}}),
    );
    assert!(r.get("result").is_some(), "{r}");
    s.finish();
    let reached = std::fs::read_to_string(&log).unwrap();
    let line = reached
        .lines()
        .find(|l| l.contains("inputResponses"))
        .expect("the retried request reached the server");
    let v: Value = serde_json::from_str(line).unwrap();
    let roots = v["params"]["inputResponses"]["roots-1"]["roots"]
        .as_array()
        .unwrap()
        .clone();
    let uris: Vec<&str> = roots.iter().map(|r| r["uri"].as_str().unwrap()).collect();
    assert_eq!(uris, [format!("file://{}", lab.ws_s())], "{line}");
}
