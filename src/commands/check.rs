//! `capjail check`: judge JSON-RPC lines from stdin as `run` would, without a server.
//!
//! The lines are the client's side of one session with no server (`pipeline::Session::offline`):
//! the same stages as `run` (strict parsing, batches, in-flight ids, the capability decision,
//! content checks and flows), nothing sent anywhere. No request is ever answered, so an id
//! stays in flight (and a request past `proxy.max_in_flight` of them is refused, as `run`
//! refuses it when the server answers none); a response answers no server request and is
//! refused, as `run` refuses it.

use std::io::{BufReader, Write};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::audit::{FilterAction, Record};
use crate::check::path::PathContext;
use crate::check::RealWorld;
use crate::exit;
use crate::proxy::catalog::SessionCatalog;
use crate::proxy::framing::{Frame, LineReader};
use crate::proxy::pipeline::{Output, Session};

use crate::cli::CheckArgs;

pub(crate) fn check(args: CheckArgs) -> i32 {
    let policy = match super::load_policy(&args.policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut readings = None;
    let catalog = match super::load_profile(args.policy.profile.as_deref()) {
        Ok(Some(p)) => {
            readings = Some(p.paths.clone());
            SessionCatalog::new(Some(p), &[])
        }
        Ok(None) => {
            // No server to identify: every built-in profile's tools (first one wins).
            let mut tools = std::collections::BTreeMap::new();
            for p in crate::profile::builtin_profiles() {
                for (k, v) in &p.tools {
                    tools.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            SessionCatalog::of_tools(tools)
        }
        Err(code) => return code,
    };
    let cwd = args
        .cwd
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| "/".into());
    let paths = PathContext {
        cwd: std::path::absolute(cwd).unwrap_or_default(),
        home: std::env::var_os("HOME").map(Into::into),
        // As `run` gives it to the server: the policy's environment allowlist applied.
        env: Some(
            crate::sandbox::env::filter_env(
                &std::env::vars().collect::<Vec<_>>(),
                &policy.environment,
            )
            .values,
        ),
        readings: readings.unwrap_or_default(),
        ..Default::default()
    };
    let max_line = policy.limits.max_line_bytes;
    let session = Session::offline(Arc::new(policy), catalog, paths, Box::new(RealWorld));

    let stdin = std::io::stdin();
    let mut reader = LineReader::new(BufReader::new(stdin.lock()), max_line);
    let mut out = std::io::stdout().lock();
    let mut any_denied = false;
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        n += 1;
        let verdict = match reader.next_into(&mut buf) {
            Ok(Frame::Eof) => break,
            Ok(Frame::TooLong(len)) => verdict_of(&session.on_client_oversized(len), &[], false),
            Ok(Frame::Line(line)) => {
                let judged = if line.iter().all(u8::is_ascii_whitespace) {
                    None
                } else {
                    Some(session.on_client_message(&line))
                };
                // A batch has elements: `[]` is one invalid request, as `run` answers it.
                let batch = line.trim_ascii_start().starts_with(b"[")
                    && !line
                        .iter()
                        .filter(|b| !b.is_ascii_whitespace())
                        .eq(b"[]".iter());
                buf = line;
                match judged {
                    None => continue,
                    Some(Ok(outputs)) => {
                        // What the stages recorded: handed back with the outputs (and, for a
                        // line handed to another stage, kept by the session).
                        let mut records = session.take_kept();
                        records.extend(crate::proxy::pipeline::records(&outputs).cloned());
                        verdict_of(&outputs, &records, batch)
                    }
                    Some(Err(e)) => {
                        eprintln!("capjail: error: {e}");
                        return exit::INTERNAL;
                    }
                }
            }
            Err(e) => {
                eprintln!("capjail: error: reading stdin: {e}");
                return exit::INTERNAL;
            }
        };
        if verdict["verdict"] != "allow" {
            any_denied = true;
        }
        let mut v = verdict;
        v["line"] = json!(n);
        let text = if args.text {
            text_line(&v)
        } else {
            v.to_string()
        };
        if writeln!(out, "{text}").is_err() {
            return exit::INTERNAL;
        }
    }
    if any_denied {
        exit::DENIED
    } else {
        0
    }
}

/// The verdict on one line from what the pipeline would do with it (`outputs`) and what it
/// decided on the way (`kept`): allowed when `run` would forward it.
fn verdict_of(outputs: &[Output], kept: &[Record], batch: bool) -> Value {
    let forwarded = outputs
        .iter()
        .any(|o| matches!(o, Output::Forward | Output::ToServer(_)));
    // The errors `run` would answer with, element by element.
    let mut errors: Vec<Value> = Vec::new();
    for o in outputs {
        if let Output::ToClient(line) = o {
            match serde_json::from_slice::<Value>(line) {
                Ok(Value::Array(a)) => errors.extend(a),
                Ok(v) => errors.push(v),
                Err(_) => {}
            }
        }
    }
    // The rules of the errors that are no decision's (answered as "invalid" below).
    let invalid = |rule: Option<&crate::policy::RuleId>| {
        rule.is_some_and(|r| {
            errors.iter().any(|e| {
                e.pointer("/error/code").and_then(Value::as_i64)
                    != Some(crate::jsonrpc::code::POLICY_VIOLATION)
                    && e.pointer("/error/data/rule").and_then(Value::as_str) == Some(r.as_str())
            })
        })
    };
    let mut results: Vec<Value> = Vec::new();
    for k in kept {
        match k {
            Record::Decision(d) => results.push(decision_json(d.id.as_ref(), &d.decision)),
            // A message refused before any decision has a record too: its error says it
            // below, as "invalid".
            Record::Filter(f) if f.action == FilterAction::Dropped && invalid(f.rule.as_ref()) => {}
            Record::Filter(f) if f.action == FilterAction::Dropped => {
                results.push(json!({"verdict": "deny", "rule": f.rule, "reason": f.reason}))
            }
            _ => {}
        }
    }
    // Refusals before any decision (parse errors, invalid requests, ids in flight).
    for e in &errors {
        let code = e.pointer("/error/code").and_then(Value::as_i64);
        let rule = e.pointer("/error/data/rule").and_then(Value::as_str);
        if code == Some(crate::jsonrpc::code::POLICY_VIOLATION) {
            continue; // a decision's refusal (or a batch element refused with the rest)
        }
        results.push(json!({
            "verdict": "invalid",
            "id": e.get("id").cloned().unwrap_or(Value::Null),
            "method": null,
            "rule": rule,
            "reason": e.pointer("/error/message").cloned().unwrap_or(Value::Null),
        }));
    }
    if !batch {
        return match results.len() {
            0 if forwarded => json!({"verdict": "allow", "method": null, "rule": null}),
            0 => {
                json!({"verdict": "deny", "rule": null, "reason": "dropped: nothing would reach the server"})
            }
            _ => {
                let mut v = results.swap_remove(0);
                if forwarded {
                    v["verdict"] = json!("allow");
                }
                v
            }
        };
    }
    json!({"verdict": if forwarded { "allow" } else { "deny" }, "batch": results,
           "reason": if forwarded { Value::Null } else { json!("a batch with a refused element is refused whole") }})
}

fn decision_json(id: Option<&Value>, d: &crate::check::decide::Decision) -> Value {
    let mut v = serde_json::to_value(d).expect("a decision serialises");
    v["id"] = id.cloned().unwrap_or(Value::Null);
    if let Some(den) = &d.denial {
        v["reason"] = json!(den.reason);
    }
    v
}

fn text_line(v: &Value) -> String {
    format!(
        "line {}: {} {} {} {}{}",
        v["line"],
        v["verdict"].as_str().unwrap_or("?").to_uppercase(),
        v["method"].as_str().unwrap_or("-"),
        v["tool"].as_str().unwrap_or(""),
        v["rule"]
            .as_str()
            .map(|r| format!("[{r}] "))
            .unwrap_or_default(),
        v["reason"].as_str().unwrap_or("")
    )
}
