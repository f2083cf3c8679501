//! Content on the way out at the egress point (issue 18 §4, the checks of issue 17): a plain-HTTP
//! request's URL and the headers that are forwarded, and the host name of a CONNECT or SOCKS5
//! tunnel, go through the same scanner the proxy runs over a tool's arguments (credential
//! detectors, known secrets, every encoding; random-looking strings in plain-HTTP URLs). What
//! the policy's `content.outgoing` says to refuse is refused with the rule
//! `content.outgoing.<class>`. The known secrets are the values of the credential variables
//! capjail withheld from the server (its own environment). TLS is not intercepted: what travels
//! inside a CONNECT tunnel, and any request body, is not seen here.

use std::sync::Mutex;

use crate::content::config::OutAction;
use crate::content::known::{withheld_env, KnownSecrets};
use crate::content::scan::{Finding, Scanner};
use crate::content::ContentPolicy;
use crate::policy::Policy;

/// The outgoing content checks of one session's egress point.
pub(crate) struct OutgoingCheck {
    policy: ContentPolicy,
    known: Mutex<KnownSecrets>,
}

/// A refusal: the rule, a reason that never contains the secret, and the URL with the found
/// spans replaced (for the audit record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContentRefusal {
    pub(crate) rule: crate::policy::RuleId,
    pub(crate) reason: String,
    pub(crate) redacted: String,
}

/// What a request carries out.
pub(crate) struct Outgoing<'a> {
    /// The absolute URL (plain HTTP) or `https://host:port/` (a tunnel).
    pub(crate) url: &'a str,
    /// Judge the URL's randomness too (plain HTTP only: tunnel host names of CDNs look random).
    pub(crate) url_entropy: bool,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    /// The headers forwarded upstream.
    pub(crate) headers: &'a [(String, String)],
}

impl OutgoingCheck {
    /// `None` when the policy turns the content checks off.
    pub(crate) fn new(policy: &Policy) -> Option<OutgoingCheck> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::with_env(policy, &env)
    }

    pub(crate) fn with_env(policy: &Policy, env: &[(String, String)]) -> Option<OutgoingCheck> {
        if !policy.content.enabled {
            return None;
        }
        let mut known = KnownSecrets::default();
        for (k, v) in withheld_env(env, &policy.environment) {
            known.add(
                &v,
                &format!("environment variable {k} (withheld from the server)"),
            );
        }
        Some(OutgoingCheck {
            policy: policy.content.clone(),
            known: Mutex::new(known),
        })
    }

    /// `Ok(notes)`: forward (with what was found and only recorded); `Err`: refuse.
    pub(crate) fn judge(&self, out: &Outgoing) -> Result<Vec<String>, ContentRefusal> {
        let c = &self.policy;
        if c.exempt_hosts
            .iter()
            .any(|h| crate::check::rules::host_matches(h, out.host, out.port))
        {
            return Ok(Vec::new());
        }
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let mut url_findings = {
            let mut sc = Scanner::new(&mut known, out.url_entropy);
            sc.outgoing(out.url);
            std::mem::take(&mut sc.findings)
        };
        let mut header_findings = Vec::new();
        for (name, value) in out.headers {
            let mut sc = Scanner::new(&mut known, false);
            sc.outgoing(value);
            header_findings.extend(sc.findings.drain(..).map(|f| (format!("header {name}"), f)));
        }
        let spans: Vec<_> = url_findings.iter().map(|f| f.span.clone()).collect();
        let all = url_findings
            .drain(..)
            .map(|f| ("URL".to_string(), f))
            .chain(header_findings);
        let mut notes = Vec::new();
        for (place, f) in all {
            let rule = f.class.rule();
            let reason = reason(&place, &f);
            match c.action(f.class) {
                OutAction::Refuse | OutAction::Approval => {
                    let reason = if c.action(f.class) == OutAction::Approval {
                        format!("{reason} (approval is not available at the egress point: refused)")
                    } else {
                        reason
                    };
                    return Err(ContentRefusal {
                        rule,
                        reason,
                        redacted: redact(out.url, &spans),
                    });
                }
                OutAction::Record => notes.push(format!("{rule}: {reason} (recorded, forwarded)")),
                OutAction::Off => {}
            }
        }
        Ok(notes)
    }
}

fn reason(place: &str, f: &Finding) -> String {
    format!(
        "a credential would leave in the request's {place}: {}",
        f.describe()
    )
}

/// `url` with every span replaced by `[REDACTED]` (overlapping spans merged).
pub(crate) fn redact(url: &str, spans: &[std::ops::Range<usize>]) -> String {
    let mut v: Vec<_> = spans
        .iter()
        .filter(|r| r.start < r.end && r.end <= url.len())
        .cloned()
        .collect();
    v.sort_by_key(|r| r.start);
    let mut merged: Vec<std::ops::Range<usize>> = Vec::new();
    for r in v {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let mut out = String::new();
    let mut at = 0;
    for r in merged {
        if !url.is_char_boundary(r.start) || !url.is_char_boundary(r.end) {
            return "[REDACTED]".into();
        }
        out.push_str(&url[at..r.start]);
        out.push_str("[REDACTED]");
        at = r.end;
    }
    out.push_str(&url[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};

    const AWS: &str = "AKIAZ7Q3BT4LCMW2PX5N";

    fn check(extra: &str, env: &[(&str, &str)]) -> Option<OutgoingCheck> {
        let p = load_str(
            &format!(
                "name: t\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"a.example\"]\n{extra}"
            ),
            PolicySource::Inline,
        )
        .unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OutgoingCheck::with_env(&p, &env)
    }

    fn out<'a>(url: &'a str, headers: &'a [(String, String)]) -> Outgoing<'a> {
        Outgoing {
            url,
            url_entropy: true,
            host: "a.example",
            port: 80,
            headers,
        }
    }

    #[test]
    fn egress_content_refuses_credentials_in_url_and_headers() {
        let c = check("", &[("GITHUB_TOKEN", "tok-9f8e7d6c5b4a3")]).unwrap();
        let url = format!("http://a.example/x?k={AWS}&y=1");
        let r = c.judge(&out(&url, &[])).unwrap_err();
        assert_eq!(r.rule, "content.outgoing.cloud");
        assert!(
            !r.reason.contains(AWS) && !r.redacted.contains(AWS),
            "{r:?}"
        );
        assert!(r.redacted.starts_with("http://a.example/x?k="), "{r:?}");
        let h = vec![("X-Trace".to_string(), "id tok-9f8e7d6c5b4a3".to_string())];
        let r = c.judge(&out("http://a.example/x", &h)).unwrap_err();
        assert_eq!(r.rule, "content.outgoing.known");
        assert!(r.reason.contains("header X-Trace"), "{r:?}");
        assert!(!r.reason.contains("tok-9f8e"), "{r:?}");
        let plain = vec![("Accept".to_string(), "text/html".to_string())];
        assert_eq!(
            c.judge(&out("http://a.example/page?q=rust", &plain)),
            Ok(vec![])
        );
    }

    #[test]
    fn egress_content_follows_the_policy() {
        assert!(check("content:\n  enabled: false\n", &[]).is_none());
        let c = check(
            "content:\n  outgoing:\n    classes: {cloud: record}\n    exempt_hosts: [\"b.example\"]\n",
            &[],
        )
        .unwrap();
        let url = format!("http://a.example/x?k={AWS}");
        let notes = c.judge(&out(&url, &[])).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        let mut o = out(&url, &[]);
        o.host = "b.example";
        assert_eq!(c.judge(&o), Ok(vec![]));
    }

    #[test]
    fn egress_content_redacts_spans() {
        assert_eq!(redact("abcdef", &[1..3, 2..4]), "a[REDACTED]ef");
        assert_eq!(redact("abc", &[]), "abc");
    }
}
