//! `~` and environment-variable expansion for paths written in a policy.
//!
//! Supported: a leading `~` or `~/` (the `HOME` of the lookup), `$VAR`, `${VAR}` and
//! `${VAR:-default}`. An unset variable without a default is an error: a mount of `$UNSET/x`
//! silently becoming `/x` would widen the policy.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum ExpandError {
    #[error("environment variable `{0}` is not set (write `${{{0}:-default}}` to give a default)")]
    Unset(String),
    #[error("unterminated `${{` in `{0}`")]
    Unterminated(String),
    #[error("`~` cannot be expanded: HOME is not set")]
    NoHome,
    #[error("`~user` is not supported in `{0}`; write the absolute path")]
    TildeUser(String),
}

/// Expand `input` using `lookup` for variables (`HOME` included).
pub(crate) fn expand_with(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    expand_tracked(input, lookup).map(|(s, _)| s)
}

/// Like [`expand_with`], and says whether a `${VAR:-default}` fell back to its default (the
/// caller then judges the value as an implicit choice: see `policy::implicit`).
pub(crate) fn expand_tracked(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), ExpandError> {
    let mut defaulted = false;
    let s = expand_inner(input, lookup, &mut defaulted)?;
    Ok((s, defaulted))
}

fn expand_inner(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    defaulted: &mut bool,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(input.len());
    let rest = if let Some(after) = input.strip_prefix('~') {
        if after.is_empty() || after.starts_with('/') {
            out.push_str(&lookup("HOME").ok_or(ExpandError::NoHome)?);
            after
        } else {
            return Err(ExpandError::TildeUser(input.to_string()));
        }
    } else {
        input
    };
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c != b'$' {
            let ch = rest[i..].chars().next().unwrap_or('\0');
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        if i + 1 < bytes.len() && bytes[i + 1] == b'{' {
            let close = matching_brace(&rest[i + 2..])
                .ok_or_else(|| ExpandError::Unterminated(input.to_string()))?;
            let body = &rest[i + 2..i + 2 + close];
            let (name, default) = match body.find(":-") {
                Some(p) => (&body[..p], Some(&body[p + 2..])),
                None => (body, None),
            };
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                // The default may itself hold variables: `${A:-${B}}`.
                (None, Some(d)) => {
                    *defaulted = true;
                    out.push_str(&expand_inner(d, lookup, defaulted)?)
                }
                (None, None) => return Err(ExpandError::Unset(name.to_string())),
            }
            i += 2 + close + 1;
        } else {
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
                end += 1;
            }
            if end == start {
                out.push('$');
                i += 1;
                continue;
            }
            let name = &rest[start..end];
            out.push_str(&lookup(name).ok_or_else(|| ExpandError::Unset(name.to_string()))?);
            i = end;
        }
    }
    Ok(out)
}

/// Offset of the `}` closing a `${` whose body starts `s`, allowing nested `${...}`.
fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'$' if b.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/home/u".into()),
            "WS" => Some("/srv/ws".into()),
            _ => None,
        }
    }

    #[test]
    fn tilde_and_vars() {
        assert_eq!(expand_with("~/.ssh", &env).unwrap(), "/home/u/.ssh");
        assert_eq!(expand_with("~", &env).unwrap(), "/home/u");
        assert_eq!(expand_with("$WS/a", &env).unwrap(), "/srv/ws/a");
        assert_eq!(expand_with("${WS}x", &env).unwrap(), "/srv/wsx");
        assert_eq!(
            expand_with("${NOPE:-/workspace}", &env).unwrap(),
            "/workspace"
        );
        assert_eq!(expand_with("${WS:-/workspace}", &env).unwrap(), "/srv/ws");
        assert_eq!(expand_with("/a/$", &env).unwrap(), "/a/$");
        assert_eq!(expand_with("${NOPE:-${WS}}/x", &env).unwrap(), "/srv/ws/x");
        assert_eq!(
            expand_with("${NOPE:-${HOME:-/h}}", &env).unwrap(),
            "/home/u"
        );
        assert_eq!(expand_with("/tmp/é", &env).unwrap(), "/tmp/é");
    }

    #[test]
    fn tracks_defaults() {
        assert_eq!(
            expand_tracked("${NOPE:-/w}", &env).unwrap(),
            ("/w".into(), true)
        );
        assert_eq!(
            expand_tracked("${WS:-/w}", &env).unwrap(),
            ("/srv/ws".into(), false)
        );
        assert_eq!(
            expand_tracked("~/x", &env).unwrap(),
            ("/home/u/x".into(), false)
        );
    }

    #[test]
    fn unset_is_an_error_not_an_empty_string() {
        assert_eq!(
            expand_with("$NOPE/x", &env),
            Err(ExpandError::Unset("NOPE".into()))
        );
        assert!(matches!(
            expand_with("${WS", &env),
            Err(ExpandError::Unterminated(_))
        ));
        assert!(matches!(
            expand_with("~bob/x", &env),
            Err(ExpandError::TildeUser(_))
        ));
        assert_eq!(expand_with("~/x", &|_| None), Err(ExpandError::NoHome));
    }
}
