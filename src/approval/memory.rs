//! What one session remembers: approvals "for the rest of this session" and the tokens of
//! `input_required` questions still open (pure, apart from the random token).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Approvals that cover the rest of the session: the same tool under the same rule, nothing
/// wider (the rule decided that the resource needs asking; a resource another rule gates is
/// asked again).
#[derive(Debug, Default)]
pub(crate) struct SessionMemory {
    approved: HashSet<(String, String)>,
}

impl SessionMemory {
    pub(crate) fn remember(&mut self, tool: &str, rule: &str) {
        self.approved.insert((tool.to_string(), rule.to_string()));
    }

    pub(crate) fn covers(&self, tool: &str, rule: &str) -> bool {
        self.approved
            .contains(&(tool.to_string(), rule.to_string()))
    }
}

/// An `input_required` question capjail answered a call with: what the retry must match.
#[derive(Debug, Clone)]
pub(crate) struct OpenQuestion {
    /// The digest of the call asked about (method, tool, arguments).
    pub(crate) digest: String,
    /// The original request's params (forwarded, under the retry's id, once approved).
    pub(crate) params: Option<Value>,
    pub(crate) asked_at: Instant,
}

/// Why a retry's answer is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// No such token was issued (or it was already used: tokens are single use).
    Unknown,
    /// Issued for another call.
    OtherCall,
    /// Issued too long ago.
    Expired,
}

/// Tokens are 128 random bits, single use, bound to one call's digest, valid for `ttl`.
#[derive(Debug)]
pub(crate) struct TokenStore {
    open: HashMap<String, OpenQuestion>,
    ttl: Duration,
}

/// At most this many questions open at once (the oldest is forgotten first).
const MAX_OPEN: usize = 256;

impl TokenStore {
    pub(crate) fn new(ttl: Duration) -> TokenStore {
        TokenStore {
            open: HashMap::new(),
            ttl,
        }
    }

    pub(crate) fn issue(&mut self, q: OpenQuestion) -> std::io::Result<String> {
        if self.open.len() >= MAX_OPEN {
            if let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, q)| q.asked_at)
                .map(|(k, _)| k.clone())
            {
                self.open.remove(&oldest);
            }
        }
        let token = format!("capjail-approval:{}", random_hex()?);
        self.open.insert(token.clone(), q);
        Ok(token)
    }

    /// Take the question a retry answers. The token is spent whatever the outcome.
    pub(crate) fn redeem(
        &mut self,
        token: &str,
        digest: &str,
        now: Instant,
    ) -> Result<OpenQuestion, TokenError> {
        let q = self.open.remove(token).ok_or(TokenError::Unknown)?;
        if now.duration_since(q.asked_at) > self.ttl {
            return Err(TokenError::Expired);
        }
        if q.digest != digest {
            return Err(TokenError::OtherCall);
        }
        Ok(q)
    }
}

/// 128 bits from the kernel's random source, as hex.
pub(crate) fn random_hex() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(d: &str) -> OpenQuestion {
        OpenQuestion {
            digest: d.into(),
            params: None,
            asked_at: Instant::now(),
        }
    }

    #[test]
    fn tokens_are_single_use_and_bound_to_their_call() {
        let mut s = TokenStore::new(Duration::from_secs(60));
        let t = s.issue(open("a")).unwrap();
        let t2 = s.issue(open("a")).unwrap();
        assert_ne!(t, t2);
        assert!(t.len() > 40);
        let now = Instant::now();
        assert_eq!(
            s.redeem("capjail-approval:00", "a", now).unwrap_err(),
            TokenError::Unknown
        );
        assert_eq!(s.redeem(&t2, "b", now).unwrap_err(), TokenError::OtherCall);
        // Spent by the failed attempt.
        assert_eq!(s.redeem(&t2, "a", now).unwrap_err(), TokenError::Unknown);
        assert!(s.redeem(&t, "a", now).is_ok());
        assert_eq!(s.redeem(&t, "a", now).unwrap_err(), TokenError::Unknown);
        let t3 = s.issue(open("a")).unwrap();
        assert_eq!(
            s.redeem(&t3, "a", now + Duration::from_secs(61))
                .unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn session_memory_is_per_tool_and_rule() {
        let mut m = SessionMemory::default();
        m.remember("write_file", "require_approval[0]");
        assert!(m.covers("write_file", "require_approval[0]"));
        assert!(!m.covers("write_file", "require_approval[1]"));
        assert!(!m.covers("edit_file", "require_approval[0]"));
    }
}
