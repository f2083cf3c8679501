//! Secrets never reach an allowed host, in any encoding, while ordinary traffic does: the real
//! mcp-server-fetch behind capjail, in a network namespace with a loopback canary standing in
//! for the allowed host (tests/support Isolation).

use crate::support::*;
use serde_json::{json, Value};

fn policy(lab: &Lab, extra: &str) -> std::path::PathBuf {
    lab.policy(
        "content-fetch",
        &format!(
            "name: content-fetch\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"{ALLOWED_HOST}:{NETNS_CANARY_PORT}\", \"*.{ALLOWED_HOST}:{NETNS_CANARY_PORT}\"]\n  allow_loopback: true\nfilesystem: {{mode: explicit, mounts: []}}\n{extra}"
        ),
    )
}

fn call(s: &mut Session, url: &str) -> (Value, Value) {
    let id = json!(s.id());
    s.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"fetch","arguments":{"url":url,"max_length":200}}}));
    let r = s.wait_id(&id);
    (id, r)
}

fn pct(s: &str) -> String {
    s.bytes().map(|c| format!("%{c:02X}")).collect()
}

fn b64(bytes: &[u8], url: bool) -> String {
    let t: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for ch in bytes.chunks(3) {
        let n = (ch[0] as u32) << 16
            | (*ch.get(1).unwrap_or(&0) as u32) << 8
            | *ch.get(2).unwrap_or(&0) as u32;
        for k in 0..=ch.len() {
            out.push(t[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
    }
    out
}

fn b32(bytes: &[u8]) -> String {
    let t = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut acc, mut bits, mut out) = (0u32, 0, String::new());
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(t[(acc >> bits & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(t[(acc << (5 - bits) & 31) as usize] as char);
    }
    out
}

/// The secrets, each in every encoding: (what, url).
fn secret_urls(mk: &str) -> Vec<(String, String)> {
    let aws = format!("AKIA{}", random_hex(8).to_uppercase());
    let gh = format!("ghp_{}{}", random_hex(16), "Zq8v");
    let pem = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA{}\n-----END OPENSSH PRIVATE KEY-----\n",
        random_hex(40)
    );
    let seed =
        "legal winner thank year wave sausage worth useful legal winner thank yellow".to_string();
    let jwt = format!(
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsIm4iOiI{}\u{0}",
        random_hex(8)
    )
    .replace('\u{0}', ".Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9");
    let base = format!("http://{ALLOWED_HOST}:{NETNS_CANARY_PORT}");
    let mut v = Vec::new();
    for (name, s) in [
        ("aws", &aws),
        ("github", &gh),
        ("pem", &pem),
        ("seed", &seed),
        ("jwt", &jwt),
    ] {
        let q = |enc: &str, val: String| {
            (
                format!("{name}/{enc}"),
                format!("{base}/{mk}-{name}-{enc}?q={val}"),
            )
        };
        v.push(q("plain", url_escape(s)));
        v.push(q("percent", pct(s)));
        v.push(q("percent-twice", pct(s).replace('%', "%25")));
        v.push(q("base64", url_escape(&b64(s.as_bytes(), false))));
        v.push(q("base64url", b64(s.as_bytes(), true)));
        v.push(q("base32", b32(s.as_bytes())));
        v.push(q("hex", hex(s)));
        v.push(q("hex-in-base64", b64(hex(s).as_bytes(), true)));
        let zw: String = s.chars().flat_map(|c| [c, '\u{200b}']).collect();
        v.push(q("zero-width", url_escape(&zw)));
        v.push(q("zero-width-escaped", pct(&zw)));
        let labels: Vec<String> = hex(s)
            .as_bytes()
            .chunks(40)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        v.push((
            format!("{name}/dns-labels-hex"),
            format!(
                "http://{}.{ALLOWED_HOST}:{NETNS_CANARY_PORT}/{mk}-{name}-dns",
                labels.join(".")
            ),
        ));
    }
    let conf = aws.replacen('A', "А", 2); // Cyrillic A
    v.push((
        "aws/confusable".into(),
        format!("{base}/{mk}-aws-confusable?q={}", url_escape(&conf)),
    ));
    let alnum: String = aws.chars().filter(char::is_ascii_alphanumeric).collect();
    let dns = format!(
        "http://{}.{}.{}.{ALLOWED_HOST}:{NETNS_CANARY_PORT}/{mk}-aws-dns",
        &alnum[..7],
        &alnum[7..14],
        &alnum[14..]
    );
    v.push(("aws/dns-labels".into(), dns));
    v.push((
        "url-password".into(),
        format!(
            "http://admin:Zq8v-{}@{ALLOWED_HOST}:{NETNS_CANARY_PORT}/{mk}-userinfo",
            random_hex(6)
        ),
    ));
    v
}

fn hex(s: &str) -> String {
    s.bytes().map(|c| format!("{c:02x}")).collect()
}

/// Percent-encode what a URL query cannot carry as is.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

/// Make the secret-carrying sub-domains resolve (to the canary) inside the namespace, so that
/// only the content checks stand between them and the canary.
fn map_hosts(iso: &mut Isolation, urls: &[(String, String)]) {
    for (_, u) in urls {
        let host = u
            .split("://")
            .nth(1)
            .unwrap()
            .split(['/', ':'])
            .next()
            .unwrap();
        let host = host.rsplit('@').next().unwrap();
        if host != ALLOWED_HOST {
            iso.extra_hosts.push((host.to_string(), "127.0.0.1".into()));
        }
    }
}

fn session(lab: &Lab, iso: &Isolation, extra: &str) -> Session {
    let pol = policy(lab, extra);
    let audit = lab.path("logs/audit.jsonl").display().to_string();
    let mut s = SessionBuilder::capjail(
        &["--policy", pol.to_str().unwrap(), "--audit", &audit],
        fetch_server(),
    )
    .isolated(iso)
    .spawn();
    s.initialize();
    s
}

#[test]
fn secrets_in_every_encoding_never_reach_the_canary_and_benign_traffic_does() {
    let lab = Lab::in_tmp();
    let mut iso = Isolation::new(&lab.path("logs/iso"));
    let mk = marker();
    let mut failures = Vec::new();
    let urls = secret_urls(&mk);
    map_hosts(&mut iso, &urls);
    let mut s = session(&lab, &iso, "");
    for (what, url) in &urls {
        let (id, r) = call(&mut s, url);
        let rule = r
            .pointer("/error/data/rule")
            .and_then(Value::as_str)
            .unwrap_or("");
        if r["id"] != id || !rule.starts_with("content.outgoing.") {
            failures.push(format!("{what}: not refused by a content rule: {r}"));
        }
    }
    // Benign: the corpus URLs (re-hosted) and every line of the docs with example keys.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/benign");
    let mut benign = Vec::new();
    for (i, u) in std::fs::read_to_string(dir.join("urls.txt"))
        .unwrap()
        .lines()
        .enumerate()
    {
        let rest = u.splitn(4, '/').nth(3).unwrap_or("");
        benign.push(format!(
            "http://{ALLOWED_HOST}:{NETNS_CANARY_PORT}/{mk}-benign-{i}/{rest}"
        ));
    }
    let docs = std::fs::read_to_string(dir.join("docs-with-example-keys.md")).unwrap();
    for (i, line) in docs.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        benign.push(format!(
            "http://{ALLOWED_HOST}:{NETNS_CANARY_PORT}/{mk}-doc-{i}?q={}",
            url_escape(line)
        ));
    }
    for (i, url) in benign.iter().enumerate() {
        let (_, r) = call(&mut s, url);
        if r.get("result").is_none() {
            failures.push(format!("benign {i} refused: {url}: {r}"));
        }
    }
    s.assert_in_sync();
    s.finish();
    let hits = iso.hits_with(&mk);
    let secret_hits: Vec<&String> = hits
        .iter()
        .filter(|h| !h.contains("-benign-") && !h.contains("-doc-"))
        .collect();
    let benign_hits = hits.len() - secret_hits.len();
    eprintln!(
        "{} secret URLs refused, {benign_hits} of {} benign URLs reached the canary",
        urls.len(),
        benign.len()
    );
    assert!(
        secret_hits.is_empty(),
        "secrets reached the canary: {secret_hits:?}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        benign_hits,
        benign.len(),
        "benign URLs missing at the canary: {hits:?}"
    );
}

#[test]
fn baseline_without_content_checks_secrets_reach_the_canary() {
    // The same setting with the content checks off: the canary does see the secrets, so the
    // test above observes a real effect.
    let lab = Lab::in_tmp();
    let mut iso = Isolation::new(&lab.path("logs/iso"));
    let mk = marker();
    let urls = secret_urls(&mk);
    map_hosts(&mut iso, &urls);
    let mut s = session(
        &lab,
        &iso,
        "content: {enabled: false}\nflows: {defaults: false}\n",
    );
    let picked: Vec<_> = urls
        .iter()
        .filter(|(w, _)| {
            [
                "aws/plain",
                "github/base64url",
                "seed/hex",
                "aws/dns-labels",
                "pem/zero-width-escaped",
            ]
            .contains(&w.as_str())
        })
        .collect();
    for (_, url) in &picked {
        let (_, r) = call(&mut s, url);
        assert!(r.get("result").is_some(), "{r}");
    }
    s.finish();
    assert_eq!(iso.hits_with(&mk).len(), picked.len(), "{:?}", iso.hits());
}
