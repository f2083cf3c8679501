//! Redaction of request params: a secret's value is replaced by a digest of it.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::canon::{canonical_json, sha256_hex, write_canonical, write_object};
use crate::policy::Policy;

/// Key names always redacted (case-insensitive): exact names and `*` patterns.
pub(crate) const DEFAULT_REDACT: &[&str] = &[
    "content",
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "*_token",
    "*_key",
    "*secret*",
];

/// Which keys are redacted. Patterns are case-insensitive; `*` matches any run of characters.
#[derive(Debug, Clone)]
pub(crate) struct Redactor {
    /// The patterns by shape, matched without backtracking (every record's every key is
    /// matched against all of them).
    compiled: Vec<Pattern>,
    /// Which key bytes can end a key an exact or suffix pattern matches, and begin one a
    /// prefix pattern matches (bit sets over bytes, both ASCII cases): most keys are told
    /// apart from most patterns by these bytes alone.
    ends: ByteSet,
    starts: ByteSet,
    /// `compiled` in three groups: the exact and suffix patterns tried when `ends` has the
    /// key's last byte, the prefix ones when `starts` has its first, the others always.
    by_end: Vec<Pattern>,
    by_start: Vec<Pattern>,
    others: Vec<Pattern>,
}

/// A set of bytes.
#[derive(Debug, Clone, Copy, Default)]
struct ByteSet([u64; 4]);

impl ByteSet {
    /// Add `b` in both ASCII cases (patterns match case-insensitively).
    fn add(&mut self, b: u8) {
        for b in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
            self.0[usize::from(b >> 6)] |= 1 << (b & 63);
        }
    }

    fn has(&self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] & (1 << (b & 63)) != 0
    }
}

/// A lower-case pattern by shape.
#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Suffix(String),
    Prefix(String),
    Contains(String),
    Glob(String),
}

impl Pattern {
    fn of(p: &str) -> Pattern {
        let inner = p.trim_matches('*');
        if inner.contains('*') {
            return Pattern::Glob(p.to_string());
        }
        match (p.starts_with('*'), p.ends_with('*') && p.len() > 1) {
            (false, false) => Pattern::Exact(p.to_string()),
            (true, false) => Pattern::Suffix(inner.to_string()),
            (false, true) => Pattern::Prefix(inner.to_string()),
            (true, true) => Pattern::Contains(inner.to_string()),
        }
    }

    fn matches(&self, key: &str) -> bool {
        let k = key.as_bytes();
        match self {
            Pattern::Exact(p) => key.eq_ignore_ascii_case(p),
            Pattern::Suffix(p) => {
                k.len() >= p.len() && k[k.len() - p.len()..].eq_ignore_ascii_case(p.as_bytes())
            }
            Pattern::Prefix(p) => {
                k.len() >= p.len() && k[..p.len()].eq_ignore_ascii_case(p.as_bytes())
            }
            Pattern::Contains(p) => {
                p.is_empty()
                    || k.windows(p.len())
                        .any(|w| w.eq_ignore_ascii_case(p.as_bytes()))
            }
            Pattern::Glob(p) => glob(p.as_bytes(), k),
        }
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new(std::iter::empty::<&str>())
    }
}

impl Redactor {
    /// The defaults plus `extra`.
    pub(crate) fn new<S: AsRef<str>>(extra: impl IntoIterator<Item = S>) -> Redactor {
        let mut patterns: Vec<String> = DEFAULT_REDACT.iter().map(|s| s.to_string()).collect();
        patterns.extend(extra.into_iter().map(|s| s.as_ref().to_ascii_lowercase()));
        let compiled: Vec<Pattern> = patterns.iter().map(|p| Pattern::of(p)).collect();
        let (mut ends, mut starts) = (ByteSet::default(), ByteSet::default());
        let (mut by_end, mut by_start, mut others) = (Vec::new(), Vec::new(), Vec::new());
        for p in &compiled {
            // Empty patterns have no byte to go by: always tried.
            match p {
                Pattern::Exact(x) | Pattern::Suffix(x) if !x.is_empty() => {
                    ends.add(x.as_bytes()[x.len() - 1]);
                    by_end.push(p.clone());
                }
                Pattern::Prefix(x) if !x.is_empty() => {
                    starts.add(x.as_bytes()[0]);
                    by_start.push(p.clone());
                }
                _ => others.push(p.clone()),
            }
        }
        Redactor {
            compiled,
            ends,
            starts,
            by_end,
            by_start,
            others,
        }
    }

    /// The defaults plus the policy's `audit.redact`.
    pub(crate) fn from_policy(policy: &Policy) -> Redactor {
        Redactor::new(policy.audit.redact.iter())
    }

    pub(crate) fn is_secret(&self, key: &str) -> bool {
        let (Some(&first), Some(&last)) = (key.as_bytes().first(), key.as_bytes().last()) else {
            return self.compiled.iter().any(|p| p.matches(key));
        };
        (self.ends.has(last) && self.by_end.iter().any(|p| p.matches(key)))
            || (self.starts.has(first) && self.by_start.iter().any(|p| p.matches(key)))
            || self.others.iter().any(|p| p.matches(key))
    }

    /// Append the canonical JSON of [`Redactor::redact`]`(v)` to `out`, without building the
    /// copy (the audit writer's hot path).
    pub(crate) fn write_redacted(&self, out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::Object(m) => write_object(out, m, |out: &mut Vec<u8>, k: &str, item: &Value| {
                if self.is_secret(k) {
                    write_marker(out, item);
                } else {
                    self.write_redacted(out, item);
                }
            }),
            Value::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    self.write_redacted(out, item);
                }
                out.push(b']');
            }
            other => write_canonical(out, other),
        }
    }

    /// A copy of `v` with the value of every secret key (at any depth) replaced by
    /// `{"redacted": "sha256:<hex of the canonical JSON of the value>"}`.
    pub(crate) fn redact(&self, v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::with_capacity(m.len());
                for (k, item) in m {
                    let item = if self.is_secret(k) {
                        redacted(item)
                    } else {
                        self.redact(item)
                    };
                    out.insert(k.clone(), item);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(|i| self.redact(i)).collect()),
            other => other.clone(),
        }
    }
}

/// Append the canonical JSON of [`redacted`]`(original)`.
fn write_marker(out: &mut Vec<u8>, original: &Value) {
    // The value's canonical JSON is written where the marker goes, hashed there, and cut
    // off again (no scratch buffer).
    let start = out.len();
    write_canonical(out, original);
    let digest = Sha256::digest(&out[start..]);
    out.truncate(start);
    let mut hex = [0u8; 64];
    hex::encode_to_slice(digest, &mut hex).expect("64 hex digits");
    out.extend_from_slice(b"{\"redacted\":\"sha256:");
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\"}");
}

/// The marker that replaces a secret value.
pub(crate) fn redacted(original: &Value) -> Value {
    json!({ "redacted": format!("sha256:{}", sha256_hex(canonical_json(original).as_bytes())) })
}

/// Is this value (or anything inside it) a redaction marker?
pub(crate) fn contains_redaction(v: &Value) -> bool {
    match v {
        Value::Object(m) => is_marker(m) || m.values().any(contains_redaction),
        Value::Array(items) => items.iter().any(contains_redaction),
        _ => false,
    }
}

fn is_marker(m: &Map<String, Value>) -> bool {
    m.len() == 1
        && m.get("redacted")
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("sha256:"))
}

/// `*` glob over bytes; `p` is lower-case, `s` is compared ASCII-case-insensitively.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first().map(u8::to_ascii_lowercase) == Some(*c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_patterns() {
        let r = Redactor::new(["X-Custom"]);
        for k in [
            "content",
            "Password",
            "GITHUB_TOKEN",
            "api_key",
            "ssh_key",
            "clientSecret",
            "x-custom",
            "Authorization",
        ] {
            assert!(r.is_secret(k), "{k}");
        }
        for k in ["path", "name", "progressToken", "keys", "url"] {
            assert!(!r.is_secret(k), "{k}");
        }
        // The shapes agree with the glob they stand for.
        let keys = [
            "a", "ab", "xab", "abx", "xabx", "AB_TOKEN", "_token", "token", "", "a*b",
        ];
        for p in [
            "ab", "*ab", "ab*", "*ab*", "*", "**", "a*b", "*_token", "*a*b*",
        ] {
            for k in keys {
                assert_eq!(
                    Pattern::of(p).matches(k),
                    glob(p.as_bytes(), k.as_bytes()),
                    "{p} {k}"
                );
            }
        }
    }

    /// The byte prefilter never changes the answer: the patterns tried one by one agree on
    /// generated keys, for the defaults and for extra patterns of every shape.
    #[test]
    fn prefilter_agrees_with_every_pattern() {
        use crate::audit::canon::tests::Rng;
        let sets: &[&[&str]] = &[
            &[],
            &[
                "X-Custom", "*", "ab*", "*mid*", "a*b", "", "*_id", "Ünï", "é*",
            ],
            &["**", "*z"],
            &["q"],
        ];
        let mut rng = Rng(42);
        for set in sets {
            let r = Redactor::new(set.iter());
            let mut keys: Vec<String> = [
                "",
                "a",
                "ab",
                "abx",
                "xab",
                "amidb",
                "AB",
                "x-custom",
                "token",
                "TOKEN",
                "tokeN",
                "my_token",
                "ssh_key",
                "secretive",
                "content",
                "q",
                "Q",
                "z",
                "user_id",
                "Ünï",
                "ünï",
                "é",
                "É",
                "progressToken",
                "arguments",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            keys.extend((0..3000).map(|_| rng.text(5)));
            for k in keys {
                let reference = r.compiled.iter().any(|p| p.matches(&k));
                assert_eq!(r.is_secret(&k), reference, "{set:?} {k:?}");
            }
        }
    }

    #[test]
    fn redaction_keeps_a_digest_of_the_canonical_value() {
        let r = Redactor::default();
        let params = json!({"name": "write_file", "arguments": {"path": "/tmp/a", "content": "hunter2", "opts": {"auth_token": {"b": 1, "a": 2}}}});
        let out = r.redact(&params);
        assert_eq!(out["arguments"]["path"], "/tmp/a");
        let want = format!("sha256:{}", sha256_hex(b"\"hunter2\""));
        assert_eq!(out["arguments"]["content"], json!({"redacted": want}));
        // Digest of the canonical form: key order of the original does not matter.
        let want = format!("sha256:{}", sha256_hex(br#"{"a":2,"b":1}"#));
        assert_eq!(out["arguments"]["opts"]["auth_token"]["redacted"], want);
        assert!(!out.to_string().contains("hunter2"));
        assert!(contains_redaction(&out["arguments"]["content"]));
        assert!(!contains_redaction(&out["arguments"]["path"]));
        // The streaming form writes exactly the canonical JSON of the copy.
        let mut streamed = Vec::new();
        r.write_redacted(&mut streamed, &params);
        assert_eq!(String::from_utf8(streamed).unwrap(), canonical_json(&out));
    }
}
