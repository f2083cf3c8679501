//! The pumps' scheduling: a short time slice for lone messages, and for the server pump, no
//! wake-up preemption in a burst of answers (issue 19).
//!
//! Linux 6.12+ (EEVDF) reads `sched_attr.sched_runtime` of a `SCHED_OTHER` thread as the slice
//! it asks for: a thread with a shorter slice gets an earlier virtual deadline, so when it is
//! woken (a line from the client or an answer from the server) it runs sooner, and it is not
//! preempted as often by the thread it woke just before it blocks again. Its share of the CPU
//! (its weight, the nice value) does not change. The pumps run a few microseconds per message
//! and then block: the slice they use is far below the default (0.7 ms x (1 + log2 CPUs)).
//! Measured with one request in flight, pinned to one CPU: p50 -2 µs with the audit log on and
//! off (`capjail-bench load roundtrip`, interleaved). Older kernels ignore the field.
//!
//! The same hint costs a burst of answers dearly: each line the server writes wakes the server
//! pump, which then preempts the server on its own CPU, judges a line or a few, and blocks
//! again (two context switches every few answers: 36,000 preemptions of the server in 200,000
//! pipelined calls, unpinned). So the server pump paces itself ([`ServerPace`]): once a wake-up
//! brings it more than one line it runs as `SCHED_BATCH` (same weight and nice value; a woken
//! batch thread does not preempt the one running, it runs when that one blocks, its slice ends,
//! or on another CPU that is idle), and after [`LONE_WAKES`] wake-ups of one line each it asks
//! for the short slice again. A lone answer is never held back by it: the server that wrote it
//! blocks reading its next request, and the pump runs then.
//!
//! Only a thread with the default policy is changed (a capjail started under `chrt` keeps its
//! policy), its nice value is kept, and a failure changes nothing.

/// The slice the pumps ask for (the kernel clamps it to 0.1-100 ms).
const PUMP_SLICE_NS: u64 = 500_000;

/// `struct sched_attr`, its first version (48 bytes).
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Ask for [`PUMP_SLICE_NS`] for the calling thread (best effort). `false`: the thread's
/// policy is not the default one, or the kernel refused: nothing was changed.
pub(crate) fn pump_thread() -> bool {
    let Some(attr) = own_attr() else {
        return false;
    };
    if attr.policy != libc::SCHED_OTHER as u32 {
        return false;
    }
    set_own(attr, libc::SCHED_OTHER, PUMP_SLICE_NS)
}

/// The calling thread's `sched_attr`.
fn own_attr() -> Option<SchedAttr> {
    attr_of(0)
}

/// The `sched_attr` of thread `tid` (0: the calling thread).
fn attr_of(tid: libc::pid_t) -> Option<SchedAttr> {
    let size = std::mem::size_of::<SchedAttr>() as u32;
    let mut attr = SchedAttr::default();
    // SAFETY: the kernel writes at most `size` bytes into `attr`.
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            tid,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    (got == 0).then_some(attr)
}

/// Set the calling thread's `policy` (`SCHED_OTHER` or `SCHED_BATCH`) with the nice value of
/// `attr` and the slice `runtime` (0: the default one). `false`: the kernel refused.
fn set_own(mut attr: SchedAttr, policy: libc::c_int, runtime: u64) -> bool {
    attr.size = std::mem::size_of::<SchedAttr>() as u32;
    attr.policy = policy as u32;
    attr.flags = 0;
    attr.priority = 0;
    attr.runtime = runtime;
    // SAFETY: pid 0 is the calling thread; `attr` is a valid sched_attr of `size` bytes.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if set != 0 {
        tracing::debug!("thread scheduling: {}", std::io::Error::last_os_error());
    }
    set == 0
}

/// The calling thread takes the scheduling of capjail's main thread: its policy and nice
/// value, and the default slice. A thread a pump starts (an approval, held while a pump
/// judged a line, and the approver command it runs) must not keep a pump's short slice or the
/// server pump's batch policy, which threads and processes inherit. Only the policies a pump
/// may have taken (`SCHED_OTHER`, `SCHED_BATCH`) are changed, only to another of them; a
/// refusal changes nothing (best effort).
pub(crate) fn as_main_thread() {
    // SAFETY: getpid has no preconditions; the main thread's id is the process id.
    let main = attr_of(unsafe { libc::getpid() });
    let (Some(main), Some(mine)) = (main, own_attr()) else {
        return;
    };
    let fair = |p: u32| p == libc::SCHED_OTHER as u32 || p == libc::SCHED_BATCH as u32;
    if !fair(main.policy) || !fair(mine.policy) {
        return;
    }
    if (mine.policy, mine.nice, mine.runtime) == (main.policy, main.nice, main.runtime) {
        return;
    }
    // The main thread's policy and nice value, the default slice.
    let policy = main.policy as libc::c_int;
    set_own(main, policy, 0);
}

/// Wake-ups of one line each after which the server pump asks for the short slice again.
const LONE_WAKES: u32 = 8;

/// Whether the server pump runs as `SCHED_BATCH`, after a wake-up that brought `lines`
/// (`batch`: it does now; `lone`: the wake-ups of one line each since the last with more).
/// Returns the new `(batch, lone)`.
fn pace(batch: bool, lone: u32, lines: usize) -> (bool, u32) {
    match (batch, lines) {
        (_, 0) => (batch, lone),
        (false, 1) => (false, 0),
        (false, _) => (true, 0),
        (true, 1) if lone + 1 >= LONE_WAKES => (false, 0),
        (true, 1) => (true, lone + 1),
        (true, _) => (true, 0),
    }
}

/// The server pump's scheduling, kept by its thread (see the module's documentation).
pub(crate) struct ServerPace {
    /// The thread had the default policy and took the short slice: it may change.
    paced: bool,
    batch: bool,
    lone: u32,
}

impl ServerPace {
    /// The calling thread (the server pump) takes the short slice.
    pub(crate) fn start() -> ServerPace {
        ServerPace {
            paced: pump_thread(),
            batch: false,
            lone: 0,
        }
    }

    /// The pump judged `lines` lines since it last found none buffered (one wake-up's).
    pub(crate) fn woke(&mut self, lines: usize) {
        if !self.paced {
            return;
        }
        let (batch, lone) = pace(self.batch, self.lone, lines);
        self.lone = lone;
        if batch != self.batch {
            let policy = if batch {
                libc::SCHED_BATCH
            } else {
                libc::SCHED_OTHER
            };
            // A refusal leaves the thread as it was; it is asked again at the next change.
            if own_attr().is_some_and(|a| set_own(a, policy, PUMP_SLICE_NS)) {
                self.batch = batch;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attr_is_the_kernels_first_version() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 48);
    }

    /// The hint keeps the thread's policy and nice value.
    #[test]
    fn a_pump_thread_keeps_its_policy_and_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: the calling thread.
            let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert!(pump_thread());
            let after = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            assert_eq!(before, after);
            // SAFETY: the calling thread.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER);
        })
        .join()
        .unwrap();
    }

    /// Batch from the first wake-up that brings more than one line; the short slice again
    /// only after [`LONE_WAKES`] wake-ups of one line in a row; a wake-up that brought nothing
    /// changes nothing.
    #[test]
    fn the_server_pump_batches_in_bursts_only() {
        assert_eq!(pace(false, 0, 1), (false, 0));
        assert_eq!(pace(false, 0, 0), (false, 0));
        assert_eq!(pace(false, 0, 2), (true, 0));
        assert_eq!(pace(false, 0, 300), (true, 0));
        let (mut batch, mut lone) = (true, 0);
        for n in 1..LONE_WAKES {
            (batch, lone) = pace(batch, lone, 1);
            assert_eq!((batch, lone), (true, n));
            assert_eq!(pace(batch, lone, 0), (true, n));
        }
        assert_eq!(pace(batch, lone, 1), (false, 0));
        // A burst in between starts the count again.
        assert_eq!(pace(true, LONE_WAKES - 1, 5), (true, 0));
    }

    /// On the calling thread: a paced pump goes to batch at a burst and back to the default
    /// policy after lone answers, its nice value kept throughout.
    fn burst_and_back() {
        // SAFETY (both): the calling thread.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let before = nice();
        let mut p = ServerPace::start();
        assert_eq!(policy(), libc::SCHED_OTHER);
        p.woke(3);
        assert_eq!(policy(), libc::SCHED_BATCH);
        assert_eq!(nice(), before);
        for _ in 0..LONE_WAKES {
            p.woke(1);
        }
        assert_eq!(policy(), libc::SCHED_OTHER);
        assert_eq!(nice(), before);
    }

    /// The thread's policy follows: batch in a burst, the default policy (nice value kept)
    /// after lone answers; a thread started with another policy is never changed.
    #[test]
    fn the_server_pace_changes_only_the_default_policy() {
        std::thread::spawn(burst_and_back).join().unwrap();
        std::thread::spawn(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: the calling thread; a valid sched_param.
            assert_eq!(
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) },
                0
            );
            let mut p = ServerPace::start();
            p.woke(3);
            // SAFETY: the calling thread.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }

    /// Without privileges too: a thread with `nobody`'s credentials (dropped for that thread
    /// alone by the raw syscall; glibc's `setresuid` would change every thread) goes to batch
    /// and back, its nice value kept.
    #[test]
    fn an_unprivileged_server_pump_paces_itself() {
        std::thread::spawn(|| {
            // SAFETY: the calling thread's credentials only (the raw syscall, not glibc's).
            if unsafe { libc::geteuid() } == 0 {
                let nobody = 65534;
                // SAFETY: setresuid on the calling thread; no memory is involved.
                let r = unsafe { libc::syscall(libc::SYS_setresuid, nobody, nobody, nobody) };
                assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
            }
            // SAFETY: the calling thread.
            assert_ne!(unsafe { libc::geteuid() }, 0);
            burst_and_back();
        })
        .join()
        .unwrap();
    }

    /// A thread started by a paced pump (as an approval is) takes the main thread's
    /// scheduling back: not the batch policy, not the short slice.
    #[test]
    fn a_thread_a_pump_starts_runs_as_the_main_thread() {
        // SAFETY: getpid has no preconditions.
        let main = attr_of(unsafe { libc::getpid() }).unwrap();
        std::thread::spawn(move || {
            let mut p = ServerPace::start();
            p.woke(2);
            // SAFETY: the calling thread.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_BATCH);
            std::thread::spawn(move || {
                let inherited = own_attr().unwrap();
                assert_eq!(inherited.policy, libc::SCHED_BATCH as u32);
                assert_eq!(inherited.runtime, PUMP_SLICE_NS);
                as_main_thread();
                let now = own_attr().unwrap();
                assert_eq!(
                    (now.policy, now.nice, now.runtime),
                    (main.policy, main.nice, main.runtime)
                );
            })
            .join()
            .unwrap();
        })
        .join()
        .unwrap();
    }
}
