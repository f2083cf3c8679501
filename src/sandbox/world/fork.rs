//! The early setup process as a fork of capjail rather than an execution of it (startup: an
//! execution costs this process's whole start again, ~1 ms, on the world's critical path).
//!
//! Only a single-threaded capjail forks (anything else may hold a lock the child would need);
//! the child then takes the place of a freshly executed setup process: every descriptor but
//! its stdio and its socket closed, SIGPIPE ignored as in every capjail process, and capjail's
//! argument and environment strings (what `/proc/PID/cmdline` and `/proc/PID/environ` show)
//! zeroed. Its memory is otherwise a copy of capjail's, which is why the setup process makes
//! itself non-dumpable once its namespaces exist: nothing without `CAP_SYS_PTRACE` in the
//! initial user namespace reads it (`/proc/1/mem`, `/proc/1/environ`, `process_vm_readv`).

/// The name the setup process and the sandbox's PID 1 go by (`comm`, and `cmdline`).
pub(crate) const NAME: &[u8] = b"capjail-sandbox";

/// The numeric fields of `/proc/<who>/stat` after the command name (read them with
/// [`field`]; `who` is `self` or a pid).
fn stat_fields(who: &str) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    // Field 3 (state) is a letter; the rest are numbers.
    Some(
        rest.split_ascii_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// The value of a `stat` field `n` (1-based, as proc(5) numbers them).
fn field(fields: &[u64], n: usize) -> Option<u64> {
    fields.get(n.checked_sub(3)?).copied()
}

/// Is this process running one thread (`num_threads`, field 20)?
pub(crate) fn single_threaded() -> bool {
    stat_fields("self").and_then(|f| field(&f, 20)) == Some(1)
}

/// Zero the argument and environment strings the kernel shows for this process and write
/// [`NAME`] as its command line and `comm`. Call only in a forked child that no longer reads
/// them (`environ` was replaced by the command's environment; `std::env::args` now yields
/// the new name).
pub(crate) fn scrub_strings() {
    if let Some(f) = stat_fields("self") {
        let (Some(arg_start), Some(arg_end), Some(env_start), Some(env_end)) =
            (field(&f, 48), field(&f, 49), field(&f, 50), field(&f, 51))
        else {
            return;
        };
        for (start, end) in [(arg_start, arg_end), (env_start, env_end)] {
            if start != 0 && end > start {
                // SAFETY: [start, end) is this process's own argument or environment block
                // on its initial stack (the kernel's mm->arg_start..arg_end and
                // env_start..env_end), writable, and nothing in this child reads it any more.
                unsafe { std::ptr::write_bytes(start as *mut u8, 0, (end - start) as usize) };
            }
        }
        if arg_end > arg_start && (arg_end - arg_start) as usize > NAME.len() {
            // SAFETY: as above; NAME fits with its terminating NUL.
            unsafe {
                std::ptr::copy_nonoverlapping(NAME.as_ptr(), arg_start as *mut u8, NAME.len())
            };
        }
    }
    let mut comm = [0u8; 16];
    comm[..NAME.len()].copy_from_slice(NAME);
    // SAFETY: PR_SET_NAME reads 16 bytes, NUL-terminated.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
}

/// Close every descriptor >= 3 but `keep` (stdio is never closed, whatever `keep` is).
pub(crate) fn close_all_but(keep: i32) {
    let keep = u32::try_from(keep).unwrap_or(0);
    // SAFETY: close_range on this process's own descriptor table.
    unsafe {
        if keep < 3 {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            return;
        }
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
    }
}

/// SIGPIPE ignored, as the Rust runtime sets it in every capjail process (std's child reset
/// it for an exec that does not come).
pub(crate) fn ignore_sigpipe() {
    // SAFETY: signal with a constant disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Move to another CPU than the one this process runs on, keeping its affinity. The forked
/// setup process and capjail have work to do side by side (the namespaces, the plan), but a
/// fork starts on its parent's CPU (a fork, unlike an exec, is not placed by the scheduler's
/// balancing on every system) and a woken process may be put beside its waker: each of them
/// moves off the other's CPU ([`shares_cpu_with`]). One `sched_setaffinity` without this CPU
/// (the kernel moves the process at once), one back to the mask it had: the sandbox's
/// processes inherit capjail's affinity unchanged. Nothing when only this CPU is allowed or
/// a call fails.
pub(crate) fn leave_this_cpu() {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let me = Pid::from_raw(0);
    let Ok(mask) = sched_getaffinity(me) else {
        return;
    };
    // SAFETY: sched_getcpu has no preconditions.
    let Ok(here) = usize::try_from(unsafe { libc::sched_getcpu() }) else {
        return;
    };
    let mut elsewhere = CpuSet::new();
    let mut any = false;
    for cpu in (0..CpuSet::count()).filter(|&c| c != here) {
        if mask.is_set(cpu).unwrap_or(false) && elsewhere.set(cpu).is_ok() {
            any = true;
        }
    }
    if any && sched_setaffinity(me, &elsewhere).is_ok() {
        let _ = sched_setaffinity(me, &mask);
    }
}

/// Did process `pid` last run on the CPU this process runs on (`processor`, field 39 of its
/// `stat`)?
pub(crate) fn shares_cpu_with(pid: u32) -> bool {
    let theirs = stat_fields(&pid.to_string()).and_then(|f| field(&f, 39));
    // SAFETY: sched_getcpu has no preconditions.
    let mine = u64::try_from(unsafe { libc::sched_getcpu() }).ok();
    theirs.is_some() && theirs == mine
}

/// Make this process non-dumpable (its memory and /proc files need CAP_SYS_PTRACE).
pub(crate) fn not_dumpable() {
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fork a child that runs `f` and exits with its result (0: true); the child's pid and a
    /// pipe end that reads end-of-file when the child exits are not needed: wait for it.
    /// The child uses no lock std's other threads might hold (no stdio).
    fn in_child(f: impl FnOnce() -> bool) -> bool {
        // SAFETY: fork; the child runs `f` and `_exit`s (glibc's malloc is usable after fork).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let ok = f();
            // SAFETY: _exit.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waitpid on our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }

    /// A child that runs `f`, then stops until killed: (pid, the pipe end it wrote a byte to).
    fn parked_child(f: impl FnOnce()) -> libc::pid_t {
        let mut fds = [0; 2];
        // SAFETY: pipe into a local array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: fork; the child runs `f`, says so and pauses until it is killed.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            f();
            // SAFETY: write, pause, _exit.
            unsafe {
                libc::write(fds[1], [1u8].as_ptr().cast(), 1);
                loop {
                    libc::pause();
                }
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: read from our pipe; close both ends.
        unsafe {
            libc::close(fds[1]);
            libc::read(fds[0], b.as_mut_ptr().cast(), 1);
            libc::close(fds[0]);
        }
        pid
    }

    fn end(pid: libc::pid_t) {
        // SAFETY: kill and reap our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }

    #[test]
    fn leaving_the_cpu_keeps_the_affinity() {
        use nix::sched::sched_getaffinity;
        let me = nix::unistd::Pid::from_raw(0);
        let before = sched_getaffinity(me).unwrap();
        let allowed = (0..nix::sched::CpuSet::count())
            .filter(|&c| before.is_set(c).unwrap_or(false))
            .count();
        // SAFETY: sched_getcpu and gettid have no preconditions.
        let (cpu, tid) = unsafe { (libc::sched_getcpu(), libc::gettid()) };
        assert!(shares_cpu_with(tid as u32), "a thread shares its own CPU");
        leave_this_cpu();
        // SAFETY: as above.
        let now = unsafe { libc::sched_getcpu() };
        let after = sched_getaffinity(me).unwrap();
        assert!(
            (0..nix::sched::CpuSet::count())
                .all(|c| before.is_set(c).unwrap_or(false) == after.is_set(c).unwrap_or(false)),
            "the affinity changed"
        );
        if allowed > 1 {
            assert_ne!(now, cpu, "still on CPU {cpu}");
        } else {
            assert_eq!(now, cpu);
        }
    }

    #[test]
    fn only_a_single_threaded_process_forks() {
        // The test harness runs this test on a thread of its own: two threads at least.
        assert!(!single_threaded());
        assert!(in_child(single_threaded), "a forked child has one thread");
    }

    #[test]
    fn the_kernel_shows_the_name_and_nothing_of_the_arguments_or_environment() {
        let pid = parked_child(scrub_strings);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        end(pid);
        assert!(cmdline.starts_with(b"capjail-sandbox\0"), "{cmdline:?}");
        assert!(
            cmdline[NAME.len()..].iter().all(|&b| b == 0),
            "an argument is left: {:?}",
            String::from_utf8_lossy(&cmdline)
        );
        assert!(
            !environ.is_empty(),
            "the environment block is gone, not zeroed"
        );
        assert!(
            environ.iter().all(|&b| b == 0),
            "a variable is left: {:?}",
            String::from_utf8_lossy(&environ)
        );
        assert_eq!(comm.trim_end(), "capjail-sandbox");
        // Control: this process shows its arguments and environment.
        let own = std::fs::read("/proc/self/environ").unwrap();
        assert!(own.iter().any(|&b| b != 0));
    }

    #[test]
    fn every_descriptor_but_the_kept_one_closes() {
        let open = |fd: i32| {
            // SAFETY: fcntl query on a descriptor number.
            unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
        };
        let files: Vec<std::fs::File> = (0..4)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        let fds: Vec<i32> = files.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        assert!(fds.iter().all(|&fd| open(fd)));
        let keep = fds[1];
        assert!(in_child(|| {
            close_all_but(keep);
            open(0)
                && open(1)
                && open(2)
                && open(keep)
                && fds.iter().all(|&fd| fd == keep || !open(fd))
        }));
        // A descriptor to keep below 3 (capjail started with stdio closed) closes no stdio.
        assert!(in_child(|| {
            close_all_but(1);
            open(0) && open(1) && open(2) && fds.iter().all(|&fd| !open(fd))
        }));
    }

    /// A non-dumpable process's environment and memory are out of reach of another process of
    /// the same user without CAP_SYS_PTRACE; a dumpable one's are not (the control).
    #[test]
    fn a_non_dumpable_process_is_out_of_reach_of_its_own_user() {
        // SAFETY: geteuid.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root (to become another user in the children)");
            return;
        }
        const NOBODY: libc::uid_t = 65534;
        let become_nobody = || {
            // SAFETY: raw setresgid/setresuid in a forked child (its own credentials only).
            unsafe {
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>());
                libc::syscall(libc::SYS_setresgid, NOBODY, NOBODY, NOBODY);
                libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, NOBODY) == 0
            }
        };
        let readable = |pid: libc::pid_t, what: &str| {
            let path = std::ffi::CString::new(format!("/proc/{pid}/{what}")).unwrap();
            in_child(|| {
                if !become_nobody() {
                    return false;
                }
                // SAFETY: open and close of a path.
                let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                if fd >= 0 {
                    // SAFETY: close our descriptor.
                    unsafe { libc::close(fd) };
                }
                fd >= 0
            })
        };
        let dumpable = parked_child(|| {
            become_nobody();
            // A change of credentials made it non-dumpable; the control is dumpable again.
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
        });
        let hidden = parked_child(|| {
            become_nobody();
            // SAFETY: prctl with constant arguments (dumpable, as the control, until now).
            unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
            not_dumpable();
        });
        let control = (readable(dumpable, "environ"), readable(dumpable, "mem"));
        let guarded = (readable(hidden, "environ"), readable(hidden, "mem"));
        end(dumpable);
        end(hidden);
        assert_eq!(control, (true, true), "the control is unreadable");
        assert_eq!(guarded, (false, false));
    }
}
