//! Decision-level tests: the seeds' scenarios and the bypasses of DESIGN.md, without a server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::*;
use crate::policy::{load_str, PolicySource};
use crate::profile::builtin_profiles;

struct FakeWorld {
    hosts: HashMap<String, Vec<IpAddr>>,
}

impl World for FakeWorld {
    fn resolve_host(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
        self.hosts
            .get(host)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
    }
}

fn world() -> FakeWorld {
    FakeWorld {
        hosts: HashMap::from([(
            "example.com".to_string(),
            vec!["93.184.216.34".parse().unwrap()],
        )]),
    }
}

fn all_profiles() -> StaticCatalog {
    let mut tools = std::collections::BTreeMap::new();
    for p in builtin_profiles() {
        for (k, v) in &p.tools {
            tools.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    StaticCatalog {
        name: Some("test".into()),
        tools,
    }
}

fn policy(text: &str) -> Policy {
    load_str(text, PolicySource::Inline).unwrap_or_else(|e| panic!("{e}"))
}

fn call(p: &Policy, cwd: &Path, tool: &str, args: Value) -> Decision {
    let catalog = all_profiles();
    let paths = PathContext {
        cwd: cwd.to_path_buf(),
        home: Some(PathBuf::from("/home/u")),
        ..Default::default()
    };
    let w = world();
    let ctx = Context {
        policy: p,
        catalog: &catalog,
        paths: &paths,
        world: &w,
    };
    decide(
        &ctx,
        "tools/call",
        Some(&json!({"name": tool, "arguments": args})),
    )
}

fn rule(d: &Decision) -> &str {
    assert!(!d.is_allowed(), "expected a denial, got {d:?}");
    d.denial.as_ref().unwrap().rule.as_str()
}

/// A lab like the attack corpus': ws, ws_evil, secret, links.
struct Lab {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ws: PathBuf,
}

fn lab() -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let ws = root.join("ws");
    for d in ["ws/sub", "ws_evil", "secret"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(ws.join("notes.txt"), "LEGIT").unwrap();
    std::fs::write(root.join("secret/id_rsa"), "SECRET").unwrap();
    std::os::unix::fs::symlink("../secret", ws.join("link_dir")).unwrap();
    std::os::unix::fs::symlink("../secret/id_rsa", ws.join("link_file")).unwrap();
    std::os::unix::fs::symlink("../secret/newfile", ws.join("new_link")).unwrap();
    Lab {
        _dir: dir,
        root,
        ws,
    }
}

fn ws_policy(lab: &Lab, mode: &str) -> Policy {
    policy(&format!(
        "name: t\nnetwork: {{mode: none}}\nfilesystem:\n  mounts:\n    - path: {}\n      mode: {mode}\ntools:\n  mode: blocklist\n  blocked: [run_command, execute_command]\n",
        lab.ws.display()
    ))
}

#[test]
fn mcpjail_seed_requests() {
    let strict = policy(crate::policy::builtin::get("strict").unwrap());
    let cwd = Path::new("/srv");
    assert_eq!(
        rule(&call(
            &strict,
            cwd,
            "read_file",
            json!({"path": "../../../etc/passwd"})
        )),
        "filesystem.path"
    );
    assert_eq!(
        rule(&call(
            &strict,
            cwd,
            "read_file",
            json!({"path": "/etc/passwd"})
        )),
        "filesystem.mounts"
    );
    assert!(call(
        &strict,
        cwd,
        "read_file",
        json!({"path": "/tmp/mcpjail_test.txt"})
    )
    .is_allowed());
    assert_eq!(
        rule(&call(
            &strict,
            cwd,
            "write_file",
            json!({"path": "/etc/crontab", "content": "x"})
        )),
        "filesystem.mounts"
    );
    let ro = crate::policy::load_str_in(
        crate::policy::builtin::get("readonly").unwrap(),
        crate::policy::PolicySource::Inline,
        Some(std::path::Path::new("/tmp")),
    )
    .unwrap();
    assert_eq!(
        rule(&call(
            &ro,
            cwd,
            "write_file",
            json!({"path": "/tmp/test.txt", "content": "m"})
        )),
        "tools.allowed"
    );
    assert_eq!(
        rule(&call(
            &ro,
            cwd,
            "edit_file",
            json!({"path": "/tmp/test.txt", "edits": []})
        )),
        "tools.allowed"
    );
    assert!(call(&ro, cwd, "read_file", json!({"path": "/tmp/test.txt"})).is_allowed());
    assert_eq!(
        rule(&call(&strict, cwd, "execute_command", json!({}))),
        "tools.blocked"
    );
}

#[test]
fn capfence_seed_scenarios() {
    let p = policy("deny:\n- capability: filesystem.read\n  path_prefix: /etc\n- capability: shell.execute\nrequire_approval:\n- capability: database.write\nallow:\n- capability: filesystem.read\n  path_prefix: /proj\n- capability: filesystem.write\n  path_prefix: /proj\n");
    let cwd = Path::new("/");
    let ok = call(
        &p,
        cwd,
        "read_file",
        json!({"path": "/proj/pyproject.toml"}),
    );
    assert!(ok.is_allowed());
    assert_eq!(ok.rule, "allow[0]");
    assert_eq!(
        rule(&call(&p, cwd, "read_file", json!({"path": "/etc/passwd"}))),
        "deny[0]"
    );
    assert_eq!(
        rule(&call(&p, cwd, "read_file", json!({"path": "/projects/x"}))),
        "default"
    );
    assert_eq!(
        rule(&call(
            &p,
            cwd,
            "write_file",
            json!({"path": "/tmp/x", "content": ""})
        )),
        "default"
    );
}

#[test]
fn approval_and_shell_defaults() {
    let p = policy("filesystem: {mode: any}\nrequire_approval:\n- capability: filesystem.write\n");
    let d = call(
        &p,
        Path::new("/"),
        "write_file",
        json!({"path": "/tmp/x", "content": ""}),
    );
    assert_eq!(rule(&d), "require_approval[0]");
    assert!(d.denial.as_ref().unwrap().approval_required);
    assert!(d
        .denial
        .as_ref()
        .unwrap()
        .reason
        .contains("approval required"));
    // An access needing approval does not hide a later access the policy refuses outright.
    let p = policy("filesystem: {mode: any}\ndeny:\n- capability: filesystem.write\n  path_prefix: /etc\nrequire_approval:\n- capability: filesystem.write\n");
    for (source, destination) in [("/tmp/x", "/etc/x"), ("/etc/x", "/tmp/x")] {
        let d = call(
            &p,
            Path::new("/"),
            "move_file",
            json!({"source": source, "destination": destination}),
        );
        assert_eq!(rule(&d), "deny[0]", "{source} -> {destination}");
        assert!(!d.denial.as_ref().unwrap().approval_required);
    }
    // An inferred shell tool is refused without an allow rule, whatever its name.
    let p = policy("filesystem: {mode: any}\n");
    let catalog = StaticCatalog {
        name: None,
        tools: [(
            "frob".to_string(),
            crate::profile::infer::infer_tool(
                "frob",
                &json!({"properties": {"command": {"type": "string"}}}),
            ),
        )]
        .into(),
    };
    let paths = PathContext {
        cwd: "/".into(),
        home: None,
        ..Default::default()
    };
    let w = world();
    let ctx = Context {
        policy: &p,
        catalog: &catalog,
        paths: &paths,
        world: &w,
    };
    let d = decide(
        &ctx,
        "tools/call",
        Some(&json!({"name": "frob", "arguments": {"command": "cat /etc/shadow"}})),
    );
    assert_eq!(rule(&d), "default.shell");
}

#[test]
fn prefix_confusion_is_caught() {
    let lab = lab();
    let p = ws_policy(&lab, "rw");
    let evil = lab.root.join("ws_evil/canary.txt");
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "read_text_file",
            json!({"path": evil})
        )),
        "filesystem.mounts"
    );
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "write_file",
            json!({"path": lab.root.join("ws_evil/p"), "content": ""})
        )),
        "filesystem.mounts"
    );
    assert!(call(
        &p,
        &lab.root,
        "read_text_file",
        json!({"path": lab.ws.join("notes.txt")})
    )
    .is_allowed());
}

#[test]
fn symlinks_are_judged_by_their_target() {
    let lab = lab();
    let p = ws_policy(&lab, "rw");
    for path in [
        "link_file",
        "link_dir/id_rsa",
        "link_dir/planted.txt",
        "new_link",
    ] {
        let d = call(
            &p,
            &lab.root,
            "write_file",
            json!({"path": lab.ws.join(path), "content": "x"}),
        );
        assert_eq!(rule(&d), "filesystem.mounts", "{path}");
    }
    // Relative to the server's working directory (the lab root), not capjail's.
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "read_text_file",
            json!({"path": "ws/link_file"})
        )),
        "filesystem.mounts"
    );
    assert!(call(
        &p,
        &lab.root,
        "read_text_file",
        json!({"path": "ws/notes.txt"})
    )
    .is_allowed());
}

#[test]
fn every_path_argument_is_checked() {
    let lab = lab();
    let p = ws_policy(&lab, "rw");
    let secret = lab.root.join("secret/id_rsa");
    let notes = lab.ws.join("notes.txt");
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "read_multiple_files",
            json!({"paths": [notes, secret]})
        )),
        "filesystem.mounts"
    );
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "move_file",
            json!({"source": secret, "destination": lab.ws.join("stolen")})
        )),
        "filesystem.mounts"
    );
    // A decoy key next to the real one: undeclared keys are scanned too.
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "read_text_file",
            json!({"file": notes, "path": secret})
        )),
        "filesystem.mounts"
    );
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "read_text_file",
            json!({"path": notes, "extra": {"deep": [format!("file://{}", secret.display())]}})
        )),
        "filesystem.mounts"
    );
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "read_text_file",
            json!({"path": format!("file://{}", secret.display())})
        )),
        "filesystem.mounts"
    );
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "read_multiple_files",
            json!({"paths": notes})
        )),
        "profile.list_argument"
    );
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "read_text_file",
            json!({"path": ["x"]})
        )),
        "profile.string_argument"
    );
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "search_files",
            json!({"path": lab.ws, "pattern": "../../secret/*"})
        )),
        "filesystem.path"
    );
    assert!(call(
        &p,
        &lab.root,
        "search_files",
        json!({"path": lab.ws, "pattern": "**/*.txt"})
    )
    .is_allowed());
    // A `%` the server may or may not decode: both readings must be inside.
    let sibling = format!("{}%2fplanted", lab.ws.display());
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "write_file",
            json!({"path": sibling, "content": ""})
        )),
        "filesystem.mounts"
    );
    // Writing into a read-only mount.
    let ro = ws_policy(&lab, "ro");
    assert_eq!(
        rule(&call(
            &ro,
            &lab.root,
            "write_file",
            json!({"path": notes, "content": ""})
        )),
        "filesystem.mounts"
    );
    assert_eq!(
        rule(&call(
            &ro,
            &lab.root,
            "move_file",
            json!({"source": notes, "destination": lab.ws.join("m")})
        )),
        "filesystem.mounts"
    );
    assert!(call(&ro, &lab.root, "read_text_file", json!({"path": notes})).is_allowed());
}

#[test]
fn git_add_files_resolve_against_the_repository() {
    let lab = lab();
    let p = ws_policy(&lab, "rw");
    assert!(call(
        &p,
        &lab.root,
        "git_add",
        json!({"repo_path": lab.ws, "files": ["notes.txt", "sub/a"]})
    )
    .is_allowed());
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "git_add",
            json!({"repo_path": lab.ws, "files": ["../secret/id_rsa"]})
        )),
        "filesystem.path"
    );
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "git_add",
            json!({"repo_path": lab.ws, "files": ["link_dir/id_rsa"]})
        )),
        "filesystem.mounts"
    );
    assert_eq!(
        rule(&call(
            &p,
            &lab.root,
            "git_status",
            json!({"repo_path": lab.root})
        )),
        "filesystem.mounts"
    );
}

#[test]
fn unknown_tools_fail_closed_when_the_policy_restricts() {
    let lab = lab();
    let p = ws_policy(&lab, "rw");
    let d = call(&p, &lab.root, "mystery_tool", json!({"x": 1}));
    assert_eq!(rule(&d), "profile.unknown_tool");
    assert!(d.denial.unwrap().reason.contains("--profile"));
    let open = policy("filesystem: {mode: any}\nnetwork: {mode: all, allow_private: true, allow_loopback: true}\n");
    assert!(call(&open, &lab.root, "mystery_tool", json!({"x": 1})).is_allowed());
}

#[test]
fn malformed_calls_are_refused() {
    let p = policy(crate::policy::builtin::get("strict").unwrap());
    let catalog = all_profiles();
    let paths = PathContext {
        cwd: "/".into(),
        home: None,
        ..Default::default()
    };
    let w = world();
    let ctx = Context {
        policy: &p,
        catalog: &catalog,
        paths: &paths,
        world: &w,
    };
    for (params, want) in [
        (json!(null), "protocol.tool_call_params"),
        (json!([]), "protocol.tool_call_params"),
        (json!({"name": 3}), "protocol.tool_name"),
        (json!({"name": ""}), "protocol.tool_name"),
        (
            json!({"name": "read_file", "arguments": "x"}),
            "protocol.tool_arguments",
        ),
    ] {
        let d = decide(&ctx, "tools/call", Some(&params));
        assert_eq!(rule(&d), want, "{params}");
    }
    let ping = decide(&ctx, "ping", None);
    assert!(ping.is_allowed());
    // An allowed protocol message names a documented id, serialised as its dotted text.
    assert_eq!(ping.rule, RuleId::ProtocolAllowed);
    assert_eq!(
        serde_json::to_value(&ping).unwrap()["rule"],
        "protocol.allowed"
    );
    assert!(decide(
        &ctx,
        "resources/read",
        Some(&json!({"uri": "test://static/resource/1"}))
    )
    .is_allowed());
    assert_eq!(
        rule(&decide(
            &ctx,
            "resources/read",
            Some(&json!({"uri": "file:///etc/passwd"}))
        )),
        "filesystem.mounts"
    );
    assert_eq!(
        rule(&decide(&ctx, "resources/read", Some(&json!({})))),
        "protocol.resource_uri"
    );
}

/// A world in which `/ci` ignores case (a casefold directory or a vfat mount).
struct CaseWorld;

impl World for CaseWorld {
    fn resolve_path(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
    fn resolve_host(&self, _: &str, _: u16) -> std::io::Result<Vec<IpAddr>> {
        Err(std::io::Error::other("no network"))
    }
    fn case_insensitive_from(&self, path: &Path) -> Option<usize> {
        path.starts_with("/ci").then_some(2)
    }
}

fn call_in(w: &dyn World, p: &Policy, tool: &str, args: Value) -> Decision {
    let catalog = all_profiles();
    let paths = PathContext {
        cwd: PathBuf::from("/ci/ws"),
        ..Default::default()
    };
    let ctx = Context {
        policy: p,
        catalog: &catalog,
        paths: &paths,
        world: w,
    };
    decide(
        &ctx,
        "tools/call",
        Some(&json!({"name": tool, "arguments": args})),
    )
}

#[test]
fn case_insensitive_directories_fold_deny_rules_and_mounts() {
    let p = policy(
        "name: t\nnetwork: {mode: none}\nfilesystem:\n  mounts:\n    - {path: /ci/ws, mode: rw}\n    - {path: /ci/ws/Keep, mode: ro}\n    - {path: /cs/ws, mode: rw}\ntools: {mode: all}\ndeny:\n  - {capability: filesystem.read, path_prefix: /ci/ws/secret}\n  - {capability: filesystem.read, path_prefix: /cs/ws/secret}\nallow:\n  - {capability: filesystem.*, path_prefix: /ci/Ws}\n  - {capability: filesystem.*, path_prefix: /cs/ws}\n",
    );
    let read = |path: &str| call_in(&CaseWorld, &p, "read_text_file", json!({"path": path}));
    let write = |path: &str| {
        call_in(
            &CaseWorld,
            &p,
            "write_file",
            json!({"path": path, "content": "x"}),
        )
    };
    // The deny rule matches every case of `secret` where lookups ignore case...
    for path in ["/ci/ws/secret/k", "/ci/ws/SECRET/k", "/ci/WS/Secret/k"] {
        assert_eq!(rule(&read(path)), "deny[0]", "{path}");
    }
    assert!(read("/ci/ws/notes").is_allowed());
    // ... and only the exact case where they do not.
    assert_eq!(rule(&read("/cs/ws/secret/k")), "deny[1]");
    assert!(read("/cs/ws/SECRET/k").is_allowed());
    // Mount containment on the folded form: `/ci/WS` is the mount, `/ci/ws/keep` the ro one.
    assert!(write("/ci/WS/notes.txt").is_allowed());
    assert_eq!(rule(&write("/ci/ws/keep/x")), "filesystem.mounts");
    assert_eq!(rule(&write("/CI/ws/notes.txt")), "filesystem.mounts");
    assert_eq!(rule(&write("/cs/WS/notes.txt")), "filesystem.mounts");
}

/// The byte searches of `looks_like_url` and `looks_like_path` against the substring searches
/// they replaced (issue 19), on every string of up to 6 characters over an alphabet of the
/// bytes they look at (and a multi-byte character).
#[test]
fn scheme_and_dotdot_searches_match_the_substring_searches() {
    const ALPHABET: [&str; 7] = ["/", ".", ":", "a", "\\", "é", "~"];
    let mut strings = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..6 {
        let next: Vec<String> = last
            .iter()
            .flat_map(|s| ALPHABET.iter().map(move |c| format!("{s}{c}")))
            .collect();
        strings.extend(next.iter().cloned());
        last = next;
    }
    for s in &strings {
        assert_eq!(
            super::find_scheme_separator(s.as_bytes()),
            s.find("://"),
            "{s:?}"
        );
        assert_eq!(
            super::has_dotdot_segment(s.as_bytes()),
            s.contains("/../"),
            "{s:?}"
        );
    }
    assert!(strings.len() > 100_000);
}

#[test]
fn a_decision_keeps_a_known_method_without_an_allocation_and_any_other_as_written() {
    use std::borrow::Cow;
    for m in KNOWN_METHODS {
        assert!(matches!(kept_method(m), Cow::Borrowed(k) if k == *m));
    }
    for m in ["tools/callx", "tools/cal", "", "Tools/call", "x/y"] {
        assert!(matches!(kept_method(m), Cow::Owned(ref k) if k == m), "{m}");
    }
}

#[test]
fn an_access_keeps_a_known_capability_without_an_allocation_and_any_other_as_written() {
    use std::borrow::Cow;
    for c in KNOWN_CAPABILITIES {
        assert!(matches!(kept_capability(c), Cow::Borrowed(k) if k == *c));
    }
    for c in ["filesystem.readx", "filesystem.", "", "Compute", "git.push"] {
        assert!(
            matches!(kept_capability(c), Cow::Owned(ref k) if k == c),
            "{c}"
        );
    }
    // Every capability of the built-in profiles is kept without an allocation.
    for p in crate::profile::builtin_profiles() {
        for (tool, spec) in &p.tools {
            assert!(
                KNOWN_CAPABILITIES.contains(&spec.capability.as_str()),
                "{tool}: {}",
                spec.capability
            );
        }
    }
}

#[test]
fn a_call_s_single_access_is_held_inline() {
    // One access (the usual call) is kept in the decision itself: no allocation per call.
    let mut a = Accesses::new();
    a.push(Access {
        capability: kept_capability("compute"),
        resource: Resource::None,
    });
    assert!(!a.spilled());
}
