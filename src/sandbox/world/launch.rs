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
    cell.get_or_init(|| match take_early_answer(w.user) {
        Some(Ok(())) => Ok(()),
        Some(Err(0)) => Err("namespace probe: the setup process ended without an answer".into()),
        Some(Err(code)) => Err(probe_error(code, w.user)),
        None => match take_probe(w.user) {
            Some(p) => probe_result(p, w.user),
            None => probe(w.user),
        },
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
    Err(probe_error(code, user))
}

/// Why the namespaces cannot be made (`code`: the errno of `unshare`), with the usual cause.
fn probe_error(code: u8, user: bool) -> String {
    let err = std::io::Error::from_raw_os_error(code as i32);
    if user {
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
    }
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
///
/// When the setup process was started early ([`start_early`]) with the namespaces this plan
/// asks for, it is chosen instead: it is sent the plan at once (it builds the world while
/// capjail finishes its start), and [`take_early_child`] lets it run the server where `cmd`
/// would be spawned (`cmd` is still made the usual setup process, never left the bare server).
pub(crate) fn setup_command(
    plan_file: &Arc<PlanFile>,
    plan: &crate::sandbox::plan::SandboxPlan,
    cmd: &mut Command,
) {
    let env = &plan.env.values;
    early_for(plan, cmd.get_current_dir());
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

/// The setup process started ahead of time, at the point where the namespace probe would be
/// forked: it creates the namespaces at once (its answer is the probe's, one creation instead
/// of two) and then waits for the plan, while capjail reads the host and builds the plan.
/// A fork of capjail, not an execution of it ([`super::fork`]: an execution would cost the
/// world's critical path capjail's whole start again); stdio piped, the policy's environment
/// allowlist as its environment, capjail's argument and environment strings zeroed, and
/// non-dumpable from the moment its namespaces exist (the copy of capjail's memory it and the
/// sandbox's PID 1 hold is out of reach of anything without `CAP_SYS_PTRACE`).
struct Early {
    child: std::process::Child,
    sock: std::os::unix::net::UnixStream,
    user: bool,
    /// The namespaces are made (the answer was 0).
    made: bool,
    /// The message sent (the plan is final): it builds the world and prepares the server's
    /// confinement now; the server's exec waits for [`GO`].
    sent: Option<Vec<u8>>,
}

/// The byte that lets the early setup process run the server ([`take_early_child`]), sent
/// where the server's command would be spawned (after the session's first audit record and
/// the trust checks). Anything else, or end-of-file, and the server never runs.
pub(crate) const GO: u8 = b'G';

static EARLY: Mutex<Option<Early>> = Mutex::new(None);

/// Start the setup process ahead of the plan (instead of [`start_probe`]). `env`: the
/// environment it is executed with (the policy's allowlist applied). The world must be the
/// whole one (mount, pid, ipc, uts, net; user when `user`); a plan that asks for another is
/// started the usual way and this process is sent away. False when it could not be started
/// (the caller starts the probe instead).
pub(crate) fn start_early(user: bool, env: &[(String, String)]) -> bool {
    // A library user that did not name the setup executable leaves the world off; a capjail
    // that already runs threads does not fork (another thread may hold a lock the child
    // needs): the probe and the executed setup process then do it the usual way.
    if setup_executable().is_none() || !super::fork::single_threaded() {
        return false;
    }
    let mut early = EARLY.lock().unwrap_or_else(|p| p.into_inner());
    if early.is_some() {
        return true;
    }
    let Ok((ours, theirs)) = std::os::unix::net::UnixStream::pair() else {
        return false;
    };
    let sock = theirs.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;
    // std forks (a `pre_exec` rules out `posix_spawn`), puts the pipes on stdin and stdout and
    // this environment in `environ`; the hook then becomes the setup process and never
    // returns, so the program named here is never executed. std's spawn returns as soon as
    // the hook closed std's exec-error pipe with every other inherited descriptor.
    let mut setup = Command::new("/proc/self/exe");
    setup
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    // SAFETY: capjail is single-threaded here (checked above), so the child may allocate and
    // take locks; the hook never returns (`forked_early` ends in `_exit` or exits with init).
    unsafe {
        setup.pre_exec(move || super::setup::forked_early(sock, user, parent));
    }
    let spawned = setup.spawn();
    drop(theirs);
    match spawned {
        Ok(child) => {
            // Woken beside it (the child left capjail's CPU, but a wake-up may follow it):
            // capjail moves instead, so that both work at once.
            if super::fork::shares_cpu_with(child.id()) {
                super::fork::leave_this_cpu();
            }
            *early = Some(Early {
                child,
                sock: ours,
                user,
                made: false,
                sent: None,
            });
            true
        }
        Err(_) => false,
    }
}

/// The early setup process's answer (0 or the errno of its `unshare`), if one was started
/// for this kind of world; on a failure it has exited and is reaped here.
fn take_early_answer(user: bool) -> Option<Result<(), u8>> {
    use std::io::Read;
    let mut guard = EARLY.lock().unwrap_or_else(|p| p.into_inner());
    let e = guard.as_mut().filter(|e| e.user == user)?;
    let mut code = [0u8; 1];
    let answer = match (&e.sock).read_exact(&mut code) {
        Ok(()) if code[0] == 0 => Ok(()),
        Ok(()) => Err(code[0]),
        Err(_) => Err(0),
    };
    if answer.is_ok() {
        e.made = true;
    } else if let Some(mut e) = guard.take() {
        let _ = e.child.wait();
    }
    Some(answer)
}

/// Send the early setup process away (its plan went the usual way, none came, or capjail
/// stopped before the server was to run): it reads end-of-file and exits without running
/// anything; reaped by a thread (its namespaces' teardown is not waited for).
pub(crate) fn discard_early() {
    let taken = EARLY.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(e) = taken {
        reap_away(e);
    }
}

/// Close the socket (the process reads end-of-file and exits) and reap it on a thread.
fn reap_away(mut e: Early) {
    drop(e.sock);
    let _ = std::thread::Builder::new()
        .name("early-reap".into())
        .spawn(move || {
            let _ = e.child.wait();
        });
}

/// Sends the early setup process away when dropped, unless [`take_early_child`] took it:
/// held by the proxy's run from the hook that sent the plan to the point where the server
/// would be spawned, so a run that stops in between (the session record or the trust checks
/// failed) never lets the server run.
pub(crate) struct EarlyGuard;

impl Drop for EarlyGuard {
    fn drop(&mut self) {
        discard_early();
    }
}

/// What the early setup process reads: the plan, the server's environment (values are never
/// in the plan's serialization) and its working directory.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct EarlyMessage {
    pub(crate) plan: crate::sandbox::plan::SandboxPlan,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) cwd: Option<std::path::PathBuf>,
}

/// The server's working directory, named before the plan is prepared (`capjail run`), so
/// that [`send_early`] can send the plan from [`crate::sandbox::prepare`] already.
static SERVER_CWD: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

/// Name the server's working directory for [`send_early`] (the one its command will get).
pub(crate) fn set_server_cwd(cwd: &std::path::Path) {
    *SERVER_CWD.lock().unwrap_or_else(|p| p.into_inner()) = Some(cwd.to_path_buf());
}

/// Send the early setup process this plan as soon as it is final (from `prepare`, before
/// its answer is read and before capjail's own checks of the plan): the world is built and
/// the server's process confined while capjail finishes its start; nothing runs before
/// [`GO`], which only a start that got that far sends. Sent ahead of the answer: a process
/// whose namespaces failed has exited (the plan is never read), and one that made them gets
/// the plan capjail would send after the answer (the world it asks for is the one made).
/// Nothing when no working directory was named ([`set_server_cwd`]) or the early process
/// does not fit; [`setup_command`] then decides as before.
pub(crate) fn send_early(plan: &crate::sandbox::plan::SandboxPlan) {
    let cwd = SERVER_CWD.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(cwd) = cwd {
        let mut guard = EARLY.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_some_and(|e| fits(e, plan)) {
            send_locked(&mut guard, plan, Some(&cwd));
        }
    }
}

/// Was the early setup process started for exactly the namespaces `plan` asks for, with no
/// plan sent yet? (Whether it made them is its answer's to say: [`early_for`] asks that.)
fn fits(e: &Early, plan: &crate::sandbox::plan::SandboxPlan) -> bool {
    let w = &plan.world;
    e.sent.is_none() && w.enabled && w.mount && w.pid && w.ipc && w.uts && w.net && w.user == e.user
}

/// The early setup process's message for this plan (see [`EarlyMessage`]).
fn early_message(
    plan: &crate::sandbox::plan::SandboxPlan,
    cwd: Option<&std::path::Path>,
) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&EarlyMessage {
        plan: plan.clone(),
        env: plan.env.values.clone(),
        cwd: cwd.map(|d| d.to_path_buf()),
    })
}

/// Send the plan (framed: the length as u64, little-endian, then the JSON); on failure the
/// process is sent away.
fn send_locked(
    guard: &mut std::sync::MutexGuard<'_, Option<Early>>,
    plan: &crate::sandbox::plan::SandboxPlan,
    cwd: Option<&std::path::Path>,
) {
    let sent = early_message(plan, cwd)
        .map_err(std::io::Error::other)
        .and_then(|json| {
            let e = guard.as_mut().ok_or(std::io::ErrorKind::NotFound)?;
            let mut bytes = Vec::with_capacity(8 + json.len());
            bytes.extend_from_slice(&(json.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&json);
            (&e.sock).write_all(&bytes)?;
            e.sent = Some(json);
            Ok(())
        });
    if sent.is_err() {
        if let Some(e) = guard.take() {
            reap_away(e);
        }
    }
}

/// Choose the early setup process for this plan if it made exactly the namespaces the plan
/// asks for (else send it away). Sent now if [`send_early`] did not already; if it did, the
/// plan and working directory sent must be these (else it is sent away: `cmd` then starts
/// the usual setup process).
fn early_for(plan: &crate::sandbox::plan::SandboxPlan, cwd: Option<&std::path::Path>) {
    let mut guard = EARLY.lock().unwrap_or_else(|p| p.into_inner());
    let Some(e) = guard.as_ref() else { return };
    if let Some(sent) = &e.sent {
        let same = e.made && early_message(plan, cwd).is_ok_and(|m| &m == sent);
        if !same {
            if let Some(e) = guard.take() {
                reap_away(e);
            }
        }
        return;
    }
    if e.made && fits(e, plan) {
        send_locked(&mut guard, plan, cwd);
    } else if let Some(e) = guard.take() {
        reap_away(e);
    }
}

/// The server's process when it is the early setup process (chosen by [`setup_command`],
/// which sent it the plan): it is told to run the server ([`GO`]) now, at the point where the
/// command would be spawned. `None`: spawn
/// the command (which [`setup_command`] made the usual setup process).
pub(crate) fn take_early_child() -> Option<std::io::Result<std::process::Child>> {
    let mut guard = EARLY.lock().unwrap_or_else(|p| p.into_inner());
    if guard.as_ref().is_none_or(|e| e.sent.is_none()) {
        return None;
    }
    let mut e = guard.take()?;
    drop(guard);
    let sent = (&e.sock)
        .write_all(&[GO])
        .and_then(|()| e.sock.shutdown(std::net::Shutdown::Write));
    Some(match sent {
        Ok(()) => Ok(e.child),
        Err(err) => {
            let _ = e.child.kill();
            let _ = e.child.wait();
            Err(err)
        }
    })
}
