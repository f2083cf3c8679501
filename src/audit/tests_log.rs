//! End-to-end tests of the audit log: writing, tampering, concurrency, crashes, redaction,
//! replay, and an independent verifier (the Python program in docs/audit-format.md).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::canon::{encode_line, parse_line, GENESIS};
use super::event::Counts;
use super::replay::replay_bytes;
use super::testutil::policy;
use super::verify::VerifyReport;
use super::verify::{verify_bytes, BreakKind};
use super::*;
use crate::check::decide::{decide, Context, Decision, StaticCatalog, Verdict};
use crate::check::path::PathContext;
use crate::check::{Denial, RealWorld};
use crate::policy::RuleId;
use crate::profile::builtin_profiles;

fn decision(allow: bool) -> Decision {
    Decision {
        verdict: if allow { Verdict::Allow } else { Verdict::Deny },
        method: "tools/call".into(),
        tool: Some("read_file".into()),
        accesses: Default::default(),
        rule: RuleId::Policy(if allow { "allow[0]" } else { "deny[0]" }.into()),
        denial: (!allow)
            .then(|| Denial::new(RuleId::Policy("deny[0]".into()), "denied by rule deny[0]")),
    }
}

fn start(argv: &[String], p: &Policy) -> Record {
    Record::SessionStart(Box::new(SessionStart {
        argv: argv.to_vec(),
        policy: std::sync::Arc::new(p.clone()),
        mode: "proxy".into(),
        kernel: "none".into(),
        cwd: "/srv".into(),
        home: Some("/home/u".into()),
        profile: Some("filesystem".into()),
    }))
}

/// A decision record as the proxy builds it.
fn decision_record(
    direction: Direction,
    id: Option<Value>,
    params: Option<Value>,
    decision: Decision,
    tool_spec: Option<std::sync::Arc<crate::profile::ToolSpec>>,
    latency_us: u64,
) -> Record {
    Record::Decision(Box::new(DecisionRecord {
        tool_spec,
        latency_us,
        ..DecisionRecord::new(direction, id, params, decision)
    }))
}

/// A session of `n` decisions (alternately allowed and denied): n + 2 lines.
fn write_session(path: &Path, n: usize) -> AuditLog {
    let p = policy("name: t\n");
    let argv = vec!["server".to_string()];
    let mut log = AuditLog::open(path, false).unwrap();
    log.record(&start(&argv, &p)).unwrap();
    for i in 0..n {
        let d = decision(i % 2 == 0);
        let params = json!({"name": "read_file", "arguments": {"path": format!("/srv/{i}")}});
        let id = json!(i);
        let ev = decision_record(
            Direction::ClientToServer,
            Some(id),
            Some(params),
            d,
            None,
            7,
        );
        log.record(&ev).unwrap();
    }
    log.record(&Record::SessionEnd(SessionEnd {
        exit_code: Some(0),
        signal: None,
    }))
    .unwrap();
    log
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn lines_of(data: &[u8]) -> Vec<Vec<u8>> {
    data.split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn first_break(data: &[u8]) -> (usize, BreakKind, String) {
    let r = verify_bytes(data);
    let b = r
        .error
        .clone()
        .unwrap_or_else(|| panic!("expected a break, got OK: {r:?}"));
    (b.line, b.kind, b.message)
}

#[test]
fn a_session_verifies_with_counts() {
    let d = tmp();
    let path = d.path().join("a/b/audit.jsonl"); // directories are created
    let log = write_session(&path, 4);
    assert_eq!(
        log.counts(),
        Counts {
            allowed: 2,
            denied: 2,
            filtered: 0
        }
    );
    let r = verify(std::slice::from_ref(&path));
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.exit_code(), 0);
    let f = &r.files[0];
    assert_eq!(f.records, 6);
    assert_eq!(
        (
            f.counts["session_start"],
            f.counts["decision"],
            f.counts["session_end"]
        ),
        (1, 4, 1)
    );
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    assert!(
        r.render()
            .contains("OK, 6 records (4 decision, 1 session_end, 1 session_start)"),
        "{}",
        r.render()
    );

    let text = std::fs::read_to_string(&path).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs[0]["prev"], GENESIS);
    assert_eq!(recs[0]["policy"]["sha256"], canon::sha256_hex(b"name: t\n"));
    assert_eq!(recs[1]["direction"], "client_to_server");
    assert_eq!(
        (recs[1]["verdict"].as_str(), recs[2]["verdict"].as_str()),
        (Some("allow"), Some("deny"))
    );
    assert_eq!(recs[2]["reason"], "denied by rule deny[0]");
    assert_eq!(recs[5]["allowed"], 2);
    assert_eq!(recs[5]["denied"], 2);
    let t = recs[3]["time"].as_str().unwrap();
    assert!(
        t.len() == 27 && t.ends_with('Z') && t.as_bytes()[19] == b'.',
        "{t}"
    );
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1);
        assert_eq!(r["session"], log.session_id());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn each_kind_of_tampering_is_found_at_its_line() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    write_session(&path, 4); // 6 lines
    let orig = std::fs::read(&path).unwrap();
    let ls = lines_of(&orig);
    let join = |v: &[Vec<u8>]| v.concat();

    // Edit a field of line 3.
    let mut v = ls.clone();
    v[2] = String::from_utf8(v[2].clone())
        .unwrap()
        .replace("\"verdict\":\"deny\"", "\"verdict\":\"allow\"")
        .into_bytes();
    assert_ne!(v[2], ls[2]);
    let (line, kind, msg) = first_break(&join(&v));
    assert_eq!((line, kind), (3, BreakKind::Edited));
    assert!(
        msg.starts_with("line 3: record edited: stored hash ")
            && msg.contains("but the record hashes to"),
        "{msg}"
    );

    // Delete line 3.
    let mut v = ls.clone();
    v.remove(2);
    let (line, kind, msg) = first_break(&join(&v));
    assert_eq!((line, kind), (3, BreakKind::Deleted), "{msg}");
    assert!(
        msg.contains("1 record(s) deleted before this line: seq jumps from 2 to 4"),
        "{msg}"
    );

    // Delete the first line.
    let (line, kind, _) = first_break(&join(&ls[1..]));
    assert_eq!((line, kind), (1, BreakKind::Deleted));

    // Insert a forged line with a recomputed hash but a wrong prev, at line 3.
    let mut forged = parse_line(&ls[2][..ls[2].len() - 1]).unwrap().record;
    forged.insert("reason".into(), "forged".into());
    forged.insert("prev".into(), GENESIS.into());
    let (fl, _) = encode_line(&forged, GENESIS);
    let mut v = ls.clone();
    v.insert(2, fl);
    assert!(parse_line(&v[2][..v[2].len() - 1]).is_ok());
    let (line, kind, msg) = first_break(&join(&v));
    assert_eq!((line, kind), (3, BreakKind::Inserted), "{msg}");

    // Insert a forged line that does chain from line 2: the break shows at line 4, and is
    // reported at the inserted line.
    let p2 = parse_line(&ls[1][..ls[1].len() - 1]).unwrap();
    let mut forged = parse_line(&ls[2][..ls[2].len() - 1]).unwrap().record;
    forged.insert("reason".into(), "forged".into());
    let (fl, _) = encode_line(&forged, &p2.hash);
    let mut v = ls.clone();
    v.insert(2, fl);
    let (line, kind, msg) = first_break(&join(&v));
    assert_eq!((line, kind), (3, BreakKind::Inserted), "{msg}");
    assert!(
        msg.contains("line 4 continues the chain from line 2"),
        "{msg}"
    );

    // Swap lines 3 and 4.
    let mut v = ls.clone();
    v.swap(2, 3);
    let (line, kind, msg) = first_break(&join(&v));
    assert_eq!((line, kind), (3, BreakKind::Reordered), "{msg}");

    // Move line 3 to the end.
    let mut v = ls.clone();
    let l3 = v.remove(2);
    v.push(l3);
    let (line, kind, _) = first_break(&join(&v));
    assert_eq!((line, kind), (3, BreakKind::Reordered));

    // Copy a line.
    let mut v = ls.clone();
    v.insert(3, ls[2].clone());
    let (line, kind, _) = first_break(&join(&v));
    assert_eq!((line, kind), (4, BreakKind::Duplicated));

    // Truncate the last line mid-way.
    let cut = orig.len() - ls[5].len() / 2;
    let (line, kind, msg) = first_break(&orig[..cut]);
    assert_eq!((line, kind), (6, BreakKind::TornTail), "{msg}");
    assert!(msg.starts_with("line 6: torn tail"), "{msg}");
    // Only the newline removed: still torn (a record must end with a newline).
    let (line, kind, _) = first_break(&orig[..orig.len() - 1]);
    assert_eq!((line, kind), (6, BreakKind::TornTail));

    // Junk in the middle.
    let mut v = ls.clone();
    v.insert(1, b"hello\n".to_vec());
    let (line, kind, msg) = first_break(&join(&v));
    assert_eq!((line, kind), (2, BreakKind::InvalidRecord), "{msg}");

    // Whitespace is an edit too.
    let mut v = ls.clone();
    v[1] = String::from_utf8(v[1].clone())
        .unwrap()
        .replacen("{\"", "{ \"", 1)
        .into_bytes();
    let (line, kind, _) = first_break(&join(&v));
    assert_eq!((line, kind), (2, BreakKind::Edited));

    // The original still verifies, and the exit code says so.
    assert!(verify_bytes(&orig).error.is_none());
    std::fs::write(&path, join(&ls[1..])).unwrap();
    assert_eq!(verify(&[path]).exit_code(), 1);
}

#[test]
fn concurrent_writers_form_one_chain() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || write_session(&path, 200).session_id().to_string())
        })
        .collect();
    let sessions: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let data = std::fs::read(&path).unwrap();
    let r = verify_bytes(&data);
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.records, 4 * 202);
    assert_eq!(r.counts["decision"], 800);
    assert_eq!(r.counts["session_start"], 4);
    assert_eq!(r.counts["session_end"], 4);
    // The sessions really interleaved (or at least each wrote its own records).
    let text = String::from_utf8(data).unwrap();
    for s in &sessions {
        assert_eq!(text.matches(s.as_str()).count(), 202);
    }
    python_verifies(&path, true);
}

#[test]
fn torn_tail_is_an_error_until_the_next_session_recovers_it() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    write_session(&path, 2); // 4 lines
    let torn = b"{\"kind\":\"decision\",\"seq\":5,\"par";
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, torn).unwrap();
    drop(f);
    let r = verify(std::slice::from_ref(&path));
    assert_eq!(r.exit_code(), 1);
    assert_eq!(r.files[0].error.as_ref().unwrap().kind, BreakKind::TornTail);
    assert!(r.render().contains("line 5: torn tail"), "{}", r.render());
    python_verifies(&path, false);

    let offset = std::fs::metadata(&path).unwrap().len() - torn.len() as u64;
    write_session(&path, 1); // recovery + 3 lines
    let data = std::fs::read(&path).unwrap();
    let r = verify_bytes(&data);
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(
        r.warnings,
        vec![format!(
            "line 5: torn line ({} bytes at offset {offset}), recovered by line 6",
            torn.len()
        )]
    );
    assert_eq!(r.counts["recovery"], 1);
    let text = String::from_utf8(data.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[4].as_bytes(), torn); // the evidence is kept
    let rec: Value = serde_json::from_str(lines[5]).unwrap();
    assert_eq!(rec["kind"], "recovery");
    assert_eq!(rec["seq"], 5);
    assert_eq!(
        rec["prev"],
        serde_json::from_str::<Value>(lines[3]).unwrap()["hash"]
    );
    assert_eq!(rec["torn"][0]["offset"], offset);
    python_verifies(&path, true);

    // Changing the torn bytes afterwards is detected.
    let tampered = text.replacen("\"par\n", "\"pat\n", 1);
    assert_eq!(first_break(tampered.as_bytes()).1, BreakKind::Edited);
}

#[test]
fn a_crash_during_recovery_is_recovered_too() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    write_session(&path, 1);
    // Torn line, terminated by a recovery that itself was torn.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"a\n{\"kind\":\"recov").unwrap();
    drop(f);
    let mut log = AuditLog::open(&path, true).unwrap();
    log.record(&Record::SessionEnd(SessionEnd::default()))
        .unwrap();
    let r = verify_bytes(&std::fs::read(&path).unwrap());
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!(
        r.warnings
            .iter()
            .filter(|w| w.contains("recovered by line 6"))
            .count(),
        2,
        "{:?}",
        r.warnings
    );
    python_verifies(&path, true);
}

#[test]
fn a_file_that_is_not_an_audit_log_is_not_appended_to() {
    let d = tmp();
    let path = d.path().join("notes.txt");
    std::fs::write(&path, "hello\nworld\n").unwrap();
    assert!(matches!(
        AuditLog::open(&path, false),
        Err(AuditError::NotAnAuditLog(_))
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello\nworld\n");
}

#[test]
fn another_writer_between_my_records_is_picked_up() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    let p = policy("name: t\n");
    let argv = vec!["s".to_string()];
    let mut a = AuditLog::open(&path, false).unwrap();
    let mut b = AuditLog::open(&path, false).unwrap();
    assert_eq!(a.record(&start(&argv, &p)).unwrap(), 1);
    assert_eq!(b.record(&start(&argv, &p)).unwrap(), 2);
    assert_eq!(
        a.record(&Record::SessionEnd(SessionEnd::default()))
            .unwrap(),
        3
    );
    assert_eq!(
        a.record(&Record::SessionEnd(SessionEnd::default()))
            .unwrap(),
        4
    );
    assert_eq!(
        b.record(&Record::SessionEnd(SessionEnd::default()))
            .unwrap(),
        5
    );
    assert!(verify_bytes(&std::fs::read(&path).unwrap()).error.is_none());
}

#[test]
fn redaction_keeps_the_digest() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    let p = policy("name: t\naudit:\n  redact: [note]\n");
    let mut log = AuditLog::open_for_policy(&path, &p).unwrap();
    let params = json!({"name": "write_file", "arguments": {"path": "/tmp/x", "content": "s3cr3t body", "note": {"n": 1}, "headers": {"Authorization": "Bearer abc"}}});
    let dec = decision(true);
    log.record(&decision_record(
        Direction::ClientToServer,
        None,
        Some(params.clone()),
        dec.clone(),
        None,
        1,
    ))
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("s3cr3t") && !text.contains("Bearer abc"),
        "{text}"
    );
    let rec: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let args = &rec["params"]["arguments"];
    assert_eq!(args["path"], "/tmp/x");
    assert_eq!(
        args["content"]["redacted"],
        format!("sha256:{}", canon::sha256_hex(b"\"s3cr3t body\""))
    );
    assert_eq!(
        args["note"]["redacted"],
        format!("sha256:{}", canon::sha256_hex(b"{\"n\":1}"))
    );
    assert_eq!(
        args["headers"]["Authorization"]["redacted"],
        format!("sha256:{}", canon::sha256_hex(b"\"Bearer abc\""))
    );
    assert!(rec.get("id").is_none()); // a notification has no id
    assert!(verify_bytes(text.as_bytes()).error.is_none());
}

#[test]
fn show_table_and_filters() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    write_session(&path, 4);
    let all = show(&path, &ShowFilter::default(), false).unwrap();
    let rows: Vec<&str> = all.lines().collect();
    assert_eq!(rows.len(), 7, "{all}");
    assert!(rows[0].starts_with("TIME") && rows[0].contains("REASON"));
    assert!(
        rows[1].contains("start") && rows[1].contains("policy t"),
        "{}",
        rows[1]
    );
    assert!(
        rows[3].contains(" deny ") && rows[3].contains("read_file") && rows[3].contains("deny[0]"),
        "{}",
        rows[3]
    );
    let denied = show(
        &path,
        &ShowFilter {
            verdict: Some("deny".into()),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    assert_eq!(denied.lines().count(), 3, "{denied}");
    let json = show(
        &path,
        &ShowFilter {
            tool: Some("read_file".into()),
            ..Default::default()
        },
        true,
    )
    .unwrap();
    assert_eq!(json.lines().count(), 4);
    assert!(json
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    let later = show(
        &path,
        &ShowFilter {
            since: Some("2999".into()),
            ..Default::default()
        },
        false,
    )
    .unwrap();
    assert_eq!(later.lines().count(), 1);
}

// ---- replay ----------------------------------------------------------------------------

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn dirs() -> Dirs {
    let t = tmp();
    let root = t.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("pub")).unwrap();
    Dirs { _tmp: t, root }
}

/// The whole root read-write.
fn permissive(d: &Dirs) -> Policy {
    policy(&format!(
        "name: permissive\nfilesystem:\n  mounts:\n    - path: {}\n      mode: rw\n",
        d.root.display()
    ))
}

/// Only `pub`, read-only.
fn strict(d: &Dirs) -> Policy {
    policy(&format!(
        "name: strict-ro\nfilesystem:\n  mounts:\n    - path: {}/pub\n      mode: ro\n",
        d.root.display()
    ))
}

/// Record four calls under `p`, deciding them for real with the filesystem profile.
fn record_calls(d: &Dirs, p: &Policy, path: &Path) {
    let fs = builtin_profiles()
        .iter()
        .find(|x| x.name == "filesystem")
        .cloned()
        .unwrap();
    let catalog = StaticCatalog {
        name: Some("filesystem".into()),
        tools: fs.tools.clone(),
    };
    let paths = PathContext {
        cwd: d.root.clone(),
        home: None,
        ..Default::default()
    };
    let ctx = Context {
        policy: p,
        catalog: &catalog,
        paths: &paths,
        world: &RealWorld,
    };
    let argv = vec![
        "npx".to_string(),
        "@modelcontextprotocol/server-filesystem".to_string(),
    ];
    let mut log = AuditLog::open_for_policy(path, p).unwrap();
    log.record(&Record::SessionStart(Box::new(SessionStart {
        argv: argv.clone(),
        policy: std::sync::Arc::new(p.clone()),
        mode: "proxy".into(),
        kernel: "none".into(),
        cwd: d.root.clone(),
        home: None,
        profile: Some("filesystem".into()),
    })))
    .unwrap();
    let r = d.root.display();
    let calls = [
        json!({"name": "read_file", "arguments": {"path": format!("{r}/pub/a.txt")}}),
        json!({"name": "write_file", "arguments": {"path": format!("{r}/pub/a.txt"), "content": "x"}}),
        json!({"name": "read_file", "arguments": {"path": "secret.txt"}}), // relative to the server's cwd
        json!({"name": "read_file", "arguments": {"path": "/etc/passwd"}}),
    ];
    for (i, params) in calls.iter().enumerate() {
        let dec = decide(&ctx, "tools/call", Some(params));
        let spec = &fs.tools[dec.tool.as_deref().unwrap()];
        let id = json!(i + 1);
        log.record(&decision_record(
            Direction::ClientToServer,
            Some(id.clone()),
            Some(params.clone()),
            dec.clone(),
            Some(std::sync::Arc::new(spec.clone())),
            3,
        ))
        .unwrap();
    }
    log.record(&Record::SessionEnd(SessionEnd {
        exit_code: Some(0),
        signal: None,
    }))
    .unwrap();
}

#[test]
fn replay_under_a_stricter_policy_reports_allowed_to_denied() {
    let d = dirs();
    let path = d.root.join("audit.jsonl");
    record_calls(&d, &permissive(&d), &path);
    // Recorded (by hand): 1 allow, 2 allow, 3 allow, 4 deny (outside the root).
    let verdicts: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["verdict"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(verdicts, ["allow", "allow", "allow", "deny"]);

    let r = replay(&path, &strict(&d)).unwrap();
    // Under strict-ro: 1 allow (read in pub), 2 deny (pub is read-only), 3 deny (outside pub),
    // 4 deny: two changes, both allowed -> denied.
    assert_eq!(
        (r.replayed, r.unchanged, r.changes.len()),
        (4, 2, 2),
        "{}",
        r.render()
    );
    let root_rule = RuleId::Policy(format!("filesystem.mounts[{}]", d.root.display()));
    let c = &r.changes[0];
    assert_eq!(
        (c.line, c.seq, c.tool.as_deref()),
        (3, 3, Some("write_file"))
    );
    assert_eq!(c.before, ("allow".to_string(), root_rule.clone()));
    assert_eq!(c.after, ("deny".to_string(), RuleId::FilesystemMounts));
    assert!(c.reason.contains("read-only mount"), "{}", c.reason);
    let c = &r.changes[1];
    assert_eq!((c.line, c.tool.as_deref()), (4, Some("read_file")));
    assert_eq!(c.before, ("allow".to_string(), root_rule));
    assert!(
        c.reason.contains("outside the allowed mounts"),
        "{}",
        c.reason
    );
    assert!(r.skipped.is_empty() && r.verify_error.is_none());
    assert_eq!(r.exit_code(), 0);
    assert!(
        r.render()
            .contains("2 unchanged, 2 now denied, 0 now allowed"),
        "{}",
        r.render()
    );
}

#[test]
fn replay_under_a_looser_policy_reports_denied_to_allowed_and_fails() {
    let d = dirs();
    let path = d.root.join("audit.jsonl");
    record_calls(&d, &strict(&d), &path);
    let r = replay_bytes(&std::fs::read(&path).unwrap(), &permissive(&d), &RealWorld);
    // Recorded under strict-ro: allow, deny, deny, deny. Under permissive: allow, allow,
    // allow, deny. Calls 2 and 3 become allowed.
    assert_eq!((r.replayed, r.unchanged), (4, 2));
    let newly: Vec<(usize, &str)> = r
        .changes
        .iter()
        .filter(|c| c.newly_allowed())
        .map(|c| (c.line, c.tool.as_deref().unwrap()))
        .collect();
    assert_eq!(newly, [(3, "write_file"), (4, "read_file")]);
    assert_eq!(r.exit_code(), 1);
    assert!(r.render().contains("line 3 seq 3: tools/call write_file: denied (filesystem.mounts) -> allowed (filesystem.mounts["), "{}", r.render());
}

#[test]
fn replay_skips_decisions_that_depend_on_redacted_values() {
    let d = dirs();
    let path = d.root.join("audit.jsonl");
    let mut p = permissive(&d);
    p.audit.redact = vec!["path".into()];
    record_calls(&d, &p, &path);
    let r = replay_bytes(&std::fs::read(&path).unwrap(), &strict(&d), &RealWorld);
    assert_eq!((r.replayed, r.skipped.len()), (0, 4), "{}", r.render());
    assert!(
        r.skipped[0].contains("argument `path` is redacted"),
        "{:?}",
        r.skipped
    );
}

#[test]
fn replay_warns_about_a_broken_chain() {
    let d = dirs();
    let path = d.root.join("audit.jsonl");
    record_calls(&d, &permissive(&d), &path);
    let data = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"latency_us\":3", "\"latency_us\":4");
    let r = replay_bytes(data.as_bytes(), &strict(&d), &RealWorld);
    assert!(r.verify_error.as_deref().unwrap().contains("record edited"));
    assert!(r.render().starts_with("warning: the log does not verify"));
}

// ---- the independent verifier ------------------------------------------------------------

/// The Python program in docs/audit-format.md.
fn python_verifier() -> &'static str {
    let doc = include_str!("../../docs/audit-format.md");
    let start = doc
        .find("```python\n")
        .expect("docs/audit-format.md has a python block")
        + "```python\n".len();
    let len = doc[start..].find("```").unwrap();
    &doc[start..start + len]
}

/// Run it on `path`; `None` (with a visible message) when python3 is missing.
fn python_verifies(path: &Path, expect_ok: bool) -> Option<String> {
    let out = match std::process::Command::new("python3")
        .arg("-c")
        .arg(python_verifier())
        .arg(path)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED: the independent Python verifier did not run (python3: {e})");
            return None;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.success(),
        expect_ok,
        "python verifier on {}: {text}",
        path.display()
    );
    Some(text)
}

#[test]
fn the_documented_python_verifier_agrees() {
    assert!(python_verifier().lines().count() <= 16);
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    write_session(&path, 5);
    // Unicode, control characters and floats in params are hashed as written.
    let mut log = AuditLog::open(&path, false).unwrap();
    let params = json!({"name": "t", "arguments": {"s": "é\u{1}\"\\/\u{2028}😀", "f": 1.5e300, "n": -0.0, "big": 18446744073709551615u64}});
    let dec = decision(true);
    log.record(&decision_record(
        Direction::ServerToClient,
        Some(json!("x").clone()),
        Some(params.clone()),
        dec.clone(),
        None,
        0,
    ))
    .unwrap();
    let Some(out) = python_verifies(&path, true) else {
        return;
    };
    let head = verify_bytes(&std::fs::read(&path).unwrap()).head;
    assert_eq!(out.trim(), format!("OK: 8 records, head {head}"));

    // And it rejects what verify rejects.
    let data = std::fs::read_to_string(&path).unwrap();
    let cases = [
        data.replacen("\"latency_us\":7", "\"latency_us\":8", 1),
        data.lines()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, l)| format!("{l}\n"))
            .collect(),
        data[..data.len() - 10].to_string(),
    ];
    for (i, bad) in cases.iter().enumerate() {
        let p = d.path().join(format!("bad{i}.jsonl"));
        std::fs::write(&p, bad).unwrap();
        assert!(verify_bytes(bad.as_bytes()).error.is_some());
        python_verifies(&p, false);
    }
}

/// Not a benchmark, a guard: per-record cost stays in the tens of microseconds.
#[test]
fn record_cost() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, false).unwrap();
    let dec = decision(true);
    let params = json!({"name": "read_file", "arguments": {"path": "/srv/some/file.txt"}});
    let n = 2000;
    let t = std::time::Instant::now();
    for i in 0..n {
        let id = json!(i);
        log.record(&decision_record(
            Direction::ClientToServer,
            Some(id.clone()),
            Some(params.clone()),
            dec.clone(),
            None,
            1,
        ))
        .unwrap();
    }
    let per = t.elapsed().as_micros() / n;
    eprintln!(
        "audit record cost: {per} µs per record ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    assert!(per < 2_000, "{per} µs per record");
}

#[test]
fn filters_and_approvals_are_recorded_and_counted() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, false).unwrap();
    let id = json!(9);
    log.record(&Record::Filter(FilterRecord {
        id: Some(id.clone()),
        method: Some("tools/list".into()),
        ..FilterRecord::new(
            Direction::ServerToClient,
            false,
            "hid 2 blocked tools".into(),
        )
    }))
    .unwrap();
    log.record(&Record::Approval(Box::new(ApprovalRecord {
        id: Some(id.clone()),
        method: "tools/call".into(),
        tool: Some("rm".into()),
        rule: RuleId::Policy("require_approval[0]".into()),
        granted: false,
        by: "terminal".into(),
        question: "capjail: approve rm?".into(),
        answer: "deny".into(),
        elapsed_ms: 1200,
        at: std::time::SystemTime::now(),
    })))
    .unwrap();
    log.record(&Record::SessionEnd(SessionEnd {
        exit_code: None,
        signal: Some(15),
    }))
    .unwrap();
    assert_eq!(
        log.counts(),
        Counts {
            allowed: 0,
            denied: 0,
            filtered: 1
        }
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        (
            recs[0]["kind"].as_str(),
            recs[0]["action"].as_str(),
            recs[0]["direction"].as_str()
        ),
        (
            Some("response_filter"),
            Some("altered"),
            Some("server_to_client")
        )
    );
    assert_eq!(
        (recs[1]["kind"].as_str(), recs[1]["verdict"].as_str()),
        (Some("approval"), Some("deny"))
    );
    assert_eq!(
        (recs[2]["filtered"].as_u64(), recs[2]["signal"].as_i64()),
        (Some(1), Some(15))
    );
    let r = verify_bytes(text.as_bytes());
    assert!(r.error.is_none() && r.counts["approval"] == 1 && r.counts["response_filter"] == 1);
    let table = show(&path, &ShowFilter::default(), false).unwrap();
    assert!(
        table.contains("altered") && table.contains("hid 2 blocked tools"),
        "{table}"
    );
}

/// Run as a child process by `two_processes_form_one_chain` (a no-op otherwise).
#[test]
fn child_writer() {
    if let Ok(path) = std::env::var("CAPJAIL_AUDIT_TEST_CHILD") {
        write_session(Path::new(&path), 200);
    }
}

#[test]
fn two_processes_form_one_chain() {
    let d = tmp();
    let path = d.path().join("audit.jsonl");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "audit::tests_log::child_writer",
                    "--test-threads=1",
                ])
                .env("CAPJAIL_AUDIT_TEST_CHILD", &path)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    write_session(&path, 200); // and this process too
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let r = verify_bytes(&std::fs::read(&path).unwrap());
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!((r.records, r.counts["session_start"]), (3 * 202, 3));
    let pids: std::collections::BTreeSet<u64> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).unwrap()["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 3);
}

/// The root read-write, with writes gated by a person.
fn gated(d: &Dirs) -> Policy {
    policy(&format!(
        "name: gated\nfilesystem:\n  mounts:\n    - path: {}\n      mode: rw\nrequire_approval:\n- capability: filesystem.write\n",
        d.root.display()
    ))
}

#[test]
fn replay_treats_approval_gated_decisions_as_asked() {
    let d = dirs();
    let path = d.root.join("audit.jsonl");
    record_calls(&d, &gated(&d), &path);
    // Under gated: the write (line 3) was asked for; under permissive it is simply allowed:
    // nobody would be asked any more, which widens the policy.
    let r = replay_bytes(&std::fs::read(&path).unwrap(), &permissive(&d), &RealWorld);
    let c = r
        .changes
        .iter()
        .find(|c| c.line == 3)
        .unwrap_or_else(|| panic!("{}", r.render()));
    assert_eq!(
        c.before,
        (
            "ask".to_string(),
            RuleId::Policy("require_approval[0]".into())
        )
    );
    assert_eq!(c.after.0, "allow");
    assert!(c.newly_allowed());
    assert_eq!(r.exit_code(), 1);
    assert!(
        r.render()
            .contains("asked for approval (require_approval[0]) -> allowed"),
        "{}",
        r.render()
    );
    // Replayed under the same policy: asked then, asked now, unchanged.
    let r = replay_bytes(&std::fs::read(&path).unwrap(), &gated(&d), &RealWorld);
    assert!(r.changes.is_empty(), "{}", r.render());
    // Under strict-ro the write is refused outright: a change, but not a widening.
    let r = replay_bytes(&std::fs::read(&path).unwrap(), &strict(&d), &RealWorld);
    let c = r.changes.iter().find(|c| c.line == 3).unwrap();
    assert_eq!((c.before.0.as_str(), c.after.0.as_str()), ("ask", "deny"));
    assert!(!c.newly_allowed());
}

// ----- rotation and the head file (issue 12) ---------------------------------------------------

fn write_rotating(path: &Path, n: usize, rot: rotated::Rotation) {
    let p = policy("name: t\n");
    let argv = vec!["server".to_string()];
    std::fs::write(path, "").unwrap();
    let mut log = AuditLog::open(path, false).unwrap();
    log.set_rotation(Some(rot));
    log.record(&start(&argv, &p)).unwrap();
    for i in 0..n {
        let d = decision(i % 2 == 0);
        let params = json!({"name": "read_file", "arguments": {"path": format!("/srv/{i}")}});
        let id = json!(i);
        log.record(&decision_record(
            Direction::ClientToServer,
            Some(id.clone()),
            Some(params.clone()),
            d.clone(),
            None,
            7,
        ))
        .unwrap();
    }
    log.record(&Record::SessionEnd(SessionEnd {
        exit_code: Some(0),
        signal: None,
    }))
    .unwrap();
}

fn errors(r: &VerifyReport) -> Vec<String> {
    r.files
        .iter()
        .filter_map(|f| {
            f.error
                .as_ref()
                .map(|b| format!("{}: {}", f.path.display(), b.message))
        })
        .collect()
}

#[test]
fn rotation_continues_the_chain_and_verify_checks_the_whole_set() {
    let t = tmp();
    let path = t.path().join("audit.jsonl");
    write_rotating(
        &path,
        40,
        rotated::Rotation {
            max_bytes: 2000,
            keep: 100,
        },
    );
    let set = rotated::set_of(&path);
    assert!(set.len() >= 3, "{set:?}");
    assert!(std::fs::metadata(&path).unwrap().len() < 4000);
    let r = verify(std::slice::from_ref(&path));
    assert!(r.ok(), "{}", r.render());
    assert_eq!(r.files.len(), set.len());
    assert_eq!(
        r.files.iter().map(|f| f.records).sum::<u64>(),
        42 + set.len() as u64 - 1
    );
    // Every file but the oldest starts with a rotation record that names the file before.
    let live = std::fs::read(&path).unwrap();
    let first = parse_line(lines_of(&live)[0].strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(first.kind, "rotation");
    assert_eq!(first.prev, r.files[r.files.len() - 2].head);

    // A missing file in the middle breaks the set.
    let middle = &set[set.len() - 2];
    let saved = std::fs::read(middle).unwrap();
    std::fs::remove_file(middle).unwrap();
    let r = verify(std::slice::from_ref(&path));
    assert!(!r.ok());
    assert!(
        errors(&r).iter().any(|e| e.contains("missing")),
        "{}",
        r.render()
    );
    std::fs::write(middle, &saved).unwrap();
    assert!(verify(std::slice::from_ref(&path)).ok());
    // The newest rotated file dropped and the older ones renumbered (here: .2 copied over .1):
    // the live file does not continue what is there.
    std::fs::copy(
        rotated::rotated_name(&path, 2),
        rotated::rotated_name(&path, 1),
    )
    .unwrap();
    let r = verify(std::slice::from_ref(&path));
    assert!(
        errors(&r).iter().any(|e| e.contains("does not continue")),
        "{}",
        r.render()
    );
}

#[test]
fn keep_bounds_the_files_and_the_oldest_kept_says_where_it_starts() {
    let t = tmp();
    let path = t.path().join("audit.jsonl");
    write_rotating(
        &path,
        60,
        rotated::Rotation {
            max_bytes: 1500,
            keep: 2,
        },
    );
    let set = rotated::set_of(&path);
    assert_eq!(set.len(), 3, "{set:?}");
    let r = verify(std::slice::from_ref(&path));
    assert!(r.ok(), "{}", r.render());
    assert!(
        r.files[0].warnings.iter().any(|w| w.contains("audit.keep")),
        "{}",
        r.render()
    );
}

#[test]
fn records_deleted_from_the_end_are_noticed_through_the_head_file() {
    let t = tmp();
    let path = t.path().join("audit.jsonl");
    write_session(&path, 6);
    let r = verify(std::slice::from_ref(&path));
    assert!(r.ok(), "{}", r.render());
    let data = std::fs::read(&path).unwrap();
    let lines = lines_of(&data);
    // Drop the last two whole records: the chain alone is intact.
    let cut: Vec<u8> = lines[..lines.len() - 2].concat();
    assert!(verify_bytes(&cut).error.is_none());
    std::fs::write(&path, &cut).unwrap();
    let r = verify(std::slice::from_ref(&path));
    let e = errors(&r);
    assert!(
        e.iter()
            .any(|e| e.contains("truncated") && e.contains("2 record(s)")),
        "{}",
        r.render()
    );
    assert_eq!(
        r.files[0].error.as_ref().unwrap().kind,
        BreakKind::Truncated
    );
    // Without the head file it is only the documented warning.
    std::fs::remove_file(rotated::head_path(&path)).unwrap();
    assert!(verify(std::slice::from_ref(&path)).ok());
}
