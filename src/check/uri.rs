//! URL parsers' readings of a string: what WHATWG parsers (Node's `URL`, `fileURLToPath`) and
//! Python's `urlsplit` make of it before they look at the scheme.
//!
//! WHATWG strips leading and trailing C0 controls and spaces and removes every tab, CR and LF;
//! Python (3.11+) does the same for its "unsafe bytes". So `" file:///etc"`, `"fi\tle:/etc"`
//! and `"\u{1}file:/etc"` are all file URIs to the server, whatever they look like to a prefix
//! test. Pure.

/// The string as a URL parser sees it: C0 controls and spaces trimmed at both ends, tabs and
/// newlines removed anywhere. Borrowed when nothing changes.
pub(crate) fn url_normalize(s: &str) -> std::borrow::Cow<'_, str> {
    // The usual string needs nothing: bytes, not chars (only ASCII characters are `<= ' '`,
    // and the last byte of any other character is above it too).
    let b = s.as_bytes();
    if b.first().is_none_or(|&c| c > b' ')
        && b.last().is_none_or(|&c| c > b' ')
        && memchr::memchr3(b'\t', b'\r', b'\n', b).is_none()
    {
        return std::borrow::Cow::Borrowed(s);
    }
    let trimmed = s.trim_matches(|c: char| c <= ' ');
    if trimmed.len() == s.len() && !trimmed.contains(['\t', '\r', '\n']) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        trimmed
            .chars()
            .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
            .collect(),
    )
}

/// The scheme of `s` as a URL parser reads it (lower case), if it has one: `[A-Za-z][A-Za-z0-9+.-]*:`.
/// One letter is a scheme too for URL parsers; callers decide about Windows drive letters.
pub(crate) fn scheme(s: &str) -> Option<String> {
    let n = url_normalize(s);
    let colon = n.find(':')?;
    let sch = &n[..colon];
    let mut chars = sch.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    Some(sch.to_ascii_lowercase())
}

/// Is `s` a `file:` URI to some parser?
pub(crate) fn is_file_uri(s: &str) -> bool {
    scheme(s).as_deref() == Some("file")
}

/// Is `s` a URI of a scheme other than `file` (two letters or more, so `C:` is not one) that
/// names an authority (`scheme://`)?
pub(crate) fn is_other_uri(s: &str) -> bool {
    match scheme(s) {
        Some(sch) if sch != "file" && sch.len() >= 2 => {
            let n = url_normalize(s);
            n[sch.len() + 1..].starts_with("//") || n[sch.len() + 1..].starts_with("\\\\")
        }
        _ => false,
    }
}

/// Why a `file:` URI cannot be read as a local path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FileUriError {
    /// A host other than empty or `localhost` (UNC paths; Python servers ignore the host).
    Host(String),
}

/// Every path text a `file:` URI may name, still percent-encoded: the WHATWG reading
/// (backslashes are slashes, `file:x` is `/x`, `file://localhost/x` is `/x`) and the naive
/// reading of a server that strips `file://` (or `file:`) and keeps the rest (`file:x` is the
/// relative `x`). Query and fragment are cut off.
pub(crate) fn file_uri_paths(s: &str) -> Result<Vec<String>, FileUriError> {
    let n = url_normalize(s);
    let rest = &n[n.find(':').map(|p| p + 1).unwrap_or(0)..];
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let mut out = Vec::new();
    // WHATWG: `\` is `/` in special schemes.
    let w = rest.replace('\\', "/");
    let path = if let Some(after) = w.strip_prefix("//") {
        let slash = after.find('/').unwrap_or(after.len());
        let host = &after[..slash];
        if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
            return Err(FileUriError::Host(host.to_string()));
        }
        after[slash..].to_string()
    } else {
        w.clone()
    };
    let whatwg = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    out.push(whatwg);
    // Naive: `file://x/y` -> `x/y`? No: a host was refused above. `file:x` -> `x` (relative).
    if let Some(after) = rest.strip_prefix("//") {
        out.push(after.to_string());
    } else {
        out.push(rest.to_string());
    }
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `url_normalize` without its fast path (what it was before it read bytes).
    fn normalize_by_chars(s: &str) -> String {
        s.trim_matches(|c: char| c <= ' ')
            .chars()
            .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
            .collect()
    }

    #[test]
    fn the_fast_path_agrees_with_the_char_reading() {
        let parts = [
            "",
            " ",
            "\t",
            "\r",
            "\n",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            "\u{85}",
            "\u{a0}",
            "\u{2028}",
            "é",
            "file:",
            "//x",
            "a",
            "€",
            "\u{10ffff}",
        ];
        for a in parts {
            for b in parts {
                for c in parts {
                    let s = format!("{a}{b}{c}");
                    let n = url_normalize(&s);
                    assert_eq!(n, normalize_by_chars(&s), "{s:?}");
                    // Borrowed exactly when nothing changes.
                    assert_eq!(matches!(n, std::borrow::Cow::Borrowed(_)), n == s, "{s:?}");
                }
            }
        }
    }

    #[test]
    fn url_parsers_strip_controls_and_remove_tabs() {
        assert_eq!(url_normalize(" file:///etc"), "file:///etc");
        assert_eq!(url_normalize("\tfile:/etc\n"), "file:/etc");
        assert_eq!(url_normalize("fi\tle:/e\r\ntc"), "file:/etc");
        assert_eq!(url_normalize("\u{1}file:/etc"), "file:/etc");
        assert_eq!(url_normalize("/tmp/a b"), "/tmp/a b");
    }

    #[test]
    fn file_uris_in_every_disguise() {
        for s in [
            "file:///etc/passwd",
            " file:///etc/passwd",
            "\tfile:///etc/passwd",
            "fi\tle:///etc/passwd",
            "file:\t///etc/passwd",
            "\u{1f}file:/etc/passwd",
            "FILE:/etc/passwd",
            "file:etc/passwd",
            "file:\\\\\\etc\\passwd",
        ] {
            assert!(is_file_uri(s), "{s:?}");
            let p = file_uri_paths(s).unwrap();
            assert!(p.contains(&"/etc/passwd".to_string()), "{s:?}: {p:?}");
        }
        assert_eq!(
            file_uri_paths("file:tmp/x").unwrap(),
            vec!["/tmp/x".to_string(), "tmp/x".to_string()]
        );
        assert_eq!(
            file_uri_paths("file://localhost/etc/a?x#y").unwrap()[0],
            "/etc/a"
        );
        assert!(file_uri_paths("file://evil/etc").is_err());
        assert!(!is_file_uri("/tmp/file:x"));
        assert!(is_other_uri(" https://example.test/"));
        assert!(!is_other_uri("C://x") || scheme("C://x").unwrap().len() >= 2);
        assert!(!is_other_uri("/tmp/a"));
    }
}
