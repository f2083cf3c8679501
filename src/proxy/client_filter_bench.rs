//! The client thread's cost per allowed `tools/call` (issue 19), in process:
//! `cargo test --release --lib client_filter::bench -- --ignored --nocapture`.
//!
//! A session set up like `capjail run --mode proxy --audit off` under the load generator's
//! realistic policy (explicit mounts, no network, a blocklist; content checks at their
//! defaults; pinning on with no pins file), its server having described `echo` by its
//! `inputSchema` only. Each call is judged by [`Session::on_client_message`] (timed, its
//! heap allocations counted) and then answered by the server (not timed), as under load.
//! With `BENCH_ANSWER=0` (no answers; the ids in flight are forgotten instead) the round's
//! thread CPU time is the client side's alone: wall-clock timings are noisy on a shared
//! machine. `BENCH_OWNED=1` reads every line the owned way (a tree of the whole message
//! first), as before issue 19.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::super::catalog::SessionCatalog;
use super::super::framing::LineFacts;
use super::super::outbox::Outbox;
use super::super::pipeline::{Output, Session};
use super::super::recorder::Recorder;
use super::{ClientFilter, Shared};
use crate::check::path::PathContext;
use crate::check::RealWorld;
use crate::policy::{load_str, PolicySource};

/// Counts the allocations of the whole test binary (only read around the timed calls), and
/// each thread's own.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's allocations (const, no destructor: read inside the allocator).
    static THREAD_ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count() {
    ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    let _ = THREAD_ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

/// The allocations this thread made so far.
fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(|n| n.get())
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// CPU time of this thread (wall-clock time counts the other helpers' work on a shared machine).
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime into a zeroed timespec.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The load generator's call (`capjail-bench` `call()`), without its newline.
fn call(id: usize) -> Vec<u8> {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"message\":\"hello from the load client, a message of about two hundred bytes\",\"bytes\":0}}}}}}").into_bytes()
}

fn session(dir: &std::path::Path) -> Session {
    let yaml = format!(
        "name: bench-realistic\nproxy: {{grace_seconds: 0.2}}\nfilesystem:\n  mode: explicit\n  mounts:\n    - {{path: {p}/project, mode: rw}}\n    - {{path: {p}/data, mode: ro}}\nnetwork: {{mode: none}}\ntools: {{mode: blocklist, blocked: [execute_command, run_shell]}}\n",
        p = dir.display()
    );
    let policy = Arc::new(load_str(&yaml, PolicySource::Inline).unwrap());
    let argv = vec!["bench-echo".to_string()];
    let shared = Arc::new(Mutex::new(Shared::new(SessionCatalog::new(None, &argv))));
    let recorder = Recorder::new(None);
    shared.lock().unwrap().trust = Some(
        crate::trust::TrustSession::new(
            &policy.trust,
            crate::trust::session::PinsConfig {
                file: None,
                frozen: false,
            },
            crate::trust::identity::identify(&argv),
            recorder.clone(),
        )
        .unwrap(),
    );
    let outbox = Outbox::discarding();
    let approvals = crate::approval::for_policy(&policy, &outbox);
    let paths = PathContext {
        cwd: dir.to_path_buf(),
        home: std::env::var_os("HOME").map(Into::into),
        env: Some(std::env::vars().collect()),
        ..Default::default()
    };
    let mut filter = ClientFilter::new(
        policy,
        paths,
        Box::new(RealWorld),
        shared,
        recorder,
        outbox,
        approvals,
    );
    // BENCH_OWNED=1: every line read into an owned tree first (the path before issue 19).
    filter.owned_parse = std::env::var("BENCH_OWNED").is_ok_and(|v| v == "1");
    Session::new(filter, true)
}

/// Judge one client line as the pump does (its records written first); returns whether it
/// was forwarded.
fn client(s: &Session, line: &[u8]) -> bool {
    let mut forwarded = false;
    // As the pump: one buffer of outputs for every line.
    thread_local! {
        static OUTPUTS: std::cell::RefCell<Vec<Output>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut outputs = OUTPUTS.with_borrow_mut(std::mem::take);
    s.on_client_message_into(line, &mut outputs).unwrap();
    for o in outputs.drain(..) {
        match o {
            Output::Record(r) => s.record(r).unwrap(),
            Output::Forward => forwarded = true,
            _ => {}
        }
    }
    OUTPUTS.with_borrow_mut(|o| *o = outputs);
    forwarded
}

fn server(s: &Session, line: &str) {
    for o in s.on_server_message(line.as_bytes()) {
        if let Output::Record(r) = o {
            s.record(r).unwrap();
        }
    }
}

/// The session of [`session`] after `initialize` and a tools listing that describes `echo`.
fn warm_session(dir: &std::path::Path) -> Session {
    let s = session(dir);
    assert!(client(&s, br#"{"jsonrpc":"2.0","id":"i","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"b","version":"1"}}}"#));
    server(
        &s,
        r#"{"jsonrpc":"2.0","id":"i","result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"bench-echo","version":"1"}}}"#,
    );
    client(
        &s,
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert!(client(
        &s,
        br#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#
    ));
    server(
        &s,
        r#"{"jsonrpc":"2.0","id":"l","result":{"tools":[{"name":"echo","inputSchema":{"type":"object","properties":{"message":{"type":"string"},"bytes":{"type":"integer"}}}}]}}"#,
    );
    s
}

/// The echo server's answer to call `id`.
fn answer(id: usize) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"echo: the quick brown fox\"}}]}}}}")
}

/// A small allowed call and its answer make no heap allocation once the session is warm
/// (issue 19: no per-message allocation on the hot path): the call's params are read into
/// the last call's tree, its decision holds its access and tool name inline and is built in
/// the last call's record, the session's maps keep their room; the answer's checks read it
/// in place. (The allocations counted are this thread's: the test judges both directions
/// on it, as the pumps do on theirs.)
#[test]
fn a_warm_session_judges_a_small_call_and_its_answer_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let s = warm_session(dir.path());
    let mut out = Vec::new();
    // The first calls make what the later ones reuse.
    for id in 0..50 {
        round_trip(&s, &call(id), &answer(id), &mut out);
    }
    let calls: Vec<(Vec<u8>, String)> = (50..250).map(|id| (call(id), answer(id))).collect();
    let before = thread_allocations();
    for (line, answer) in &calls {
        round_trip(&s, line, answer, &mut out);
    }
    let made = thread_allocations() - before;
    assert_eq!(
        made, 0,
        "{made} allocations for 200 calls and their answers"
    );
}

/// Judge an allowed call and its answer as the pumps do (`out`: the server pump's buffer).
fn round_trip(s: &Session, line: &[u8], answer: &str, out: &mut Vec<Output>) {
    assert!(client(s, line));
    s.on_server_message_into(answer.as_bytes(), LineFacts::default(), out);
    for o in out.drain(..) {
        match o {
            Output::Record(r) => s.record(r).unwrap(),
            Output::Forward => {}
            other => panic!("{answer}: {other:?}"),
        }
    }
}

#[test]
#[ignore]
fn bench() {
    // What each move of a record on its way to the audit queue copies.
    eprintln!(
        "sizes: Record {} bytes, DecisionRecord {}, Decision {}, Output {}",
        std::mem::size_of::<crate::audit::Record>(),
        std::mem::size_of::<crate::audit::DecisionRecord>(),
        std::mem::size_of::<crate::check::decide::Decision>(),
        std::mem::size_of::<Output>()
    );
    let dir = tempfile::tempdir().unwrap();
    let s = warm_session(dir.path());
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let lines: Vec<Vec<u8>> = (0..n).map(call).collect();
    let answers: Vec<String> = (0..n)
        .map(|i| format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"echo: the quick brown fox\"}}]}}}}"))
        .collect();
    // BENCH_ANSWER=0: no server answers (for `perf stat` of the client side alone).
    let answered = std::env::var("BENCH_ANSWER").map_or(true, |v| v != "0");
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // What the strict parse alone costs of it (BENCH_PARSE=0: not measured, e.g. under
    // `valgrind --tool=callgrind --toggle-collect='*bench*client*'`, which counts the
    // instructions of the judged calls exactly on a loaded machine).
    let parse_rounds = if std::env::var("BENCH_PARSE").is_ok_and(|v| v == "0") {
        0
    } else {
        rounds
    };
    for round in 0..parse_rounds {
        let cpu = thread_cpu();
        for line in &lines {
            std::hint::black_box(crate::jsonrpc::parse_strict(line, 64).unwrap());
        }
        eprintln!(
            "round {round}: parse_strict alone {:.0} ns/call (thread CPU)",
            (thread_cpu() - cpu).as_nanos() as f64 / n as f64
        );
        let a = ALLOCATIONS.load(Ordering::Relaxed);
        let cpu = thread_cpu();
        for line in &lines {
            std::hint::black_box(crate::jsonrpc::parse_message(line, 64).unwrap());
        }
        let cpu = thread_cpu() - cpu;
        eprintln!(
            "round {round}: parse_message alone {:.0} ns/call (thread CPU), {:.1} allocations/call (the tree of params)",
            cpu.as_nanos() as f64 / n as f64,
            (ALLOCATIONS.load(Ordering::Relaxed) - a) as f64 / n as f64
        );
    }
    for round in 0..rounds {
        let mut spent = Duration::ZERO;
        let mut allocations = 0;
        let cpu = thread_cpu();
        for (line, answer) in lines.iter().zip(&answers) {
            let a = ALLOCATIONS.load(Ordering::Relaxed);
            let t = Instant::now();
            let forwarded = client(&s, line);
            spent += t.elapsed();
            allocations += ALLOCATIONS.load(Ordering::Relaxed) - a;
            assert!(forwarded);
            if answered {
                server(&s, answer);
            } else {
                s.forget_in_flight();
            }
        }
        let cpu = thread_cpu() - cpu;
        eprintln!(
            "round {round}: {:.0} ns/call wall, {:.1} allocations/call (client side, {n} calls); thread CPU of the round {:.0} ns/call{}",
            spent.as_nanos() as f64 / n as f64,
            allocations as f64 / n as f64,
            cpu.as_nanos() as f64 / n as f64,
            if answered { " (with the answers)" } else { "" }
        );
    }
}
