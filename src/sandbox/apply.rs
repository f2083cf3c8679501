//! Applying a plan to a `std::process::Command`.
//!
//! When the plan has a world (namespaces, see [`super::world`]) and this machine can make
//! it, [`apply_to`] replaces the command by capjail's setup process, which applies the
//! layers below itself (single-threaded, after building the world). Otherwise (the
//! fallback) the layers are applied in this process's `pre_exec`, as follows.
//!
//! The parent is a multi-threaded tokio program, so everything that allocates, opens files or
//! may fail with a message happens in [`prepare`], BEFORE fork: Landlock paths are opened
//! (`O_PATH|O_CLOEXEC`) and the ruleset is dry-run, the seccomp program is assembled, the
//! environment is computed, capabilities are inspected. [`apply_to`] sets the environment
//! (`env_clear` + the allowlisted variables) and installs a `pre_exec` closure that makes only
//! raw, async-signal-safe syscalls on that prepared memory.
//!
//! Order in the child, and why:
//! 1. `setsid()` — own session and process group, no controlling terminal: capjail (or the
//!    proxy) can kill the whole group with `kill(-pid, SIGKILL)`, and /dev/tty is gone.
//!    (Do not also call `Command::process_group`: a group leader cannot setsid.)
//! 2. `PR_SET_PDEATHSIG(SIGKILL)`, then `getppid()` compared with the pid recorded before
//!    fork: if capjail already died, the signal was missed, so refuse to continue.
//!    PDEATHSIG fires when the parent THREAD that forked exits: spawn from a thread that
//!    lives as long as capjail (the main thread, or a tokio worker, never a
//!    `spawn_blocking` thread, which the runtime retires after 10 s idle). When capjail's
//!    run put a watcher in between ([`super::watcher`], forked by an earlier `pre_exec`), the
//!    parent is the watcher (single-threaded), which itself ends everything if capjail dies.
//! 3. rlimits (RLIMIT_CORE=0 always; the policy's), while we still may.
//! 4. `PR_SET_NO_NEW_PRIVS` — required by unprivileged Landlock and seccomp; exec can no
//!    longer grant privileges (setuid bits, file capabilities).
//! 5. drop every capability (bounding set, securebits, ambient, capset 0).
//! 6. Landlock: create ruleset, add rules incl. the child's own `/proc/self`, restrict_self.
//! 7. `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)` — every inherited fd >= 3 closes at exec.
//!    Not a plain close_range: that would close std's CLOEXEC exec-error pipe, and std would
//!    no longer report exec failures.
//! 8. seccomp LAST: the filter need not allow any of the setup syscalls above and may be as
//!    strict as it likes, as long as it lets execve through (it does).

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;

use super::enforcement::{Enforcement, KernelFeatures, Level, Overall};
use super::landlock::PreparedLandlock;
use super::plan::{RlimitKind, SandboxPlan};
use super::privileges::{self, PreparedPrivileges};
use super::seccomp;
use super::world::launch::{self, PlanFile};
use super::world::WorldPlan;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("kernel confinement required but not fully enforced here: {0}")]
    NotEnforced(String),
    #[error("preparing the sandbox: {0}")]
    Prepare(String),
}

/// What the child needs, owned by an `Arc` shared with every `pre_exec` closure.
#[derive(Debug)]
struct ChildSide {
    landlock: Option<PreparedLandlock>,
    seccomp: Option<Vec<libc::sock_filter>>,
    privileges: PreparedPrivileges,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlim_t)>,
}

/// A plan made ready for spawning (possibly several times).
#[derive(Debug, Clone)]
pub struct PreparedSandbox {
    pub(crate) plan: SandboxPlan,
    pub(crate) enforcement: Enforcement,
    child: Arc<ChildSide>,
    /// `Some`: the server gets its own world (namespaces); the setup process reads this plan.
    world_file: Option<Arc<PlanFile>>,
}

/// Detect the kernel's features and prepare `plan`. With `require`, anything less than full
/// enforcement is an error (nothing has been spawned yet).
pub fn prepare(plan: SandboxPlan, require: bool) -> Result<PreparedSandbox, SandboxError> {
    prepare_with(plan, require, &KernelFeatures::detect())
}

pub fn prepare_with(
    mut plan: SandboxPlan,
    require: bool,
    features: &KernelFeatures,
) -> Result<PreparedSandbox, SandboxError> {
    let require = require || plan.require;
    let mut world_file = None;
    if plan.world.enabled && launch::setup_executable().is_none() {
        // Library use (a program other than capjail applying a plan): the layers below only.
        plan.set_world(WorldPlan::disabled(
            "no namespaces: this program did not name a setup executable (world::launch::set_setup_executable)",
        ));
    }
    if plan.world.enabled {
        // The plan is final: a setup process started early builds the world from now on
        // (its namespaces' answer is read next), while the checks below run; it runs the
        // server only when capjail says so, after them, and an error below sends it away.
        launch::send_early(&plan);
        match launch::namespaces_available(&plan.world) {
            Ok(()) => {
                let json = serde_json::to_string(&plan)
                    .map_err(|e| SandboxError::Prepare(format!("plan: {e}")))?;
                let f = PlanFile::new(&json)
                    .map_err(|e| SandboxError::Prepare(format!("plan file: {e}")))?;
                world_file = Some(Arc::new(f));
            }
            Err(why) => {
                let missing = plan.world.namespaces();
                if require {
                    return Err(SandboxError::NotEnforced(format!(
                        "the server's world: {why} (missing namespaces: {missing})"
                    )));
                }
                tracing::warn!("the server's world is missing: {why}; namespaces {missing} NOT in force; Landlock + seccomp only, in the host's world");
                plan.set_world(WorldPlan::disabled(format!(
                    "fallback: {why}; missing namespaces: {missing} (Landlock + seccomp only, in the host's world)"
                )));
            }
        }
    }
    let mut enforcement = Enforcement::compute(&plan, features);
    if require && enforcement.overall() != Overall::Full {
        launch::discard_early();
        return Err(SandboxError::NotEnforced(enforcement.gaps().join("; ")));
    }
    let landlock = match features.landlock {
        Ok(abi) => {
            let l = PreparedLandlock::prepare(&plan, abi).map_err(|e| {
                launch::discard_early();
                SandboxError::Prepare(e)
            })?;
            enforcement.skipped_rules = l
                .skipped
                .iter()
                .map(|(p, r)| format!("{}: {r}", p.display()))
                .collect();
            Some(l).filter(|l| l.handles_anything())
        }
        Err(_) => None,
    };
    // With a world, the setup process compiles and installs the filter in the server itself.
    let seccomp = match (&enforcement.seccomp, features.seccomp.is_ok()) {
        _ if world_file.is_some() => None,
        (Level::Full, true) => Some(seccomp::compile_for(&plan)),
        _ => None,
    };
    let rlimits = plan
        .rlimits
        .iter()
        .map(|r| {
            let res = match r.kind {
                RlimitKind::Core => libc::RLIMIT_CORE,
                RlimitKind::Nofile => libc::RLIMIT_NOFILE,
                RlimitKind::Nproc => libc::RLIMIT_NPROC,
                RlimitKind::As => libc::RLIMIT_AS,
                RlimitKind::Fsize => libc::RLIMIT_FSIZE,
                RlimitKind::Cpu => libc::RLIMIT_CPU,
            };
            (res, r.value as libc::rlim_t)
        })
        .collect();
    let child = ChildSide {
        landlock,
        seccomp,
        privileges: PreparedPrivileges::detect(),
        rlimits,
    };
    // The confinement line (with the world) is logged once, by the caller (`capjail run`).
    Ok(PreparedSandbox {
        plan,
        enforcement,
        child: Arc::new(child),
        world_file,
    })
}

/// Set the server's environment and install the confinement to run between fork and exec.
pub fn apply_to(prepared: &PreparedSandbox, cmd: &mut Command) {
    if let Some(f) = &prepared.world_file {
        // The server's own world: capjail re-executes itself as the setup process, which
        // builds the namespaces and applies every layer below in the server (world::setup).
        launch::setup_command(f, &prepared.plan, cmd);
        return;
    }
    cmd.env_clear();
    cmd.envs(prepared.plan.env.values.iter().map(|(k, v)| (k, v)));
    let child = Arc::clone(&prepared.child);
    let parent_pid = std::process::id() as libc::pid_t;
    // SAFETY: the closure only makes raw syscalls on memory prepared before fork (no
    // allocation, no locks), as pre_exec requires.
    unsafe {
        cmd.pre_exec(move || {
            confine_child(&child, parent_pid).map_err(std::io::Error::from_raw_os_error)
        });
    }
}

fn errno() -> i32 {
    // SAFETY: errno of this thread.
    unsafe { *libc::__errno_location() }
}

/// Runs in the child. Async-signal-safe. Returns an errno on failure (std reports it as the
/// spawn error).
fn confine_child(c: &ChildSide, parent_pid: libc::pid_t) -> Result<(), i32> {
    // SAFETY (whole function): raw syscalls with stack memory or memory owned by `c`.
    unsafe {
        if libc::setsid() < 0 {
            return Err(errno());
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        ) != 0
        {
            return Err(errno());
        }
        // The parent is capjail, or the watcher capjail put in between (`super::watcher`).
        if libc::getppid() != super::watcher::server_parent(parent_pid) {
            return Err(libc::ESRCH); // the parent died between fork and here
        }
        for &(res, value) in &c.rlimits {
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(res, &mut cur) != 0 {
                return Err(errno());
            }
            // Only ever lower: never raise a limit the parent was given.
            let lim = libc::rlimit {
                rlim_cur: value.min(cur.rlim_max),
                rlim_max: value.min(cur.rlim_max),
            };
            if libc::setrlimit(res, &lim) != 0 {
                return Err(errno());
            }
        }
    }
    privileges::set_no_new_privs()?;
    privileges::drop_all(&c.privileges)?;
    if let Some(l) = &c.landlock {
        l.restrict_child()?;
    }
    // SAFETY: close_range with the CLOEXEC flag only marks descriptors.
    if unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    } != 0
    {
        return Err(errno());
    }
    if let Some(prog) = &c.seccomp {
        seccomp::install(prog)?;
    }
    Ok(())
}
