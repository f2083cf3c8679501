//! Describe a tool no profile knows, from its `inputSchema` (argument names, types and
//! formats) and then its name. The guess errs towards more checking: a path argument of a tool
//! whose name does not clearly say "read" is treated as a write.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{ArgKind, ArgSpec, ToolSpec};

const PATH_NAMES: &[&str] = &[
    "path",
    "paths",
    "file",
    "files",
    "filename",
    "filenames",
    "filepath",
    "file_path",
    "filepaths",
    "dir",
    "dirs",
    "directory",
    "directories",
    "folder",
    "source",
    "destination",
    "src",
    "dst",
    "dest",
    "target_path",
    "root",
    "cwd",
    "workdir",
    "working_directory",
    "repo_path",
    "repository",
    "location_path",
    "output_path",
    "input_path",
];
const URL_NAMES: &[&str] = &[
    "url", "urls", "uri", "uris", "href", "endpoint", "link", "links", "website", "webhook",
];
const COMMAND_NAMES: &[&str] = &[
    "command",
    "cmd",
    "script",
    "shell",
    "commandline",
    "command_line",
    "code",
    "bash",
];
const GLOB_NAMES: &[&str] = &[
    "pattern",
    "glob",
    "patterns",
    "globs",
    "excludepatterns",
    "exclude",
    "include",
];

const READ_WORDS: &[&str] = &[
    "read", "get", "list", "search", "find", "view", "show", "cat", "stat", "info", "tree",
    "status", "log", "diff", "describe", "query", "lookup", "open",
];
const WRITE_WORDS: &[&str] = &[
    "write", "create", "edit", "move", "rename", "delete", "remove", "save", "update", "append",
    "mkdir", "put", "set", "patch", "commit", "add", "reset", "checkout", "copy", "upload",
    "touch", "truncate", "chmod",
];
const NET_WORDS: &[&str] = &[
    "fetch", "http", "download", "request", "browse", "crawl", "scrape", "curl", "wget", "get_url",
    "web",
];
const EXEC_WORDS: &[&str] = &[
    "exec",
    "execute",
    "run",
    "shell",
    "command",
    "terminal",
    "bash",
    "spawn",
    "eval",
    "powershell",
    "cmd",
    "sh",
];

/// Words of an identifier: `readTextFile`, `read-text_file` -> [read, text, file].
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if !ch.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = ch.is_lowercase() || ch.is_ascii_digit();
        cur.extend(ch.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn norm(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// Classify one argument from its name and schema. `None`: plain data.
pub(crate) fn classify_arg(name: &str, schema: &Value) -> Option<ArgKind> {
    let n = norm(name);
    let compact = n.replace('_', "");
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let format = schema.get("format").and_then(Value::as_str).unwrap_or("");
    let item_format = schema
        .pointer("/items/format")
        .and_then(Value::as_str)
        .unwrap_or("");
    let is_array = ty == "array";
    let ws = words(name);
    let kind = if format == "uri"
        || format == "uri-reference"
        || format == "iri"
        || item_format == "uri"
        || URL_NAMES.contains(&n.as_str())
        || ws.last().is_some_and(|w| w == "url" || w == "uri")
    {
        ArgKind::Url
    } else if COMMAND_NAMES.contains(&n.as_str()) {
        ArgKind::Command
    } else if GLOB_NAMES.contains(&compact.as_str()) {
        ArgKind::Glob
    } else if PATH_NAMES.contains(&n.as_str())
        || ws.last().is_some_and(|w| {
            matches!(
                w.as_str(),
                "path" | "paths" | "dir" | "directory" | "file" | "files" | "folder" | "filename"
            )
        })
    {
        ArgKind::Path
    } else {
        // Numbers and booleans are data whatever their name.
        return None;
    };
    if matches!(ty, "number" | "integer" | "boolean") {
        return None;
    }
    Some(match (kind, is_array) {
        (ArgKind::Path, true) => ArgKind::PathList,
        (ArgKind::Url, true) => ArgKind::UrlList,
        (ArgKind::Glob, true) => ArgKind::GlobList,
        (k, _) => k,
    })
}

/// Describe a tool from its name and `inputSchema`.
pub(crate) fn infer_tool(name: &str, input_schema: &Value) -> ToolSpec {
    let mut args = BTreeMap::new();
    if let Some(props) = input_schema.get("properties").and_then(Value::as_object) {
        for (arg, schema) in props {
            let kind = classify_arg(arg, schema).unwrap_or(ArgKind::Data);
            // Only resource kinds are recorded as such; data arguments stay `data` so that the
            // value scan does not second-guess the schema (a `content` string is not a path).
            // Free-form strings without a recognised name are left out: their values get
            // scanned, which is the cautious choice for a tool nobody described.
            let is_free_string = kind == ArgKind::Data
                && schema
                    .get("type")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t == "string" || t == "array" || t == "object");
            if !is_free_string {
                args.insert(
                    arg.clone(),
                    ArgSpec {
                        kind,
                        capability: None,
                        relative_to: None,
                    },
                );
            }
        }
    }
    let ws = words(name);
    let has = |list: &[&str]| ws.iter().any(|w| list.contains(&w.as_str()));
    let has_kind = |k: &[ArgKind]| args.values().any(|a| k.contains(&a.kind));
    let capability = if has(EXEC_WORDS) || has_kind(&[ArgKind::Command]) {
        "shell.execute"
    } else if has(NET_WORDS) || has_kind(&[ArgKind::Url, ArgKind::UrlList]) {
        "network.fetch"
    } else if has(WRITE_WORDS) {
        "filesystem.write"
    } else if has(READ_WORDS) && !has(WRITE_WORDS) {
        "filesystem.read"
    } else if has_kind(&[ArgKind::Path, ArgKind::PathList]) {
        // A path argument and a name that says nothing: assume the worst.
        "filesystem.write"
    } else {
        "unknown"
    };
    ToolSpec {
        capability: capability.to_string(),
        args,
        note: "inferred from the tool's inputSchema and name".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn word_splitting() {
        assert_eq!(words("readTextFile"), ["read", "text", "file"]);
        assert_eq!(words("read-text_file"), ["read", "text", "file"]);
        assert_eq!(words("URLFetch"), ["urlfetch"]);
    }

    #[test]
    fn classifies_arguments() {
        assert_eq!(
            classify_arg("path", &json!({"type":"string"})),
            Some(ArgKind::Path)
        );
        assert_eq!(
            classify_arg("paths", &json!({"type":"array","items":{"type":"string"}})),
            Some(ArgKind::PathList)
        );
        assert_eq!(
            classify_arg("repoPath", &json!({"type":"string"})),
            Some(ArgKind::Path)
        );
        assert_eq!(
            classify_arg("target", &json!({"type":"string","format":"uri"})),
            Some(ArgKind::Url)
        );
        assert_eq!(
            classify_arg("webhook_url", &json!({"type":"string"})),
            Some(ArgKind::Url)
        );
        assert_eq!(
            classify_arg("command", &json!({"type":"string"})),
            Some(ArgKind::Command)
        );
        assert_eq!(
            classify_arg("excludePatterns", &json!({"type":"array"})),
            Some(ArgKind::GlobList)
        );
        assert_eq!(classify_arg("max_length", &json!({"type":"integer"})), None);
        assert_eq!(classify_arg("topic", &json!({"type":"string"})), None);
    }

    #[test]
    fn infers_capabilities() {
        let s = json!({"type":"object","properties":{"path":{"type":"string"}}});
        assert_eq!(
            infer_tool("read_text_file", &s).capability,
            "filesystem.read"
        );
        assert_eq!(infer_tool("write_file", &s).capability, "filesystem.write");
        assert_eq!(infer_tool("frobnicate", &s).capability, "filesystem.write");
        assert_eq!(
            infer_tool(
                "run_command",
                &json!({"properties":{"command":{"type":"string"}}})
            )
            .capability,
            "shell.execute"
        );
        assert_eq!(
            infer_tool("grab", &json!({"properties":{"url":{"type":"string"}}})).capability,
            "network.fetch"
        );
        let t = infer_tool(
            "summarize",
            &json!({"properties":{"topic":{"type":"string"},"n":{"type":"integer"}}}),
        );
        assert_eq!(t.capability, "unknown");
        assert!(!t.args.contains_key("topic"));
        assert_eq!(t.args["n"].kind, ArgKind::Data);
    }
}
