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
        Some(p) => probe_result(p, w.user),
        None => probe(w.user),
    })
    .clone()
}

/// The probe child started ahead of time: (user namespace asked, its answer).
static PENDING: Mutex<Option<(bool, Probe)>> = Mutex::new(None);

/// A probe child and the pipe it answers on.
struct Probe {
    pid: libc::pid_t,
    answer: OwnedFd,
}

/// Start the namespace probe now, without waiting for it (startup: creating the namespaces
/// takes about a millisecond; started before the policy's plan is built, its answer is there
/// by the time [`namespaces_available`] asks). Call it only when a world will be asked for:
/// the child is reaped after that call.
pub(crate) fn start_probe(user: bool) {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if pending.is_some() {
        return;
    }
    if let Ok(p) = fork_probe(user) {
        *pending = Some((user, p));
    }
}

fn take_probe(user: bool) -> Option<Probe> {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    match pending.take() {
        Some((u, p)) if u == user => Some(p),
        other => {
            *pending = other;
            None
        }
    }
}

fn probe(user: bool) -> Result<(), String> {
    let p = fork_probe(user)?;
    probe_result(p, user)
}

/// Fork the child that tries the namespaces, writes 0 or the errno on a pipe, and exits.
/// The answer comes on the pipe, not from the exit status: the child's exit tears the
/// namespaces down again, and a mount namespace's teardown waits for an RCU grace period
/// (measured 2-12 ms on a loaded 2-core VM), which capjail need not wait for.
fn fork_probe(user: bool) -> Result<Probe, String> {
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWNET;
    if user {
        flags |= libc::CLONE_NEWUSER;
    }
    let mut fds = [0; 2];
    // SAFETY: pipe2 into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both just created, owned here.
    let (answer, tell) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child only calls unshare, write and _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            let r = libc::unshare(flags);
            let code: u8 = if r == 0 {
                0
            } else {
                (*libc::__errno_location() & 0xff) as u8
            };
            libc::write(tell.as_raw_fd(), (&code as *const u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(tell);
    Ok(Probe { pid, answer })
}

/// Read the probe's answer, reap the child without waiting for its exit (a thread does), and
/// turn the answer into the result.
fn probe_result(p: Probe, user: bool) -> Result<(), String> {
    let mut code = 0u8;
    let n = loop {
        // SAFETY: read of one byte into a local.
        let n = unsafe { libc::read(p.answer.as_raw_fd(), (&mut code as *mut u8).cast(), 1) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break n;
    };
    let pid = p.pid;
    let reap = move || {
        let mut status = 0;
        // SAFETY: waitpid on our own child (the probe), once.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    };
    if std::thread::Builder::new()
        .name("ns-probe".into())
        .spawn(reap)
        .is_err()
    {
        reap();
    }
    if n != 1 {
        return Err("namespace probe: the probe child ended without an answer".into());
    }
    if code == 0 {
        return Ok(());
    }
    let err = std::io::Error::from_raw_os_error(code as i32);
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
