//! The sandbox's setup process: capjail re-executes itself (`/proc/self/exe __capjail-world
//! FD --parent=PID`, with the server's scrubbed environment, by `posix_spawn`) and this runs
//! instead of `main`: it first makes its own session, asks for SIGKILL at capjail's death and
//! checks capjail is still its parent, then reopens the plan (capjail's memory file FD) through
//! `/proc/PID/fd/FD`. It is single-threaded, so it may allocate and report errors freely
//! between its forks.
//!
//! With `network: none` it is started earlier (by `launch::start_early`, right after the policy
//! is read): then it is not executed but forked from capjail (an execution costs capjail's
//! whole start again on the world's critical path; see [`super::fork`] for what the fork
//! does to take an executed process's place, and [`forked_early`]). It makes the whole
//! world's namespaces at once and answers capjail (in place of the namespace probe), then
//! forks init at once; init makes the root's scaffold (steps 1-2 of [`super::root`], nothing
//! of the plan in them), then reads the plan, the server's environment and working directory
//! from the socket (sent as soon as capjail has the plan); the rest is the same, except that
//! the server's exec also waits for capjail's word on that socket (`launch::GO`, where the
//! server would have been spawned: after the session's first audit record and the trust
//! checks).
//!
//! Process tree (capjail's own pid namespace on the left):
//! ```text
//! capjail ── setup (this; PDEATHSIG from capjail; its own session)
//!              └── init = PID 1 of the new PID namespace (PDEATHSIG from setup; own group)
//!                    └── the server (and whatever it starts)
//! ```
//! - setup: creates the user namespace (when not root), then the mount/PID/IPC/UTS/net
//!   namespaces, forks init, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT to it and exits with
//!   init's status. capjail's `kill(-setup)` reaches setup only; setup's death kills init.
//! - init: builds the root ([`super::root`]) up to its `pivot_root`, forks the server's
//!   process, then brings up loopback, detaches the old root (an RCU grace period, while the
//!   server's process prepares its Landlock ruleset and seccomp filter), makes the root
//!   read-only and tells the server's process to go on (a pipe); it then reaps every orphan,
//!   forwards signals to every process of the namespace (`kill(-1)`), and exits with the
//!   server's status as soon as the server ends. When PID 1 ends, the kernel kills
//!   every process left in the namespace: nothing outlives the session, a `setsid()`, or a
//!   SIGKILL of capjail.
//! - the server: rlimits, `PR_SET_PDEATHSIG`, no_new_privs, every capability dropped (also
//!   when capjail runs as root: a root server would otherwise remount a read-only bind),
//!   Landlock, fds >= 3 closed at exec, seccomp last (all while init finishes the world);
//!   then, after init's word, exec.
//!
//! PID 1's `/proc/1/environ` is the environment setup was executed with: the server's
//! scrubbed one (capjail starts setup with exactly that); a forked setup process zeroed the
//! one it inherited, and its `/proc/1/cmdline` reads `capjail-sandbox`. A forked PID 1's
//! memory is otherwise a copy of capjail's: it is non-dumpable, so only a process with
//! `CAP_SYS_PTRACE` in the initial user namespace reads it (the server has no capability;
//! Landlock's ptrace scoping and the seccomp filter's refusal of `ptrace` and
//! `process_vm_readv` stand in front of it too).
//!
//! The server's process starts with the default disposition for every signal (as a client's
//! spawn leaves it), not capjail's ignored SIGPIPE.

use std::ffi::CString;
use std::io::Read;

use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::super::plan::{RlimitKind, SandboxPlan};
use super::super::{landlock, privileges, seccomp};

/// The hidden first argument of the re-executed capjail.
pub(crate) const SETUP_ARG: &str = "__capjail-world";

/// Exit status when the world could not be built (like a container runtime's 125).
pub(crate) const SETUP_FAILED: i32 = 125;

const FORWARDED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("capjail: sandbox setup: {msg}");
    // SAFETY: _exit never returns; nothing to flush that matters (stderr is unbuffered).
    unsafe { libc::_exit(SETUP_FAILED) }
}

/// Entry point (from `main` when `argv[1] == SETUP_ARG`). Never returns.
pub(crate) fn setup_main(args: &[String]) -> ! {
    let parent: libc::pid_t = args
        .iter()
        .find_map(|a| a.strip_prefix(super::launch::PARENT_ARG))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| die("missing parent pid"));
    tie_to(parent);
    let fd: i32 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| die("missing plan descriptor"));
    let json = read_plan(parent, fd).unwrap_or_else(|e| die(format!("reading the plan: {e}")));
    let mut plan: SandboxPlan =
        serde_json::from_str(&json).unwrap_or_else(|e| die(format!("bad plan: {e}")));
    // Values are never serialized: the environment we were started with IS the server's.
    plan.env.values = std::env::vars().collect();
    let w = plan.world.clone();

    if let Err((what, e)) = make_namespaces(&w) {
        die(format!("{what}: {e}"));
    }
    start_init(plan, egress_fd(args))
}

/// The namespaces of `w`: the user namespace first (when not root, with this uid/gid mapped
/// to themselves), then the others. On failure: what failed, and its errno.
fn make_namespaces(w: &super::plan::WorldPlan) -> Result<(), (String, nix::Error)> {
    let uid = nix::unistd::geteuid();
    let gid = nix::unistd::getegid();
    if w.user {
        unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| ("user namespace".to_string(), e))?;
        let wr = |p: &str, s: String| {
            std::fs::write(p, s).map_err(|e| {
                (
                    p.to_string(),
                    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                )
            })
        };
        wr("/proc/self/setgroups", "deny".into())?;
        wr("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
        wr("/proc/self/gid_map", format!("{gid} {gid} 1\n"))?;
    }
    let mut flags = CloneFlags::empty();
    for (on, f) in [
        (w.mount, CloneFlags::CLONE_NEWNS),
        (w.pid, CloneFlags::CLONE_NEWPID),
        (w.ipc, CloneFlags::CLONE_NEWIPC),
        (w.uts, CloneFlags::CLONE_NEWUTS),
        (w.net, CloneFlags::CLONE_NEWNET),
    ] {
        if on {
            flags |= f;
        }
    }
    unshare(flags).map_err(|e| (format!("namespaces ({})", w.namespaces()), e))
}

/// The setup process started ahead of the plan, forked from capjail by
/// `launch::start_early` (its `pre_exec` hook, which never returns): it first takes the place
/// of an executed setup process ([`super::fork`]), then runs [`early_main`].
pub(crate) fn forked_early(sock: i32, user: bool, parent: libc::pid_t) -> std::io::Result<()> {
    // Off capjail's CPU while capjail still waits in its spawn (once it runs again it would
    // keep this process waiting beside it).
    super::fork::leave_this_cpu();
    // Then capjail's spawn returns: std's exec-error pipe closes with every other descriptor
    // capjail had (its ends of the pipes among them).
    super::fork::close_all_but(sock);
    super::fork::ignore_sigpipe();
    super::fork::scrub_strings();
    tie_to(parent);
    early_main(sock, user)
}

/// The early setup process: the whole world's namespaces at once, the answer (0 or the
/// errno) to capjail, then the plan (with the server's environment and working directory)
/// read to end-of-file. End-of-file without a plan: capjail chose another way; exit quietly.
fn early_main(sock: i32, user: bool) -> ! {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    // SAFETY: capjail passed this descriptor to this process only; owned from here.
    let mut sock = unsafe { std::os::unix::net::UnixStream::from_raw_fd(sock) };
    // SAFETY: fcntl on our own descriptor (closed at any exec; init drops it once read).
    unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::F_SETFD,
            libc::FD_CLOEXEC,
        )
    };
    let whole = super::plan::WorldPlan {
        enabled: true,
        mount: true,
        pid: true,
        ipc: true,
        uts: true,
        net: true,
        user,
        ..Default::default()
    };
    let made = make_namespaces(&whole);
    // Once the uid/gid maps are written (a non-dumpable process's /proc files are root's):
    // the copy of capjail's memory this process and init hold is out of reach from here on.
    super::fork::not_dumpable();
    let code = match &made {
        Ok(()) => 0u8,
        Err((_, e)) => (*e as i32 & 0xff).max(1) as u8,
    };
    if sock.write_all(&[code]).is_err() || made.is_err() {
        // SAFETY: _exit.
        unsafe { libc::_exit(SETUP_FAILED) }
    }
    // PID 1 is forked now, before the plan: it makes the root's scaffold (nothing of the plan
    // in it) and then reads the plan itself; this process only supervises it.
    let set = block_forwarded();
    // SAFETY: single-threaded process.
    match unsafe { fork() } {
        Err(e) => die(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            let get = move || {
                let scaffold = super::root::scaffold().unwrap_or_else(|e| die(e));
                // The plan: its length (u64, little-endian), then the JSON. End-of-file
                // first: capjail chose another way, nothing to run.
                let mut len = [0u8; 8];
                if sock.read_exact(&mut len).is_err() {
                    // SAFETY: _exit.
                    unsafe { libc::_exit(0) }
                }
                let len = usize::try_from(u64::from_le_bytes(len))
                    .ok()
                    .filter(|&n| n <= MAX_PLAN)
                    .unwrap_or_else(|| die("bad plan length"));
                let mut bytes = vec![0u8; len];
                if sock.read_exact(&mut bytes).is_err() {
                    // SAFETY: _exit.
                    unsafe { libc::_exit(0) }
                }
                let msg: super::launch::EarlyMessage = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| die(format!("bad plan: {e}")));
                let w = &msg.plan.world;
                if !(w.enabled && w.mount && w.pid && w.ipc && w.uts && w.net && w.user == user) {
                    die("the plan asks for other namespaces than the ones made");
                }
                replace_environment(&msg.env);
                let mut plan = msg.plan;
                plan.env.values = msg.env;
                (plan, msg.cwd, Some(scaffold), Some(Gate(sock)))
            };
            init_main(get, set, None)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(sock);
            detach_stdio();
            supervise(child, &set, false)
        }
    }
}

/// The server's environment, exactly, as this process's own (the server's exec inherits it).
/// Through libc, not `std::env`: the forked setup process inherited std's environment lock
/// held for reading by the thread that forked (std's spawn holds it across the fork), and
/// std's writers would wait for it forever. Single-threaded process.
fn replace_environment(env: &[(String, String)]) {
    // SAFETY: single-threaded; clearenv and setenv copy what they keep.
    unsafe {
        libc::clearenv();
        for (k, v) in env {
            match (CString::new(k.as_bytes()), CString::new(v.as_bytes())) {
                (Ok(name), Ok(value)) if !k.is_empty() && !k.contains('=') => {
                    libc::setenv(name.as_ptr(), value.as_ptr(), 1);
                }
                _ => die(format!("environment variable {k:?} cannot be set")),
            }
        }
    }
}

/// Block the signals setup and init wait for (forwarded ones, SIGCHLD).
fn block_forwarded() -> SigSet {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    set
}

/// Fork the sandbox's PID 1 (the namespaces made) and supervise it.
fn start_init(plan: SandboxPlan, egress: Option<i32>) -> ! {
    let set = block_forwarded();
    // SAFETY: single-threaded process.
    match unsafe { fork() } {
        Err(e) => die(format!("fork: {e}")),
        Ok(ForkResult::Child) => init_main(
            move || (plan, std::env::current_dir().ok(), None, None),
            set,
            egress,
        ),
        Ok(ForkResult::Parent { child }) => {
            detach_stdio();
            supervise(child, &set, false)
        }
    }
}

/// What capjail's `pre_exec` did before: a session of our own (capjail signals the group;
/// no controlling terminal), SIGKILL when capjail dies, and no going on if it already died
/// (then the death signal was missed). Started by `posix_spawn`, we are not a group leader.
fn tie_to(parent: libc::pid_t) {
    // SAFETY: setsid, prctl with constant arguments, getppid, _exit.
    unsafe {
        if libc::setsid() < 0 {
            die(format!("setsid: {}", std::io::Error::last_os_error()));
        }
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent {
            libc::_exit(137);
        }
    }
}

/// The plan, from capjail's memory file: reopened through `/proc/<capjail>/fd/<fd>` (a new
/// open file, read from its start; capjail keeps it close-on-exec). Only capjail's own
/// plan file is accepted.
fn read_plan(parent: libc::pid_t, fd: i32) -> std::io::Result<String> {
    let link = format!("/proc/{parent}/fd/{fd}");
    let target = std::fs::read_link(&link)?;
    if !target
        .as_os_str()
        .as_encoded_bytes()
        .starts_with(b"/memfd:capjail-plan")
    {
        return Err(std::io::Error::other(format!(
            "{link} is not capjail's plan file ({})",
            target.display()
        )));
    }
    let mut f = std::fs::File::open(&link)?;
    let mut json = String::new();
    f.read_to_string(&mut json)?;
    Ok(json)
}

/// `--egress-fd=N` after the plan descriptor: the egress hand-over socket (crate::egress::netns).
fn egress_fd(args: &[String]) -> Option<i32> {
    args.iter()
        .find_map(|a| a.strip_prefix(crate::egress::netns::SETUP_EGRESS_ARG))
        .and_then(|n| n.parse().ok())
}

/// stdin/stdout belong to the server: holding them would keep the client's pipe open.
fn detach_stdio() {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto fds 0 and 1.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

/// Wait for `main` (init, or the server), forward signals; in init (`reap_all`) also reap
/// orphans and forward to every process of the namespace. Exits with main's status; in init,
/// a failing server gets the hint of [`exit_hint`] first.
fn supervise(main: Pid, set: &SigSet, reap_all: bool) -> ! {
    supervise_with(main, set, reap_all, &[])
}

fn supervise_with(main: Pid, set: &SigSet, reap_all: bool, argv: &[String]) -> ! {
    let mut signalled = false;
    loop {
        let sig = match set.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig == Signal::SIGCHLD {
            loop {
                let who = if reap_all { Pid::from_raw(-1) } else { main };
                match waitpid(who, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(p, code)) if p == main => {
                        if reap_all && code != 0 && !signalled {
                            eprint!("{}", exit_hint(code, argv));
                        }
                        std::process::exit(code)
                    }
                    Ok(WaitStatus::Signaled(p, s, _)) if p == main => {
                        std::process::exit(128 + s as i32)
                    }
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        } else if reap_all {
            signalled = true;
            // SAFETY: kill(-1) from PID 1 reaches every other process of the namespace.
            unsafe { libc::kill(-1, sig as i32) };
        } else {
            let _ = kill(main, sig);
        }
    }
}

/// The largest plan message an early setup process accepts (a plan is a few KiB).
const MAX_PLAN: usize = 64 << 20;

/// The early setup process's socket to capjail once the plan is read: the server's exec
/// waits for capjail's word on it ([`super::launch::GO`]).
struct Gate(std::os::unix::net::UnixStream);

impl Gate {
    /// Wait for capjail's word; without it (end-of-file: capjail stopped before the server was
    /// to run, or anything else), exit: the server's process, waiting for init's own word,
    /// then reads end-of-file and exits without running the server.
    fn wait(mut self) {
        let mut b = [0u8; 1];
        match self.0.read_exact(&mut b) {
            Ok(()) if b[0] == super::launch::GO => {}
            // SAFETY: _exit.
            _ => unsafe { libc::_exit(0) },
        }
    }
}

/// What init gets before it builds the world: the plan, the server's working directory,
/// the root's scaffold when it was made before the plan (early), and then capjail's gate.
type InitStart = (
    SandboxPlan,
    Option<std::path::PathBuf>,
    Option<super::root::Scaffold>,
    Option<Gate>,
);

/// PID 1 of the sandbox.
/// `get`: see [`InitStart`].
fn init_main(get: impl FnOnce() -> InitStart, set: SigSet, egress: Option<i32>) -> ! {
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // Own process group: capjail's group signals reach setup, which forwards them once.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let (plan, cwd, scaffold, gate) = get();
    let w = &plan.world;
    if w.mount {
        let built = match scaffold {
            Some(s) => super::root::build_on(s, w),
            None => super::root::build(w),
        };
        match built {
            Ok(notes) => {
                for n in notes {
                    tracing::debug!("world: {n}");
                }
            }
            Err(e) => die(e),
        }
    }
    // The server's process is forked now, while the old root is still stacked under `/`: it
    // prepares its Landlock ruleset and seccomp filter while init detaches the old root (an
    // RCU grace period) and brings up the rest of the world, and goes on to confine itself
    // and exec only once init says the world is complete ([`Go`]).
    let go = Go::new().unwrap_or_else(|e| die(format!("pipe: {e}")));
    // SAFETY: single-threaded process.
    match unsafe { fork() } {
        Err(e) => die(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop(gate);
            server_main(&plan, cwd, go.waiter())
        }
        Ok(ForkResult::Parent { child }) => {
            let go = go.teller();
            if w.uts {
                let _ = nix::unistd::sethostname("capjail");
            }
            if w.net {
                if let Err(e) = loopback_up() {
                    die(format!("loopback: {e}"));
                }
                // The egress point's listener, made here and handed out to capjail (crate::egress).
                if let Some(fd) = egress {
                    if let Err(e) = crate::egress::netns::hand_over(fd) {
                        die(format!("egress listener: {e}"));
                    }
                }
            }
            if w.mount {
                if let Err(e) = super::root::detach_old_root() {
                    die(e);
                }
            }
            if let Some(d) = &cwd {
                if std::env::set_current_dir(d).is_err() {
                    let _ = std::env::set_current_dir("/");
                }
            }
            // Started early: the world is complete, the server's process confined; its exec
            // waits for capjail's word (given where the server would have been spawned).
            if let Some(g) = gate {
                g.wait();
            }
            go.tell();
            detach_stdio();
            // init keeps nothing it does not need: no capabilities, no new privileges.
            let _ = privileges::set_no_new_privs();
            let _ = privileges::drop_all(&privileges::PreparedPrivileges::detect());
            supervise_with(child, &set, true, &plan.argv)
        }
    }
}

/// init's word to the server's process that the world is complete (the old root detached,
/// the root read-only, loopback up): one byte on a pipe. If init dies first, the server's
/// process reads end-of-file and exits without running the server.
struct Go {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
}

impl Go {
    fn new() -> std::io::Result<Go> {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe2 into a local array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both just created, owned here.
        Ok(unsafe {
            Go {
                read: std::os::fd::OwnedFd::from_raw_fd(fds[0]),
                write: std::os::fd::OwnedFd::from_raw_fd(fds[1]),
            }
        })
    }

    /// The server's side (the write end is closed here).
    fn waiter(self) -> GoWaiter {
        GoWaiter(self.read)
    }

    /// init's side (the read end is closed here).
    fn teller(self) -> GoTeller {
        GoTeller(self.write)
    }
}

struct GoTeller(std::os::fd::OwnedFd);

impl GoTeller {
    fn tell(self) {
        use std::os::fd::AsRawFd;
        // SAFETY: write of one byte from a local; the descriptor is closed on drop.
        unsafe { libc::write(self.0.as_raw_fd(), b"1".as_ptr().cast(), 1) };
    }
}

struct GoWaiter(std::os::fd::OwnedFd);

impl GoWaiter {
    /// Wait for init's word; without it (init died: end-of-file), exit without running the
    /// server.
    fn wait(self) {
        use std::os::fd::AsRawFd;
        let mut b = 0u8;
        loop {
            // SAFETY: read of one byte into a local.
            let n = unsafe { libc::read(self.0.as_raw_fd(), (&mut b as *mut u8).cast(), 1) };
            if n == 1 {
                return;
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // SAFETY: _exit.
            unsafe { libc::_exit(SETUP_FAILED) }
        }
    }
}

/// What to tell the user when the server fails inside its world: the paths it was given that
/// do not exist there (the usual cause), and the policy lines that would grant them.
fn exit_hint(code: i32, argv: &[String]) -> String {
    let mut missing = Vec::new();
    for a in argv.iter().skip(1) {
        let p = a.split_once('=').map_or(a.as_str(), |(_, v)| v);
        if p.starts_with('/') && std::fs::symlink_metadata(p).is_err() && !missing.contains(&p) {
            missing.push(p);
        }
    }
    let mut s = format!(
        "capjail: the server exited with status {code} inside its sandbox. A path outside its world fails with ENOENT (\"No such file or directory\"), one Landlock refuses with EACCES/EPERM.\n"
    );
    for m in &missing {
        s.push_str(&format!(
            "capjail:   it was given {m}, which does not exist in its world: grant it with `filesystem.mounts: [{{path: {m}, mode: ro}}]` (or rw), or `kernel.extra_read: [{m}]` for programs and libraries\n"
        ));
    }
    s.push_str("capjail:   `capjail policy explain POLICY -- CMD` lists everything the world holds, with the policy line behind each entry\n");
    s
}

/// The server, just before exec. Returns only by exiting. Everything that needs no finished
/// world (rlimits, privileges, the Landlock ruleset, the seccomp filter) is prepared before
/// init's word (`go`); only the exec waits for it: the confinement is applied (in the same
/// order) while init finishes the world, off the path to the server's first instruction.
fn server_main(plan: &SandboxPlan, cwd: Option<std::path::PathBuf>, go: GoWaiter) -> ! {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    crate::proxy::child::default_dispositions();
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    match cwd {
        Some(d) if std::env::set_current_dir(&d).is_ok() => {}
        Some(d) => {
            eprintln!(
                "capjail: the working directory {} is not in the sandbox's world; the server starts in /",
                d.display()
            );
            let _ = std::env::set_current_dir("/");
        }
        None => {
            let _ = std::env::set_current_dir("/");
        }
    }
    for r in &plan.rlimits {
        let res = match r.kind {
            RlimitKind::Core => libc::RLIMIT_CORE,
            RlimitKind::Nofile => libc::RLIMIT_NOFILE,
            RlimitKind::Nproc => libc::RLIMIT_NPROC,
            RlimitKind::As => libc::RLIMIT_AS,
            RlimitKind::Fsize => libc::RLIMIT_FSIZE,
            RlimitKind::Cpu => libc::RLIMIT_CPU,
        };
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit on stack structs; only ever lower.
        unsafe {
            if libc::getrlimit(res, &mut cur) == 0 {
                let v = (r.value as libc::rlim_t).min(cur.rlim_max);
                libc::setrlimit(
                    res,
                    &libc::rlimit {
                        rlim_cur: v,
                        rlim_max: v,
                    },
                );
            }
        }
    }
    if let Err(e) = privileges::set_no_new_privs() {
        die(format!("no_new_privs: errno {e}"));
    }
    if let Err(e) = privileges::drop_all(&privileges::PreparedPrivileges::detect()) {
        die(format!("dropping capabilities: errno {e}"));
    }
    let ruleset = match landlock::abi_version() {
        Ok(abi) => Some(
            landlock::PreparedLandlock::prepare_unchecked(plan, abi)
                .unwrap_or_else(|e| die(format!("landlock: {e}"))),
        )
        .filter(|l| l.handles_anything()),
        Err(e) => {
            tracing::debug!("landlock unavailable: {e}");
            None
        }
    };
    let prog = seccomp::compile_for(plan);
    if let Some(l) = ruleset {
        if let Err(e) = l.restrict_child() {
            die(format!("landlock: errno {e}"));
        }
    }
    // SAFETY: close_range with the CLOEXEC flag only marks descriptors.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if seccomp::available().is_ok() {
        if let Err(e) = seccomp::install(&prog) {
            die(format!("seccomp: errno {e}"));
        }
    }
    let argv: Vec<CString> = plan
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_else(|_| die("NUL in argument")))
        .collect();
    // Confined as it will run; only the exec waits for the finished world.
    go.wait();
    let e = nix::unistd::execvp(&argv[0], &argv).unwrap_err();
    eprintln!("capjail: cannot execute {}: {e}", plan.argv[0]);
    let code = if e == nix::Error::ENOENT { 127 } else { 126 };
    // SAFETY: _exit.
    unsafe { libc::_exit(code) }
}

/// `ip link set lo up` in the new network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a socket, an ifreq on the stack, ioctls, close.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let r = if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        libc::close(s);
        r
    }
}
