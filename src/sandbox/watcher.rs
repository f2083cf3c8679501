//! The fallback's keeper of the server's process tree (issue 11: no descendant survives the
//! session, a `setsid()`, or a SIGKILL of capjail) when the server has no PID namespace of its
//! own (`kernel.namespaces: false`, a machine refusing user namespaces, `--mode proxy`).
//!
//! Without a PID 1 whose death empties the sandbox, orphans go to the nearest *subreaper*
//! ancestor. capjail is one (`proxy::child::become_subreaper`), which ends them at a normal end;
//! but once capjail is SIGKILLed they would go to init and live on. So the server is started
//! under a watcher, capjail's own code, unconfined:
//!
//! ```text
//! capjail (subreaper) ── watcher (subreaper; own session; "capjail-watch")
//!                          └── the server (its own session; PDEATHSIG from the watcher)
//!                                └── whatever it starts: every orphan is adopted by the watcher
//! ```
//! [`install`] adds, as the command's first `pre_exec`, a fork: the process std started becomes
//! the watcher, and its child goes on with the other `pre_exec` steps (the confinement) and
//! execs the server. The watcher holds the read end of a pipe whose write end only capjail
//! holds, and waits (`poll`) for:
//! - EOF on the pipe: capjail is gone, however it died. The watcher ends every descendant
//!   ([`end_tree`]) and exits.
//! - the server's exit: it ends every descendant left and exits with the server's status (its
//!   code, or the same signal), which is what capjail's `wait` reports for the session.
//! - SIGTERM/SIGINT/SIGHUP/SIGQUIT (capjail's `kill(-watcher)`): forwarded to the server's
//!   process group, as the namespace path's setup process does.
//!
//! If the watcher itself is killed (capjail's SIGKILL escalation, or anything else), the server
//! dies of its PDEATHSIG and the orphans go to capjail, the next subreaper up, which ends them
//! (`proxy::child::end_descendants`, with [`end_tree`]). The server cannot signal the watcher
//! where Landlock scopes signals (ABI 6: the watcher is outside the server's domain), nor
//! ptrace it or change its rlimits (seccomp).
//!
//! Everything the watcher and the server's side run happens between fork and exec of a
//! multi-threaded program: raw, async-signal-safe syscalls on stack memory only (no allocation,
//! no lock, no formatting). The watcher never execs.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

/// In the server's process between fork and exec: the watcher's pid (its parent). 0 elsewhere.
static SERVER_PARENT: AtomicI32 = AtomicI32::new(0);

/// The process the server's `pre_exec` must find as its parent (`getppid`) before it relies on
/// its PDEATHSIG: the watcher when [`install`] put one in between, else `capjail` (the pid that
/// spawned the command).
pub(crate) fn server_parent(capjail: libc::pid_t) -> libc::pid_t {
    match SERVER_PARENT.load(Ordering::Relaxed) {
        0 => capjail,
        w => w,
    }
}

/// Signals capjail sends to the watcher's group that reach the server's group.
const FORWARDED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// Put the watcher between capjail and the server: call it BEFORE any other `pre_exec` of
/// `cmd` (the confinement runs in the server, after the fork). The server's own `pre_exec`
/// must check its parent with [`server_parent`].
pub(crate) fn install(cmd: &mut Command) -> io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 on a two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_end, write_end] = fds;
    // capjail keeps the write end open for its whole life (never closed: its death, however it
    // comes, is the watcher's EOF). The read end stays open in capjail too: one descriptor.
    let capjail = std::process::id() as libc::pid_t;
    // SAFETY: the closure makes raw syscalls on stack memory only (see the module's notes).
    unsafe {
        cmd.pre_exec(move || {
            fork_watcher(read_end, write_end, capjail).map_err(io::Error::from_raw_os_error)
        });
    }
    Ok(())
}

fn errno() -> i32 {
    // SAFETY: errno of this thread.
    unsafe { *libc::__errno_location() }
}

/// In the process std forked: fork the server, become the watcher. Returns only in the server.
fn fork_watcher(
    read_end: libc::c_int,
    write_end: libc::c_int,
    capjail: libc::pid_t,
) -> Result<(), i32> {
    // SAFETY (whole function): raw syscalls with stack memory.
    unsafe {
        libc::close(write_end);
        if libc::setsid() < 0 {
            return Err(errno());
        }
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(errno());
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARDED {
            libc::sigaddset(&mut set, s);
        }
        libc::sigaddset(&mut set, libc::SIGCHLD);
        let mut old: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
            return Err(errno());
        }
        if libc::getppid() != capjail {
            return Err(libc::ESRCH); // capjail died between fork and here
        }
        let me = libc::getpid();
        match libc::fork() {
            -1 => {
                let e = errno();
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                Err(e)
            }
            0 => {
                // The server: the mask it had, no pipe, and the watcher as the parent to check.
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                libc::close(read_end);
                SERVER_PARENT.store(me, Ordering::Relaxed);
                Ok(())
            }
            server => watch(server, read_end, &set),
        }
    }
}

/// The watcher's life (never returns).
fn watch(server: libc::pid_t, death: libc::c_int, set: &libc::sigset_t) -> ! {
    // SAFETY (whole function): raw syscalls with stack memory.
    unsafe {
        // Nothing of the server's (its stdio, std's exec-error pipe, the egress socket...):
        // only the pipe from capjail. Its descriptors are its own, and capjail sees their EOF.
        if death > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (death - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (death + 1) as u32, u32::MAX, 0u32);
        libc::prctl(
            libc::PR_SET_NAME,
            c"capjail-watch".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        let sfd = libc::signalfd(-1, set, libc::SFD_CLOEXEC);
        if sfd < 0 {
            // Cannot watch: fail closed (the server and what it started end now).
            end_tree(libc::getpid());
            libc::_exit(125);
        }
        let mut fds = [
            libc::pollfd {
                fd: death,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sfd,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let me = libc::getpid();
        let mut status: Option<libc::c_int> = None;
        loop {
            if libc::poll(fds.as_mut_ptr(), 2, -1) < 0 && errno() != libc::EINTR {
                end_tree(me);
                libc::_exit(125);
            }
            if fds[0].revents != 0 {
                // capjail is gone: nothing of the session may outlive it.
                end_tree(me);
                libc::_exit(128 + libc::SIGKILL);
            }
            if fds[1].revents != 0 {
                let mut info: [libc::signalfd_siginfo; 8] = std::mem::zeroed();
                let n = libc::read(sfd, info.as_mut_ptr().cast(), std::mem::size_of_val(&info));
                let count = if n > 0 {
                    n as usize / std::mem::size_of::<libc::signalfd_siginfo>()
                } else {
                    0
                };
                for i in info.iter().take(count) {
                    let sig = i.ssi_signo as libc::c_int;
                    if status.is_none() && FORWARDED.contains(&sig) {
                        // The server's own group (it made its session); before its setsid, it.
                        if libc::kill(-server, sig) != 0 {
                            libc::kill(server, sig);
                        }
                    }
                }
            }
            // Reap: the server, and every orphan adopted (a zombie would stay until we exit).
            loop {
                let mut st: libc::c_int = 0;
                let p = libc::waitpid(-1, &mut st, libc::WNOHANG);
                if p <= 0 {
                    break;
                }
                if p == server {
                    status = Some(st);
                }
            }
            if let Some(st) = status {
                // The server ended: so does everything it started, then the watcher, with its
                // status (capjail's drain of the server's output is unaffected: a pipe keeps
                // what was written).
                end_tree(me);
                exit_like(st);
            }
        }
    }
}

/// Exit with the server's status: its code, or the same signal (no core dump).
fn exit_like(status: libc::c_int) -> ! {
    // SAFETY: raw syscalls; _exit never returns.
    unsafe {
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(sig, libc::SIG_DFL);
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            1
        })
    }
}

/// Most processes frozen and killed per round (the rest in the next rounds).
const MAX_PER_ROUND: usize = 4096;
/// Rounds before giving up (each: a walk, SIGKILL, 2 ms).
const MAX_ROUNDS: usize = 250;

/// End every descendant of `root` (the calling process, a subreaper): walk the tree from
/// `/proc/<pid>/task/*/children`, stopping each process (SIGSTOP) before reading its children,
/// so that nothing found can fork any more; SIGKILL them all; repeat until a walk finds no live
/// descendant (a fork in flight during a walk, or an orphan on its way to `root`, is found by
/// the next one). Zombie children of `root` are reaped on the way. Async-signal-safe; bounded
/// ([`MAX_ROUNDS`]). Returns whether the tree is empty.
pub(crate) fn end_tree(root: libc::pid_t) -> bool {
    let mut pids = [0 as libc::pid_t; MAX_PER_ROUND];
    for _ in 0..MAX_ROUNDS {
        let n = freeze_descendants(root, &mut pids);
        if n == 0 {
            return true;
        }
        for &p in &pids[..n] {
            // SAFETY: kill(2); these pids cannot be reused yet: each is stopped or a child of
            // a stopped process (nobody reaps it but `root`, which is here).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 2_000_000,
        };
        // SAFETY: nanosleep on stack memory.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
    false
}

/// Collect (and SIGSTOP) the live descendants of `root` into `out`, breadth first; their count.
fn freeze_descendants(root: libc::pid_t, out: &mut [libc::pid_t]) -> usize {
    let mut n = 0;
    for_each_child(root, |c| add_frozen(c, root == own_pid(), out, &mut n));
    let mut i = 0;
    while i < n {
        let p = out[i];
        for_each_child(p, |c| add_frozen(c, false, out, &mut n));
        i += 1;
    }
    n
}

fn own_pid() -> libc::pid_t {
    // SAFETY: getpid.
    unsafe { libc::getpid() }
}

/// One child found by the walk: stopped and listed when alive (once), reaped when it is a
/// zombie child of the caller (`reap`).
fn add_frozen(pid: libc::pid_t, reap: bool, out: &mut [libc::pid_t], n: &mut usize) {
    if *n >= out.len() || out[..*n].contains(&pid) {
        return;
    }
    match state(pid) {
        Some(b'Z') | Some(b'X') if reap => {
            // SAFETY: reaps only the caller's own dead child.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
        Some(b'Z') | Some(b'X') => {}
        Some(_) => {
            // Frozen before its own children are read: it cannot add any afterwards.
            // SAFETY: kill(2).
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            out[*n] = pid;
            *n += 1;
        }
        None => {} // gone
    }
}

/// A path under /proc built on the stack, NUL-terminated.
struct ProcPath {
    buf: [u8; 64],
    len: usize,
}

impl ProcPath {
    fn new() -> ProcPath {
        let mut p = ProcPath {
            buf: [0; 64],
            len: 0,
        };
        p.push(b"/proc/");
        p
    }
    fn push(&mut self, s: &[u8]) -> &mut ProcPath {
        let take = s.len().min(self.buf.len() - 1 - self.len);
        self.buf[self.len..self.len + take].copy_from_slice(&s[..take]);
        self.len += take;
        self.buf[self.len] = 0;
        self
    }
    fn num(&mut self, mut v: libc::pid_t) -> &mut ProcPath {
        let mut digits = [0u8; 12];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }
    fn open(&self, flags: libc::c_int) -> libc::c_int {
        // SAFETY: a NUL-terminated path in our buffer.
        unsafe { libc::open(self.buf.as_ptr().cast(), flags | libc::O_CLOEXEC) }
    }
}

/// The state letter of a process (`/proc/<pid>/stat`, after the command's last `)`).
fn state(pid: libc::pid_t) -> Option<u8> {
    let fd = ProcPath::new().num(pid).push(b"/stat").open(libc::O_RDONLY);
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 512];
    // SAFETY: read into our buffer, then close our descriptor.
    let n = unsafe {
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return None;
    }
    let text = &buf[..n as usize];
    let close = text.iter().rposition(|&b| b == b')')?;
    text.get(close + 2).copied()
}

/// Call `f` with every child of `pid` (of each of its threads: a child belongs to the thread
/// that forked it). Nothing when the process is gone.
fn for_each_child(pid: libc::pid_t, mut f: impl FnMut(libc::pid_t)) {
    let dir = ProcPath::new()
        .num(pid)
        .push(b"/task")
        .open(libc::O_RDONLY | libc::O_DIRECTORY);
    if dir < 0 {
        return;
    }
    let mut ents = [0u8; 2048];
    loop {
        // SAFETY: getdents64 into our buffer.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir,
                ents.as_mut_ptr(),
                ents.len() as libc::c_uint,
            )
        };
        if n <= 0 {
            break;
        }
        let mut off = 0usize;
        while off + 19 < n as usize {
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, char name[].
            let reclen = u16::from_ne_bytes([ents[off + 16], ents[off + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let name = &ents[off + 19..(off + reclen).min(n as usize)];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(tid) = parse_pid(name) {
                read_children(pid, tid, &mut f);
            }
            off += reclen;
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(dir) };
}

fn parse_pid(s: &[u8]) -> Option<libc::pid_t> {
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = s.iter().fold(0i64, |a, &d| a * 10 + i64::from(d - b'0'));
    libc::pid_t::try_from(v).ok().filter(|&p| p > 0)
}

/// `/proc/<pid>/task/<tid>/children`: space-separated pids, read in chunks.
fn read_children(pid: libc::pid_t, tid: libc::pid_t, f: &mut impl FnMut(libc::pid_t)) {
    let fd = ProcPath::new()
        .num(pid)
        .push(b"/task/")
        .num(tid)
        .push(b"/children")
        .open(libc::O_RDONLY);
    if fd < 0 {
        return;
    }
    let mut buf = [0u8; 512];
    let mut acc: i64 = 0;
    let mut digits = 0;
    loop {
        // SAFETY: read into our buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        for &b in &buf[..n as usize] {
            if b.is_ascii_digit() && digits < 10 {
                acc = acc * 10 + i64::from(b - b'0');
                digits += 1;
            } else {
                if digits > 0 {
                    if let Ok(p) = libc::pid_t::try_from(acc) {
                        f(p);
                    }
                }
                acc = 0;
                digits = 0;
            }
        }
    }
    if digits > 0 {
        if let Ok(p) = libc::pid_t::try_from(acc) {
            f(p);
        }
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_parse_from_directory_names() {
        assert_eq!(parse_pid(b"1234"), Some(1234));
        assert_eq!(parse_pid(b"."), None);
        assert_eq!(parse_pid(b""), None);
        assert_eq!(parse_pid(b"0"), None);
        assert_eq!(parse_pid(b"99999999999"), None);
    }

    #[test]
    fn proc_paths_are_built_on_the_stack() {
        let mut p = ProcPath::new();
        p.num(42).push(b"/task/").num(7).push(b"/children");
        assert_eq!(&p.buf[..p.len], b"/proc/42/task/7/children");
        assert_eq!(p.buf[p.len], 0);
        assert_eq!(&ProcPath::new().num(0).buf[..8], b"/proc/0\0");
    }

    #[test]
    fn the_parent_to_check_is_capjail_without_a_watcher() {
        assert_eq!(server_parent(1234), 1234);
    }

    /// A subreaper's tree with a `setsid()` child, a double-forked daemon and a process that
    /// re-forks in a loop (its pid changes every millisecond): [`end_tree`] ends them all,
    /// judged by effect (every one held the write end of a pipe: its EOF).
    #[test]
    fn end_tree_ends_a_subreapers_whole_tree_even_a_process_that_keeps_forking() {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        let [r, w] = fds;
        // SAFETY: the forked processes make raw syscalls only.
        let keeper = unsafe { libc::fork() };
        assert!(keeper >= 0);
        if keeper == 0 {
            unsafe {
                libc::close(r);
                libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
                let nap = |ms: i64| {
                    let t = libc::timespec {
                        tv_sec: 0,
                        tv_nsec: ms * 1_000_000,
                    };
                    libc::nanosleep(&t, std::ptr::null_mut());
                };
                if libc::fork() == 0 {
                    libc::setsid();
                    libc::sleep(30);
                    libc::_exit(0);
                }
                if libc::fork() == 0 {
                    if libc::fork() == 0 {
                        libc::setsid();
                        libc::sleep(30);
                    }
                    libc::_exit(0);
                }
                if libc::fork() == 0 {
                    for _ in 0..30_000 {
                        if libc::fork() != 0 {
                            libc::_exit(0);
                        }
                        nap(1);
                    }
                    libc::_exit(0);
                }
                libc::close(w);
                nap(100);
                libc::_exit(if end_tree(libc::getpid()) { 0 } else { 1 });
            }
        }
        unsafe { libc::close(w) };
        let mut st = 0;
        assert_eq!(unsafe { libc::waitpid(keeper, &mut st, 0) }, keeper);
        assert!(libc::WIFEXITED(st), "{st:#x}");
        assert_eq!(libc::WEXITSTATUS(st), 0, "end_tree gave up");
        // Every holder of the write end is gone: EOF (bounded: 5 s).
        let mut p = libc::pollfd {
            fd: r,
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = unsafe { libc::poll(&mut p, 1, 5000) };
        let mut b = [0u8; 1];
        let n = unsafe { libc::read(r, b.as_mut_ptr().cast(), 1) };
        unsafe { libc::close(r) };
        assert!(ready == 1 && n == 0, "a process of the tree survived");
    }
}
