//! The server process: spawned in a session of its own, tied to capjail's life, stopped in
//! steps (stdin closed -> SIGTERM -> SIGKILL) and never left behind.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// How a spawn failed, for the exit code (126: cannot execute, 127: not found).
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpawnError {
    #[error("command not found: {0}")]
    NotFound(String),
    #[error("cannot execute {0}: {1}")]
    CannotExecute(String, io::Error),
    #[error("cannot start {0}: {1}")]
    Other(String, io::Error),
}

/// Build the command with piped stdin/stdout and capjail's own stderr; the server starts with
/// every signal's default disposition ([`default_dispositions`]).
pub(crate) fn command(argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: sigaction only (async-signal-safe), between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            default_dispositions();
            Ok(())
        });
    }
    cmd
}

/// Every signal's disposition back to the default, as a client's spawn leaves it (libuv's,
/// which most MCP clients use, does the same): capjail ignores SIGPIPE (the Rust runtime's
/// choice), whatever started capjail may have ignored others, and an ignored signal stays
/// ignored across an exec, so a server's `producer | head` would see EPIPE instead of dying
/// of SIGPIPE. Handlers are reset by the exec itself. The raw system call: glibc's wrapper
/// refuses the two real-time signals it keeps for itself, which an ignoring parent may have
/// ignored too. Async-signal-safe.
pub(crate) fn default_dispositions() {
    // The kernel's struct sigaction, all zero: SIG_DFL, no flags, no restorer, empty mask
    // (whatever the architecture's field order).
    let dfl = [0u64; 4];
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: rt_sigaction reads 4 words (sigsetsize 8) and writes no old action.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    dfl.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                )
            };
        }
    }
}

/// Lifecycle settings applied in the child before exec: a new session (so the whole process
/// tree can be signalled as one group, and terminal signals reach it only through capjail) and
/// SIGKILL when capjail dies. Only async-signal-safe calls: this runs between fork and exec.
pub(crate) fn tie_to_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: setsid, prctl and getppid are async-signal-safe and touch no Rust state.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent (capjail, or the watcher in between) may have died between fork and
            // prctl: then nobody would kill us.
            #[cfg(target_os = "linux")]
            let parent = crate::sandbox::watcher::server_parent(parent);
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
}

pub(crate) fn spawn(mut cmd: Command, program: &str) -> Result<Child, SpawnError> {
    cmd.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound(program.to_string()),
        io::ErrorKind::PermissionDenied => SpawnError::CannotExecute(program.to_string(), e),
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => {
            SpawnError::CannotExecute(program.to_string(), e)
        }
        _ => SpawnError::Other(program.to_string(), e),
    })
}

/// Signal the server's whole process group. ESRCH (nothing left) is not an error.
pub(crate) fn signal_group(pgid: u32, sig: libc::c_int) {
    // SAFETY: plain syscall.
    let r = unsafe { libc::kill(-(pgid as libc::pid_t), sig) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            tracing::debug!("kill(-{pgid}, {sig}): {e}");
        }
    }
}

/// Make capjail the reaper of every orphan of the session: a grandchild that calls `setsid()`
/// or double-forks is reparented to capjail instead of init, so [`end_descendants`] finds it.
/// (With the server's own PID namespace its PID 1 already does this; this is the fallback's.)
pub(crate) fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!("cannot become the reaper of the server's orphans: {e}");
    }
}

/// Put the fallback's watcher between capjail and the server (`sandbox::watcher`): if capjail
/// is SIGKILLed, it ends every descendant of the server. Call it before any other `pre_exec`.
pub(crate) fn watch(cmd: &mut Command) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    crate::sandbox::watcher::install(cmd)?;
    let _ = cmd;
    Ok(())
}

/// End every process still alive below capjail (the session's orphans, adopted by
/// [`become_subreaper`], e.g. when the watcher was killed): frozen (SIGSTOP) before their
/// children are read, then SIGKILLed, round after round as their own orphans are adopted in
/// turn (bounded: `sandbox::watcher::end_tree`).
pub(crate) fn end_descendants() {
    #[cfg(target_os = "linux")]
    if !crate::sandbox::watcher::end_tree(std::process::id() as libc::pid_t) {
        tracing::warn!("processes of the session were still being adopted after every round");
    }
}

/// The exit code capjail reports for the server's status: its code, or 128 + the signal.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 1,
    }
}
