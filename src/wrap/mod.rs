//! `capjail wrap` / `capjail unwrap`: put capjail in front of the stdio MCP servers an MCP
//! client is configured with, and take it away again.
//!
//! Understood layouts (JSON or JSONC): `mcpServers` at the top (Claude Desktop, Cursor,
//! Claude Code's `.mcp.json` and `~/.claude.json`), `projects.<dir>.mcpServers` (Claude
//! Code's per-project servers in `~/.claude.json`), `servers` and `mcp.servers` (VS Code).
//! Each stdio server `{"command": C, "args": A}` becomes `{"command": CAPJAIL, "args": ["run",
//! "--policy", P, ..., "--", C, A...]}`; the file is edited in place (only those two values
//! change), so the diff is exactly the change. Remote servers (`url`, `type: sse|http`) cannot
//! be wrapped and are listed with the reason. All of this is pure: the command does the I/O.

pub(crate) mod diff;
pub(crate) mod jsonspan;

use std::path::Path;

use jsonspan::Node;

/// What to put in front of each server.
#[derive(Debug, Clone)]
pub(crate) struct WrapOptions {
    /// The capjail executable written into the config (absolute: clients have a small PATH).
    pub(crate) capjail: String,
    /// `--policy` for every server; `None`: suggested per server (see [`suggest_policy`]).
    pub(crate) policy: Option<String>,
}

/// One server of the file and what happens to it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServerChange {
    /// `mcpServers.fs`, `projects./home/u/p.mcpServers.git`, ...
    pub(crate) key: String,
    /// `Ok(new command line)` or `Err(why it is left alone)`.
    pub(crate) outcome: Result<Vec<String>, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rewrite {
    pub(crate) text: String,
    pub(crate) servers: Vec<ServerChange>,
}

/// The server maps of a config: (dotted key, node).
fn server_maps(root: &Node) -> Vec<(String, &Node)> {
    let mut out = Vec::new();
    for key in ["mcpServers", "servers"] {
        if let Some(n @ Node::Object(..)) = root.get(key) {
            out.push((key.to_string(), n));
        }
    }
    if let Some(n @ Node::Object(..)) = root.get("mcp").and_then(|m| m.get("servers")) {
        out.push(("mcp.servers".into(), n));
    }
    if let Some(Node::Object(projects, ..)) = root.get("projects") {
        for (dir, p) in projects {
            if let Some(n @ Node::Object(..)) = p.get("mcpServers") {
                out.push((format!("projects.{dir}.mcpServers"), n));
            }
        }
    }
    out
}

/// A policy for a server command: the built-in `workspace` on its first existing directory
/// argument (the directory the user already gave it), else `strict`.
pub(crate) fn suggest_policy(argv: &[String]) -> Vec<String> {
    match argv
        .iter()
        .skip(1)
        .find(|a| Path::new(a).is_absolute() && Path::new(a).is_dir())
    {
        Some(dir) => vec![
            "--policy".into(),
            "workspace".into(),
            "--workspace".into(),
            dir.clone(),
        ],
        None => vec!["--policy".into(), "strict".into()],
    }
}

fn is_capjail(cmd: &str) -> bool {
    Path::new(cmd).file_name().is_some_and(|n| n == "capjail")
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn json_array(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| json_str(s)).collect();
    format!("[{}]", items.join(", "))
}

/// Replace spans (start, end, text), applied from the end.
fn splice(text: &str, mut edits: Vec<(usize, usize, String)>) -> String {
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (s, e, t) in edits {
        out.replace_range(s..e, &t);
    }
    out
}

/// Wrap every stdio server of `text`.
pub(crate) fn wrap(text: &str, opts: &WrapOptions) -> Result<Rewrite, String> {
    let root = jsonspan::parse(text)?;
    let mut edits = Vec::new();
    let mut servers = Vec::new();
    for (map_key, map) in server_maps(&root) {
        let Node::Object(entries, ..) = map else {
            continue;
        };
        for (name, server) in entries {
            let key = format!("{map_key}.{name}");
            let outcome = wrap_one(text, server, opts, &mut edits);
            servers.push(ServerChange { key, outcome });
        }
    }
    Ok(Rewrite {
        text: splice(text, edits),
        servers,
    })
}

fn wrap_one(
    text: &str,
    server: &Node,
    opts: &WrapOptions,
    edits: &mut Vec<(usize, usize, String)>,
) -> Result<Vec<String>, String> {
    if let Some(url) = server.get("url").and_then(|u| u.as_str(text)) {
        return Err(format!(
            "remote server ({url}): capjail guards stdio servers only"
        ));
    }
    let kind = server.get("type").and_then(|t| t.as_str(text));
    if let Some(t) = kind.as_deref().filter(|t| *t != "stdio") {
        return Err(format!(
            "remote server (type {t}): capjail guards stdio servers only"
        ));
    }
    let Some(cmd_node) = server.get("command") else {
        return Err("no `command`".into());
    };
    let command = cmd_node.as_str(text).ok_or("`command` is not a string")?;
    let args = match server.get("args") {
        None => Vec::new(),
        Some(a) => a
            .as_strings(text)
            .ok_or("`args` is not a list of strings")?,
    };
    if is_capjail(&command) && args.first().is_some_and(|a| a == "run") {
        return Err("already wrapped".into());
    }
    let mut original = vec![command];
    original.extend(args);
    let mut new_args = vec!["run".to_string()];
    match &opts.policy {
        Some(p) => new_args.extend(["--policy".to_string(), p.clone()]),
        None => new_args.extend(suggest_policy(&original)),
    }
    new_args.push("--".into());
    new_args.extend(original);
    let (cs, ce) = cmd_node.span();
    edits.push((cs, ce, json_str(&opts.capjail)));
    match server.get("args") {
        Some(a) => {
            let (s, e) = a.span();
            edits.push((s, e, json_array(&new_args)));
        }
        None => edits.push((ce, ce, format!(", \"args\": {}", json_array(&new_args)))),
    }
    let mut line = vec![opts.capjail.clone()];
    line.extend(new_args);
    Ok(line)
}

/// Undo [`wrap`] server by server: `capjail run ... -- C A...` becomes `C` with `A...`.
pub(crate) fn unwrap(text: &str) -> Result<Rewrite, String> {
    let root = jsonspan::parse(text)?;
    let mut edits = Vec::new();
    let mut servers = Vec::new();
    for (map_key, map) in server_maps(&root) {
        let Node::Object(entries, ..) = map else {
            continue;
        };
        for (name, server) in entries {
            let key = format!("{map_key}.{name}");
            let outcome = (|| {
                let cmd_node = server.get("command").ok_or("no `command`")?;
                let command = cmd_node.as_str(text).ok_or("`command` is not a string")?;
                let args_node = server.get("args").ok_or("not wrapped")?;
                let args = args_node.as_strings(text).ok_or("not wrapped")?;
                if !is_capjail(&command) || args.first().map(String::as_str) != Some("run") {
                    return Err("not wrapped".to_string());
                }
                let sep = args
                    .iter()
                    .position(|a| a == "--")
                    .ok_or("no `--` in the capjail command")?;
                let original = args[sep + 1..].to_vec();
                let (first, rest) = original.split_first().ok_or("nothing after `--`")?;
                let (cs, ce) = cmd_node.span();
                edits.push((cs, ce, json_str(first)));
                let (s, e) = args_node.span();
                edits.push((s, e, json_array(rest)));
                Ok(original)
            })();
            servers.push(ServerChange { key, outcome });
        }
    }
    Ok(Rewrite {
        text: splice(text, edits),
        servers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLAUDE: &str = r#"{
  "numStartups": 3,
  "mcpServers": {
    "fs": { "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/"] },
    "remote": { "type": "http", "url": "https://mcp.example.test/mcp" }
  },
  "projects": {
    "/home/u/p": { "mcpServers": { "git": { "command": "uvx", "args": ["mcp-server-git"] }, "bare": { "command": "my-server" } } }
  }
}
"#;

    fn opts() -> WrapOptions {
        WrapOptions {
            capjail: "/usr/local/bin/capjail".into(),
            policy: Some("strict".into()),
        }
    }

    #[test]
    fn wraps_stdio_servers_everywhere_and_lists_remote_ones() {
        let r = wrap(CLAUDE, &opts()).unwrap();
        let got: Vec<(&str, bool)> = r
            .servers
            .iter()
            .map(|s| (s.key.as_str(), s.outcome.is_ok()))
            .collect();
        assert_eq!(
            got,
            [
                ("mcpServers.fs", true),
                ("mcpServers.remote", false),
                ("projects./home/u/p.mcpServers.git", true),
                ("projects./home/u/p.mcpServers.bare", true)
            ]
        );
        assert!(r.servers[1]
            .outcome
            .as_ref()
            .unwrap_err()
            .contains("remote server"));
        let v: serde_json::Value = serde_json::from_str(&r.text).unwrap();
        assert_eq!(v["mcpServers"]["fs"]["command"], "/usr/local/bin/capjail");
        assert_eq!(
            v["mcpServers"]["fs"]["args"],
            serde_json::json!([
                "run",
                "--policy",
                "strict",
                "--",
                "npx",
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "/"
            ])
        );
        assert_eq!(
            v["projects"]["/home/u/p"]["mcpServers"]["bare"]["args"],
            serde_json::json!(["run", "--policy", "strict", "--", "my-server"])
        );
        assert_eq!(v["numStartups"], 3);
        // Only the rewritten lines differ.
        let d = diff::line_diff(CLAUDE, &r.text);
        assert_eq!(d.lines().filter(|l| l.starts_with('-')).count(), 2, "{d}");
        // Wrapping twice changes nothing; unwrapping restores every server.
        let again = wrap(&r.text, &opts()).unwrap();
        assert_eq!(again.text, r.text);
        let back = unwrap(&r.text).unwrap();
        let v: serde_json::Value = serde_json::from_str(&back.text).unwrap();
        let orig: serde_json::Value = serde_json::from_str(CLAUDE).unwrap();
        assert_eq!(v["mcpServers"], orig["mcpServers"]);
        assert_eq!(
            v["projects"]["/home/u/p"]["mcpServers"]["git"],
            orig["projects"]["/home/u/p"]["mcpServers"]["git"]
        );
    }

    #[test]
    fn vscode_layout_and_policy_suggestion() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().display().to_string();
        let text = format!("{{\n  // VS Code\n  \"servers\": {{ \"fs\": {{ \"type\": \"stdio\", \"command\": \"node\", \"args\": [\"index.js\", {}] }} }}\n}}\n", json_str(&dir));
        let r = wrap(
            &text,
            &WrapOptions {
                policy: None,
                ..opts()
            },
        )
        .unwrap();
        let line = r.servers[0].outcome.as_ref().unwrap();
        assert_eq!(
            line[1..6],
            ["run", "--policy", "workspace", "--workspace", dir.as_str()]
        );
        assert!(r.text.contains("// VS Code"));
    }
}
