//! Cost of one audit record, the way the proxy writes it for an allowed `tools/call`
//! (`cargo bench --bench audit_record`). Prints ns per record for: building the record,
//! encoding + hashing it, and the whole `AuditLog::record` (lock, write) into a temp file.
//! Never part of the tests.

use std::hint::black_box;
use std::time::Instant;

use capjail::audit::{AuditLog, DecisionRecord, Direction, Record};
use capjail::check::decide::{Decision, Verdict};
use serde_json::json;

const N: u32 = 200_000;

fn per_record(label: &str, n: u32, mut f: impl FnMut()) {
    for _ in 0..n / 10 {
        f(); // warm up
    }
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("{label:<40} {ns:>8.0} ns/record");
}

fn main() {
    let params = json!({"name": "echo", "arguments": {"message": "x".repeat(120)}});
    let id = json!(42);
    let decision = Decision {
        verdict: Verdict::Allow,
        method: "tools/call".into(),
        tool: Some("echo".into()),
        accesses: Default::default(),
        rule: capjail::policy::RuleId::ToolsAllowed,
        denial: None,
    };
    let event = Record::Decision(Box::new(DecisionRecord {
        latency_us: 3,
        ..DecisionRecord::new(Direction::ClientToServer, Some(id), Some(params), decision)
    }));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, false).expect("open audit log");
    per_record("AuditLog::record (file, no fsync)", N, || {
        black_box(log.record(black_box(&event)).expect("record"));
    });
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("bytes per record: {}", size / u64::from(N + N / 10));
}
