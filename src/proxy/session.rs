//! What the two directions of one session know about each other: requests in flight both
//! ways, the server's tools, the ids capjail refused.

use std::collections::{HashMap, VecDeque};

/// The maps of every message (ids the client chose): foldhash, seeded per map (issue 19: SipHash
/// was 4% of a call's instructions, six lookups of short keys).
type FastMap<K, V> = foldhash::HashMap<K, V>;

use serde_json::Value;

use super::catalog::SessionCatalog;
use crate::inline_text::InlineText;

/// What to do with the server's response to a client request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Relay as it is.
    Plain,
    /// `initialize` / `server/discover`: read `serverInfo` to pick a profile.
    Initialize,
    /// `tools/list`: learn schemas, hide blocked tools.
    ToolsList,
}

/// A request the server sent to the client, whose answer capjail must see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerRequest {
    Plain,
    /// `roots/list`: the answer is intersected with the policy's mounts.
    RootsList,
}

/// How many refused ids are remembered (to drop their cancellations).
const REFUSED_MEMORY: usize = 4096;
/// How many cancelled ids are remembered (to name a late answer's drop).
const CANCELLED_MEMORY: usize = 4096;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) catalog: SessionCatalog,
    /// Client requests forwarded and not yet answered, by id key.
    pub(crate) pending: FastMap<InlineText, Pending>,
    /// Server requests relayed to the client and not yet answered, by id key.
    pub(crate) server_requests: HashMap<String, ServerRequest>,
    refused: VecDeque<String>,
    /// Plain requests the client cancelled, newest last: their late answers are dropped.
    cancelled: VecDeque<String>,
    /// Pinned and scanned tool definitions (`trust`); `None` when the proxy does not check.
    pub(crate) trust: Option<crate::trust::TrustSession>,
    /// What the content checks remember in this session (known secrets, armed flows).
    pub(crate) content: crate::content::SessionContent,
    /// Environment reads in flight, by id key: what their answers may show (`check::env_read`).
    pub(crate) env_reads: HashMap<String, crate::check::env_read::Readable>,
}

impl Shared {
    pub(crate) fn new(catalog: SessionCatalog) -> Shared {
        Shared {
            catalog,
            pending: FastMap::default(),
            server_requests: HashMap::new(),
            refused: VecDeque::new(),
            cancelled: VecDeque::new(),
            trust: None,
            content: Default::default(),
            env_reads: HashMap::new(),
        }
    }

    pub(crate) fn remember_refused(&mut self, key: String) {
        if self.refused.len() == REFUSED_MEMORY {
            self.refused.pop_front();
        }
        self.refused.push_back(key);
    }

    pub(crate) fn was_refused(&self, key: &str) -> bool {
        self.refused.iter().any(|k| k == key)
    }

    /// The client cancelled a request in flight (`notifications/cancelled`): a plain request is
    /// no longer in flight, so everything remembered for it goes now, not when (if ever) the
    /// server answers. A server that honours the cancellation never answers (the TypeScript
    /// SDK's do not), and its entries would otherwise stay for the rest of the session. Its
    /// late answer, if one comes, is dropped (`was_cancelled`), as the client ignores it (the
    /// MCP specification's cancellation). `true` when a plain request was forgotten.
    pub(crate) fn forget_cancelled(&mut self, key: &str) -> bool {
        if self.pending.get(key) != Some(&Pending::Plain) {
            return false; // listings and `initialize` are read when answered: kept
        }
        self.pending.remove(key);
        self.content.forget_request(key);
        self.env_reads.remove(key);
        if self.cancelled.len() == CANCELLED_MEMORY {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(key.to_owned());
        true
    }

    /// Did the client cancel this request (one of the last [`CANCELLED_MEMORY`])?
    pub(crate) fn was_cancelled(&self, key: &str) -> bool {
        self.cancelled.iter().any(|k| k == key)
    }

    /// A request the server sent to the client: its answer will be read (`kind`).
    pub(crate) fn remember_server_request(&mut self, key: String, kind: ServerRequest) {
        self.server_requests.insert(key, kind);
    }

    /// The client request the server answers now, no longer in flight (`None`: none has
    /// this id).
    pub(crate) fn answered(&mut self, key: &str) -> Option<Pending> {
        self.pending.remove(key)
    }

    /// What the answer to an environment read may show, once (`None`: not one).
    pub(crate) fn take_env_read(&mut self, key: &str) -> Option<crate::check::env_read::Readable> {
        if self.env_reads.is_empty() {
            return None; // the common case: no key hashed
        }
        self.env_reads.remove(key)
    }
}

/// The key of a JSON-RPC id: its canonical JSON text, so `1` and `"1"` differ and escapes do not.
pub(crate) fn id_key(id: &Value) -> String {
    match id_key_text(id) {
        KeyText::Digits { buf, at } => {
            String::from(std::str::from_utf8(&buf[usize::from(at)..]).expect("ASCII digits"))
        }
        KeyText::Owned(s) => s,
    }
}

/// [`id_key`], held inline (no allocation) when short: the key of the maps the answer's
/// thread removes it from (`Shared::pending`, the content checks' requests).
pub(crate) fn id_key_inline(id: &Value) -> InlineText {
    InlineText::new(&id_key_text(id))
}

/// [`id_key`]'s text, held on the stack for a numeric id (the usual one): a lookup by key
/// (an answer's) allocates nothing.
pub(crate) enum KeyText {
    /// `buf[at..]`: ASCII digits, after a `-` for a negative number.
    Digits {
        buf: [u8; 21],
        at: u8,
    },
    Owned(String),
}

impl std::ops::Deref for KeyText {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            KeyText::Digits { buf, at } => {
                std::str::from_utf8(&buf[usize::from(*at)..]).expect("ASCII digits")
            }
            KeyText::Owned(s) => s,
        }
    }
}

/// The text of [`id_key`].
pub(crate) fn id_key_text(id: &Value) -> KeyText {
    match id {
        // The usual id: its digits straight (the same text as serialising the value), written
        // without the formatting machinery (a quarter of this function's cost, issue 19).
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => decimal(u, false),
            (None, Some(i)) => decimal(i.unsigned_abs(), i < 0),
            (None, None) => KeyText::Owned(n.to_string()),
        },
        _ => KeyText::Owned(id.to_string()),
    }
}

/// `n` in decimal, after a `-` when `negative`.
fn decimal(mut n: u64, negative: bool) -> KeyText {
    // u64::MAX has 20 digits; one more byte for the sign.
    let mut buf = [0u8; 21];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buf[at] = b'-';
    }
    KeyText::Digits { buf, at: at as u8 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_keys_are_the_values_text() {
        for id in [
            serde_json::json!(0),
            serde_json::json!(7),
            serde_json::json!(-1),
            serde_json::json!(u64::MAX),
            serde_json::json!(i64::MIN),
            serde_json::json!(i64::MAX),
            serde_json::json!(-9),
            serde_json::json!(-10),
            serde_json::json!(10),
            serde_json::json!(99),
            serde_json::json!(100),
            serde_json::json!(10_000_000_000_000_000_000u64),
            serde_json::json!(9_999_999_999_999_999_999u64),
            serde_json::json!(1.5),
            serde_json::json!(1e300),
            serde_json::json!("1"),
            serde_json::json!("a\"\u{1}é"),
            serde_json::json!(null),
            serde_json::json!({"k": [1, "x"]}),
        ] {
            assert_eq!(id_key(&id), id.to_string());
            assert_eq!(&*id_key_text(&id), id.to_string());
        }
    }
}
