//! Tool names against `tools.mode` / `allowed` / `blocked`.
//!
//! An allowlist admits exact names only. A blocklist also catches names that some servers
//! would treat as the same tool: different case and surrounding blanks (`Run_Command `), so a
//! server that matches names loosely cannot be reached around the list.

use crate::policy::{ToolPolicy, ToolsMode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolRefusal {
    /// Not in `tools.allowed`.
    NotAllowed,
    /// Matches this `tools.blocked` entry.
    Blocked(String),
}

pub(crate) fn check_tool(name: &str, policy: &ToolPolicy) -> Result<(), ToolRefusal> {
    match policy.mode {
        ToolsMode::All => Ok(()),
        ToolsMode::Allowlist => {
            if policy.allowed.iter().any(|a| a == name) {
                Ok(())
            } else {
                Err(ToolRefusal::NotAllowed)
            }
        }
        ToolsMode::Blocklist => {
            match policy
                .blocked
                .iter()
                .find(|b| *b == name || loose_eq(name, b))
            {
                Some(b) => Err(ToolRefusal::Blocked(b.clone())),
                None => Ok(()),
            }
        }
    }
}

/// Case-folded, trimmed, with `-` and `_` treated alike.
fn loose(name: &str) -> String {
    name.trim().to_lowercase().replace('-', "_")
}

/// `loose(a) == loose(b)`, without building either when both are ASCII (every call checks the
/// name against each blocked entry: no allocation for the usual names). For ASCII text
/// `to_lowercase` is `to_ascii_lowercase` and `trim` removes the same characters.
fn loose_eq(a: &str, b: &str) -> bool {
    if !(a.is_ascii() && b.is_ascii()) {
        return loose(a) == loose(b);
    }
    let fold = |c: &u8| match c.to_ascii_lowercase() {
        b'-' => b'_',
        c => c,
    };
    let (a, b) = (trim_ascii_text(a.as_bytes()), trim_ascii_text(b.as_bytes()));
    a.len() == b.len() && a.iter().map(fold).eq(b.iter().map(fold))
}

/// `str::trim` of ASCII text, on its bytes (no character decoding: issue 19). The ASCII
/// characters `trim` removes are the Unicode `White_Space` ones, U+0009..U+000D and the space
/// (`u8::trim_ascii` keeps U+000B).
fn trim_ascii_text(s: &[u8]) -> &[u8] {
    let blank = |c: &u8| matches!(c, b'\t'..=b'\r' | b' ');
    let start = s.iter().position(|c| !blank(c)).unwrap_or(s.len());
    let end = s.iter().rposition(|c| !blank(c)).map_or(start, |e| e + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: ToolsMode, allowed: &[&str], blocked: &[&str]) -> ToolPolicy {
        ToolPolicy {
            mode,
            allowed: allowed.iter().map(|s| s.to_string()).collect(),
            blocked: blocked.iter().map(|s| s.to_string()).collect(),
            hide_blocked: true,
        }
    }

    #[test]
    fn loose_comparison_agrees_with_building_both() {
        let names = [
            "run_shell",
            "Run-Shell",
            " run_shell\t",
            "RUN_SHELL ",
            "run__shell",
            "runshell",
            "run_shel",
            "",
            " ",
            "-",
            "_",
            "\u{b}run-shell\u{c}",
            "r\u{0130}n",
            "rİn",
            "RUN\u{3a3}",
            "run\u{3c3}",
            "run\u{3c2}",
            "\u{a0}run_shell",
            "run_shell\u{85}",
            "Straße",
            "STRASSE",
            "k",
            "\u{212a}",
            "x-y",
            "X_Y",
            "x_y ",
            "\r\nx-y",
        ];
        for a in names {
            for b in names {
                assert_eq!(loose_eq(a, b), loose(a) == loose(b), "{a:?} {b:?}");
            }
        }
        // The byte trim against `str::trim`, on every ASCII character around a name.
        for c in 0u8..0x80 {
            let c = char::from(c);
            for s in [format!("{c}a-B{c}"), format!("{c}{c}"), format!("{c}")] {
                assert_eq!(trim_ascii_text(s.as_bytes()), s.trim().as_bytes(), "{s:?}");
                assert_eq!(loose_eq(&s, "a_b"), loose(&s) == loose("a_b"), "{s:?}");
            }
        }
    }

    #[test]
    fn allowlist_is_exact() {
        let p = policy(ToolsMode::Allowlist, &["read_file"], &[]);
        assert_eq!(check_tool("read_file", &p), Ok(()));
        assert_eq!(check_tool("write_file", &p), Err(ToolRefusal::NotAllowed));
        assert_eq!(check_tool("Read_File", &p), Err(ToolRefusal::NotAllowed));
        assert_eq!(check_tool("read_file ", &p), Err(ToolRefusal::NotAllowed));
    }

    #[test]
    fn blocklist_is_loose() {
        let p = policy(ToolsMode::Blocklist, &[], &["run_command", "exec"]);
        assert_eq!(check_tool("read_file", &p), Ok(()));
        assert_eq!(
            check_tool("run_command", &p),
            Err(ToolRefusal::Blocked("run_command".into()))
        );
        assert_eq!(
            check_tool(" Run_Command", &p),
            Err(ToolRefusal::Blocked("run_command".into()))
        );
        assert_eq!(
            check_tool("run-command", &p),
            Err(ToolRefusal::Blocked("run_command".into()))
        );
        assert_eq!(
            check_tool("EXEC", &p),
            Err(ToolRefusal::Blocked("exec".into()))
        );
    }

    #[test]
    fn all_allows_everything() {
        assert_eq!(
            check_tool("anything", &policy(ToolsMode::All, &[], &[])),
            Ok(())
        );
    }
}
