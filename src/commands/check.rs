//! `capjail check`: decide JSON-RPC lines from stdin without a server.

use std::io::{BufRead, Write};

use serde_json::{json, Value};

use crate::check::decide::{decide, Context, StaticCatalog};
use crate::check::path::PathContext;
use crate::check::RealWorld;
use crate::exit;
use crate::jsonrpc::{self, parse_strict, ParseError, Shape};
use crate::policy::RuleId;

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
            StaticCatalog {
                name: Some(p.name.clone()),
                tools: p.tools,
            }
        }
        Ok(None) => {
            // No server to identify: every built-in profile's tools (first one wins).
            let mut tools = std::collections::BTreeMap::new();
            for p in crate::profile::builtin_profiles() {
                for (k, v) in p.tools {
                    tools.entry(k).or_insert(v);
                }
            }
            StaticCatalog { name: None, tools }
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
    let ctx = Context {
        policy: &policy,
        catalog: &catalog,
        paths: &paths,
        world: &RealWorld,
    };

    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut any_denied = false;
    for (n, line) in stdin.lock().split(b'\n').enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("capjail: error: reading stdin: {e}");
                return exit::INTERNAL;
            }
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let verdict = verdict_for(&ctx, &line, policy.limits.max_depth);
        if verdict["verdict"] != "allow" {
            any_denied = true;
        }
        let mut v = verdict;
        v["line"] = json!(n + 1);
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

fn verdict_for(ctx: &Context, line: &[u8], max_depth: usize) -> Value {
    let v = match parse_strict(line, max_depth) {
        Ok(v) => v,
        Err(ParseError::Syntax(m)) => {
            return json!({"verdict": "invalid", "reason": format!("parse error: {m}"), "rule": RuleId::ProtocolInvalidJson})
        }
        Err(ParseError::Refused(m)) => {
            return json!({"verdict": "invalid", "reason": m, "rule": RuleId::ProtocolStrictJson})
        }
    };
    let items: Vec<&Value> = match &v {
        Value::Array(a) if a.is_empty() => {
            return json!({"verdict": "invalid", "reason": "empty batch", "rule": RuleId::ProtocolEmptyBatch})
        }
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut results = Vec::new();
    for item in items {
        results.push(match jsonrpc::shape(item) {
            Err(e) => json!({"verdict": "invalid", "reason": e.to_string(), "rule": RuleId::ProtocolInvalidRequest}),
            Ok(Shape::Response { id }) => {
                json!({"verdict": "allow", "id": id, "method": null, "rule": "protocol"})
            }
            Ok(Shape::Request { id, method, params }) => {
                decision_json(Some(id), decide(ctx, method, params))
            }
            Ok(Shape::Notification { method, params }) => {
                decision_json(None, decide(ctx, method, params))
            }
        });
    }
    if results.len() == 1 && !v.is_array() {
        return results.pop().expect("one result");
    }
    let all_allowed = results.iter().all(|r| r["verdict"] == "allow");
    json!({"verdict": if all_allowed { "allow" } else { "deny" }, "batch": results,
           "reason": if all_allowed { Value::Null } else { json!("a batch with a refused element is refused whole") }})
}

fn decision_json(id: Option<&Value>, d: crate::check::decide::Decision) -> Value {
    let mut v = serde_json::to_value(&d).expect("a decision serialises");
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
