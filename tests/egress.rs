//! The egress point, by effect (issue 18): under `--mode full` with `network: allowlist` the
//! server lives in its own network namespace whose only way out is capjail's egress point.
//! Every case runs inside a network + mount namespace the test creates (support::Isolation):
//! loopback only, `/etc/hosts` and `/etc/resolv.conf` of its own, an allowed origin on
//! 127.0.0.1:18081 (`allowed.test`), a canary on 127.0.0.1:18080 and a DNS canary on
//! 127.0.0.1:53 (tests/fixtures/egress_lab.py). Each attack is also run under `--mode proxy`,
//! where it must reach its canary: the probe is real.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use serde_json::json;

const ORIGIN_PORT: u16 = 18081;

struct EgressLab {
    iso: Isolation,
    _tmp: tempfile::TempDir,
}

impl EgressLab {
    fn new() -> EgressLab {
        let tmp = tempfile::tempdir().unwrap();
        let mut iso = Isolation::new(&tmp.path().join("iso"));
        iso.extra_hosts
            .push(("evil.rebind.test".into(), "127.0.0.1".into()));
        EgressLab { iso, _tmp: tmp }
    }
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.iso.work.join(rel)
    }
    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }
    fn policy(&self, extra: &str) -> std::path::PathBuf {
        let p = self.path("policy.yaml");
        std::fs::write(
            &p,
            format!(
                "name: egress-test\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"{ALLOWED_HOST}:{ORIGIN_PORT}\", \"*.rebind.test:{NETNS_CANARY_PORT}\"]\n{extra}"
            ),
        )
        .unwrap();
        p
    }
    /// `egress_lab.py ... -- capjail run --mode MODE --policy P --audit A -- SERVER`.
    fn server_argv(&self, mode: &str, policy: &Path, server: Vec<String>) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "python3".into(),
            fixture("egress_lab.py").display().to_string(),
            "--canary".into(),
            fixture("canary.py").display().to_string(),
            "--origin-port".into(),
            ORIGIN_PORT.to_string(),
            "--origin-hits".into(),
            self.path("origin-hits").display().to_string(),
            "--dns-hits".into(),
            self.path("dns-hits").display().to_string(),
            "--".into(),
            capjail_bin().display().to_string(),
            "run".into(),
            "--mode".into(),
            mode.into(),
            "--policy".into(),
            policy.display().to_string(),
            "--audit".into(),
            self.path(&format!("audit-{mode}.jsonl"))
                .display()
                .to_string(),
            "--".into(),
        ];
        v.extend(server);
        v
    }
    /// The isolation's canary signals readiness with a file: a second run must not see the
    /// first run's.
    fn fresh(&self) {
        let _ = std::fs::remove_file(self.path("canary-ready"));
    }
    fn session(&self, mode: &str, policy: &Path, server: Vec<String>) -> Session {
        self.fresh();
        SessionBuilder::direct(self.server_argv(mode, policy, server))
            .isolated(&self.iso)
            .spawn()
    }
}

fn fetch(s: &mut Session, url: &str) -> serde_json::Value {
    s.call_tool("fetch", json!({"url": url, "max_length": 2000}))
}

#[test]
fn fetch_reaches_the_allowed_port_and_no_redirect_leaves_it() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    let lab = EgressLab::new();
    let policy = lab.policy("");
    let m = marker();
    let mut s = lab.session("full", &policy, fetch_server());
    s.initialize();
    // The allowed host, on its non-default port, through the egress point.
    let r = fetch(
        &mut s,
        &format!("http://{ALLOWED_HOST}:{ORIGIN_PORT}/page-{m}"),
    );
    assert!(r["result"].to_string().contains(CANARY_BODY), "{r}");
    assert!(lab.read("origin-hits").contains(&format!("page-{m}")));
    // A redirect to a loopback canary port: the egress point refuses the new request.
    let to = format!("http://127.0.0.1:{NETNS_CANARY_PORT}/stolen-{m}");
    let r = fetch(
        &mut s,
        &format!("http://{ALLOWED_HOST}:{ORIGIN_PORT}/redirect?to={to}"),
    );
    assert!(lab.read("origin-hits").contains("/redirect"), "{r}");
    assert!(
        r["result"]["isError"] == json!(true) || r.get("error").is_some(),
        "{r}"
    );
    // A redirect to a name that resolves to loopback (matches `*.rebind.test:18080`).
    let to = format!("http://evil.rebind.test:{NETNS_CANARY_PORT}/named-{m}");
    let r = fetch(
        &mut s,
        &format!("http://{ALLOWED_HOST}:{ORIGIN_PORT}/redirect?to={to}"),
    );
    assert!(
        r["result"]["isError"] == json!(true) || r.get("error").is_some(),
        "{r}"
    );
    // The name as an argument: the proxy refuses it first (same check, same rule).
    let r = fetch(
        &mut s,
        &format!("http://evil.rebind.test:{NETNS_CANARY_PORT}/arg-{m}"),
    );
    assert_eq!(r["error"]["code"], -32001, "{r}");
    drop(s);
    assert!(
        lab.iso.hits_with(&m).is_empty(),
        "the canary was reached under full mode: {:?}",
        lab.iso.hits_with(&m)
    );
    let audit = lab.read("audit-full.jsonl");
    let egress: Vec<&str> = audit.lines().filter(|l| l.contains("egress/GET")).collect();
    assert!(
        egress.iter().any(|l| l.contains("\"verdict\":\"deny\"")
            && l.contains("network.allowed_hosts")
            && l.contains(&format!("stolen-{m}"))),
        "no audit record of the refused redirect: {egress:#?}"
    );
    assert!(
        egress.iter().any(|l| l.contains("\"verdict\":\"deny\"")
            && l.contains("network.private")
            && l.contains(&format!("named-{m}"))),
        "no audit record of the refused loopback name: {egress:#?}"
    );

    // The same redirect without the kernel layer reaches the canary: the probe is real.
    let mut p = lab.session("proxy", &policy, fetch_server());
    p.initialize();
    let to = format!("http://127.0.0.1:{NETNS_CANARY_PORT}/proxy-{m}");
    let _ = fetch(
        &mut p,
        &format!("http://{ALLOWED_HOST}:{ORIGIN_PORT}/redirect?to={to}"),
    );
    drop(p);
    assert!(
        !lab.iso.hits_with(&format!("proxy-{m}")).is_empty(),
        "the redirect did not reach the canary even without the egress point"
    );
}

fn run_hijack(lab: &EgressLab, mode: &str, m: &str) -> Output {
    let fixtures = fixture("egress_hijack.py")
        .parent()
        .unwrap()
        .display()
        .to_string();
    let policy = lab.policy(&format!(
        "filesystem:\n  mode: explicit\n  mounts:\n    - path: {fixtures}\n      mode: ro\n"
    ));
    let server = vec![
        "python3".into(),
        fixture("egress_hijack.py").display().to_string(),
        m.to_string(),
        NETNS_CANARY_PORT.to_string(),
    ];
    lab.fresh();
    let argv = lab.iso.wrap(&lab.server_argv(mode, &policy, server));
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    run_bounded(&mut cmd, Some(b""), Duration::from_secs(120))
}

#[test]
fn a_hijacked_server_reaches_no_canary_and_no_resolver() {
    if !kernel_available() {
        skip!("the kernel layer is not available here");
    }
    let lab = EgressLab::new();
    let m = marker();
    let out = run_hijack(&lab, "full", &m);
    assert!(
        out.stderr.contains("hijack proxy CONNECT name"),
        "{}",
        out.stderr
    );
    assert!(
        lab.iso.hits_with(&m).is_empty(),
        "a canary was reached under full mode: {:?}\n{}",
        lab.iso.hits_with(&m),
        out.stderr
    );
    assert!(
        !lab.read("dns-hits").contains(&m),
        "the DNS canary saw the marker under full mode: {}\n{}",
        lab.read("dns-hits"),
        out.stderr
    );
    // The egress point refused the CONNECTs (and never resolved the marker's name).
    let audit = lab.read("audit-full.jsonl");
    assert!(audit.contains("egress/CONNECT"), "{audit}");

    // Without the kernel layer the same attempts arrive: the probes are real.
    let m2 = marker();
    let out = run_hijack(&lab, "proxy", &m2);
    assert!(
        !lab.iso.hits_with(&format!("direct-{m2}")).is_empty(),
        "direct TCP did not reach the canary under --mode proxy: {}",
        out.stderr
    );
    let dns = lab.read("dns-hits");
    assert!(
        dns.contains(&format!("udp-{m2}")) && dns.contains(&format!("lookup-{m2}")),
        "UDP / lookup did not reach the DNS canary under --mode proxy: {dns}\n{}",
        out.stderr
    );
}
