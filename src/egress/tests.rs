//! The egress point end to end on loopback: an allowed loopback origin (named explicitly in a
//! test-only policy), a redirect from it to another loopback canary port, names that resolve
//! to loopback, CONNECT.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::policy::{load_str, PolicySource};

/// A loopback HTTP server that records request lines and answers with `reply(path)`.
struct Origin {
    port: u16,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Origin {
    fn start(reply: fn(&str, u16) -> String) -> Origin {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        std::thread::spawn(move || {
            for c in l.incoming().take(32) {
                let Ok(mut c) = c else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut line = String::new();
                let _ = r.read_line(&mut line);
                loop {
                    let mut l2 = String::new();
                    if r.read_line(&mut l2).unwrap_or(0) == 0 || l2 == "\r\n" {
                        break;
                    }
                }
                h.lock().unwrap().push(line.trim().to_string());
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                let _ = c.write_all(reply(&path, port).as_bytes());
            }
        });
        Origin { port, hits }
    }
    fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

fn ok(_: &str, _: u16) -> String {
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello".into()
}

struct Names(Vec<(&'static str, IpAddr)>);
impl World for Names {
    fn resolve_host(&self, host: &str, _: u16) -> std::io::Result<Vec<IpAddr>> {
        self.0
            .iter()
            .filter(|(n, _)| *n == host)
            .map(|(_, a)| Ok(*a))
            .collect::<std::io::Result<Vec<_>>>()
            .and_then(|v| {
                if v.is_empty() {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "nxdomain",
                    ))
                } else {
                    Ok(v)
                }
            })
    }
}

fn start(allowed: &str) -> u16 {
    let y = format!("name: t\nnetwork:\n  mode: allowlist\n  allowed_hosts: {allowed}\n");
    let policy = load_str(&y, PolicySource::Inline).unwrap();
    let env = [("DEPLOY_TOKEN".to_string(), KNOWN.to_string())];
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let egress = Egress {
        content: content::OutgoingCheck::with_env(&policy, &env).map(Arc::new),
        policy: Arc::new(policy.network),
        recorder: None,
        world: Arc::new(Names(vec![(
            "rebind.example.com",
            "127.0.0.1".parse().unwrap(),
        )])),
    };
    spawn(Listener::Tcp(l), egress).unwrap();
    port
}

fn ask(proxy: u16, request: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn allowed_origin_is_reached_and_the_redirect_target_is_not() {
    fn redirect(path: &str, _: u16) -> String {
        let to = path.trim_start_matches("/go/");
        format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{to}/stolen\r\nContent-Length: 0\r\n\r\n")
    }
    let canary = Origin::start(ok);
    let origin = Origin::start(redirect);
    let proxy = start(&format!("[\"127.0.0.1:{}\"]", origin.port));
    let first = ask(
        proxy,
        &format!(
            "GET http://127.0.0.1:{}/go/{} HTTP/1.1\r\nHost: x\r\nProxy-Connection: keep-alive\r\n\r\n",
            origin.port, canary.port
        ),
    );
    assert!(first.starts_with("HTTP/1.1 302"), "{first}");
    assert!(first.contains("Connection: close\r\n"), "{first}");
    assert_eq!(origin.hits().len(), 1);
    // The client follows the redirect: a new request through the egress point.
    let second = ask(
        proxy,
        &format!(
            "GET http://127.0.0.1:{}/stolen HTTP/1.1\r\nHost: x\r\n\r\n",
            canary.port
        ),
    );
    assert!(second.starts_with("HTTP/1.1 403"), "{second}");
    assert!(second.contains("network.allowed_hosts"), "{second}");
    // CONNECT to the canary: refused as well.
    let third = ask(
        proxy,
        &format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\n", canary.port),
    );
    assert!(third.starts_with("HTTP/1.1 403"), "{third}");
    assert!(
        canary.hits().is_empty(),
        "the canary was reached: {:?}",
        canary.hits()
    );
}

#[test]
fn a_name_resolving_to_loopback_is_refused_and_connect_tunnels_to_the_allowed_port() {
    let canary = Origin::start(ok);
    // An entry without a port means 80 and 443 only: name the canary's port.
    let proxy = start(&format!(
        "[\"*.example.com:{}\", \"127.0.0.1:{}\"]",
        canary.port, canary.port
    ));
    let r = ask(
        proxy,
        &format!(
            "GET http://rebind.example.com:{}/ HTTP/1.1\r\n\r\n",
            canary.port
        ),
    );
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("X-Capjail-Rule: network.private"), "{r}");
    let r = ask(
        proxy,
        &format!(
            "CONNECT rebind.example.com:{} HTTP/1.1\r\n\r\n",
            canary.port
        ),
    );
    assert!(r.contains("network.private"), "{r}");
    assert!(canary.hits().is_empty());
    // CONNECT to the allowed port: a tunnel; an HTTP request inside it reaches the origin.
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!(
            "CONNECT 127.0.0.1:{} HTTP/1.1\r\n\r\nGET /in HTTP/1.1\r\n\r\n",
            canary.port
        )
        .as_bytes(),
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(
        out.starts_with("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200 OK"),
        "{out}"
    );
    assert_eq!(canary.hits(), vec!["GET /in HTTP/1.1".to_string()]);
}

#[test]
fn malformed_requests_get_400_with_the_rule() {
    let proxy = start("[\"a.example.com\"]");
    let r = ask(proxy, "GET /local HTTP/1.1\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("egress.request"), "{r}");
}

/// A value in capjail's environment under a credential's name: withheld from the server, known
/// to the content checks.
const KNOWN: &str = "dpl-7Hq2xZ9wK4mR8vT1";
const AWS_KEY: &str = "AKIAZ7Q3BT4LCMW2PX5N";

#[test]
fn egress_content_secrets_in_url_or_headers_never_reach_the_origin() {
    let origin = Origin::start(ok);
    let proxy = start(&format!("[\"127.0.0.1:{}\"]", origin.port));
    let o = origin.port;
    for (req, rule) in [
        (
            format!("GET http://127.0.0.1:{o}/q?key={AWS_KEY} HTTP/1.1\r\n\r\n"),
            "content.outgoing.cloud",
        ),
        (
            format!("GET http://127.0.0.1:{o}/h HTTP/1.1\r\nX-Debug: {AWS_KEY}\r\n\r\n"),
            "content.outgoing.cloud",
        ),
        (
            format!("GET http://127.0.0.1:{o}/k?t={KNOWN} HTTP/1.1\r\n\r\n"),
            "content.outgoing.known",
        ),
        (
            format!("POST http://127.0.0.1:{o}/c HTTP/1.1\r\nCookie: s={KNOWN}\r\nContent-Length: 0\r\n\r\n"),
            "content.outgoing.known",
        ),
    ] {
        let r = ask(proxy, &req);
        assert!(r.starts_with("HTTP/1.1 403"), "{req}: {r}");
        assert!(r.contains(&format!("X-Capjail-Rule: {rule}\r\n")), "{r}");
        assert!(!r.contains(AWS_KEY) && !r.contains(KNOWN), "the refusal repeats the secret: {r}");
    }
    assert!(
        origin.hits().is_empty(),
        "the origin saw: {:?}",
        origin.hits()
    );
    // The same request without the secret goes through.
    let r = ask(
        proxy,
        &format!("GET http://127.0.0.1:{o}/q?key=rust HTTP/1.1\r\nX-Debug: 1\r\n\r\n"),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(origin.hits(), vec!["GET /q?key=rust HTTP/1.1".to_string()]);
}

/// A SOCKS5 CONNECT: greeting, request, reply code; then whatever the tunnel carries.
fn socks(proxy: u16, target: &[u8], then: &[u8]) -> (u8, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[5, 1, 0]).unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).unwrap();
    assert_eq!(m, [5, 0]);
    s.write_all(target).unwrap();
    let mut rep = [0u8; 10];
    if s.read_exact(&mut rep).is_err() {
        return (255, Vec::new());
    }
    if rep[1] == 0 {
        s.write_all(then).unwrap();
    }
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    (rep[1], rest)
}

fn socks_name(name: &str, port: u16) -> Vec<u8> {
    let mut v = vec![5, 1, 0, 3, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&port.to_be_bytes());
    v
}

#[test]
fn socks5_connect_is_judged_like_connect() {
    let canary = Origin::start(ok);
    let origin = Origin::start(ok);
    let proxy = start(&format!(
        "[\"*.example.com:{}\", \"127.0.0.1:{}\"]",
        canary.port, origin.port
    ));
    // A name capjail resolves, to loopback: refused (2 = not allowed by the ruleset).
    let (code, _) = socks(proxy, &socks_name("rebind.example.com", canary.port), b"");
    assert_eq!(code, 2);
    // An address not in the allowlist.
    let mut v4 = vec![5, 1, 0, 1, 127, 0, 0, 1];
    v4.extend_from_slice(&canary.port.to_be_bytes());
    assert_eq!(socks(proxy, &v4, b"").0, 2);
    // BIND is not served.
    let mut bind = v4.clone();
    bind[1] = 2;
    assert_eq!(socks(proxy, &bind, b"").0, 7);
    assert!(canary.hits().is_empty(), "{:?}", canary.hits());
    // The allowed origin: a tunnel.
    let mut ok4 = vec![5, 1, 0, 1, 127, 0, 0, 1];
    ok4.extend_from_slice(&origin.port.to_be_bytes());
    let (code, rest) = socks(proxy, &ok4, b"GET /via-socks HTTP/1.1\r\n\r\n");
    assert_eq!(code, 0);
    assert!(String::from_utf8_lossy(&rest).contains("hello"), "{rest:?}");
    assert_eq!(origin.hits(), vec!["GET /via-socks HTTP/1.1".to_string()]);
}
