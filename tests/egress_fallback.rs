//! The fallback of the egress point (issue 18 §3), by effect. Under `network: allowlist` in
//! kernel mode with the server's world off (`kernel.namespaces: false`):
//! - where a network namespace can still be made, the server gets one of its own anyway, and
//!   its only way out is the egress point: a direct connection to the allowed port reaches
//!   nothing;
//! - where no network namespace can be made (the test runs capjail in a user namespace of its
//!   own whose `max_net_namespaces` is 0), the fallback applies: Landlock's TCP port rules. The
//!   server still reaches the allowed port (no false block), not another port, and capjail says
//!   on stderr, and `doctor` says, that this is weaker.
//!
//! Everything runs inside a user + network namespace the test creates (`unshare`), with two
//! loopback canaries (tests/fixtures/canary.py) in it: no traffic leaves it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

const ALLOWED: u16 = 18091;
const OTHER: u16 = 18092;

/// Connect to both canary ports directly (ignoring any proxy variable), one request each.
const CLIENT: &str = r#"
import socket, sys
m = sys.argv[1]
for port, tag in ((int(sys.argv[2]), "allowed"), (int(sys.argv[3]), "other")):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        s.sendall(("GET /%s-%s HTTP/1.0\r\nHost: x\r\n\r\n" % (tag, m)).encode())
        print("client %s: %r" % (tag, s.recv(64)), file=sys.stderr)
    except Exception as e:
        print("client %s: failed: %r" % (tag, e), file=sys.stderr)
"#;

/// In the test's namespace: `lo` up, no further network namespaces when asked, two canaries,
/// then the command.
const WRAPPER: &str = r#"set -e
W="$1"; CANARY="$2"; LIMIT="$3"; shift 3
ip link set lo up
if [ "$LIMIT" = yes ]; then echo 0 > /proc/sys/user/max_net_namespaces; fi
for p in 18091 18092; do
  rm -f "$W/ready-$p"
  python3 "$CANARY" --port "$p" --hits "$W/hits-$p" --ready "$W/ready-$p" --max-seconds 120 &
done
i=0
while [ ! -e "$W/ready-18091" ] || [ ! -e "$W/ready-18092" ]; do
  i=$((i+1)); [ "$i" -lt 400 ] || { echo "fallback lab: canaries did not start" >&2; exit 98; }
  sleep 0.05
done
"$@"
"#;

struct FallbackLab {
    dir: tempfile::TempDir,
}

impl FallbackLab {
    fn new() -> FallbackLab {
        let dir = tempfile::tempdir().unwrap();
        let policy = format!(
            "name: egress-fallback\nkernel:\n  namespaces: false\nfilesystem:\n  mode: explicit\n  mounts: []\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"127.0.0.1:{ALLOWED}\"]\n"
        );
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        FallbackLab { dir }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn hits(&self, port: u16) -> String {
        std::fs::read_to_string(self.path(&format!("hits-{port}"))).unwrap_or_default()
    }
    /// `capjail ARGS` inside the test's user + network namespace (`limit`: no further network
    /// namespace can be made there).
    fn capjail(&self, limit: bool, args: &[String]) -> Output {
        let mut argv: Vec<String> = vec![
            "unshare".into(),
            "--user".into(),
            "--map-root-user".into(),
            "--net".into(),
            "--".into(),
            "sh".into(),
            "-c".into(),
            WRAPPER.into(),
            "fallback-lab".into(),
            self.dir.path().display().to_string(),
            fixture("canary.py").display().to_string(),
            if limit { "yes" } else { "no" }.into(),
            capjail_bin().display().to_string(),
        ];
        argv.extend(args.iter().cloned());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        run_bounded(&mut cmd, Some(b""), Duration::from_secs(120))
    }
    fn run_client(&self, limit: bool, m: &str) -> Output {
        let policy = self.path("policy.yaml");
        let audit = self.path(&format!("audit-{limit}.jsonl"));
        self.capjail(
            limit,
            &[
                "run".into(),
                "--mode".into(),
                "kernel".into(),
                "--policy".into(),
                policy.display().to_string(),
                "--audit".into(),
                audit.display().to_string(),
                "--".into(),
                "python3".into(),
                "-c".into(),
                CLIENT.into(),
                m.into(),
                ALLOWED.to_string(),
                OTHER.to_string(),
            ],
        )
    }
}

fn tools_present() -> bool {
    if !kernel_available() {
        skip_test(module_path!(), "no kernel layer here");
        return false;
    }
    for t in ["unshare", "ip"] {
        if which(t).is_none() {
            skip_test(module_path!(), &format!("`{t}` is missing"));
            return false;
        }
    }
    true
}

#[test]
fn egress_fallback_without_network_namespaces_keeps_the_allowed_port_and_says_it_is_weaker() {
    if !tools_present() {
        return;
    }
    let lab = FallbackLab::new();
    let m = marker();
    let out = lab.run_client(true, &m);
    assert!(
        out.stderr
            .contains("no network namespace for the egress point")
            && out.stderr.contains("weaker than the egress point"),
        "capjail must say the fallback is weaker:\n{}",
        out.stderr
    );
    assert!(
        lab.hits(ALLOWED).contains(&format!("allowed-{m}")),
        "the fallback must let the server reach the allowed port: hits {:?}\n{}",
        lab.hits(ALLOWED),
        out.stderr
    );
    assert!(
        !lab.hits(OTHER).contains(&m),
        "Landlock's port rule must keep the server off another port: {}\n{}",
        lab.hits(OTHER),
        out.stderr
    );
    // `doctor` in the same place says what applies and that it is weaker.
    let doc = lab.capjail(
        true,
        &[
            "doctor".into(),
            "--policy".into(),
            lab.path("policy.yaml").display().to_string(),
        ],
    );
    assert!(
        doc.stdout.contains("NOT available here")
            && doc.stdout.contains("fallback (weaker)")
            && doc.stdout.contains("weaker than the egress point"),
        "{}\n{}",
        doc.stdout,
        doc.stderr
    );
}

#[test]
fn egress_world_off_still_gets_its_own_network_namespace() {
    if !tools_present() {
        return;
    }
    let lab = FallbackLab::new();
    let m = marker();
    let out = lab.run_client(false, &m);
    assert!(
        !out.stderr
            .contains("no network namespace for the egress point"),
        "{}",
        out.stderr
    );
    // The server ran (it reported its attempts), and neither attempt reached a canary: with
    // the world off, the egress route still gave it a network namespace of its own.
    assert!(out.stderr.contains("client allowed:"), "{}", out.stderr);
    assert!(
        !lab.hits(ALLOWED).contains(&m) && !lab.hits(OTHER).contains(&m),
        "a direct connection got out although the server had its own namespace: {} / {}\n{}",
        lab.hits(ALLOWED),
        lab.hits(OTHER),
        out.stderr
    );
    let doc = lab.capjail(
        false,
        &[
            "doctor".into(),
            "--policy".into(),
            lab.path("policy.yaml").display().to_string(),
        ],
    );
    assert!(
        doc.stdout.contains("egress point in force"),
        "{}",
        doc.stdout
    );
}
