//! CONTENT CHECKS: secrets in what leaves, secrets and instructions in what comes back, and
//! rules over sequences of calls (`flows:`).
//!
//! Detectors are data where they can be (`secrets`), decoders bounded (`encodings`), the scan
//! of one string in `scan`, results in `results`, flow state in `flows`, policy in `config`.
//! `hook` is the thin edge the proxy calls. `text` (hidden Unicode, text addressed to the
//! model) is meant to be shared with the tool-definition checks.

pub(crate) mod approval;
mod borrowed;
mod bytes;
mod class_runs;
pub(crate) mod config;
#[cfg(test)]
mod cpu_bench;
pub(crate) mod encodings;
pub(crate) mod entropy;
pub(crate) mod flows;
pub(crate) mod hook;
pub(crate) mod known;
pub(crate) mod results;
pub mod samples;
pub(crate) mod scan;
pub(crate) mod schema;
pub(crate) mod secrets;
pub(crate) mod shape;
pub(crate) mod text;

use crate::inline_text::InlineText;
use foldhash::HashMap;

pub(crate) use config::{ContentPolicy, FlowPolicy};

/// What one session's content checks remember (held in the proxy's shared session state).
#[derive(Debug, Default)]
pub(crate) struct SessionContent {
    known: known::KnownSecrets,
    env_loaded: bool,
    flows: flows::FlowState,
    /// Requests whose results are scanned, by id key.
    requests: HashMap<InlineText, RequestInfo>,
    /// Where the answers' texts with escapes are unescaped.
    scratch: borrowed::TextScratch,
}

#[derive(Debug, Clone)]
struct RequestInfo {
    tool: Option<InlineText>,
    /// The request read a sensitive path: remember the result's contents as secrets.
    sensitive: Option<String>,
}

impl SessionContent {
    /// The request under `key` is no longer in flight (the client cancelled it): nothing of
    /// it is kept. Its late answer is dropped by the proxy, never checked against nothing.
    pub(crate) fn forget_request(&mut self, key: &str) {
        self.requests.remove(key);
    }

    /// How many requests' results are waiting to be checked (tests of the memory bound).
    #[cfg(test)]
    pub(crate) fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    /// A `tools/call` of `tool` in flight under `key` whose result is scanned (benchmarks).
    #[cfg(test)]
    pub(crate) fn track_for_test(&mut self, key: &str, tool: &str) {
        self.requests.insert(
            key.into(),
            RequestInfo {
                tool: Some(tool.into()),
                sensitive: None,
            },
        );
    }

    /// A secret the results are scanned for, as `environment` withholding adds (benchmarks).
    #[cfg(test)]
    pub(crate) fn know_for_test(&mut self, secret: &str, label: &str) {
        self.known.add(secret, label);
    }
}

/// Does scanning this string need doing at all? (The benign corpus test uses the same entry.)
pub fn scan_outgoing_str(s: &str) -> Vec<String> {
    let mut k = known::KnownSecrets::default();
    let mut sc = scan::Scanner::new(&mut k, true);
    sc.outgoing(s);
    sc.findings.iter().map(|f| f.describe()).collect()
}

/// The findings in a text as a result: secrets, markers, hidden characters (for the benign
/// corpus test).
pub fn scan_result_str(s: &str) -> Vec<String> {
    let mut k = known::KnownSecrets::default();
    let mut sc = scan::Scanner::new(&mut k, false);
    sc.result(s);
    let mut v: Vec<String> = sc.findings.iter().map(|f| f.describe()).collect();
    if let Some(m) = text::injection_marker(s) {
        v.push(format!("injection marker {m:?}"));
    }
    if text::count_hidden(s) > 0 {
        v.push("hidden characters".into());
    }
    v
}
