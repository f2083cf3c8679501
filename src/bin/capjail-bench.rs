//! Benchmark tools (never run by the tests): a fast echo MCP server, a plain byte relay (the
//! floor for one extra process hop), and a load client that measures a command speaking MCP on
//! its stdio. `scripts/bench.sh` runs them direct / through the relay / through capjail.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("echo-server") => echo_server(),
        Some("relay") => relay(&args[1..]),
        Some("load") => load(&args[1..]),
        Some("audit-cpu") => audit_cpu(&args[1..]),
        _ => {
            eprintln!("usage: capjail-bench echo-server | relay -- CMD... | load SCENARIO [N] [BYTES] -- CMD... | audit-cpu N FILE [BATCH]");
            eprintln!(
                "scenarios: roundtrip N | pipelined N | unanswered N | large N BYTES | startup N"
            );
            2
        }
    };
    std::process::exit(code);
}

/// The text of an N-byte answer (`capjail::content::samples`): `CAPJAIL_BENCH_TEXT=source` a
/// source file's lines, quotes, tabs and prose (what a file read returns: escapes in the JSON
/// string, the letters every text detector keys on), `base64` base64 in lines of 76 (a binary
/// file as text), otherwise N `x`s (the floor of every scanner).
fn large_text(n: usize) -> String {
    match std::env::var("CAPJAIL_BENCH_TEXT").as_deref() {
        Ok("source") => capjail::content::samples::source_text(n),
        Ok("base64") => capjail::content::samples::base64_lines(n),
        _ => "x".repeat(n),
    }
}

/// Answers initialize, tools/list and tools/call. A call with `{"bytes": N}` gets a text of N
/// bytes back; a call with `{"silent": true}` gets no answer (a server that answers nothing);
/// any other call gets a ~200-byte answer.
fn echo_server() -> i32 {
    let stdin = std::io::stdin();
    let mut input = BufReader::with_capacity(256 * 1024, stdin.lock());
    let mut out = BufWriter::with_capacity(256 * 1024, std::io::stdout().lock());
    let mut line = Vec::new();
    loop {
        line.clear();
        match input.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return 0,
            Ok(_) => {}
        }
        let v: serde_json::Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let Some(id) = v.get("id") else { continue };
        let method = v.get("method").and_then(|m| m.as_str()).unwrap_or("");
        if v.pointer("/params/arguments/silent") == Some(&serde_json::Value::Bool(true)) {
            continue;
        }
        let result = match method {
            "initialize" => {
                serde_json::json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "bench-echo", "version": "1"}})
            }
            "tools/list" => {
                serde_json::json!({"tools": [{"name": "echo", "inputSchema": {"type": "object", "properties": {"message": {"type": "string"}, "bytes": {"type": "integer"}}}}]})
            }
            _ => {
                let n = v
                    .pointer("/params/arguments/bytes")
                    .and_then(|b| b.as_u64())
                    .unwrap_or(0) as usize;
                let text = if n > 0 {
                    large_text(n)
                } else {
                    "echo: the quick brown fox jumps over the lazy dog".to_string()
                };
                serde_json::json!({"content": [{"type": "text", "text": text}]})
            }
        };
        let resp = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
        let _ = serde_json::to_writer(&mut out, &resp);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
}

/// Two threads copying bytes, large buffers: the cheapest possible extra hop.
fn relay(args: &[String]) -> i32 {
    let cmd = after_dashes(args);
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut cin = child.stdin.take().unwrap();
    let mut cout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || cin.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let t = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut stdout = std::io::stdout().lock();
        while let Ok(n) = cout.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() || stdout.flush().is_err() {
                break;
            }
        }
    });
    let status = child.wait().map(|s| s.code().unwrap_or(1)).unwrap_or(1);
    let _ = t.join();
    status
}

fn after_dashes(args: &[String]) -> Vec<String> {
    match args.iter().position(|a| a == "--") {
        Some(p) => args[p + 1..].to_vec(),
        None => panic!("expected -- CMD..."),
    }
}

struct Peer {
    child: std::process::Child,
    input: std::process::ChildStdin,
    output: BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn start(cmd: &[String]) -> Peer {
        let mut child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let input = child.stdin.take().unwrap();
        let output = BufReader::with_capacity(1 << 20, child.stdout.take().unwrap());
        Peer {
            child,
            input,
            output,
        }
    }
    fn send(&mut self, line: &[u8]) {
        self.input.write_all(line).expect("write");
    }
    fn recv(&mut self, buf: &mut Vec<u8>) -> usize {
        buf.clear();
        self.output.read_until(b'\n', buf).expect("read")
    }
    fn initialize(&mut self) {
        self.send(b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}\n");
        let mut b = Vec::new();
        self.recv(&mut b);
        self.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
        self.send(b"{\"jsonrpc\":\"2.0\",\"id\":\"l\",\"method\":\"tools/list\"}\n");
        self.recv(&mut b);
    }
    fn stop(mut self) {
        drop(self.input);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The measured process's own peak RSS (`VmHWM`, KiB), read while it still runs: the process
/// the load client started or, when that is `/usr/bin/time` (bench.sh), the one it runs.
/// `/usr/bin/time`'s `%M` is the largest process of the tree it waited for: with 16 MiB answers
/// that is the echo server, not the wrapper measured.
fn own_peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The measured process: the one the load client started or, when that is `/usr/bin/time`
/// (bench.sh), the one it runs.
fn measured_pid(pid: u32) -> Option<u32> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if comm.trim() != "time" {
        return Some(pid);
    }
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    kids.split_whitespace().next()?.parse().ok()
}

/// The CPU time so far (ms) of every thread of the process, itself only (not the server it
/// runs): the first field of each thread's `schedstat`, in ns.
fn own_cpu_ms(pid: u32) -> Option<f64> {
    let mut ns = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let s = std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok()?;
        ns += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e6)
}

/// The calling thread's CPU migrations so far (`se.nr_migrations` of
/// `/proc/thread-self/sched`; absent on kernels without scheduler debug files).
fn own_migrations() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
    let line = s.lines().find(|l| l.starts_with("se.nr_migrations"))?;
    line.split(':').nth(1)?.trim().parse().ok()
}

/// `,"own_rss_kib":N,"own_cpu_ms":M` for the scenario's JSON line, of the measured process
/// itself (each left out when it cannot be read): read before the stream closes, so the
/// CPU is that of the whole run but its exit.
fn own_process_fields(pid: u32) -> String {
    let Some(pid) = measured_pid(pid) else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(k) = own_peak_kib(pid) {
        out += &format!(",\"own_rss_kib\":{k}");
    }
    if let Some(ms) = own_cpu_ms(pid) {
        out += &format!(",\"own_cpu_ms\":{ms:.1}");
    }
    out
}

/// Start `cmd` and initialize it, write `lines` from another thread while `read` reads the
/// answers on this one, then stop it: what `read` returned, and the measured process's own
/// peak RSS and CPU (`own_process_fields`, read before its input closes).
fn streamed<T>(
    cmd: &[String],
    lines: impl Iterator<Item = Vec<u8>> + Send + 'static,
    read: impl FnOnce(&mut BufReader<std::process::ChildStdout>) -> T,
) -> (T, String) {
    let mut p = Peer::start(cmd);
    p.initialize();
    let Peer {
        child,
        mut input,
        mut output,
    } = p;
    let writer = std::thread::spawn(move || {
        let mut w = BufWriter::with_capacity(1 << 16, &mut input);
        for line in lines {
            w.write_all(&line).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        input
    });
    let got = read(&mut output);
    let input = writer.join().unwrap();
    let own = own_process_fields(child.id());
    Peer {
        child,
        input,
        output,
    }
    .stop();
    (got, own)
}

fn call(id: usize, bytes: usize) -> Vec<u8> {
    // ~200 bytes on the wire, like a small tools/call.
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"message\":\"hello from the load client, a message of about two hundred bytes\",\"bytes\":{bytes}}}}}}}\n").into_bytes()
}

/// CPU time (user + system, ms) of every child waited for so far, and theirs.
fn children_cpu_ms() -> f64 {
    // SAFETY: getrusage into a zeroed struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Prints one JSON object with the scenario's numbers.
fn load(args: &[String]) -> i32 {
    let scenario = args.first().map(String::as_str).unwrap_or("roundtrip");
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let cmd = after_dashes(args);
    let mut buf = Vec::with_capacity(1 << 20);
    match scenario {
        "roundtrip" => {
            let mut p = Peer::start(&cmd);
            p.initialize();
            let mut lat = Vec::with_capacity(n);
            let mut moved_from = None;
            for i in 0..(n + n / 10) {
                if i == n / 10 {
                    moved_from = own_migrations();
                }
                let msg = call(i + 1, 0);
                let t = Instant::now();
                p.send(&msg);
                p.recv(&mut buf);
                if i >= n / 10 {
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            // How often the load client's thread changed CPU per measured round trip: the
            // scheduler's placement, which decides an unpinned round trip (see bench.sh).
            let moved = match (moved_from, own_migrations()) {
                (Some(a), Some(b)) if n > 0 => format!(
                    ",\"client_migrations_per_rt\":{:.3}",
                    b.saturating_sub(a) as f64 / n as f64
                ),
                _ => String::new(),
            };
            let own = own_process_fields(p.child.id());
            p.stop();
            // CAPJAIL_BENCH_LAT_DUMP=FILE: every round trip's latency, in order (µs, one per
            // line), to see the shape of the tail (periodic or not).
            if let Some(path) = std::env::var_os("CAPJAIL_BENCH_LAT_DUMP") {
                let text: String = lat.iter().map(|l| format!("{l:.1}\n")).collect();
                let _ = std::fs::write(path, text);
            }
            lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{{\"scenario\":\"roundtrip\",\"n\":{n},\"p50_us\":{:.1},\"p99_us\":{:.1}{moved}{own}}}",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
        }
        "pipelined" => {
            let (secs, own) = streamed(&cmd, (0..n).map(|i| call(i + 1, 0)), |output| {
                let mut buf = Vec::with_capacity(1 << 16);
                let t = Instant::now();
                for _ in 0..n {
                    buf.clear();
                    output.read_until(b'\n', &mut buf).expect("read");
                }
                t.elapsed().as_secs_f64()
            });
            println!(
                "{{\"scenario\":\"pipelined\",\"n\":{n},\"msgs_per_s\":{:.0}{own}}}",
                n as f64 / secs
            );
        }
        "unanswered" => {
            // N calls the server never answers, then a ping: what the measured process keeps
            // for calls in flight (its peak RSS), and how many it refused (`protocol.in_flight`).
            let silent = |i: usize| {
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"message\":\"hello from the load client, a call the server never answers\",\"silent\":true}}}}}}\n").into_bytes()
            };
            let ping = b"{\"jsonrpc\":\"2.0\",\"id\":\"end\",\"method\":\"ping\"}\n".to_vec();
            let lines = (0..n)
                .map(move |i| silent(i + 1))
                .chain(std::iter::once(ping));
            let ((refused, secs), own) = streamed(&cmd, lines, |output| {
                let mut buf = Vec::with_capacity(1 << 16);
                let t = Instant::now();
                let mut refused = 0usize;
                loop {
                    buf.clear();
                    if output.read_until(b'\n', &mut buf).expect("read") == 0 {
                        panic!("the measured command closed its output before the ping's answer");
                    }
                    refused += usize::from(buf.windows(18).any(|w| w == b"protocol.in_flight"));
                    if buf.windows(10).any(|w| w == b"\"id\":\"end\"") {
                        break;
                    }
                }
                (refused, t.elapsed().as_secs_f64())
            });
            println!(
                "{{\"scenario\":\"unanswered\",\"n\":{n},\"refused\":{refused},\"secs\":{secs:.3}{own}}}"
            );
        }
        "large" => {
            let bytes: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
            let mut p = Peer::start(&cmd);
            p.initialize();
            let t = Instant::now();
            let mut total = 0usize;
            for i in 0..n {
                p.send(&call(i + 1, bytes));
                total += p.recv(&mut buf);
            }
            let secs = t.elapsed().as_secs_f64();
            let own = own_process_fields(p.child.id());
            p.stop();
            println!(
                "{{\"scenario\":\"large\",\"n\":{n},\"bytes\":{bytes},\"mb_per_s\":{:.1}{own}}}",
                total as f64 / secs / 1e6
            );
        }
        "startup" => {
            let mut times = Vec::with_capacity(n);
            let mut cpu = Vec::with_capacity(n);
            for _ in 0..n {
                let cpu0 = children_cpu_ms();
                let t = Instant::now();
                let mut p = Peer::start(&cmd);
                p.send(b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}\n");
                p.recv(&mut buf);
                times.push(t.elapsed().as_secs_f64() * 1e3);
                // A server that failed to start closes its stdout at once: not a start.
                if !buf.windows(17).any(|w| w == b"\"protocolVersion\"") {
                    eprintln!(
                        "startup: no initialize answer (got {:?})",
                        String::from_utf8_lossy(&buf)
                    );
                    return 1;
                }
                p.stop();
                cpu.push(children_cpu_ms() - cpu0);
            }
            times.sort_by(|a, b| a.partial_cmp(b).unwrap());
            cpu.sort_by(|a, b| a.partial_cmp(b).unwrap());
            // cpu: user + system time of the whole start (every process, to its exit): less
            // sensitive to a loaded machine than the wall clock.
            println!(
                "{{\"scenario\":\"startup\",\"n\":{n},\"p50_ms\":{:.2},\"p90_ms\":{:.2},\"cpu_p50_ms\":{:.2}}}",
                percentile(&times, 0.5),
                percentile(&times, 0.9),
                percentile(&cpu, 0.5)
            );
        }
        other => {
            eprintln!("unknown scenario {other}");
            return 2;
        }
    }
    0
}

/// CPU time of this process (all threads), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// The audit log's CPU per record: N decision records like the proxy's (a `tools/call` with
/// its params, a tool description, an allow decision) pushed through the audit queue to FILE
/// in batches of 64 waited for (write before forward), all threads' CPU time divided by N.
/// BATCH (default 64) sets how many records are pushed between waits: 1 is the lone request
/// of a client that waits for each answer (its record written inline by the waiting thread).
fn audit_cpu(args: &[String]) -> i32 {
    use capjail::audit::{AuditLog, AuditQueue, DecisionRecord, Direction, Record};
    use capjail::check::decide::{Decision, Verdict};
    let n: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let Some(path) = args.get(1) else {
        eprintln!("audit-cpu N FILE [BATCH]");
        return 2;
    };
    let batch: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .filter(|&b| b > 0)
        .unwrap_or(64);
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(format!("{path}.head"));
    let log = AuditLog::open(std::path::Path::new(path), false).expect("open the audit log");
    let q = AuditQueue::start(log).expect("start the writer");
    let w = q.watermark();
    // Shared, as the proxy's catalog hands it over.
    let spec: std::sync::Arc<capjail::profile::ToolSpec> = serde_json::from_value(
        serde_json::json!({"capability": "compute", "args": {"message": "data", "bytes": "data"}}),
    )
    .map(std::sync::Arc::new)
    .expect("a tool description");
    let line = call(1, 0);
    let t = Instant::now();
    let c0 = cpu_seconds();
    for i in 0..n {
        // What the proxy hands over: the id and params moved out of the parsed request.
        let mut v: serde_json::Value = serde_json::from_slice(&line).expect("a request");
        let record = Record::Decision(Box::new(DecisionRecord {
            tool_spec: Some(spec.clone()),
            latency_us: 3,
            weight: line.len(),
            ..DecisionRecord::new(
                Direction::ClientToServer,
                Some(serde_json::Value::from(i as u64 + 1)),
                v.get_mut("params").map(serde_json::Value::take),
                Decision {
                    verdict: Verdict::Allow,
                    method: "tools/call".into(),
                    tool: Some("echo".into()),
                    accesses: Default::default(),
                    rule: capjail::policy::RuleId::ToolsAllowed,
                    denial: None,
                },
            )
        }));
        let seq = q.push(record).expect("push");
        if i % batch == batch - 1 {
            w.wait(seq).expect("written");
        }
    }
    q.close().expect("close");
    let cpu = cpu_seconds() - c0;
    let wall = t.elapsed().as_secs_f64();
    // The same loop without the audit log: the parse and record building it includes.
    let c1 = cpu_seconds();
    for i in 0..n {
        let mut v: serde_json::Value = serde_json::from_slice(&line).expect("a request");
        let p = v.get_mut("params").map(serde_json::Value::take);
        std::hint::black_box((i, p, spec.clone()));
    }
    let base = cpu_seconds() - c1;
    println!(
        "{{\"scenario\":\"audit_cpu\",\"n\":{n},\"batch\":{batch},\"cpu_us_per_record\":{:.2},\"wall_us_per_record\":{:.2},\"base_us\":{:.2}}}",
        (cpu - base).max(0.0) * 1e6 / n as f64,
        wall * 1e6 / n as f64,
        base * 1e6 / n as f64
    );
    0
}
