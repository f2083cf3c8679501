//! Pure judging: what the client received and which effects happened -> one outcome per case
//! and mode. No I/O here.

use serde_json::Value;

use super::suite::Kind;

/// Which layers were active for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layers {
    pub(crate) proxy: bool,
    pub(crate) kernel: bool,
}

/// The verdict for one case in one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The attack was refused by capjail's proxy and its effect did not happen.
    ContainedProxy(String),
    /// The request reached the (confined) server, and the effect did not happen although it
    /// happens unconfined.
    ContainedKernel(String),
    /// No effect, but none of capjail's layers can take the credit: the attack does not work
    /// against this server even unconfined.
    NoEffect(String),
    /// The effect happened.
    Leaked(String),
    /// A legitimate operation worked.
    Allowed,
    /// A legitimate operation was refused or did not have its effect.
    FalseBlock(String),
    /// Not run (no such tool, no network namespace, no kernel layer, ...).
    Skipped(String),
    /// The harness could not run the case (server did not start, timeout, ...).
    Error(String),
}

impl Outcome {
    /// Short label for tables.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Outcome::ContainedProxy(_) => "contained (proxy)",
            Outcome::ContainedKernel(_) => "contained (kernel)",
            Outcome::NoEffect(_) => "no effect",
            Outcome::Leaked(_) => "LEAKED",
            Outcome::Allowed => "allowed",
            Outcome::FalseBlock(_) => "FALSE BLOCK",
            Outcome::Skipped(_) => "skipped",
            Outcome::Error(_) => "ERROR",
        }
    }

    /// Stable machine name (JSON `outcome`).
    pub(crate) fn key(&self) -> &'static str {
        match self {
            Outcome::ContainedProxy(_) | Outcome::ContainedKernel(_) => "contained",
            Outcome::NoEffect(_) => "no_effect",
            Outcome::Leaked(_) => "leaked",
            Outcome::Allowed => "allowed",
            Outcome::FalseBlock(_) => "false_block",
            Outcome::Skipped(_) => "skipped",
            Outcome::Error(_) => "error",
        }
    }

    /// For `contained`: which layer.
    pub(crate) fn by(&self) -> Option<&'static str> {
        match self {
            Outcome::ContainedProxy(_) => Some("proxy"),
            Outcome::ContainedKernel(_) => Some("kernel"),
            _ => None,
        }
    }

    pub(crate) fn detail(&self) -> &str {
        match self {
            Outcome::ContainedProxy(d)
            | Outcome::ContainedKernel(d)
            | Outcome::NoEffect(d)
            | Outcome::Leaked(d)
            | Outcome::FalseBlock(d)
            | Outcome::Skipped(d)
            | Outcome::Error(d) => d,
            Outcome::Allowed => "",
        }
    }

    /// A failure when it happens in full mode (the exit status).
    pub(crate) fn is_failure(&self) -> bool {
        matches!(
            self,
            Outcome::Leaked(_) | Outcome::FalseBlock(_) | Outcome::Error(_)
        )
    }
}

/// What one run of a case produced.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// The replies to the case's own messages (handshake and sync pings left out); a batch
    /// reply is one array value.
    pub(crate) replies: Vec<Value>,
    /// For each of the case's effects, in order: did it happen?
    pub(crate) happened: Vec<(String, bool)>,
}

/// Is this reply capjail's refusal? -32001 always is (only capjail sends it); -32600/-32700 are
/// capjail's when its proxy is on (it parses every line strictly and never forwards what it did
/// not understand). For a batch, any element.
pub(crate) fn proxy_refusal(reply: &Value, layers: Layers) -> Option<String> {
    if let Some(items) = reply.as_array() {
        return items.iter().find_map(|r| proxy_refusal(r, layers));
    }
    let err = reply.get("error")?;
    let code = err.get("code").and_then(Value::as_i64)?;
    let capjail = code == -32001 || (layers.proxy && (code == -32600 || code == -32700));
    if !capjail {
        return None;
    }
    let reason = err
        .pointer("/data/reason")
        .or_else(|| err.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("refused");
    Some(format!("{code}: {}", clip(reason, 160)))
}

/// A successful tool result: `result` present and `isError` not true.
pub(crate) fn tool_ok(reply: &Value) -> bool {
    reply.get("result").is_some() && reply.pointer("/result/isError") != Some(&Value::Bool(true))
}

/// All text content of a tool result (or the error message), for details and `ResultContains`.
pub(crate) fn reply_text(reply: &Value) -> String {
    if let Some(items) = reply.pointer("/result/content").and_then(Value::as_array) {
        return items
            .iter()
            .filter_map(|c| c.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n");
    }
    if let Some(m) = reply.pointer("/error/message").and_then(Value::as_str) {
        return m.to_string();
    }
    reply.to_string()
}

/// Does any of `tokens` occur in `bytes`?
pub(crate) fn contains_any(bytes: &[u8], tokens: &[&str]) -> bool {
    tokens
        .iter()
        .any(|t| !t.is_empty() && bytes.windows(t.len()).any(|w| w == t.as_bytes()))
}

/// One line of what the server said, for a detail.
fn summary(obs: &Observed) -> String {
    match obs.replies.last() {
        None => "no reply".into(),
        Some(r) if r.get("error").is_some() => {
            format!("server error: {}", clip(&reply_text(r), 120))
        }
        Some(r) if !tool_ok(r) => format!("tool error: {}", clip(&reply_text(r), 120)),
        Some(r) => format!("result: {}", clip(&reply_text(r), 120)),
    }
}

/// The outcome of one case in one mode.
pub(crate) fn judge(kind: Kind, layers: Layers, obs: &Observed) -> Outcome {
    let refusal = obs.replies.iter().find_map(|r| proxy_refusal(r, layers));
    match kind {
        Kind::Attack => {
            let hit: Vec<&str> = obs
                .happened
                .iter()
                .filter(|(_, h)| *h)
                .map(|(e, _)| e.as_str())
                .collect();
            if !hit.is_empty() {
                Outcome::Leaked(hit.join(", "))
            } else if let Some(r) = refusal {
                Outcome::ContainedProxy(r)
            } else if layers.kernel {
                Outcome::ContainedKernel(summary(obs))
            } else {
                Outcome::NoEffect(summary(obs))
            }
        }
        Kind::Legit => {
            let missing: Vec<&str> = obs
                .happened
                .iter()
                .filter(|(_, h)| !*h)
                .map(|(e, _)| e.as_str())
                .collect();
            if let Some(r) = refusal {
                Outcome::FalseBlock(format!("refused by capjail: {r}"))
            } else if !missing.is_empty() {
                Outcome::FalseBlock(format!(
                    "{} did not happen; {}",
                    missing.join(", "),
                    summary(obs)
                ))
            } else {
                Outcome::Allowed
            }
        }
    }
}

/// Credit a layer only for what works unconfined: when the unconfined baseline of an attack did
/// not leak, "contained by kernel" in another mode becomes "no effect".
pub(crate) fn reconcile(baseline: &Outcome, other: Outcome) -> Outcome {
    match (baseline, other) {
        (Outcome::NoEffect(_) | Outcome::ContainedProxy(_), Outcome::ContainedKernel(d)) => {
            Outcome::NoEffect(format!("no effect even unconfined; {d}"))
        }
        (_, o) => o,
    }
}

fn clip(s: &str, n: usize) -> String {
    let s = s.replace(['\n', '\r'], " ");
    if s.chars().count() <= n {
        s
    } else {
        format!("{}...", s.chars().take(n).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PROXY: Layers = Layers {
        proxy: true,
        kernel: false,
    };
    const KERNEL: Layers = Layers {
        proxy: false,
        kernel: true,
    };
    const FULL: Layers = Layers {
        proxy: true,
        kernel: true,
    };
    const NONE: Layers = Layers {
        proxy: false,
        kernel: false,
    };

    fn obs(replies: Vec<Value>, happened: &[bool]) -> Observed {
        Observed {
            replies,
            happened: happened
                .iter()
                .enumerate()
                .map(|(i, h)| (format!("e{i}"), *h))
                .collect(),
        }
    }

    fn refused() -> Value {
        json!({"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"capjail policy violation: no","data":{"reason":"no","rule":"filesystem.path"}}})
    }

    #[test]
    fn compare_judge_effect_wins_over_refusal() {
        let o = judge(Kind::Attack, FULL, &obs(vec![refused()], &[false, true]));
        assert_eq!(o, Outcome::Leaked("e1".into()));
        assert!(o.is_failure());
    }

    #[test]
    fn compare_judge_attack_outcomes_per_layer() {
        let eacces = json!({"jsonrpc":"2.0","id":1,"result":{"isError":true,"content":[{"type":"text","text":"EACCES"}]}});
        assert!(
            matches!(judge(Kind::Attack, PROXY, &obs(vec![refused()], &[false])), Outcome::ContainedProxy(r) if r.contains("-32001"))
        );
        assert!(
            matches!(judge(Kind::Attack, KERNEL, &obs(vec![eacces.clone()], &[false])), Outcome::ContainedKernel(d) if d.contains("EACCES"))
        );
        assert!(matches!(
            judge(Kind::Attack, PROXY, &obs(vec![eacces.clone()], &[false])),
            Outcome::NoEffect(_)
        ));
        assert!(
            matches!(judge(Kind::Attack, NONE, &obs(vec![], &[false])), Outcome::NoEffect(d) if d == "no reply")
        );
        // -32600 counts as capjail's only when the proxy is on.
        let invalid =
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request"}});
        assert!(matches!(
            judge(Kind::Attack, FULL, &obs(vec![invalid.clone()], &[false])),
            Outcome::ContainedProxy(_)
        ));
        assert!(matches!(
            judge(Kind::Attack, KERNEL, &obs(vec![invalid], &[false])),
            Outcome::ContainedKernel(_)
        ));
        // A refused batch: an array of errors.
        let batch =
            json!([{"jsonrpc":"2.0","id":"ok","error":{"code":-32600,"message":"x"}}, refused()]);
        assert!(matches!(
            judge(Kind::Attack, PROXY, &obs(vec![batch], &[false])),
            Outcome::ContainedProxy(_)
        ));
    }

    #[test]
    fn compare_judge_legit() {
        let ok = json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}});
        assert_eq!(
            judge(Kind::Legit, FULL, &obs(vec![ok.clone()], &[true, true])),
            Outcome::Allowed
        );
        assert!(
            matches!(judge(Kind::Legit, FULL, &obs(vec![ok], &[true, false])), Outcome::FalseBlock(d) if d.contains("e1"))
        );
        let o = judge(Kind::Legit, PROXY, &obs(vec![refused()], &[true]));
        assert!(matches!(&o, Outcome::FalseBlock(d) if d.contains("refused by capjail")));
        assert!(o.is_failure());
    }

    #[test]
    fn compare_reconcile_credits_only_real_attacks() {
        let k = Outcome::ContainedKernel("x".into());
        assert!(matches!(
            reconcile(&Outcome::NoEffect("".into()), k.clone()),
            Outcome::NoEffect(_)
        ));
        assert_eq!(reconcile(&Outcome::Leaked("".into()), k.clone()), k);
        let p = Outcome::ContainedProxy("x".into());
        assert_eq!(reconcile(&Outcome::NoEffect("".into()), p.clone()), p);
    }

    #[test]
    fn compare_helpers() {
        assert!(contains_any(b"xx SECRET yy", &["nope", "SECRET"]));
        assert!(!contains_any(b"xx", &["", "y"]));
        let r =
            json!({"result":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}});
        assert_eq!(reply_text(&r), "a\nb");
        assert!(tool_ok(&r));
        assert!(proxy_refusal(&json!({"error":{"code":-32602,"message":"x"}}), FULL).is_none());
        assert_eq!(Outcome::ContainedKernel("".into()).by(), Some("kernel"));
        assert_eq!(clip("a\nbcdef", 3), "a b...");
    }
}
