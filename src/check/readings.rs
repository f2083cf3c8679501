//! Every reading a server may give a path argument. The proxy judges all of them and refuses
//! when any one leaves the policy, or when one cannot be computed: it never falls back to the
//! literal string.
//!
//! The readings of one argument are the product of:
//! - the URI forms: a `file:` URI as URL parsers read it (after WHATWG's stripping of controls
//!   and spaces and removal of tabs and newlines, `file:x` as `/x`, `\` as `/`) and as a server
//!   that cuts `file:`/`file://` off reads it; the string as a plain path too;
//! - percent-decoding, repeated until nothing changes (each step is a reading; more than
//!   [`MAX_DECODES`] steps cannot be judged and is refused);
//! - Unicode forms (NFC, NFD, NFKC, NFKD) for servers whose lookups equate them — `‥` is `..`
//!   in NFKC, `／` is `/`;
//! - `~` and, where the server expands them (profile `paths.expands_vars`), `$VAR`/`${VAR}`
//!   with the server's own environment (os.path.expandvars: unknown names stay as written);
//! - for a relative result, every base the server may resolve against (profile
//!   `paths.relative_to`: its working directory, the directories on its command line, the
//!   roots the client gave it).
//!
//! Symlinks are resolved afterwards, per reading, by the caller (`World::resolve_path`). Pure.

use std::path::{Component, PathBuf};

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use super::path::{lexical_normalize, PathContext, PathError};
use super::uri;

/// Decoding steps judged; a string still changing after that many is refused.
pub(crate) const MAX_DECODES: usize = 4;

/// A directory a server may resolve relative paths against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Base {
    /// The server's working directory.
    Cwd,
    /// Directories named on the server's command line (server-filesystem's allowed dirs).
    ArgvDirs,
    /// The roots the client gave the server (`roots/list`).
    Roots,
}

/// How a server reads path arguments (profile key `paths`). The default, for a server no
/// profile describes, assumes every reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PathReadings {
    #[serde(default = "all_bases")]
    pub(crate) relative_to: Vec<Base>,
    /// The server expands `$VAR` and `${VAR}` in paths (GitPython does).
    #[serde(default = "yes")]
    pub(crate) expands_vars: bool,
}

fn all_bases() -> Vec<Base> {
    vec![Base::Cwd, Base::ArgvDirs, Base::Roots]
}

fn yes() -> bool {
    true
}

impl Default for PathReadings {
    fn default() -> Self {
        PathReadings {
            relative_to: all_bases(),
            expands_vars: true,
        }
    }
}

/// Every absolute, lexically normalised path the server may open for `written`.
pub(crate) fn path_readings(written: &str, ctx: &PathContext) -> Result<Vec<PathBuf>, PathError> {
    if written.is_empty() {
        return Err(PathError::Empty);
    }
    // 1. URI forms (still percent-encoded), and whether URL parsers decode them.
    let mut texts: Vec<String> = Vec::new();
    if uri::is_file_uri(written) {
        match uri::file_uri_paths(written) {
            Ok(p) => texts.extend(p),
            Err(uri::FileUriError::Host(_)) => return Err(PathError::Scheme(written.into())),
        }
    } else if uri::is_other_uri(written) {
        return Err(PathError::Scheme(written.into()));
    } else {
        texts.push(written.to_string());
    }
    // 2. Percent-decoding, repeated.
    let mut decoded = Vec::new();
    for t in &texts {
        let mut cur = t.clone();
        decoded.push(cur.clone());
        let mut steps = 0;
        while cur.contains('%') {
            let bytes: Vec<u8> = percent_encoding::percent_decode_str(&cur).collect();
            let next = String::from_utf8(bytes).map_err(|_| PathError::Encoding(written.into()))?;
            if next == cur {
                break;
            }
            steps += 1;
            if steps > MAX_DECODES {
                return Err(PathError::Encoding(written.into()));
            }
            decoded.push(next.clone());
            cur = next;
        }
    }
    // 3. Unicode forms.
    let mut forms = Vec::new();
    for t in decoded {
        if !t.is_ascii() {
            forms.push(t.nfc().collect::<String>());
            forms.push(t.nfd().collect::<String>());
            forms.push(t.nfkc().collect::<String>());
            forms.push(t.nfkd().collect::<String>());
        }
        forms.push(t);
    }
    forms.sort();
    forms.dedup();
    // 4. Expansion, traversal, bases.
    let mut out = Vec::new();
    for t in forms {
        for e in expansions(&t, written, ctx)? {
            absolute(&e, written, ctx, &mut out)?;
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The text as written and, where the server expands them, with `~` and variables expanded.
fn expansions(t: &str, written: &str, ctx: &PathContext) -> Result<Vec<String>, PathError> {
    if t.contains('\0') {
        return Err(PathError::Nul(written.into()));
    }
    let b = t.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Err(PathError::Windows(written.into()));
    }
    let tilde = |s: &str| -> Result<String, PathError> {
        if s == "~" || s.starts_with("~/") {
            Ok(match &ctx.home {
                Some(h) => h
                    .join(s.trim_start_matches('~').trim_start_matches('/'))
                    .display()
                    .to_string(),
                None => s.to_string(),
            })
        } else if s.starts_with('~') {
            Err(PathError::TildeUser(written.into()))
        } else {
            Ok(s.to_string())
        }
    };
    let first = tilde(t)?;
    let mut out = vec![first.clone()];
    if ctx.readings.expands_vars && first.contains('$') {
        // A value may start with `~`: judge it expanded too (`~user` cannot be judged).
        out.push(tilde(&expand_vars(&first, ctx.env.as_deref()))?);
    }
    out.dedup();
    Ok(out)
}

/// `os.path.expandvars`: `$NAME` and `${NAME}` (NAME of letters, digits, `_`) replaced by the
/// variable's value; unknown names and lone `$` stay as written. `env`: the server's
/// environment (`None`: unknown, so every reference is kept AND judged as the empty string).
pub(crate) fn expand_vars(s: &str, env: Option<&[(String, String)]>) -> String {
    let lookup = |name: &str| -> Option<String> {
        match env {
            Some(e) => e.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            None => Some(String::new()),
        }
    };
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('$') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        let (name, consumed) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match (valid, valid.then(|| lookup(name)).flatten()) {
            (true, Some(v)) => {
                out.push_str(&v);
                rest = &after[consumed..];
            }
            _ => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Refuse `..`; make `t` absolute against every base the server may use.
fn absolute(
    t: &str,
    written: &str,
    ctx: &PathContext,
    out: &mut Vec<PathBuf>,
) -> Result<(), PathError> {
    let p = PathBuf::from(t);
    if p.components().any(|c| c == Component::ParentDir) || t.split(['/', '\\']).any(|s| s == "..")
    {
        return Err(PathError::Traversal(written.into()));
    }
    if p.is_absolute() {
        out.push(lexical_normalize(&p));
        return Ok(());
    }
    let mut any = false;
    for base in &ctx.readings.relative_to {
        let dirs: &[PathBuf] = match base {
            Base::Cwd => std::slice::from_ref(&ctx.cwd),
            Base::ArgvDirs => &ctx.argv_dirs,
            Base::Roots => &ctx.roots,
        };
        for d in dirs {
            out.push(lexical_normalize(&d.join(&p)));
            any = true;
        }
    }
    if !any {
        // No base is known for this server: its working directory is the fallback of every
        // server described so far (server-filesystem without directories uses process.cwd()).
        out.push(lexical_normalize(&ctx.cwd.join(&p)));
    }
    Ok(())
}

/// The directories named on a server's command line (absolute, or relative to `cwd`), that
/// exist: what a server like server-filesystem resolves relative paths against.
pub(crate) fn argv_dirs(argv: &[String], cwd: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for word in argv.iter().skip(1) {
        let value = match word.split_once('=') {
            Some((k, v)) if k.starts_with('-') => v,
            _ => word.as_str(),
        };
        if value.is_empty() || value.starts_with('-') {
            continue;
        }
        let p = cwd.join(value);
        if p.is_dir() {
            out.push(lexical_normalize(&super::path::canonicalize_lenient(&p)));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> PathContext {
        PathContext {
            cwd: PathBuf::from("/srv/cwd"),
            home: Some(PathBuf::from("/home/u")),
            argv_dirs: vec![PathBuf::from("/srv/root")],
            roots: vec![PathBuf::from("/srv/rootA")],
            env: Some(vec![
                ("HOME".into(), "/home/u".into()),
                ("X".into(), "../../etc".into()),
            ]),
            readings: PathReadings::default(),
        }
    }

    fn r(s: &str) -> Vec<String> {
        path_readings(s, &ctx())
            .unwrap()
            .iter()
            .map(|p| p.display().to_string())
            .collect()
    }

    #[test]
    fn relative_paths_against_every_base() {
        assert_eq!(
            r("secret/.aws/credentials"),
            [
                "/srv/cwd/secret/.aws/credentials",
                "/srv/root/secret/.aws/credentials",
                "/srv/rootA/secret/.aws/credentials"
            ]
        );
        let mut c = ctx();
        c.readings.relative_to = vec![Base::Cwd];
        assert_eq!(
            path_readings("a", &c).unwrap(),
            vec![PathBuf::from("/srv/cwd/a")]
        );
    }

    #[test]
    fn variables_where_the_server_expands_them() {
        let v = r("$HOME/private-repo");
        assert!(v.contains(&"/home/u/private-repo".to_string()), "{v:?}");
        assert!(
            v.contains(&"/srv/cwd/$HOME/private-repo".to_string()),
            "{v:?}"
        );
        assert!(r("${HOME}/x").contains(&"/home/u/x".to_string()));
        assert!(r("$UNKNOWN/x").iter().all(|p| p.contains("$UNKNOWN")));
        assert!(matches!(
            path_readings("$X/passwd", &ctx()),
            Err(PathError::Traversal(_))
        ));
        let mut c = ctx();
        c.readings.expands_vars = false;
        assert!(path_readings("$X/passwd", &c).is_ok());
        assert_eq!(expand_vars("a$", None), "a$");
        assert_eq!(
            expand_vars("${A}b$A", Some(&[("A".into(), "1".into())])),
            "1b1"
        );
        assert_eq!(expand_vars("$A", None), "");
    }

    #[test]
    fn url_parser_forms() {
        for s in [
            " file:///etc/passwd",
            "\tfile:/etc/passwd",
            "fi\tle:/etc/passwd",
            "\u{1}file:///etc/passwd",
            "file:etc/passwd",
        ] {
            assert!(
                r(s).contains(&"/etc/passwd".to_string()),
                "{s:?}: {:?}",
                r(s)
            );
        }
        assert!(matches!(
            path_readings(" https://x.test/a", &ctx()),
            Err(PathError::Scheme(_))
        ));
        assert!(matches!(
            path_readings("file://evil/etc", &ctx()),
            Err(PathError::Scheme(_))
        ));
    }

    #[test]
    fn repeated_percent_decoding() {
        assert!(matches!(
            path_readings("/tmp/%252e%252e/etc", &ctx()),
            Err(PathError::Traversal(_))
        ));
        let v = r("/tmp/a%2520b");
        assert_eq!(v, ["/tmp/a b", "/tmp/a%20b", "/tmp/a%2520b"]);
        let deep = format!("/tmp/{}", "%25".to_string() + "252525252e");
        assert!(path_readings(&deep, &ctx()).is_err());
    }

    #[test]
    fn unicode_forms() {
        // U+2025 TWO DOT LEADER is `..` in NFKC.
        assert!(matches!(
            path_readings("/srv/root/\u{2025}/etc", &ctx()),
            Err(PathError::Traversal(_))
        ));
        // U+FF0F FULLWIDTH SOLIDUS is `/`.
        assert!(r("\u{ff0f}etc\u{ff0f}passwd").contains(&"/etc/passwd".to_string()));
        let v = r("/w/caf\u{e9}");
        assert!(
            v.contains(&"/w/cafe\u{301}".to_string()) && v.contains(&"/w/caf\u{e9}".to_string())
        );
    }

    #[test]
    fn argv_directories() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        let argv: Vec<String> = ["node", "index.js", "d", "--dir=/nonexistent", "-x"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("--root={}", root.display())])
            .collect();
        assert_eq!(argv_dirs(&argv, &root), vec![root.clone(), root.join("d")]);
    }
}
