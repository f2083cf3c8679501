//! Server -> client: every line must be a JSON-RPC message; responses must answer a request the
//! client made and capjail forwarded. Lines are relayed byte for byte, except `tools/list`
//! answers, from which tools the policy blocks are removed (`tools.hide_blocked`).

use serde_json::Value;

use super::client_filter::SharedState;
use super::framing::LineFacts;
use super::outbox::{answer_of, Outbox, Peer};
use super::session::{id_key, id_key_text, Pending, ServerRequest, Shared};
use crate::check::tools::check_tool;
use crate::jsonrpc::strict::{validate_envelope_hinted, ResultTexts, LONG_STRING};
use crate::policy::{Policy, ToolsMode};

#[derive(Debug, PartialEq)]
pub(crate) enum ServerOutcome {
    Forward,
    /// Send this to the client instead.
    Rewritten(Vec<u8>),
    /// Not sent to the client; the reason is logged.
    Drop(String),
    /// A result the content checks rewrote (redacted, wrapped, withheld): send this, record why.
    Content(Vec<u8>, String),
    /// Forward unchanged, record this content finding.
    Flagged(String),
    /// The answer to one of capjail's own requests, handed to the stage that asked.
    Consumed,
}

pub(crate) struct ServerFilter {
    pub(crate) shared: SharedState,
    pub(crate) policy: std::sync::Arc<Policy>,
    /// capjail's own requests: their answers are taken here, never relayed.
    pub(crate) outbox: std::sync::Arc<Outbox>,
    /// The texts of the last line's `result`, as the envelope scanner met them (kept: no
    /// allocation a line).
    texts: ResultTexts,
}

impl ServerFilter {
    pub(crate) fn new(
        shared: SharedState,
        policy: std::sync::Arc<Policy>,
        outbox: std::sync::Arc<Outbox>,
    ) -> ServerFilter {
        ServerFilter {
            shared,
            policy,
            outbox,
            texts: ResultTexts::default(),
        }
    }

    /// The session state, through its own small methods (`Shared`). Never held across I/O; a
    /// poisoned lock means a stage panicked while changing it: nothing may be judged after
    /// that.
    fn state(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("shared state")
    }

    #[cfg(test)]
    pub(crate) fn on_line(&mut self, line: &[u8]) -> ServerOutcome {
        self.on_line_hinted(line, LineFacts::default())
    }

    /// One line from the server, with what the framer learnt of it while reading it: its quiet
    /// stretches (`jsonrpc::quiet`: the scanner does not read their bytes again) and their
    /// shapes (the content checks take a text's from there).
    pub(crate) fn on_line_hinted(&mut self, line: &[u8], facts: LineFacts<'_>) -> ServerOutcome {
        if line.iter().all(u8::is_ascii_whitespace) {
            return ServerOutcome::Drop("blank line".into());
        }
        // The client's rules for the server's lines: UTF-8, no duplicate keys, bounded depth;
        // and what the line is (its id and method), read in the same pass.
        // The long strings the scanner read (a large answer's text): the content checks take
        // their ends from here instead of reading them again (no allocation without one).
        let mut spans = Vec::new();
        let env = match validate_envelope_hinted(
            line,
            self.policy.limits.max_depth,
            LONG_STRING,
            facts.quiet,
            &mut spans,
            // The texts of a result, for the content checks (when they read results).
            self.policy.content.enabled.then_some(&mut self.texts),
        ) {
            Ok(e) => e,
            Err(e) => {
                return ServerOutcome::Drop(format!(
                    "the server wrote a line that is not a JSON-RPC message (strict JSON: {e})"
                ))
            }
        };
        if !env.object || env.bad_method {
            return ServerOutcome::Drop(
                "the server wrote a line that is not a JSON-RPC message (not an object with a string method)".into(),
            );
        }
        // `"id": null` reads as no id (as it always has here).
        let id = env.id.filter(|v| !v.is_null());
        let not_failed = env.not_failed;
        match (env.method, id) {
            // A request to the client (roots/list, sampling, elicitation, ping).
            (Some(_), Some(id)) if Outbox::is_own_id(&id) => ServerOutcome::Drop(format!(
                "the server sent a request with id {id}, in capjail's own id space"
            )),
            (Some(method), Some(id)) if !id.is_null() => {
                let kind = if method == "roots/list" {
                    ServerRequest::RootsList
                } else {
                    ServerRequest::Plain
                };
                let mut shared = self.state();
                // A server that asks and asks while the client answers nothing (a hijacked
                // one) cannot grow what capjail keeps either: past the bound its request is
                // not relayed (it gets no answer; answering it from here could block on a
                // server that does not read).
                let in_flight = shared.server_requests.len();
                if in_flight >= self.policy.limits.max_in_flight {
                    return ServerOutcome::Drop(format!(
                        "the server sent request {id} while {in_flight} of its requests to the client are unanswered, the most proxy.max_in_flight allows (rule {})",
                        crate::policy::RuleId::ProtocolInFlight.static_id()
                    ));
                }
                shared.remember_server_request(id_key(&id), kind);
                ServerOutcome::Forward
            }
            (Some(method), _) => {
                // A notification. A new tool list: capjail lists again (`trust::listing`).
                if method == "notifications/tools/list_changed" {
                    crate::trust::listing::on_list_changed(&self.shared);
                }
                ServerOutcome::Forward
            }
            (None, Some(Value::Null)) => ServerOutcome::Forward, // an error about an unparseable message
            (None, Some(id)) if Outbox::is_own_id(&id) => {
                match self.outbox.take_answer(Peer::Server, &id) {
                    Some(on_answer) => match serde_json::from_slice::<Value>(line) {
                        Ok(v) => {
                            on_answer(answer_of(&v));
                            ServerOutcome::Consumed
                        }
                        Err(e) => {
                            on_answer(super::outbox::Answer::Closed);
                            ServerOutcome::Drop(format!(
                                "unreadable answer to capjail's own request ({e})"
                            ))
                        }
                    },
                    None => ServerOutcome::Drop(format!(
                        "the server answered id {id}, which capjail never sent"
                    )),
                }
            }
            (None, Some(id)) => {
                // One key and one lock for everything this answer settles (the key's text
                // taken once: each look at a `KeyText` checks its UTF-8 again).
                let key_text = id_key_text(&id);
                let key: &str = &key_text;
                let mut shared = self.state();
                let pending = shared.answered(key);
                match pending {
                    None if shared.was_cancelled(key) => ServerOutcome::Drop(format!(
                        "the server answered id {id} after the client cancelled it (the client ignores it)"
                    )),
                    None => ServerOutcome::Drop(format!(
                        "the server answered id {id}, which no forwarded request has"
                    )),
                    Some(Pending::Plain) => {
                        // A tool call that failed because the sandbox refused a path: say
                        // what grants it. (An answer that reports no failure is not read: a
                        // file's text that names a refusal is no refusal, and a large answer
                        // is not read once more for nothing, issue 19.)
                        if !not_failed {
                            super::refusals::on_answer(&self.policy, line);
                        }
                        // An environment read: only the variables its rule names (check::env_read).
                        let env = shared
                            .take_env_read(key)
                            .map(|r| crate::check::env_read::filter_answer(line, &r));
                        use crate::check::env_read::EnvAnswer;
                        let (line, env_why, spans, shapes, texts) = match &env {
                            Some(EnvAnswer::Withheld(l, why)) => {
                                return ServerOutcome::Content(l.clone(), why.clone())
                            }
                            // A new line: the spans, shapes and texts are the server's line's,
                            // not its.
                            Some(EnvAnswer::Rewritten(l, why)) => {
                                (&l[..], Some(why.clone()), &[][..], &[][..], None)
                            }
                            _ => (
                                line,
                                None,
                                &spans[..],
                                facts.shapes,
                                self.texts.listed(),
                            ),
                        };
                        // Results and resource contents: content checks (src/content).
                        match crate::content::hook::on_result_spans(
                            &self.policy,
                            &mut shared.content,
                            key,
                            line,
                            spans,
                            shapes,
                            texts,
                        ) {
                            crate::content::hook::ResultOutcome::Forward => match env_why {
                                Some(why) => ServerOutcome::Content(line.to_vec(), why),
                                None => ServerOutcome::Forward,
                            },
                            crate::content::hook::ResultOutcome::Flagged(why) => match env_why {
                                Some(e) => {
                                    ServerOutcome::Content(line.to_vec(), format!("{e}; {why}"))
                                }
                                None => ServerOutcome::Flagged(why),
                            },
                            crate::content::hook::ResultOutcome::Rewritten(l, why) => {
                                ServerOutcome::Content(
                                    l,
                                    match env_why {
                                        Some(e) => format!("{e}; {why}"),
                                        None => why,
                                    },
                                )
                            }
                        }
                    }
                    Some(kind) => {
                        drop(shared);
                        self.read_answer(kind, line)
                    }
                }
            }
            (None, None) => ServerOutcome::Drop(
                "the server wrote a JSON value that is not a JSON-RPC message".into(),
            ),
        }
    }

    /// `initialize` and `tools/list` answers: learn from them, and hide blocked tools.
    fn read_answer(&mut self, kind: Pending, line: &[u8]) -> ServerOutcome {
        let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
            return ServerOutcome::Drop("an answer capjail must read could not be parsed".into());
        };
        let Some(result) = v.get("result") else {
            return ServerOutcome::Forward;
        };
        let mut shared = self.state();
        match kind {
            Pending::Initialize => {
                shared.catalog.on_server_info(result);
                crate::trust::hooks::on_server_info(&mut shared, result);
                ServerOutcome::Forward
            }
            Pending::ToolsList => {
                shared.catalog.on_tools_list(result);
                // Pinned and scanned definitions: changed or poisoned tools shown as the policy says.
                let trusted = match crate::trust::hooks::on_tools_list(&mut shared, &mut v, false) {
                    Ok(t) => t,
                    Err(e) => {
                        return ServerOutcome::Drop(format!("cannot record tool definitions: {e}"))
                    }
                };
                drop(shared);
                let unchanged = |v: &Value| match trusted {
                    true => ServerOutcome::Rewritten(
                        serde_json::to_vec(v).expect("serialising a Value"),
                    ),
                    false => ServerOutcome::Forward,
                };
                let tp = &self.policy.tools;
                if !tp.hide_blocked || tp.mode == ToolsMode::All {
                    return unchanged(&v);
                }
                let Some(tools) = v.pointer_mut("/result/tools").and_then(Value::as_array_mut)
                else {
                    return ServerOutcome::Drop(
                        "a tools/list answer without a `tools` array cannot be filtered".into(),
                    );
                };
                let before = tools.len();
                tools.retain(|t| {
                    t.get("name")
                        .and_then(Value::as_str)
                        .is_some_and(|n| check_tool(n, tp).is_ok())
                });
                if tools.len() == before {
                    return unchanged(&v);
                }
                tracing::info!(
                    hidden = before - tools.len(),
                    "hid tools the policy blocks from tools/list"
                );
                ServerOutcome::Rewritten(serde_json::to_vec(&v).expect("serialising a Value"))
            }
            Pending::Plain => ServerOutcome::Forward,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::catalog::SessionCatalog;

    use std::sync::{Arc, Mutex};

    fn filter(policy: &str) -> ServerFilter {
        let policy = crate::policy::load_str(policy, crate::policy::PolicySource::Inline).unwrap();
        ServerFilter::new(
            Arc::new(Mutex::new(Shared::new(SessionCatalog::new(None, &[])))),
            Arc::new(policy),
            Outbox::discarding(),
        )
    }

    #[test]
    fn answers_to_own_requests_are_consumed_never_relayed() {
        let mut f = filter("filesystem: {mode: any}\n");
        let (tx, rx) = std::sync::mpsc::channel();
        let id = f
            .outbox
            .request_server("tools/list", None, Box::new(move |a| tx.send(a).unwrap()))
            .unwrap();
        let line = serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"tools":[]}}).to_string();
        assert_eq!(f.on_line(line.as_bytes()), ServerOutcome::Consumed);
        assert_eq!(
            rx.recv().unwrap(),
            crate::proxy::outbox::Answer::Result(serde_json::json!({"tools":[]}))
        );
        assert!(matches!(f.on_line(line.as_bytes()), ServerOutcome::Drop(_)));
        // A server request in capjail's id space is not relayed.
        assert!(matches!(
            f.on_line(br#"{"jsonrpc":"2.0","id":"capjail:1:1","method":"roots/list"}"#),
            ServerOutcome::Drop(_)
        ));
    }

    #[test]
    fn responses_must_answer_a_forwarded_request() {
        let mut f = filter("filesystem: {mode: any}\n");
        f.shared
            .lock()
            .unwrap()
            .pending
            .insert("1".into(), Pending::Plain);
        assert_eq!(
            f.on_line(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            ServerOutcome::Forward
        );
        assert!(matches!(
            f.on_line(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            ServerOutcome::Drop(_)
        ));
        assert!(matches!(
            f.on_line(br#"{"jsonrpc":"2.0","id":"1","result":{}}"#),
            ServerOutcome::Drop(_)
        ));
        assert!(matches!(
            f.on_line(b"Server running on stdio"),
            ServerOutcome::Drop(_)
        ));
        assert!(matches!(
            f.on_line(br#"{"jsonrpc":"2.0","id":"#),
            ServerOutcome::Drop(_)
        ));
        assert!(matches!(f.on_line(b"[1,2]"), ServerOutcome::Drop(_)));
        assert_eq!(
            f.on_line(br#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#),
            ServerOutcome::Forward
        );
    }

    #[test]
    fn server_requests_past_max_in_flight_are_not_relayed() {
        let mut f = filter("filesystem: {mode: any}\nproxy: {max_in_flight: 2}\n");
        let ask = |id: u32| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"sampling/createMessage","params":{{}}}}"#
            )
        };
        assert_eq!(f.on_line(ask(1).as_bytes()), ServerOutcome::Forward);
        assert_eq!(f.on_line(ask(2).as_bytes()), ServerOutcome::Forward);
        match f.on_line(ask(3).as_bytes()) {
            ServerOutcome::Drop(why) => assert!(why.contains("protocol.in_flight"), "{why}"),
            other => panic!("expected a drop, got {other:?}"),
        }
        assert_eq!(f.shared.lock().unwrap().server_requests.len(), 2);
        // The client's answer frees a place.
        f.shared.lock().unwrap().server_requests.remove("1");
        assert_eq!(f.on_line(ask(4).as_bytes()), ServerOutcome::Forward);
    }

    #[test]
    fn server_requests_are_remembered() {
        let mut f = filter("filesystem: {mode: any}\n");
        assert_eq!(
            f.on_line(br#"{"jsonrpc":"2.0","id":7,"method":"roots/list"}"#),
            ServerOutcome::Forward
        );
        assert_eq!(
            f.shared.lock().unwrap().server_requests.get("7"),
            Some(&ServerRequest::RootsList)
        );
    }

    #[test]
    fn blocked_tools_are_hidden() {
        let mut f =
            filter("filesystem: {mode: any}\ntools:\n  mode: blocklist\n  blocked: [write_file]\n");
        f.shared
            .lock()
            .unwrap()
            .pending
            .insert("2".into(), Pending::ToolsList);
        let out = f.on_line(br#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"read_file","inputSchema":{}},{"name":"write_file","inputSchema":{}}],"nextCursor":"c"}}"#);
        let ServerOutcome::Rewritten(line) = out else {
            panic!("{out:?}")
        };
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
        assert_eq!(v["result"]["nextCursor"], "c");
        assert_eq!(v["id"], 2);
    }

    #[test]
    fn server_lines_are_held_to_the_clients_rules() {
        let mut f =
            filter("filesystem: {mode: any}\ntools:\n  mode: blocklist\n  blocked: [write_file]\n");
        for (id, line) in [
            ("3", &b"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"write_file\",\"description\":\"\xff\"}]}}"[..]),
            ("4", br#"{"jsonrpc":"2.0","id":4,"result":{"tools":[],"tools":[{"name":"write_file"}]}}"#),
            ("5", br#"{"jsonrpc":"2.0","id":5,"result":{"tools":{"name":"write_file"}}}"#),
        ] {
            f.shared.lock().unwrap().pending.insert(id.into(), Pending::ToolsList);
            assert!(matches!(f.on_line(line), ServerOutcome::Drop(_)), "{}", String::from_utf8_lossy(line));
        }
        f.shared
            .lock()
            .unwrap()
            .pending
            .insert("6".into(), Pending::Plain);
        assert!(matches!(
            f.on_line(br#"{"jsonrpc":"2.0","id":6,"result":{"a":{"b":1,"b":2}}}"#),
            ServerOutcome::Drop(_)
        ));
    }

    /// A large answer's text, whose end the content checks take from the envelope scanner
    /// (`validate_envelope_spans`), is judged as the content checks judge it alone (told no
    /// span): clean, or a secret planted at the start, the middle, the end; ASCII or not; at
    /// and around the span threshold. Read by the server pump's framer, whose stretches the
    /// scanner jumps and whose shapes the content checks take, it is judged the same.
    #[test]
    fn long_texts_are_judged_as_without_the_scanners_spans() {
        let realistic = "filesystem: {mode: any}\nnetwork: {mode: none}\ntools: {mode: blocklist, blocked: [run_shell]}\n";
        let token = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
        let mut cases = 0;
        let mut shaped = 0;
        for len in [
            LONG_STRING - 1,
            LONG_STRING,
            LONG_STRING + 1,
            100_000,
            300_000,
        ] {
            for filler in ["x", "\u{e9}", "qz, "] {
                for at in [None, Some(0), Some(len / 2), Some(len)] {
                    let mut text = filler.repeat(len / filler.len());
                    if let Some(at) = at {
                        let at = text.floor_char_boundary(at.min(text.len()));
                        text.insert_str(at, &format!(" {token} "));
                    }
                    let line = serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": 7,
                        "result": {"content": [{"type": "text", "text": text}]}}))
                    .unwrap();
                    let mut spans = Vec::new();
                    crate::jsonrpc::strict::validate_envelope_spans(
                        &line,
                        64,
                        LONG_STRING,
                        &mut spans,
                    )
                    .unwrap();
                    assert_eq!(spans.len(), usize::from(text.len() >= LONG_STRING));
                    let mut f = filter(realistic);
                    let mut s = f.shared.lock().unwrap();
                    s.pending.insert("7".into(), Pending::Plain);
                    s.content.track_for_test("7", "echo");
                    drop(s);
                    let got = f.on_line(&line);
                    let g = filter(realistic);
                    let mut s = g.shared.lock().unwrap();
                    s.content.track_for_test("7", "echo");
                    let alone =
                        crate::content::hook::on_result(&g.policy, &mut s.content, "7", &line);
                    use crate::content::hook::ResultOutcome as R;
                    let want = match alone {
                        R::Forward => ServerOutcome::Forward,
                        R::Flagged(why) => ServerOutcome::Flagged(why),
                        R::Rewritten(l, why) => ServerOutcome::Content(l, why),
                    };
                    assert_eq!(
                        got == ServerOutcome::Forward,
                        at.is_none(),
                        "{len} {filler} {at:?}"
                    );
                    assert_eq!(got, want, "{len} {filler} {at:?}");
                    // Framed as the server pump frames it, from 64 KiB reads.
                    let mut framed = line.clone();
                    framed.push(b'\n');
                    let mut r =
                        super::super::framing::InPlaceLines::new(&framed[..], 256 * 1024, 1 << 24)
                            .with_text_shapes(true);
                    let super::super::framing::Slice::Line {
                        whole,
                        len: n,
                        facts,
                    } = r.next().unwrap()
                    else {
                        panic!("no line")
                    };
                    shaped += facts.shapes.len();
                    let mut h = filter(realistic);
                    let mut s = h.shared.lock().unwrap();
                    s.pending.insert("7".into(), Pending::Plain);
                    s.content.track_for_test("7", "echo");
                    drop(s);
                    assert_eq!(
                        h.on_line_hinted(&whole[..n], facts),
                        want,
                        "{len} {filler} {at:?}"
                    );
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 60);
        assert!(
            shaped >= 16,
            "{shaped} texts' shapes computed as they were read"
        );
    }

    /// This thread's CPU time in seconds.
    fn cpu_secs() -> f64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime into a valid timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
    }

    /// CPU per answer of the server filter on the pipelined bench's small answer (a
    /// forwarded `echo` call's, content checks at their defaults under the realistic policy,
    /// and with a known secret as `environment` withholding adds), beside the envelope scan
    /// alone and with content checks off. Printed only, never asserted:
    /// `cargo test --release --lib server_cpu_small -- --ignored --nocapture` (or under
    /// `valgrind --tool=callgrind` for instruction counts).
    #[test]
    #[ignore = "timing, printed only"]
    fn server_cpu_small() {
        let realistic = "filesystem: {mode: any}\nnetwork: {mode: none}\ntools: {mode: blocklist, blocked: [run_shell]}\n";
        let off = format!("{realistic}content: {{enabled: false}}\nflows: {{defaults: false}}\n");
        let n: usize = std::env::var("BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000);
        let answer = |id: usize| {
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"echo: the quick brown fox jumps over the lazy dog\"}}]}}}}")
        };
        let lines: Vec<String> = (1..=1000).map(answer).collect();
        let t = cpu_secs();
        for i in 0..n {
            let l = &lines[i % lines.len()];
            std::hint::black_box(crate::jsonrpc::validate_envelope(l.as_bytes(), 64).unwrap());
        }
        let env_ns = (cpu_secs() - t) * 1e9 / n as f64;
        let per = |policy: &str, content: bool| {
            let mut f = filter(policy);
            f.shared
                .lock()
                .unwrap()
                .content
                .know_for_test("s3cr3t-value-42-known", "environment variable X");
            let mut judged = 0.0;
            for i in 0..n {
                let key = (i % lines.len() + 1).to_string();
                {
                    let mut s = f.shared.lock().unwrap();
                    s.pending.insert(key.as_str().into(), Pending::Plain);
                    if content {
                        s.content.track_for_test(&key, "echo");
                    }
                }
                let t = cpu_secs();
                let out = f.on_line(lines[i % lines.len()].as_bytes());
                judged += cpu_secs() - t;
                assert_eq!(out, ServerOutcome::Forward);
            }
            judged * 1e9 / n as f64
        };
        let on = per(realistic, true);
        let content_off = per(&off, false);
        eprintln!(
            "server-cpu small answer ({} bytes): envelope {env_ns:.0} ns, on_line content on {on:.0} ns, off {content_off:.0} ns (each timed call includes two clock reads)",
            lines[0].len()
        );
    }

    /// CPU per MiB of the server filter on the answers of `capjail-bench large` (content
    /// checks on and off), next to one copy of the line (a relay's floor in user space).
    /// Printed only: `cargo test --release --lib server_cpu_large -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, printed only"]
    fn server_cpu_large() {
        let realistic = "filesystem: {mode: any}\nnetwork: {mode: none}\ntools: {mode: blocklist, blocked: [run_shell]}\n";
        let off = format!("{realistic}content: {{enabled: false}}\nflows: {{defaults: false}}\n");
        for bytes in [1usize << 20, 16 << 20] {
            let text = "x".repeat(bytes);
            let line = serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": 7,
                "result": {"content": [{"type": "text", "text": text}]}}))
            .unwrap();
            let rounds = if bytes > 1 << 20 { 8 } else { 100 };
            let mib = line.len() as f64 / (1 << 20) as f64;
            let per = |f: &mut dyn FnMut()| {
                f();
                let t = cpu_secs();
                for _ in 0..rounds {
                    f();
                }
                (cpu_secs() - t) * 1e3 / rounds as f64 / mib
            };
            let mut dst = vec![0u8; line.len()];
            let copy = per(&mut || {
                dst.copy_from_slice(std::hint::black_box(&line));
                std::hint::black_box(&dst);
            });
            let scan = per(&mut || {
                std::hint::black_box(crate::jsonrpc::validate_envelope(&line, 64).unwrap());
            });
            let mut f_off = filter(&off);
            let content_off = per(&mut || {
                f_off
                    .shared
                    .lock()
                    .unwrap()
                    .pending
                    .insert("7".into(), Pending::Plain);
                assert_eq!(f_off.on_line(&line), ServerOutcome::Forward);
            });
            let mut f_on = filter(realistic);
            let content_on = per(&mut || {
                let mut s = f_on.shared.lock().unwrap();
                s.pending.insert("7".into(), Pending::Plain);
                s.content.track_for_test("7", "echo");
                drop(s);
                assert_eq!(f_on.on_line(&line), ServerOutcome::Forward);
            });
            if bytes == 1 << 20 {
                // A small answer (the pipelined bench's): ns per line.
                let small = serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": 7,
                    "result": {"content": [{"type": "text", "text": "echo: the quick brown fox jumps over the lazy dog"}]}}))
                .unwrap();
                let n = 200_000;
                let t = cpu_secs();
                for _ in 0..n {
                    std::hint::black_box(
                        crate::jsonrpc::validate_envelope(std::hint::black_box(&small), 64)
                            .unwrap(),
                    );
                }
                let env_ns = (cpu_secs() - t) * 1e9 / n as f64;
                let t = cpu_secs();
                for _ in 0..n {
                    f_off
                        .shared
                        .lock()
                        .unwrap()
                        .pending
                        .insert("7".into(), Pending::Plain);
                    assert_eq!(f_off.on_line(&small), ServerOutcome::Forward);
                }
                let off_ns = (cpu_secs() - t) * 1e9 / n as f64;
                eprintln!("server-cpu small ({} bytes): envelope {env_ns:.0} ns, on_line content off {off_ns:.0} ns", small.len());
            }
            eprintln!(
                "server-cpu {bytes}: copy {copy:.3} ms/MiB, envelope {scan:.3}, on_line content off {content_off:.3}, on {content_on:.3}"
            );
        }
    }
}
