//! capjail's side of the world: can namespaces be made here, and the `Command` that starts
//! the setup process ([`super::setup`]) instead of the server.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

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
/// throwaway child (fork + unshare + _exit), so the answer is this machine's truth. The child
/// may have been started earlier by [`start_probe`] (it then ran while capjail read the policy
/// and the host); its answer is collected here.
pub(crate) fn namespaces_available(w: &WorldPlan) -> Result<(), String> {
    static USER: OnceLock<Result<(), String>> = OnceLock::new();
    static ROOT: OnceLock<Result<(), String>> = OnceLock::new();
    let cell = if w.user { &USER } else { &ROOT };
    cell.get_or_init(|| match take_probe(w.user) {
        Some(pid) => probe_result(pid, w.user),
        None => probe(w.user),
    })
    .clone()
}

/// The probe child started ahead of time: (user namespace asked, pid).
static PENDING: Mutex<Option<(bool, libc::pid_t)>> = Mutex::new(None);

/// Start the namespace probe now, without waiting for it (startup: creating and tearing down
/// the namespaces takes milliseconds, mostly the mount namespace's teardown; started before
/// the policy's plan is built, it is over by the time [`namespaces_available`] asks). Call it
/// only when a world will be asked for: the child is reaped by that call.
pub(crate) fn start_probe(user: bool) {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if pending.is_some() {
        return;
    }
    if let Ok(pid) = fork_probe(user) {
        *pending = Some((user, pid));
    }
}

fn take_probe(user: bool) -> Option<libc::pid_t> {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    match *pending {
        Some((u, pid)) if u == user => {
            *pending = None;
            Some(pid)
        }
        _ => None,
    }
}

fn probe(user: bool) -> Result<(), String> {
    let pid = fork_probe(user)?;
    probe_result(pid, user)
}

/// Fork the child that tries the namespaces and exits with 0 or the errno.
fn fork_probe(user: bool) -> Result<libc::pid_t, String> {
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
    Ok(pid)
}

/// Wait for the probe child and turn its status into the answer.
fn probe_result(pid: libc::pid_t, user: bool) -> Result<(), String> {
    let mut status = 0;
    // SAFETY: waitpid on our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    if r != pid {
        return Err(format!(
            "namespace probe: waitpid: {}",
            std::io::Error::last_os_error()
        ));
    }
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

/// Plan files handed to a setup process. Kept open for capjail's life: the setup process
/// reopens its plan through `/proc/<capjail>/fd/<n>`, possibly after `apply_to`'s caller has
/// dropped the prepared sandbox. They stay close-on-exec, so no other child inherits them.
static HANDED_OUT: Mutex<Vec<Arc<PlanFile>>> = Mutex::new(Vec::new());

/// Replace `cmd` (the server's command, stdio and working directory already set) by the
/// setup process, executed with the server's environment only.
///
/// No `pre_exec`: std then starts it with `posix_spawn` (a vfork, not a fork of capjail's
/// whole address space), which is most of what the setup process used to cost before its own
/// first instruction. What the `pre_exec` did, the setup process does first ([`super::setup`]):
/// its own session, `PR_SET_PDEATHSIG(SIGKILL)`, and refusing to go on if capjail (named by
/// [`PARENT_ARG`]) is already gone; it reads the plan from capjail's descriptor through /proc.
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
        .arg(format!("{PARENT_ARG}{}", std::process::id()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    if let Some(d) = cmd.get_current_dir() {
        setup.current_dir(d);
    }
    let mut kept = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    if !kept.iter().any(|k| Arc::ptr_eq(k, plan_file)) {
        kept.push(Arc::clone(plan_file));
    }
    *cmd = setup;
}

/// `--parent=PID` after the plan descriptor: capjail's pid (whose descriptor holds the plan).
pub(crate) const PARENT_ARG: &str = "--parent=";
