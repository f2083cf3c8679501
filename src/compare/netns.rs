//! A private network namespace per network case, so that network attacks can only ever reach
//! the loopback canary inside it.
//!
//! [`enter_private_netns`] moves the CALLING THREAD into a fresh network namespace (unshare
//! with CLONE_NEWNET affects only the caller's thread) and brings its `lo` up. Sockets the thread
//! creates afterwards, and processes it spawns, live in that namespace: there is no route to any
//! other host. The runner gives every network case a thread of its own, which dies with the case.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Move the calling thread into a new network namespace with only loopback, up.
#[cfg(target_os = "linux")]
pub(crate) fn enter_private_netns() -> Result<(), String> {
    // SAFETY: unshare(2) on the calling thread only; no memory is shared with the kernel.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "cannot create a network namespace: {}",
            std::io::Error::last_os_error()
        ));
    }
    loopback_up()
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enter_private_netns() -> Result<(), String> {
    Err("private network namespaces exist only on Linux".into())
}

#[cfg(target_os = "linux")]
fn loopback_up() -> Result<(), String> {
    // SAFETY: a plain datagram socket, closed below; ifreq is zeroed and filled with "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            return Err(format!("bringing lo up: {err}"));
        }
    }
    Ok(())
}

/// Can this process create private network namespaces? Tried once, in a throwaway thread.
pub(crate) fn available() -> Result<(), String> {
    thread::spawn(enter_private_netns)
        .join()
        .unwrap_or_else(|_| Err("the namespace probe panicked".into()))
}

/// An HTTP listener on 127.0.0.1:PORT (and [::1]:PORT when it can) that records the first line
/// of every request and answers 200. Bind it from inside the private namespace. Serves until
/// dropped, at most `MAX_CONNS` connections, each bounded in time.
pub(crate) struct Canary {
    pub(crate) port: u16,
    hits: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

const MAX_CONNS: usize = 64;

impl Canary {
    pub(crate) fn start() -> std::io::Result<Canary> {
        let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let port = v4.local_addr()?.port();
        let mut listeners = vec![v4];
        if let Ok(v6) = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port))) {
            listeners.push(v6);
        }
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        for l in listeners {
            l.set_nonblocking(true)?;
            let (hits, stop) = (hits.clone(), stop.clone());
            thread::spawn(move || {
                let mut served = 0;
                while !stop.load(Ordering::Relaxed) && served < MAX_CONNS {
                    match l.accept() {
                        Ok((c, _)) => {
                            served += 1;
                            serve(c, &hits);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
        }
        Ok(Canary { port, hits, stop })
    }

    /// Request lines received so far that contain `needle`.
    pub(crate) fn hits_with(&self, needle: &str) -> usize {
        self.hits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|h| h.contains(needle))
            .count()
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Read one request, record its first line (before answering: whoever reads the answer then
/// finds the hit recorded), answer.
fn serve(c: TcpStream, hits: &Mutex<Vec<String>>) -> Option<()> {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
    let mut r = BufReader::new(c.try_clone().ok()?);
    let mut first = String::new();
    let _ = r.read_line(&mut first);
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..100 {
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(0) | Err(_) => break,
            Ok(_) if l == "\r\n" || l == "\n" => break,
            Ok(_) if Instant::now() > deadline => break,
            Ok(_) => {}
        }
    }
    hits.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(first.trim_end().to_string());
    let body = "capjail-compare-canary";
    let mut c = c;
    let _ = c.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn compare_netns_canary_records_hits_inside_the_namespace() {
        // Root (or CAP_SYS_ADMIN) only; elsewhere the feature reports itself unavailable.
        if let Err(e) = available() {
            eprintln!("SKIP: {e}");
            return;
        }
        let got = thread::spawn(|| {
            enter_private_netns().unwrap();
            let canary = Canary::start().unwrap();
            let mut s = TcpStream::connect(("127.0.0.1", canary.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /mk-inside HTTP/1.0\r\n\r\n").unwrap();
            let mut reply = String::new();
            let _ = s.read_to_string(&mut reply);
            assert!(reply.contains("capjail-compare-canary"), "{reply}");
            canary.hits_with("mk-inside")
        })
        .join()
        .unwrap();
        assert_eq!(got, 1);
    }
}
