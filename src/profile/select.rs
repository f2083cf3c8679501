//! Pick the profile of a server: forced with `--profile`, else by the command line, else by
//! `serverInfo.name` in the `initialize` response.

use super::Profile;

/// The first built-in profile whose command pattern occurs in a word of `argv`.
pub(crate) fn by_command<'p>(profiles: &'p [Profile], argv: &[String]) -> Option<&'p Profile> {
    profiles.iter().find(|p| {
        p.matcher
            .commands
            .iter()
            .any(|pat| argv.iter().any(|w| word_matches(w, pat)))
    })
}

/// `pat` occurs in `word` on a boundary: `@modelcontextprotocol/server-filesystem@1.2` and
/// `/x/node_modules/.bin/mcp-server-fetch` match; `mcp-server-fetcher` does not.
fn word_matches(word: &str, pat: &str) -> bool {
    let mut start = 0;
    while let Some(p) = word[start..].find(pat) {
        let at = start + p;
        let end = at + pat.len();
        let before_ok = at == 0 || matches!(word.as_bytes()[at - 1], b'/' | b'@' | b'=' | b'\\');
        let after_ok =
            end == word.len() || matches!(word.as_bytes()[end], b'@' | b'/' | b'.' | b' ');
        if before_ok && after_ok {
            return true;
        }
        start = at + 1;
    }
    false
}

pub(crate) fn by_server_name<'p>(profiles: &'p [Profile], name: &str) -> Option<&'p Profile> {
    profiles
        .iter()
        .find(|p| p.matcher.server_names.iter().any(|n| n == name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::builtin_profiles;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn picks_by_command_line() {
        let all = builtin_profiles();
        let name = |a: &[&str]| by_command(all, &argv(a)).map(|p| p.name.clone());
        assert_eq!(
            name(&[
                "npx",
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "/tmp"
            ])
            .as_deref(),
            Some("filesystem")
        );
        assert_eq!(
            name(&[
                "npx",
                "-y",
                "@modelcontextprotocol/server-filesystem@2026.8.31",
                "/tmp"
            ])
            .as_deref(),
            Some("filesystem")
        );
        assert_eq!(
            name(&["/venv/bin/mcp-server-fetch"]).as_deref(),
            Some("fetch")
        );
        assert_eq!(
            name(&["uvx", "mcp-server-git", "--repository", "/r"]).as_deref(),
            Some("git")
        );
        assert_eq!(
            name(&["python", "-m", "mcp_server_fetch"]).as_deref(),
            Some("fetch")
        );
        assert_eq!(name(&["mcp-server-fetcher"]), None);
        assert_eq!(name(&["node", "my-server.js"]), None);
    }

    #[test]
    fn picks_by_server_name() {
        let all = builtin_profiles();
        assert_eq!(
            by_server_name(all, "secure-filesystem-server")
                .unwrap()
                .name,
            "filesystem"
        );
        assert_eq!(by_server_name(all, "mcp-fetch").unwrap().name, "fetch");
        assert!(by_server_name(all, "other").is_none());
    }
}
