//! What the egress family (issue 18) works against, built per case inside the case's private
//! network namespace (see [`super::netns`]): an allowed HTTP origin on a loopback port of its own
//! (`/redirect?to=URL` answers 302), a DNS/UDP canary on 127.0.0.1:53, and a `hosts` file and a
//! `resolv.conf` of the case's own (`allowed.capjail.test` and `rebind.capjail.test` are
//! 127.0.0.1, the resolver is 127.0.0.1) that the case's process tree sees in a mount namespace
//! of its own ([`private_names`]). The family's policy allows the origin by name on its port and
//! `*.capjail.test` on the canary's port: what a wildcard lets through, the egress point still
//! refuses when the name resolves to loopback.
//!
//! Nothing here ever sends to or listens on anything but 127.0.0.1 inside the case's namespace.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// The allowed host's name (127.0.0.1 in the case's `hosts`).
pub(crate) const ALLOWED_NAME: &str = "allowed.capjail.test";
/// The origin's answer to every plain request.
pub(crate) const ORIGIN_BODY: &str = "capjail-compare-origin";
/// The resolver port inside the case's namespace.
pub(crate) const DNS_PORT: u16 = 53;

type Hits = Arc<Mutex<Vec<String>>>;

pub(crate) struct EgressLab {
    /// The allowed origin's port.
    pub(crate) origin_port: u16,
    origin_hits: Hits,
    dns_hits: Hits,
    /// `hosts` and `resolv.conf` for the case's mount namespace.
    pub(crate) hosts: PathBuf,
    pub(crate) resolv: PathBuf,
    stop: Arc<AtomicBool>,
}

const MAX_CONNS: usize = 64;

impl EgressLab {
    /// Start the origin and the DNS canary (call inside the case's network namespace) and
    /// write the name files into `dir`.
    pub(crate) fn start(dir: &Path) -> std::io::Result<EgressLab> {
        let origin = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let origin_port = origin.local_addr()?.port();
        let dns = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, DNS_PORT)))?;
        let hosts = dir.join("egress-hosts");
        let resolv = dir.join("egress-resolv.conf");
        std::fs::write(
            &hosts,
            format!("127.0.0.1 localhost\n::1 localhost\n127.0.0.1 {ALLOWED_NAME}\n127.0.0.1 rebind.capjail.test\n"),
        )?;
        std::fs::write(
            &resolv,
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )?;
        let lab = EgressLab {
            origin_port,
            origin_hits: Hits::default(),
            dns_hits: Hits::default(),
            hosts,
            resolv,
            stop: Arc::new(AtomicBool::new(false)),
        };
        origin.set_nonblocking(true)?;
        let (hits, stop) = (lab.origin_hits.clone(), lab.stop.clone());
        thread::spawn(move || {
            let mut served = 0;
            while !stop.load(Ordering::Relaxed) && served < MAX_CONNS {
                match origin.accept() {
                    Ok((c, _)) => {
                        served += 1;
                        if let Some(line) = serve_origin(c) {
                            hits.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        dns.set_read_timeout(Some(Duration::from_millis(50)))?;
        let (hits, stop) = (lab.dns_hits.clone(), lab.stop.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut got = 0;
            while !stop.load(Ordering::Relaxed) && got < 256 {
                if let Ok(n) = dns.recv(&mut buf) {
                    got += 1;
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    hits.lock().unwrap_or_else(|e| e.into_inner()).push(text);
                }
            }
        });
        Ok(lab)
    }

    /// Requests to the origin whose first line contains `needle`.
    pub(crate) fn origin_hits_with(&self, needle: &str) -> usize {
        count(&self.origin_hits, needle)
    }

    /// Datagrams to 127.0.0.1:53 (UDP, raw, or a lookup through the resolver) with `needle`.
    pub(crate) fn dns_hits_with(&self, needle: &str) -> usize {
        count(&self.dns_hits, needle)
    }

    /// The family's policy: the workspace read-write, the origin by name on its port, and any
    /// `*.capjail.test` name on the canary's port.
    pub(crate) fn policy(&self, ws: &Path, canary_port: u16) -> String {
        let ws = serde_json::to_string(&ws.display().to_string()).unwrap_or_default();
        format!(
            "name: compare-egress\n\
             description: \"capjail compare, egress family: one allowed origin, by name, on a non-default port\"\n\
             network:\n  mode: allowlist\n  allowed_hosts: [\"{ALLOWED_NAME}:{}\", \"*.capjail.test:{canary_port}\"]\n\
             filesystem:\n  mode: explicit\n  mounts:\n    - path: {ws}\n      mode: rw\n",
            self.origin_port
        )
    }
}

impl Drop for EgressLab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn count(hits: &Hits, needle: &str) -> usize {
    hits.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|h| h.contains(needle))
        .count()
}

/// One request to the origin: 302 to `to` for `/redirect?to=URL`, else 200 with the body.
fn serve_origin(c: TcpStream) -> Option<String> {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
    let mut r = BufReader::new(c.try_clone().ok()?);
    let mut first = String::new();
    let _ = r.read_line(&mut first);
    for _ in 0..100 {
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(0) | Err(_) => break,
            Ok(_) if l == "\r\n" || l == "\n" => break,
            Ok(_) => {}
        }
    }
    let first = first.trim_end().to_string();
    let path = first.split(' ').nth(1).unwrap_or("");
    // Absolute form (a proxy in the way): keep the path and query only.
    let path = match path.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    let reply = match path.strip_prefix("/redirect?to=") {
        Some(to) => {
            let to = percent_encoding::percent_decode_str(to).decode_utf8_lossy();
            format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
        None => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ORIGIN_BODY}",
            ORIGIN_BODY.len()
        ),
    };
    let mut c = c;
    let _ = c.write_all(reply.as_bytes());
    Some(first)
}

/// The case's process tree sees the lab's `hosts` and `resolv.conf` (a mount namespace of its
/// own, made between fork and exec; root only, as the case's network namespace already is).
#[cfg(target_os = "linux")]
pub(crate) fn private_names(
    cmd: &mut std::process::Command,
    hosts: &Path,
    resolv: &Path,
) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("NUL in path"))
    };
    let binds = [
        (c(hosts)?, c(Path::new("/etc/hosts"))?),
        (c(resolv)?, c(Path::new("/etc/resolv.conf"))?),
    ];
    // SAFETY: unshare and mount between fork and exec, on C strings prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for (from, to) in &binds {
                if libc::mount(
                    from.as_ptr(),
                    to.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn private_names(
    _cmd: &mut std::process::Command,
    _hosts: &Path,
    _resolv: &Path,
) -> std::io::Result<()> {
    Err(std::io::Error::other(
        "mount namespaces exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_egress_policy_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let lab = EgressLab {
            origin_port: 18081,
            origin_hits: Hits::default(),
            dns_hits: Hits::default(),
            hosts: dir.path().join("h"),
            resolv: dir.path().join("r"),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, lab.policy(Path::new("/tmp/some ws"), 18080)).unwrap();
        let p = crate::policy::load(f.to_str().unwrap()).unwrap();
        assert_eq!(p.network.allowed_hosts.len(), 2);
    }
}
