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

/// Build the command with piped stdin/stdout and capjail's own stderr.
pub(crate) fn command(argv: &[String]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
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
            // capjail may have died between fork and prctl: then nobody would kill us.
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

/// SIGKILL every process still alive whose parent is capjail (the session's orphans, adopted
/// by [`become_subreaper`]), round after round as their own orphans are adopted in turn, and
/// reap them. Bounded: 100 rounds of at most 10 ms.
pub(crate) fn end_descendants() {
    let me = std::process::id();
    for _ in 0..100 {
        let alive = live_children(me);
        if alive.is_empty() {
            return;
        }
        for pid in &alive {
            // SAFETY: plain syscalls on capjail's own children.
            unsafe {
                libc::kill(*pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        for pid in &alive {
            // SAFETY: reaps only a child capjail just killed (never the server: already waited).
            unsafe {
                libc::waitpid(*pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
    }
    tracing::warn!("processes of the session were still being adopted after 100 rounds");
}

/// The children of `parent` that are not zombies, from /proc.
fn live_children(parent: u32) -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces and parentheses; read after the last `)`.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != Some("Z") && state != Some("X") {
            out.push(pid);
        }
    }
    out
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
