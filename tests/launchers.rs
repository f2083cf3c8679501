//! The package launchers people put in their MCP configurations (issue 12 §2), each running a
//! REAL server under `--mode full` and answering a legitimate tool call: `uvx PKG`,
//! `uv run --with PKG`, `pipx run`, and a globally installed npm bin
//! (`npm install -g --prefix DIR`, then `DIR/bin/mcp-server-...`).
//!
//! The launchers and their warmed caches come from scripts/setup-peers.sh (`.peers/venv/bin/uv`,
//! `uvx`, `pipx`; `.peers/uv-cache`, `.peers/pipx-home`; `.peers/npm-global`). The caches are
//! used offline; under full mode they are private copy-on-write layers, so these tests never
//! write to them (the hijack test works on its own copy).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use serde_json::{json, Value};

/// The pinned server that setup-peers warmed the uv and pipx caches with.
const WARM: &str = "mcp-server-fetch==2026.10.24";

/// `false` (and a visible, counted skip) when this machine cannot run the launcher tests.
fn launchers_or_skip() -> bool {
    if !kernel_available() {
        skip_test(module_path!(), "no kernel confinement here");
        return false;
    }
    let p = peers();
    let need = [
        "venv/bin/uvx",
        "venv/bin/uv",
        "venv/bin/pipx",
        "uv-cache/.warm",
        "pipx-home/.warm",
        "npm-global/bin/mcp-server-everything",
    ];
    if let Some(m) = need.iter().find(|r| !p.join(r).exists()) {
        skip_test(
            module_path!(),
            &format!(
                "{} missing in {} (run scripts/setup-peers.sh)",
                m,
                p.display()
            ),
        );
        return false;
    }
    true
}

/// The workspace read-write, the network limited to one loopback port (the fetch target).
fn policy(lab: &Lab, port: u16) -> PathBuf {
    lab.policy(
        "launchers",
        &format!(
            "name: launchers\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"127.0.0.1:{port}\"]\n\
             filesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\n",
            lab.ws.display()
        ),
    )
}

/// uv and pipx find their caches and interpreter here, never in the user's home.
fn launcher_env(b: SessionBuilder, lab: &Lab, uv_cache: &Path) -> SessionBuilder {
    b.env("UV_CACHE_DIR", uv_cache.to_str().unwrap())
        .env("UV_TOOL_DIR", lab.p("uv-tools").as_str())
        .env("UV_PYTHON", peer("venv/bin/python").to_str().unwrap())
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("UV_NO_CONFIG", "1")
        // pipx hands `pipx run` to `uv tool run` without --offline: the cache only.
        .env("UV_OFFLINE", "1")
        .env("PIPX_HOME", peer("pipx-home").to_str().unwrap())
        .env("PIPX_BIN_DIR", lab.p("pipx-bin").as_str())
        .env("PIPX_MAN_DIR", lab.p("pipx-man").as_str())
        .env("XDG_DATA_HOME", lab.p("xdg-data").as_str())
        .env("XDG_CACHE_HOME", lab.p("xdg-cache").as_str())
        .cwd(&lab.ws)
}

fn full(policy: &Path, server: Vec<String>) -> SessionBuilder {
    SessionBuilder::full_mode(policy, server)
}

/// Start the fetch server through `server` (a launcher command), list its tools, and fetch a
/// page from the allowed loopback port: the real server did real work inside the sandbox.
fn fetches_through(server: Vec<String>) {
    let lab = Lab::new();
    let canary = Canary::start(4);
    let pol = policy(&lab, canary.port);
    let mut s = launcher_env(full(&pol, server.clone()), &lab, &peer("uv-cache")).spawn();
    let init = s.initialize();
    assert!(
        init.get("serverInfo").is_some(),
        "{server:?}: {init}\n{}",
        s.stderr_text()
    );
    let tools = s.request("tools/list", json!({}));
    assert!(
        tools.to_string().contains("\"fetch\""),
        "{server:?}: {tools}\n{}",
        s.stderr_text()
    );
    let m = marker();
    let r = s.call_tool(
        "fetch",
        json!({"url": format!("http://127.0.0.1:{}/launcher-{m}", canary.port), "max_length": 2000}),
    );
    assert!(
        r.to_string().contains(CANARY_BODY),
        "{server:?}: {r}\n{}",
        s.stderr_text()
    );
    assert!(
        !canary.hits_with(&m).is_empty(),
        "the canary got no request"
    );
    s.finish();
}

/// The fetch server's own flags: the target is a private (loopback) address.
fn fetch_flags() -> [String; 2] {
    ["--ignore-robots-txt".into(), "--allow-private-ips".into()]
}

#[test]
fn uvx_runs_a_real_server_from_its_cache_under_full_mode() {
    if !launchers_or_skip() {
        return;
    }
    let mut argv = vec![
        peer("venv/bin/uvx").display().to_string(),
        "--offline".into(),
        "--from".into(),
        WARM.into(),
        "mcp-server-fetch".into(),
    ];
    argv.extend(fetch_flags());
    fetches_through(argv);
}

#[test]
fn uv_run_with_a_package_runs_a_real_server_under_full_mode() {
    if !launchers_or_skip() {
        return;
    }
    let mut argv = vec![
        peer("venv/bin/uv").display().to_string(),
        "run".into(),
        "--offline".into(),
        "--no-project".into(),
        "--with".into(),
        WARM.into(),
        "mcp-server-fetch".into(),
    ];
    argv.extend(fetch_flags());
    fetches_through(argv);
}

#[test]
fn pipx_run_runs_a_real_server_under_full_mode() {
    if !launchers_or_skip() {
        return;
    }
    let mut argv = vec![
        peer("venv/bin/pipx").display().to_string(),
        "run".into(),
        "--spec".into(),
        WARM.into(),
        "mcp-server-fetch".into(),
    ];
    argv.extend(fetch_flags());
    fetches_through(argv);
}

#[test]
fn a_global_npm_bin_runs_a_real_server_under_full_mode() {
    if !launchers_or_skip() {
        return;
    }
    let lab = Lab::new();
    let pol = lab.ws_rw_policy();
    // `npm install -g --prefix DIR pkg` links DIR/bin/X -> ../lib/node_modules/pkg/dist/index.js.
    let bin = peer("npm-global/bin/mcp-server-everything");
    let mut s = full(&pol, vec![bin.display().to_string(), "stdio".into()])
        .cwd(&lab.ws)
        .spawn();
    let init = s.initialize();
    assert!(
        init.get("serverInfo").is_some(),
        "{init}\n{}",
        s.stderr_text()
    );
    let m = marker();
    let r = s.call_tool("echo", json!({"message": m}));
    assert!(
        r.get("result").is_some() && r.to_string().contains(&m),
        "{r}\n{}",
        s.stderr_text()
    );
    s.finish();
}

/// Every console script of mcp-server-fetch's environments in a uv cache (what uvx runs).
fn cached_scripts(cache: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(cache.join("archive-v0"))
        .unwrap()
        .flatten()
    {
        let p = e.path().join("bin/mcp-server-fetch");
        if p.is_file() {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_hijacked_server_started_by_uvx_cannot_plant_code_in_the_users_uv_cache() {
    if !launchers_or_skip() {
        return;
    }
    let lab = Lab::new();
    // The user's uv cache: a copy of the warmed one (this test writes to it in proxy mode).
    let cache = lab.path("user-cache/uv");
    std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(peer("uv-cache"))
        .arg(&cache)
        .status()
        .unwrap();
    assert!(st.success());
    let scripts = cached_scripts(&cache);
    assert!(!scripts.is_empty(), "no cached environment in {cache:?}");
    let genuine: Vec<String> = scripts
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let planted = cache.join("archive-v0/planted.py");
    // The user's uv tool directory exists too (the other tests start without one).
    std::fs::create_dir_all(lab.path("uv-tools")).unwrap();

    // The hijacked server runs with the cached package's own interpreter, started by uvx.
    let srv = lab.path("srv");
    std::fs::create_dir_all(&srv).unwrap();
    std::fs::copy(
        fixture("hijacked_server.py"),
        srv.join("hijacked_server.py"),
    )
    .unwrap();
    let pol = lab.policy(
        "hijack",
        &format!(
            "name: hijack\nnetwork:\n  mode: none\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\nkernel:\n  extra_read: [{}]\n",
            lab.ws.display(),
            srv.display()
        ),
    );
    let mut probes: Vec<String> = scripts
        .iter()
        .map(|p| format!("rewrite={}", p.display()))
        .collect();
    probes.push(format!("write={}", planted.display()));
    for mode in ["full", "proxy"] {
        let report = lab.ws.join(format!("uvx-{mode}.json"));
        let mut argv = vec![
            peer("venv/bin/uvx").display().to_string(),
            "--offline".into(),
            "--from".into(),
            WARM.into(),
            "python".into(),
            srv.join("hijacked_server.py").display().to_string(),
            report.display().to_string(),
        ];
        argv.extend(probes.iter().cloned());
        let b = SessionBuilder::capjail(
            &[
                "--mode",
                mode,
                "--policy",
                pol.to_str().unwrap(),
                "--audit",
                "off",
            ],
            argv,
        );
        let mut s = launcher_env(b, &lab, &cache).spawn();
        let init = s.initialize();
        assert!(
            init.get("protocolVersion").is_some(),
            "{mode}: {init}\n{}",
            s.stderr_text()
        );
        s.finish();
        let r: Value = serde_json::from_str(
            &std::fs::read_to_string(&report)
                .unwrap_or_else(|e| panic!("{mode}: no report {e}: {}", s.stderr_text())),
        )
        .unwrap();
        let now: Vec<String> = scripts
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        if mode == "full" {
            // The writes succeeded in the server's private layer ...
            for p in &probes {
                assert!(r[p].as_str().unwrap_or("").starts_with("ok"), "{p}: {r}");
            }
            // ... and none of them reached the user's cache, which later runs unconfined.
            assert_eq!(now, genuine, "the user's uv cache was rewritten");
            assert!(
                !planted.exists(),
                "a file was planted in the user's uv cache"
            );
        } else {
            // Baseline: without the kernel layer the same probes do change the cache.
            assert!(now.iter().all(|s| s == "PLANTED"), "proxy baseline: {r}");
            assert!(planted.exists());
        }
    }
}
