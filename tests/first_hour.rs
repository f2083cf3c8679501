//! The first hour with capjail (issue 12): defaults that cannot open the machine, an audit log
//! one can live with, the small things, and wiring clients without hand-editing JSON.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(capjail_bin());
    cmd.args(args)
        .current_dir(dir)
        .env_remove("CAPJAIL_WORKSPACE")
        .env_remove("CAPJAIL_POLICY")
        .env_remove("CAPJAIL_AUDIT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(&mut cmd, None, Duration::from_secs(60))
}

// ----- §1 defaults ----------------------------------------------------------------------------

#[test]
fn an_implicit_workspace_at_the_root_or_home_is_refused_with_the_flag_to_pass() {
    let lab = Lab::new();
    let log = lab.p("audit.jsonl");
    let home = lab.path("home_like");
    for (dir, policy) in [
        (Path::new("/"), "workspace"),
        (home.as_path(), "workspace"),
        (Path::new("/etc"), "capfence"),
    ] {
        let o = run_in(
            dir,
            &["run", "--policy", policy, "--audit", &log, "--", "true"],
            &[("HOME", home.to_str().unwrap()), ("PWD", "/nonsense")],
        );
        assert_eq!(o.code, Some(124), "{policy} in {}: {o:?}", dir.display());
        assert!(
            o.stderr.contains("--workspace DIR"),
            "{policy} in {}: {}",
            dir.display(),
            o.stderr
        );
        assert!(!Path::new(&log).exists(), "nothing ran, nothing logged");
    }
    // A project directory is fine, and so is an explicit --workspace anywhere.
    let o = run_in(
        &lab.ws,
        &[
            "run",
            "--policy",
            "workspace",
            "--audit",
            &log,
            "--",
            "true",
        ],
        &[("HOME", home.to_str().unwrap())],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let o = run_in(
        Path::new("/"),
        &[
            "policy",
            "show",
            "workspace",
            "--workspace",
            lab.ws.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains(lab.ws.to_str().unwrap()), "{}", o.stdout);
}

#[test]
fn a_port_outside_a_portless_entry_is_refused_with_the_entry_to_write() {
    let lab = Lab::new();
    let p = lab.policy(
        "net",
        "network:\n  mode: allowlist\n  allowed_hosts: [\"127.0.0.1\"]\n  resolve: false\n",
    );
    let line = |url: &str| {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"fetch\",\"arguments\":{{\"url\":\"{url}\"}}}}}}\n"
        )
    };
    let o = capjail_with_input(
        &["check", "--text", "--policy", p.to_str().unwrap()],
        line("http://127.0.0.1:8443/x").as_bytes(),
    );
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(o.stdout.contains("`127.0.0.1:8443`"), "{}", o.stdout);
    let o = capjail_with_input(
        &["check", "--text", "--policy", p.to_str().unwrap()],
        line("http://127.0.0.1/x").as_bytes(),
    );
    assert_eq!(o.code, Some(0), "{o:?}");
}

#[test]
fn server_directories_outside_the_mounts_are_warned_about_at_start() {
    let lab = Lab::new();
    let log = lab.p("audit.jsonl");
    let policy = lab.ws_rw_policy();
    let o = run_in(
        &lab.root,
        &[
            "run",
            "--policy",
            policy.to_str().unwrap(),
            "--audit",
            &log,
            "--",
            "true",
            &lab.ws_s(),
            &lab.p("secret"),
        ],
        &[],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let warned: Vec<&str> = o
        .stderr
        .lines()
        .filter(|l| l.contains("does not mount it"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", o.stderr);
    assert!(warned[0].contains(&lab.p("secret")), "{}", warned[0]);
}

// ----- §3 the audit log -------------------------------------------------------------------------

#[test]
fn audit_show_and_verify_without_file_read_the_default_log_and_name_it() {
    let lab = Lab::new();
    let state = lab.path("state");
    let state_s = state.to_str().unwrap();
    let o = run_in(
        &lab.ws,
        &["run", "--policy", "strict", "--", "true"],
        &[("XDG_STATE_HOME", state_s)],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let default = state.join("capjail/audit.jsonl");
    assert!(default.exists());
    for args in [&["audit", "verify"][..], &["audit", "show"][..]] {
        let o = run_in(&lab.ws, args, &[("XDG_STATE_HOME", state_s)]);
        assert_eq!(o.code, Some(0), "{args:?}: {o:?}");
        assert!(
            o.stderr.contains(default.to_str().unwrap()),
            "{args:?} does not say which file: {}",
            o.stderr
        );
    }
}

#[test]
fn audit_show_names_the_mount_the_traversal_and_a_server_that_did_not_start() {
    let lab = Lab::new();
    let log = lab.p("audit.jsonl");
    let relay = lab.p("logs/naive.log");
    let mut s = SessionBuilder::capjail(
        &[
            "--policy",
            "workspace",
            "--workspace",
            &lab.ws_s(),
            "--audit",
            &log,
            "--profile",
            "filesystem",
        ],
        naive_server(&lab.root, Path::new(&relay)),
    )
    .cwd(&lab.ws)
    .spawn();
    s.initialize();
    s.call_tool(
        "read_file",
        serde_json::json!({"path": lab.p("ws/notes.txt")}),
    );
    s.call_tool(
        "read_file",
        serde_json::json!({"path": "../../../etc/passwd"}),
    );
    s.finish();
    let o = run_in(
        &lab.root,
        &["run", "--audit", &log, "--", "/no/such/server-xyz"],
        &[],
    );
    assert_eq!(o.code, Some(127), "{o:?}");
    let o = capjail(&["audit", "show", &log]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let line = |needle: &str| {
        o.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", o.stdout))
            .to_string()
    };
    assert!(
        line("notes.txt").contains(&format!("filesystem.mounts[{}]", lab.ws_s())),
        "{}",
        o.stdout
    );
    assert!(
        line("filesystem.path").contains("../../../etc/passwd"),
        "{}",
        o.stdout
    );
    assert!(
        line("did not start").contains("command not found"),
        "{}",
        o.stdout
    );
}

// ----- §4 the small things ----------------------------------------------------------------------

#[test]
fn policy_show_prints_every_section_and_explain_shows_both_layers() {
    let lab = Lab::new();
    let o = capjail(&["policy", "show", "strict"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    for section in [
        "\nfilesystem:",
        "\nnetwork:",
        "\ntools:",
        "\nproxy:",
        "\nkernel:",
        "\nenvironment:",
        "\naudit:",
    ] {
        assert!(
            o.stdout.contains(section),
            "no {section:?} in\n{}",
            o.stdout
        );
    }
    let o = capjail(&[
        "policy",
        "explain",
        "workspace",
        "--workspace",
        &lab.ws_s(),
        "--",
        "true",
    ]);
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(o.stdout.contains("PROXY LAYER"), "{}", o.stdout);
    assert!(o.stdout.contains(&lab.ws_s()), "{}", o.stdout);
    assert!(o.stdout.contains("KERNEL LAYER"), "{}", o.stdout);
}

#[test]
fn errors_have_one_prefix_in_every_subcommand() {
    let lab = Lab::new();
    let missing = lab.p("no-such.jsonl");
    for args in [
        vec!["run", "--policy", "no-such-policy-xyz", "--", "true"],
        vec!["check", "--policy", "no-such-policy-xyz"],
        vec!["policy", "show", "no-such-policy-xyz"],
        vec!["policy", "validate", missing.as_str()],
        vec!["audit", "show", missing.as_str()],
        vec!["replay", missing.as_str()],
        vec!["wrap", "--config", missing.as_str()],
    ] {
        let o = capjail(&args);
        assert_ne!(o.code, Some(0), "{args:?}");
        let first = o
            .stderr
            .lines()
            .find(|l| l.starts_with("capjail"))
            .unwrap_or("");
        assert!(
            first.starts_with("capjail: error: "),
            "{args:?}: {}",
            o.stderr
        );
    }
}

#[test]
fn the_confinement_line_is_logged_once() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    let lab = Lab::new();
    let log = lab.p("audit.jsonl");
    let o = run_in(
        &lab.ws,
        &[
            "run",
            "--mode",
            "full",
            "--policy",
            "workspace",
            "--workspace",
            &lab.ws_s(),
            "--audit",
            &log,
            "--",
            "true",
        ],
        &[],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    let n = o.stderr.lines().filter(|l| l.contains("landlock")).count();
    assert_eq!(n, 1, "{}", o.stderr);
}

// ----- §5 wiring clients --------------------------------------------------------------------------

#[test]
fn wrap_and_unwrap_a_claude_code_config_byte_for_byte() {
    let lab = Lab::new();
    let cfg = lab.path("home_like/.claude.json");
    let original = format!(
        "{{\n  \"numStartups\": 7,\n  \"mcpServers\": {{\n    \"fs\": {{\"command\": \"node\", \"args\": [\"server.js\", \"{ws}\"]}},\n    \"remote\": {{\"type\": \"http\", \"url\": \"https://mcp.example.test/mcp\"}}\n  }},\n  \"projects\": {{\n    \"{ws}\": {{\"mcpServers\": {{\"git\": {{\"command\": \"uvx\", \"args\": [\"mcp-server-git\"]}}}}}}\n  }}\n}}\n",
        ws = lab.ws_s()
    );
    std::fs::write(&cfg, &original).unwrap();
    let o = run_in(
        &lab.ws,
        &["wrap", "--dry-run"],
        &[("HOME", lab.p("home_like").as_str())],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(&cfg).unwrap(),
        original,
        "--dry-run wrote"
    );
    let o = run_in(
        &lab.ws,
        &["wrap", "--capjail", "/opt/capjail"],
        &[("HOME", lab.p("home_like").as_str())],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert!(
        o.stdout
            .contains("skipped mcpServers.remote: remote server"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("+") && l.contains("/opt/capjail")),
        "no diff:\n{}",
        o.stdout
    );
    let wrapped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    assert_eq!(wrapped["mcpServers"]["fs"]["command"], "/opt/capjail");
    assert_eq!(
        wrapped["mcpServers"]["fs"]["args"],
        serde_json::json!([
            "run",
            "--policy",
            "workspace",
            "--workspace",
            lab.ws_s(),
            "--",
            "node",
            "server.js",
            lab.ws_s()
        ])
    );
    assert_eq!(
        wrapped["projects"][lab.ws_s()]["mcpServers"]["git"]["args"],
        serde_json::json!(["run", "--policy", "strict", "--", "uvx", "mcp-server-git"])
    );
    // The wrapped command line is one capjail accepts.
    let args: Vec<String> = wrapped["mcpServers"]["fs"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let sep = args.iter().position(|a| a == "--").unwrap();
    let mut explain = vec!["policy".to_string(), "explain".into()];
    explain.extend(args[2..sep].iter().cloned());
    explain.push("--".into());
    explain.extend(args[sep + 1..].iter().cloned());
    let o = capjail(&explain.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.code, Some(0), "{o:?}");
    let o = run_in(
        &lab.ws,
        &["unwrap"],
        &[("HOME", lab.p("home_like").as_str())],
    );
    assert_eq!(o.code, Some(0), "{o:?}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), original);
    assert!(!lab
        .path("home_like/.claude.json.capjail-backup.json")
        .exists());
}

#[test]
fn policy_schema_is_json_schema_that_names_every_section() {
    let o = capjail(&["policy", "schema"]);
    assert_eq!(o.code, Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(
        v["$schema"]
            .as_str()
            .unwrap_or("")
            .contains("json-schema.org"),
        "{v}"
    );
    for section in [
        "filesystem",
        "network",
        "tools",
        "deny",
        "allow",
        "proxy",
        "kernel",
        "environment",
        "audit",
    ] {
        assert!(v["properties"].get(section).is_some(), "{section} missing");
    }
    assert_eq!(v["additionalProperties"], serde_json::json!(false));
}
