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
    let policy = load_str(&y, PolicySource::Inline).unwrap().network;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let egress = Egress {
        policy: Arc::new(policy),
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
