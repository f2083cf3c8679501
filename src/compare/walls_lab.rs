//! The stand-ins the walls' in-server cases work against (issue 11 §4), built per probe case:
//! a pathname unix socket that answers with the lab's secret (an ssh-agent), one that writes a
//! file when asked (a root daemon), a file outside the mounts for metadata changes, a package
//! cache outside the mounts, and a System V shared memory segment holding the secret. The
//! "outside process" for prlimit and priority is the lab's [`super::lab::Outside`].
//! Everything is removed on drop; the socket threads stop within 50 ms of it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::probe::walls::{PROBE_MODE, PROBE_MTIME, PROBE_NICE, PROBE_XATTR};

/// Lab-relative paths of the stand-ins.
pub(crate) const AGENT: &str = "outside/agent.sock";
pub(crate) const DAEMON: &str = "outside/daemon.sock";
/// Written by the daemon stand-in when a client asks.
pub(crate) const DAEMON_DID: &str = "outside/daemon-did-it";
pub(crate) const TARGET: &str = "outside/target.txt";
pub(crate) const CACHE: &str = "home_like/.npm/_npx/pkg";
pub(crate) const PLANTED: &str = "home_like/.npm/_npx/pkg/capjail-probe-planted.js";

pub(crate) struct WallsLab {
    pub(crate) agent: PathBuf,
    pub(crate) daemon: PathBuf,
    pub(crate) target: PathBuf,
    pub(crate) cache: PathBuf,
    pub(crate) shm: i32,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl WallsLab {
    pub(crate) fn new(root: &Path, secret: &str) -> std::io::Result<WallsLab> {
        std::fs::create_dir_all(root.join("outside"))?;
        std::fs::create_dir_all(root.join(CACHE))?;
        let target = root.join(TARGET);
        std::fs::write(&target, "outside file\n")?;
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut lab = WallsLab {
            agent: root.join(AGENT),
            daemon: root.join(DAEMON),
            target,
            cache: root.join(CACHE),
            shm: shm_with(&format!("shared status {secret}"))?,
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        lab.threads.push(stand_in(
            &lab.agent,
            format!("identities: {secret}\n"),
            None,
            Arc::clone(&stop),
        )?);
        lab.threads.push(stand_in(
            &lab.daemon,
            "ok\n".into(),
            Some(root.join(DAEMON_DID)),
            stop,
        )?);
        Ok(lab)
    }

    /// chmod, utimes or setxattr reached the outside file.
    pub(crate) fn target_changed(&self) -> bool {
        let Ok(m) = std::fs::metadata(&self.target) else {
            return false;
        };
        let xattr = {
            let c = std::ffi::CString::new(self.target.as_os_str().as_encoded_bytes());
            let n = std::ffi::CString::new(PROBE_XATTR);
            match (c, n) {
                // SAFETY: size query with a NULL buffer.
                (Ok(c), Ok(n)) => unsafe {
                    libc::getxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) >= 0
                },
                _ => false,
            }
        };
        m.mode() & 0o7777 == PROBE_MODE || m.mtime() == PROBE_MTIME || xattr
    }
}

impl Drop for WallsLab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // SAFETY: removing the segment this lab created.
        unsafe { libc::shmctl(self.shm, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}

/// A private SysV segment of one page holding `text`.
fn shm_with(text: &str) -> std::io::Result<i32> {
    // SAFETY: a fresh private segment, attached, written within its 4096 bytes, detached.
    unsafe {
        let id = libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600);
        if id < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let p = libc::shmat(id, std::ptr::null(), 0);
        if p as isize == -1 {
            let e = std::io::Error::last_os_error();
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
            return Err(e);
        }
        let n = text.len().min(4095);
        std::ptr::copy_nonoverlapping(text.as_ptr(), p as *mut u8, n);
        libc::shmdt(p);
        Ok(id)
    }
}

/// Serve `answer` to every client of a unix socket at `path` (creating `touch` on each
/// request) until `stop`, at most 120 s.
fn stand_in(
    path: &Path,
    answer: String,
    touch: Option<PathBuf>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let l = UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    Ok(std::thread::spawn(move || {
        let t = Instant::now();
        while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(120) {
            match l.accept() {
                Ok((mut c, _)) => {
                    let _ = c.set_nonblocking(false);
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut line = String::new();
                    let _ = BufReader::new(&c).read_line(&mut line);
                    if let Some(f) = &touch {
                        let _ = std::fs::write(f, "done on request\n");
                    }
                    let _ = c.write_all(answer.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }))
}

/// The outside process's RLIMIT_CPU is `mark` (the probe's prlimit took effect).
pub(crate) fn cpu_limit_is(pid: u32, mark: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/limits")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Max cpu time") && l.contains(&mark.to_string()))
    })
}

/// The outside process's nice value is the probe's, or its affinity was narrowed to CPU 0.
pub(crate) fn sched_changed(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let nice = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().nth(16))
        .and_then(|n| n.parse::<i32>().ok());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let affinity = cpus > 1
        && std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("Cpus_allowed_list:") && l.split(':').nth(1) == Some("\t0"))
        });
    nice == Some(PROBE_NICE) || affinity
}
