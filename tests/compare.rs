//! `capjail compare` end to end: the shipped attack suite against the real filesystem server and
//! against the probe server. The exit status is the contract (0: full mode contained every
//! attack and allowed every legitimate operation), and the JSON matrix must show the probes
//! really escaping under `--mode proxy` and being contained by the kernel under kernel and full
//! mode, so this test fails if the probes or the judge break.

use std::time::Duration;

use crate::support::*;
use serde_json::Value;

fn compare(args: &[&str]) -> (Output, Value) {
    let mut cmd = std::process::Command::new(capjail_bin());
    cmd.arg("compare").args(args);
    let o = run_bounded(&mut cmd, None, Duration::from_secs(900));
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the JSON report ({e}):\n{}\nstderr:\n{}",
            o.stdout, o.stderr
        )
    });
    (o, v)
}

fn case<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no case {id} in the report"))
}

fn outcome(v: &Value, id: &str, mode: &str) -> (String, String) {
    let r = &case(v, id)["results"][mode];
    (
        r["outcome"].as_str().unwrap_or("?").to_string(),
        r["by"].as_str().unwrap_or("").to_string(),
    )
}

/// The in-server escapes: real under proxy mode, contained by the kernel in kernel and full mode.
fn assert_probe_columns(v: &Value, kernel: bool) {
    let probes: Vec<&Value> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["target"] == "probe" && c["kind"] == "attack")
        .collect();
    assert!(probes.len() >= 11, "{} probe attacks", probes.len());
    for c in probes {
        let id = c["id"].as_str().unwrap();
        for mode in ["unconfined", "proxy"] {
            if id == "probe-env-self" && mode == "proxy" {
                // The environment allowlist holds in proxy mode too (issue 13): not a leak.
                assert_ne!(outcome(v, id, mode).0, "leaked", "{}", c["results"][mode]);
                continue;
            }
            assert_eq!(
                outcome(v, id, mode).0,
                "leaked",
                "{id} under {mode}: the probe must really escape: {}",
                c["results"][mode]
            );
        }
        for mode in ["kernel", "full"] {
            let want = if kernel {
                ("contained".to_string(), "kernel".to_string())
            } else {
                ("skipped".to_string(), String::new())
            };
            assert_eq!(
                outcome(v, id, mode),
                want,
                "{id} under {mode}: {}",
                c["results"][mode]
            );
        }
    }
}

fn assert_legit_allowed(v: &Value, kernel: bool) {
    for c in v["cases"].as_array().unwrap() {
        if c["kind"] != "legit" {
            continue;
        }
        let id = c["id"].as_str().unwrap();
        let detail = c["results"]["unconfined"]["detail"].as_str().unwrap_or("");
        if detail.contains("the server has no tool") {
            continue; // a request-level legit op for a server without that tool (the probe)
        }
        for mode in ["unconfined", "proxy", "kernel", "full"] {
            let got = outcome(v, id, mode).0;
            let ok = got == "allowed" || (!kernel && got == "skipped" && mode != "proxy");
            assert!(ok, "legit {id} under {mode}: {}", c["results"][mode]);
        }
    }
}

#[test]
fn compare_filesystem_server_full_mode_contains_everything() {
    let kernel = kernel_available();
    let js = peer("node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js");
    let (o, v) = compare(&[
        "--json",
        "--",
        "node",
        js.to_str().unwrap(),
        "{ws}",
        "{lab}",
    ]);
    assert_eq!(
        o.code,
        Some(0),
        "exit status; report:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
    assert_eq!(v["ok"], true);
    assert!(
        o.stderr.contains("] proxy"),
        "no progress lines on stderr:\n{}",
        o.stderr
    );
    assert_probe_columns(&v, kernel);
    assert_legit_allowed(&v, kernel);
    // Request-level attacks: real without capjail, refused by the proxy, and held by the
    // kernel alone where the proxy is off.
    for id in [
        "traversal-dotdot",
        "prefix-sibling-read",
        "prefix-sibling-write",
        "symlink-file-read",
        "symlink-write-linked-dir",
        "args-array-second",
        "args-move-source",
        "parser-duplicate-arguments",
        "parser-duplicate-name",
    ] {
        assert_eq!(
            outcome(&v, id, "unconfined").0,
            "leaked",
            "{id}: {}",
            case(&v, id)
        );
        assert_eq!(
            outcome(&v, id, "proxy"),
            ("contained".into(), "proxy".into()),
            "{id}: {}",
            case(&v, id)
        );
        assert_eq!(
            outcome(&v, id, "full"),
            ("contained".into(), "proxy".into()),
            "{id}: {}",
            case(&v, id)
        );
        if kernel {
            assert_eq!(
                outcome(&v, id, "kernel"),
                ("contained".into(), "kernel".into()),
                "{id}: {}",
                case(&v, id)
            );
        }
    }
    // The filesystem server has no fetch tool: the host cases are skipped, never "contained".
    assert_eq!(outcome(&v, "host-loopback-decimal", "full").0, "skipped");
    assert_eq!(v["summary"]["full"]["leaked"], 0);
    assert_eq!(v["summary"]["full"]["false_blocks"], 0);
}

/// The egress family (issue 18) against the real fetch server: the redirect to a loopback
/// canary, the allowed-by-wildcard name that resolves to loopback, and the hijacked probe's ways
/// out (no proxy, fast open, UDP, raw, DNS) reach their canaries without capjail and under
/// `--mode proxy` (what the proxy alone misses), and none of them under full mode; the
/// legitimate fetch of the allowed host on its non-default port works in every mode.
#[test]
fn compare_egress_family_contains_every_way_out() {
    let kernel = kernel_available();
    let fetch = fetch_server();
    let mut args = vec!["--json", "--family", "egress", "--"];
    args.extend(fetch.iter().map(String::as_str));
    let (o, v) = compare(&args);
    assert_eq!(
        o.code,
        Some(0),
        "exit status; report:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.iter().all(|c| c["family"] == "egress"), "{v}");
    let attacks = [
        "egress-redirect-loopback",
        "egress-name-to-loopback",
        "egress-ignore-proxy",
        "egress-fast-open",
        "egress-udp",
        "egress-raw-socket",
        "egress-dns-exfil",
    ];
    for id in attacks {
        for mode in ["unconfined", "proxy"] {
            assert_eq!(
                outcome(&v, id, mode).0,
                "leaked",
                "{id} under {mode} must really get out: {}",
                case(&v, id)
            );
        }
        if kernel {
            for mode in ["kernel", "full"] {
                assert_eq!(
                    outcome(&v, id, mode).0,
                    "contained",
                    "{id} under {mode}: {}",
                    case(&v, id)
                );
            }
        }
    }
    for mode in ["unconfined", "proxy", "kernel", "full"] {
        let got = outcome(&v, "egress-legit-fetch", mode).0;
        assert!(
            got == "allowed" || (!kernel && got == "skipped" && mode != "proxy"),
            "legit fetch under {mode}: {}",
            case(&v, "egress-legit-fetch")
        );
    }
}

#[test]
fn compare_probe_server_by_flag() {
    let kernel = kernel_available();
    let (o, v) = compare(&["--json", "--server", "probe"]);
    assert_eq!(
        o.code,
        Some(0),
        "exit status; report:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
    assert!(
        v["server"].as_str().unwrap().contains("probe-server"),
        "{}",
        v["server"]
    );
    assert_probe_columns(&v, kernel);
    assert_legit_allowed(&v, kernel);
    // Request-level cases need tools the probe does not have: skipped, with the reason.
    let (got, _) = outcome(&v, "traversal-dotdot", "full");
    assert_eq!(got, "skipped");
    assert!(case(&v, "traversal-dotdot")["results"]["full"]["detail"]
        .as_str()
        .unwrap()
        .contains("no tool read_text_file"));
}

#[test]
fn compare_exits_non_zero_when_full_mode_leaks() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    // A permissive policy: the kernel layer grants everything, so the probes escape in full mode.
    let lab = Lab::new();
    let pol = lab.permissive_policy();
    let (o, v) = compare(&[
        "--json",
        "--server",
        "probe",
        "--policy",
        pol.to_str().unwrap(),
    ]);
    assert_eq!(
        o.code,
        Some(1),
        "report:\n{}\nstderr:\n{}",
        o.stdout,
        o.stderr
    );
    assert_eq!(v["ok"], false);
    assert_eq!(outcome(&v, "probe-read-secret", "full").0, "leaked");
    assert!(v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f.as_str().unwrap().starts_with("probe-read-secret: LEAKED")));
}

#[test]
fn compare_markdown_and_text_reports() {
    let mut cmd = std::process::Command::new(capjail_bin());
    cmd.args(["compare", "--server", "probe", "--markdown"]);
    let o = run_bounded(&mut cmd, None, Duration::from_secs(120));
    assert!(o.code.is_some(), "{o:?}");
    assert!(
        o.stdout
            .contains("| case | family | what | unconfined | proxy | kernel | full |")
            && o.stdout.contains("| `probe-read-secret` | in-server |")
            && o.stdout.contains("| mode | attacks |"),
        "{}",
        o.stdout
    );
    assert!(
        !o.stdout.contains("[1/"),
        "progress must go to stderr, not stdout"
    );
    let help = capjail(&["compare", "--help"]);
    assert_eq!(help.code, Some(0));
    for needle in [
        "--policy",
        "--json",
        "--markdown",
        "{lab}",
        "contained (kernel)",
        "Exit status",
    ] {
        assert!(
            help.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            help.stdout
        );
    }
}
