//! capjail's side of the world: can namespaces be made here, and the `Command` that starts
//! the setup process ([`super::setup`]) instead of the server.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};

use super::plan::WorldPlan;
use super::setup::SETUP_ARG;

static SETUP_EXE: OnceLock<std::path::PathBuf> = OnceLock::new();

/// Name the executable that runs the setup process (a binary whose `main` calls
/// [`super::setup_main`] for [`SETUP_ARG`]). capjail's `main` names itself
/// (`/proc/self/exe`). A library user that does not leaves the world off: the plan falls
/// back to Landlock + seccomp applied in `pre_exec`, with a note.
pub(crate) fn set_setup_executable(path: impl Into<std::path::PathBuf>) {
    let _ = SETUP_EXE.set(path.into());
}

pub(crate) fn setup_executable() -> Option<&'static std::path::Path> {
    SETUP_EXE.get().map(|p| p.as_path())
}

/// Can this process create the namespaces `w` asks for? Tried once per process, in a
/// throwaway child (fork + unshare + _exit), so the answer is this machine's truth.
pub(crate) fn namespaces_available(w: &WorldPlan) -> Result<(), String> {
    static USER: OnceLock<Result<(), String>> = OnceLock::new();
    static ROOT: OnceLock<Result<(), String>> = OnceLock::new();
    let cell = if w.user { &USER } else { &ROOT };
    cell.get_or_init(|| probe(w.user)).clone()
}

fn probe(user: bool) -> Result<(), String> {
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWNET;
    if user {
        flags |= libc::CLONE_NEWUSER;
    }
    // SAFETY: the child only calls unshare and _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let r = libc::unshare(flags);
            libc::_exit(if r == 0 {
                0
            } else {
                *libc::__errno_location() & 0xff
            });
        }
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = libc::WEXITSTATUS(status);
    if libc::WIFEXITED(status) && code == 0 {
        return Ok(());
    }
    let err = std::io::Error::from_raw_os_error(code);
    Err(if user {
        let hint = std::fs::read_to_string("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
            .ok()
            .filter(|v| v.trim() == "1")
            .map(|_| " (AppArmor restricts unprivileged user namespaces: kernel.apparmor_restrict_unprivileged_userns=1)")
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
                    .ok()
                    .filter(|v| v.trim() == "0")
                    .map(|_| " (kernel.unprivileged_userns_clone=0)")
            })
            .unwrap_or("");
        format!("unprivileged user namespaces cannot be created here: {err}{hint}")
    } else {
        format!("namespaces cannot be created here: {err}")
    })
}

/// `doctor`'s line about the server's world on this machine.
pub(crate) fn doctor_line(uid: u32) -> String {
    let w = WorldPlan {
        enabled: true,
        user: uid != 0,
        ..Default::default()
    };
    match namespaces_available(&w) {
        Ok(()) => format!(
            "namespaces: available (mount, pid, ipc, uts, net{}): servers get a world of their own",
            if uid != 0 { ", user" } else { "" }
        ),
        Err(e) => format!(
            "namespaces: NOT available ({e}): servers run with Landlock + seccomp in the host's world (no private root, /proc, PID 1, IPC or network namespace); --require-kernel refuses"
        ),
    }
}

/// The plan, serialized once into a sealed-by-convention memory file the setup process reads.
#[derive(Debug)]
pub(crate) struct PlanFile(OwnedFd);

impl PlanFile {
    pub(crate) fn new(json: &str) -> std::io::Result<PlanFile> {
        // SAFETY: memfd_create with a static name.
        let fd = unsafe { libc::memfd_create(c"capjail-plan".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: just created, owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut f = std::fs::File::from(fd);
        f.write_all(json.as_bytes())?;
        Ok(PlanFile(f.into()))
    }
}

/// Replace `cmd` (the server's command, stdio and working directory already set) by the
/// setup process, executed with the server's environment only.
pub(crate) fn setup_command(
    plan_file: &Arc<PlanFile>,
    env: &[(String, String)],
    cmd: &mut Command,
) {
    let mut setup =
        Command::new(setup_executable().unwrap_or(std::path::Path::new("/proc/self/exe")));
    let fd = plan_file.0.as_raw_fd();
    setup
        .arg0("capjail-sandbox")
        .arg(SETUP_ARG)
        .arg(fd.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(d) = cmd.get_current_dir() {
        setup.current_dir(d);
    }
    let keep = Arc::clone(plan_file);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        setup.pre_exec(move || {
            let fd = keep.0.as_raw_fd();
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 || libc::lseek(fd, 0, libc::SEEK_SET) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    *cmd = setup;
}
