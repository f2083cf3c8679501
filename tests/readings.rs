//! Issue 13: the proxy judges what the REAL server will do with an argument, not what the string
//! says, and nothing reaches the server before its audit record is written. Each test drives a
//! real server through capjail and judges by effect: the secret did not reach the client, the
//! command did not run, the file was not written.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

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
/// session runs, the test fills that file system and pipelines 40 `write_file` calls. Every file
/// the server wrote must have its record in the log; capjail ends with the audit status.
#[test]
fn full_audit_disk_no_write_without_its_record() {
    if which("unshare").is_none() {
        eprintln!("SKIP: unshare(1) is not installed");
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
    let mut argv: Vec<String> = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh"]
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
    let n = 40;
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
}
