//! The audit log off the proxy's hot path: a bounded queue in front of one writer thread.
//!
//! The transport hands over the owned [`Record`] a stage built (the request it just decided,
//! moved or copied) BEFORE it forwards the request or returns the error. A decision is encoded
//! by `push` itself, all but its chain fields (`event::Precoded`, into the queue's arena), so
//! the request's params are freed at once by the thread that parsed them; the writer thread
//! chains, hashes and appends records in batches (one lock, one `write(2)`, one optional fsync
//! per batch). Guarantees:
//! - nothing is dropped: when [`QUEUE_RECORDS`] records are waiting, [`AuditQueue::push`]
//!   blocks until the writer catches up (back-pressure on the stream, never loss);
//! - a record reaches the file within [`LINGER`] (and the writer's [`TIMER_SLACK`]) of being
//!   queued, or sooner when the queue fills or the session ends ([`AuditQueue::close`] writes
//!   everything before it returns);
//! - a proxy thread waiting for a record ([`Watermark::wait`]) while the writer thread is idle
//!   writes the waiting batch itself, with the log it takes from the queue: a lone request's
//!   record costs no hand-over to another thread and back (two context switches);
//! - the log keeps its file's lock between batches (`writer`: a batch is then one `write(2)`);
//!   it is given back (and the head file written) within [`LINGER`] (+ [`TIMER_SLACK`]) of its
//!   taking: by the client pump after it forwarded, when due within [`GRACE`]
//!   (`Watermark::settle`), else by the writer thread, waking by itself at that time, so
//!   records queued meanwhile need no wake-up either; a condition variable is signalled only
//!   when a thread waits on it;
//! - the client pump wakes nobody on the round trip: a wake-up of the writer thread its record
//!   or its inline write calls for is made once it has forwarded (`push_quiet`, `wait_quiet`,
//!   `settle`), and none under steady traffic (the writer thread then sleeps with a time-out);
//! - no file system call is made under the queue's mutex (writes and lock releases take the log
//!   out of it): a thread preempted in one never holds up `push` or a waiter's inline write;
//! - a failed write is fatal: every later `push` (and `close`) returns the error, so the
//!   proxy stops forwarding and exits with the audit status. At most the records queued at
//!   that moment (bounded by [`QUEUE_RECORDS`]) were decided but not written, and the error
//!   says how many.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::event::{Clock, Precoded, SpecCache};
use super::record::{DecisionRecord, Record};
use super::redact::Redactor;
use super::writer::{AuditLog, Batched};
use super::AuditError;

/// Records that may wait for the writer before `push` blocks.
pub(crate) const QUEUE_RECORDS: usize = 4096;
/// Bytes of requests (as the client sent them) that may wait before `push` blocks; one
/// record is always admitted, however large.
pub(crate) const QUEUE_BYTES: usize = 8 << 20;
/// How long the writer lets records gather before it writes them (one batch).
pub(crate) const LINGER: Duration = Duration::from_millis(2);
/// How late the writer thread's own timers may fire (`PR_SET_TIMERSLACK`; the default is 50
/// µs): the kernel then runs them on an interrupt that comes anyway (the scheduler's tick: 4
/// ms at `HZ=250`, 1 ms at 1000) rather than programming one of their own. A timer interrupt
/// costs the thread it lands on tens of µs in a VM (a VM exit; measured here: 40-50 µs), and
/// under one request in flight the writer's timer (giving a kept lock back) fired every
/// [`LINGER`]: with the default slack, 2.7% of round trips took 3-4x the median, against 0.8%
/// with the log off (the tick alone). Nothing a request waits for uses these timers; a kept
/// lock and a lingering batch wait at most this much longer.
pub(crate) const TIMER_SLACK: Duration = Duration::from_millis(4);
/// How early before the writer thread's time the client pump gives a kept lock back itself,
/// after forwarding ([`Watermark::settle`]): under steady traffic the pump does it, off the
/// round trip, and never finds the log taken by the writer thread when it needs it.
const GRACE: Duration = Duration::from_micros(500);

/// A record waiting in the queue: a decision is encoded when it is pushed ([`Precoded`]),
/// its bytes in `State::arena`.
enum Queued {
    /// Boxed: the other kinds are rare, and a decision's entry stays small.
    Record(Box<Record>),
    /// `arena[start..end]`.
    Decision {
        start: usize,
        end: usize,
        pre: Precoded,
    },
}

impl Queued {
    fn batched<'a>(&'a self, arena: &'a [u8]) -> Batched<'a> {
        match self {
            Queued::Record(r) => Batched::Record(r),
            Queued::Decision { start, end, pre } => Batched::Pre(&arena[*start..*end], *pre),
        }
    }
}

/// What encoding decisions at `push` needs (behind its own mutex: no encoding under the
/// queue's).
struct Precoder {
    session: String,
    redactor: Redactor,
    clock: Clock,
    specs: SpecCache,
    /// The record being encoded (reused).
    scratch: Vec<u8>,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Queued>,
    /// The emptied queue of the last batch, kept for the next (no allocation per batch).
    spare: VecDeque<Queued>,
    /// The encoded decisions of `waiting`, one after the other.
    arena: Vec<u8>,
    /// The emptied arena of the last batch, kept for the next.
    spare_arena: Vec<u8>,
    /// The sum of the weights of the waiting records.
    bytes: usize,
    /// The writer should not linger (the queue is full, or someone waits for a flush).
    hurry: bool,
    /// The writer thread is letting a batch gather: it wakes by itself within [`LINGER`], so
    /// a record queued now needs no wake-up (a lone request's waiter writes it inline).
    lingering: bool,
    closing: bool,
    /// Records handed over / written so far.
    pushed: u64,
    written: u64,
    /// The first write error; fatal.
    failed: Option<String>,
    /// The log, when nobody is writing (the writer thread or a waiter takes it to write).
    log: Option<AuditLog>,
    /// The log keeps its file's lock between batches (see `writer`) until then; the writer
    /// thread gives it back at that time.
    release_at: Option<Instant>,
    /// Threads waiting on `done` (it is signalled only when someone waits: a `notify` is a
    /// system call even with no waiter).
    done_waiters: usize,
    /// A wake-up of the writer thread put off by the client pump until it has forwarded what
    /// it holds ([`AuditQueue::push_quiet`], [`Watermark::wait_quiet`], [`Watermark::settle`]).
    wake_owed: bool,
    /// The client pump gave the kept lock back ([`Watermark::settle`]): it is busy and likely
    /// to take it again soon, so the writer thread next sleeps with a time-out (`lingering`)
    /// instead of waiting to be woken when it does.
    pump_released: bool,
}

/// Wait on `done` (counted, see `State::done_waiters`).
fn wait_done<'a>(shared: &'a Shared, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    st.done_waiters += 1;
    let mut st = shared.done.wait(st).unwrap_or_else(|p| p.into_inner());
    st.done_waiters -= 1;
    st
}

/// Give back the file lock the log kept after its last batch (writing the head file), with
/// the log taken out of `st`: the system calls are made without the queue's mutex, so a
/// thread preempted in them never blocks `push`. Returns the lock again, the log back.
fn release_lock<'a>(shared: &'a Shared, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    st.release_at = None;
    let Some(mut log) = st.log.take() else {
        return st;
    };
    drop(st);
    let released = log.release_lock();
    let mut st = shared.lock();
    st.log = Some(log);
    if let Err(e) = released {
        tracing::error!("audit log: {e}");
        st.failed.get_or_insert(e.to_string());
    }
    if st.done_waiters > 0 {
        shared.done.notify_all();
    }
    if !st.waiting.is_empty() || st.closing {
        // Queued meanwhile: a wake-up then found the log out.
        shared.work.notify_one();
    }
    st
}

/// Write the waiting records with the log taken from `st` (which must hold it); returns the
/// lock again, with the log back and the outcome counted. The records are dropped outside
/// the lock.
fn write_waiting<'a>(
    shared: &'a Shared,
    mut st: MutexGuard<'a, State>,
    quiet: bool,
) -> MutexGuard<'a, State> {
    let mut log = st
        .log
        .take()
        .expect("the log is in the queue when nobody writes");
    st.hurry = false;
    // The waiting records, swapped out whole for the empty spare queue.
    let spare = std::mem::take(&mut st.spare);
    let mut batch = std::mem::replace(&mut st.waiting, spare);
    let spare_arena = std::mem::take(&mut st.spare_arena);
    let mut arena = std::mem::replace(&mut st.arena, spare_arena);
    st.bytes = 0;
    drop(st);
    let n = batch.len() as u64;
    let result = log.write_batch(batch.iter().map(|q| q.batched(&arena)));
    let kept = log.lock_kept_since();
    batch.clear();
    arena.clear();
    let mut st = shared.lock();
    st.log = Some(log);
    st.spare = batch;
    st.spare_arena = arena;
    match result {
        Ok(()) => st.written += n,
        Err(e) => {
            tracing::error!("audit log: {e}");
            st.failed = Some(e.to_string());
            st.waiting.clear();
            st.arena.clear();
        }
    }
    st.release_at = kept.map(|t| t + LINGER);
    if st.done_waiters > 0 {
        shared.done.notify_all();
    }
    if !st.waiting.is_empty() || st.closing {
        // Records queued meanwhile: the writer thread's turn. Or it waits to close.
        shared.work.notify_one();
    } else if st.release_at.is_some() && !st.lingering {
        // A lock kept: the writer thread gives it back (it is not already waking by itself).
        // The client pump tells it once it has forwarded (`Watermark::settle`).
        if quiet {
            st.wake_owed = true;
        } else {
            shared.work.notify_one();
        }
    }
    st
}

struct Shared {
    state: Mutex<State>,
    /// Taken by `push` only (before `state`, never while waiting on `state`'s condvars).
    pre: Mutex<Precoder>,
    /// Signalled when there is work for the writer.
    work: Condvar,
    /// Signalled when the writer wrote a batch (room in the queue, flushes done).
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the queue inconsistent (plain fields).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread and its queue.
pub struct AuditQueue {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl AuditQueue {
    /// Move `log` to a new writer thread.
    pub fn start(log: AuditLog) -> std::io::Result<AuditQueue> {
        let path = log.path().to_path_buf();
        let mut log = log;
        // The writer thread gives the lock back within LINGER of a batch (`write_loop`).
        log.set_keep_lock(true);
        let pre = Precoder {
            session: log.session_id().to_string(),
            redactor: log.redactor().clone(),
            clock: Clock::default(),
            specs: SpecCache::default(),
            scratch: Vec::with_capacity(1024),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                log: Some(log),
                ..State::default()
            }),
            pre: Mutex::new(pre),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("audit".into())
                .spawn(move || {
                    run_in_background();
                    write_loop(&shared)
                })?
        };
        Ok(AuditQueue {
            shared,
            writer: Some(writer),
            path,
        })
    }

    /// Queue a record (it weighs [`Record::weight`]). Blocks while the queue is full; fails
    /// (for good) once a write failed. Returns the record's sequence number (1, 2, ...):
    /// [`Watermark::wait`] on it returns once the record is in the file.
    pub fn push(&self, record: Record) -> Result<u64, AuditError> {
        self.push_with(record, false)
    }

    /// [`AuditQueue::push`] for the client pump: the writer thread is not woken now, the
    /// caller waits for the record ([`Watermark::wait_quiet`], which writes it inline) or
    /// calls [`Watermark::settle`] before it blocks (which wakes the writer thread if needed).
    pub(crate) fn push_quiet(&self, record: Record) -> Result<u64, AuditError> {
        self.push_with(record, true)
    }

    fn push_with(&self, record: Record, quiet: bool) -> Result<u64, AuditError> {
        match record {
            // Encoded here, and the record (its params) freed by this thread once queued.
            Record::Decision(d) => self.push_decision(&d, quiet),
            other => {
                let weight = other.weight();
                self.enqueue(Queued::Record(Box::new(other)), None, weight, quiet)
            }
        }
    }

    /// Queue a decision record, encoded now from `d` (the caller keeps it: its `params` may
    /// serve the next message, `jsonrpc::reuse`). `quiet` as [`AuditQueue::push_quiet`].
    pub(crate) fn push_decision(&self, d: &DecisionRecord, quiet: bool) -> Result<u64, AuditError> {
        let mut pre = self.shared.pre.lock().unwrap_or_else(|p| p.into_inner());
        let Precoder {
            session,
            redactor,
            clock,
            specs,
            scratch,
        } = &mut *pre;
        scratch.clear();
        let encoded = Precoded::encode(scratch, d, session, redactor, clock, specs);
        let pushed = self.enqueue(
            Queued::Decision {
                start: 0,
                end: 0,
                pre: encoded,
            },
            Some(scratch),
            d.weight,
            quiet,
        );
        drop(pre);
        pushed
    }

    /// Queue `item` (a decision's encoded bytes in `bytes`, copied into the arena).
    fn enqueue(
        &self,
        item: Queued,
        bytes: Option<&[u8]>,
        weight: usize,
        quiet: bool,
    ) -> Result<u64, AuditError> {
        let mut item = item;
        let mut st = self.shared.lock();
        while st.failed.is_none()
            && (st.waiting.len() >= QUEUE_RECORDS
                || (!st.waiting.is_empty() && st.bytes + weight > QUEUE_BYTES))
        {
            st.hurry = true;
            self.shared.work.notify_one();
            st = wait_done(&self.shared, st);
        }
        if let Some(e) = &st.failed {
            return Err(self.error(e, st.pushed - st.written));
        }
        let was_empty = st.waiting.is_empty();
        if let (Queued::Decision { start, end, .. }, Some(b)) = (&mut item, bytes) {
            *start = st.arena.len();
            st.arena.extend_from_slice(b);
            *end = st.arena.len();
        }
        st.waiting.push_back(item);
        st.bytes += weight;
        st.pushed += 1;
        if was_empty && !st.lingering {
            // The writer sleeps only on an empty queue; later records join its batch.
            if quiet {
                st.wake_owed = true;
            } else {
                self.shared.work.notify_one();
            }
        }
        Ok(st.pushed)
    }

    /// A handle to wait for records to be written, usable without holding the queue.
    pub fn watermark(&self) -> Watermark {
        Watermark {
            shared: self.shared.clone(),
            path: self.path.clone(),
        }
    }

    /// Wait until every record queued so far is written.
    pub(crate) fn flush(&self) -> Result<(), AuditError> {
        let mut st = self.shared.lock();
        let target = st.pushed;
        while st.failed.is_none() && st.written < target {
            st.hurry = true;
            self.shared.work.notify_one();
            st = wait_done(&self.shared, st);
        }
        match &st.failed {
            Some(e) => Err(self.error(e, st.pushed - st.written)),
            None => Ok(()),
        }
    }

    /// Write everything queued, stop the writer and report the first failure, if any.
    pub fn close(mut self) -> Result<(), AuditError> {
        let result = self.flush();
        self.stop();
        result
    }

    fn stop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.closing = true;
            self.shared.work.notify_one();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }

    fn error(&self, message: &str, unwritten: u64) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(format!(
                "{message} ({unwritten} decided record(s) not written)"
            )),
        }
    }
}

/// "Written up to": lets the proxy forward a request only once its record is in the file.
#[derive(Clone)]
pub struct Watermark {
    shared: Arc<Shared>,
    path: PathBuf,
}

impl Watermark {
    /// Wait until the record numbered `seq` (and every one before it) is written. The writer
    /// is told not to linger: the records queued so far form its next batch, so pipelined
    /// requests still share one write. Fails when a write failed before `seq` was reached.
    pub fn wait(&self, seq: u64) -> Result<(), AuditError> {
        self.wait_with(seq, false)
    }

    /// [`Watermark::wait`] for the client pump, which calls [`Watermark::settle`] once it has
    /// forwarded: a wake-up the writer thread needs only later (to time the release of the
    /// lock the log keeps) is put off until then, off the round trip.
    pub(crate) fn wait_quiet(&self, seq: u64) -> Result<(), AuditError> {
        self.wait_with(seq, true)
    }

    fn wait_with(&self, seq: u64, quiet: bool) -> Result<(), AuditError> {
        let mut st = self.shared.lock();
        while st.written < seq && st.failed.is_none() {
            if st.log.is_some() && !st.waiting.is_empty() {
                // Nobody is writing: write the batch here rather than wake the writer and
                // sleep until it is done.
                st = write_waiting(&self.shared, st, quiet);
                continue;
            }
            st.hurry = true;
            self.shared.work.notify_one();
            st = wait_done(&self.shared, st);
        }
        if st.written >= seq {
            return Ok(());
        }
        let e = st.failed.clone().unwrap_or_default();
        Err(AuditError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(format!(
                "{e} ({} decided record(s) not written)",
                st.pushed - st.written
            )),
        })
    }

    /// The client pump's turn, after it forwarded (or before it blocks reading): give back a
    /// lock the log kept whose release is due within [`GRACE`] (the writer thread would do it
    /// at its time, maybe just when the pump needs the log), and make the wake-up of the
    /// writer thread put off by [`AuditQueue::push_quiet`] / [`Watermark::wait_quiet`].
    pub(crate) fn settle(&self) {
        let mut st = self.shared.lock();
        if st.release_at.is_some_and(|at| Instant::now() + GRACE >= at)
            && st.log.is_some()
            && st.waiting.is_empty()
        {
            // Set first: the writer thread may look while the log is out.
            st.pump_released = true;
            st = release_lock(&self.shared, st);
        }
        if std::mem::take(&mut st.wake_owed)
            && !st.lingering
            && (!st.waiting.is_empty() || st.release_at.is_some())
        {
            self.shared.work.notify_one();
        }
    }
}

impl Drop for AuditQueue {
    /// Records still queued are written before the thread stops (a `close` that was not
    /// called still loses nothing it can write).
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.flush();
            self.stop();
        }
    }
}

/// The writer thread runs as `SCHED_BATCH` (same weight, nice 0): woken by its timer (to give a
/// kept lock back) or by a record nobody waits for, it does not preempt the thread running on
/// its CPU, it runs when that thread blocks or its slice ends. Under steady traffic the thread
/// it used to preempt was a proxy pump or the server in the middle of a round trip: with the
/// CPU shared (pinned, or other processes on it) the preempted thread, having run more than its
/// share, was then often passed over for another process's slice, a stall of 0.3-1 ms on up to
/// a few % of round trips (issue 19: the audit-on p99 with other processes on the CPU). Nothing
/// a request waits for is delayed by it: a pump waiting for a record writes it itself, or
/// blocks on `done` and so lets the writer run (`Watermark::wait`). The nice value is kept;
/// best effort: on failure the thread keeps the default policy. Its timers get
/// [`TIMER_SLACK`].
fn run_in_background() {
    // SAFETY: PR_SET_TIMERSLACK changes the calling thread's slack only.
    if unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            TIMER_SLACK.as_nanos() as libc::c_ulong,
        )
    } != 0
    {
        tracing::debug!(
            "audit writer: timer slack: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: pid 0 is the calling thread. A capjail started under `chrt` keeps its policy.
    if unsafe { libc::sched_getscheduler(0) } != libc::SCHED_OTHER {
        return;
    }
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        tracing::debug!(
            "audit writer: SCHED_BATCH: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn write_loop(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        // Woken by itself after a `lingering` sleep: records found waiting have waited.
        let mut lingered = false;
        // Sleep while there is nothing to write, or a waiter is writing it. While the log
        // keeps its file's lock, wake by itself at `release_at` to give it back: records
        // queued meanwhile need no wake-up (`lingering`), they are written by then.
        while (st.waiting.is_empty() || st.log.is_none()) && !(st.closing && st.log.is_some()) {
            let Some(at) = st.release_at else {
                if std::mem::take(&mut st.pump_released) {
                    // Under steady traffic the client pump gives the lock back and takes it
                    // again: look again within LINGER instead of being woken each time.
                    st.lingering = true;
                    st = shared
                        .work
                        .wait_timeout(st, LINGER)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                    st.lingering = false;
                    lingered = true;
                    continue;
                }
                st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            };
            let now = Instant::now();
            if now >= at && st.log.is_some() {
                st = release_lock(shared, st);
                continue;
            }
            // Due, but a waiter is writing with the log: look again soon.
            let wake = if now >= at { now + LINGER / 4 } else { at };
            st.lingering = now < at;
            lingered |= st.lingering;
            st = shared
                .work
                .wait_timeout(st, wake - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            st.lingering = false;
        }
        if st.waiting.is_empty() {
            drop(release_lock(shared, st));
            return; // closing, nothing left
        }
        // Let a batch gather, unless someone is waiting (and not past a kept lock's time: the
        // records may have been queued that long ago).
        let now = Instant::now();
        let until = match st.release_at {
            _ if lingered => now,
            Some(at) => at.min(now + LINGER),
            None => now + LINGER,
        };
        st.lingering = true;
        while !st.hurry && !st.closing {
            let now = Instant::now();
            if now >= until {
                break;
            }
            st = shared
                .work
                .wait_timeout(st, until - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        st.lingering = false;
        if st.waiting.is_empty() || st.log.is_none() {
            continue; // a waiter wrote the batch (or is writing it) meanwhile
        }
        st = write_waiting(shared, st, false);
        if st.release_at.is_some_and(|at| Instant::now() >= at) {
            st = release_lock(shared, st);
        }
        if st.failed.is_some() {
            drop(release_lock(shared, st));
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{DecisionRecord, Direction, SessionEnd};
    use crate::audit::verify;
    use crate::check::decide::{Decision, Verdict};
    use serde_json::{json, Value};

    fn decision(i: u64, weight: usize) -> Record {
        Record::Decision(Box::new(DecisionRecord {
            weight,
            ..DecisionRecord::new(
                Direction::ClientToServer,
                Some(json!(i)),
                Some(json!({"name": "echo", "arguments": {"n": i}})),
                Decision {
                    verdict: if i.is_multiple_of(3) {
                        Verdict::Deny
                    } else {
                        Verdict::Allow
                    },
                    method: "tools/call".into(),
                    tool: Some("echo".into()),
                    accesses: Default::default(),
                    rule: crate::policy::RuleId::ToolsAllowed,
                    denial: None,
                },
            )
        }))
    }

    /// More records than the queue holds (so `push` blocks on the way), all written, in
    /// order, on a valid chain, with the session's counts in its last record.
    #[test]
    fn everything_pushed_is_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let q = AuditQueue::start(AuditLog::open(&path, false).unwrap()).unwrap();
        let n = QUEUE_RECORDS as u64 * 2 + 17;
        for i in 0..n {
            q.push(decision(i, 100)).unwrap();
        }
        q.push(Record::SessionEnd(SessionEnd {
            exit_code: Some(0),
            signal: None,
        }))
        .unwrap();
        q.close().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len() as u64, n + 1);
        for (i, l) in lines[..n as usize].iter().enumerate() {
            assert_eq!(l["id"], json!(i), "record {i} out of order");
            assert_eq!(l["seq"], json!(i + 1));
        }
        let end = &lines[n as usize];
        assert_eq!(end["kind"], "session_end");
        assert_eq!(end["denied"], json!(n.div_ceil(3)));
        assert_eq!(end["allowed"], json!(n - n.div_ceil(3)));
        let report = verify::verify(std::slice::from_ref(&path));
        assert!(report.ok(), "{report:?}");
    }

    /// A write error stops the queue for good: later pushes and the close report it.
    #[test]
    fn a_failed_write_is_fatal() {
        if !std::path::Path::new("/dev/full").exists() {
            return;
        }
        let log = match AuditLog::open(std::path::Path::new("/dev/full"), false) {
            Ok(l) => l,
            Err(_) => return, // cannot even open it here: nothing to show
        };
        let q = AuditQueue::start(log).unwrap();
        q.push(decision(1, 10)).unwrap();
        let flushed = q.flush().unwrap_err().to_string();
        assert!(
            flushed.contains("1 decided record(s) not written"),
            "{flushed}"
        );
        assert!(q.push(decision(2, 10)).is_err());
        assert!(q.close().is_err());
    }

    /// The watermark returns once a record is in the file, and fails for a record that
    /// could not be written.
    #[test]
    fn the_watermark_waits_for_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.jsonl");
        let q = AuditQueue::start(AuditLog::open(&path, false).unwrap()).unwrap();
        let w = q.watermark();
        let a = q.push(decision(1, 10)).unwrap();
        let b = q.push(decision(2, 10)).unwrap();
        assert_eq!((a, b), (1, 2));
        w.wait(b).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        q.close().unwrap();
        if let Ok(log) = AuditLog::open(std::path::Path::new("/dev/full"), false) {
            let q = AuditQueue::start(log).unwrap();
            let s = q.push(decision(1, 10)).unwrap();
            assert!(q.watermark().wait(s).is_err());
        }
    }

    /// Two sessions' queues on one file, each waiting for every record (the proxy's write
    /// before forward): the lock one keeps between batches is given back (the other is not
    /// stuck), everything lands on one valid chain, and the head file names the last record.
    #[test]
    fn two_sessions_waiting_per_record_share_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let per = 150u64;
        let sessions: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let q = AuditQueue::start(AuditLog::open(&path, false).unwrap()).unwrap();
                    let w = q.watermark();
                    for i in 0..per {
                        let s = q.push(decision(i, 10)).unwrap();
                        w.wait(s).unwrap();
                        if i % 50 == 0 {
                            // Idle past the time a kept lock is given back.
                            std::thread::sleep(LINGER * 3);
                        }
                    }
                    q.close().unwrap();
                })
            })
            .collect();
        for s in sessions {
            s.join().unwrap();
        }
        let report = verify::verify(std::slice::from_ref(&path));
        assert!(report.ok(), "{}", report.render());
        assert_eq!(report.files[0].records, 2 * per);
        let last = std::fs::read_to_string(&path).unwrap();
        let last: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
        let head = std::fs::read(crate::audit::rotated::head_path(&path)).unwrap();
        assert_eq!(
            crate::audit::rotated::parse_head(&head),
            Some((2 * per, last["hash"].as_str().unwrap().to_string()))
        );
    }

    /// The lock kept after a batch is given back soon after, without any further record
    /// (another process could not write otherwise), with the head file brought up to date.
    #[test]
    fn a_kept_lock_is_given_back_without_more_traffic() {
        use std::os::unix::io::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.jsonl");
        let q = AuditQueue::start(AuditLog::open(&path, false).unwrap()).unwrap();
        let s = q.push(decision(1, 10)).unwrap();
        q.watermark().wait(s).unwrap();
        // Another open file description: its flock conflicts with the log's.
        let other = std::fs::File::open(&path).unwrap();
        let t = Instant::now();
        let mut got = false;
        while t.elapsed() < Duration::from_secs(10) {
            // SAFETY: a valid descriptor; non-blocking.
            if unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                got = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(got, "the audit log's lock was never given back");
        let head = std::fs::read(crate::audit::rotated::head_path(&path)).unwrap();
        assert_eq!(
            crate::audit::rotated::parse_head(&head).map(|h| h.0),
            Some(1)
        );
        // SAFETY: as above.
        unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_UN) };
        q.close().unwrap();
    }

    /// Can another open file description take the log's `flock` within `within`?
    fn lock_free_within(path: &std::path::Path, within: Duration) -> bool {
        use std::os::unix::io::AsRawFd;
        let other = std::fs::File::open(path).unwrap();
        let t = Instant::now();
        while t.elapsed() < within {
            // SAFETY: a valid descriptor; non-blocking.
            if unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                // SAFETY: as above.
                unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_UN) };
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    /// The client pump's path (`push_quiet`, `wait_quiet`, `settle`): each record is in the
    /// file when the wait returns; a record nobody waits for is written once the pump settles
    /// (the writer thread is woken then); a kept lock is given back by the pump when due, and
    /// by the writer thread when the pump took it again and went quiet.
    #[test]
    fn the_client_pumps_quiet_path_writes_and_gives_the_lock_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        let q = AuditQueue::start(AuditLog::open(&path, false).unwrap()).unwrap();
        let w = q.watermark();
        let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
        for i in 1..=3u64 {
            let s = q.push_quiet(decision(i, 10)).unwrap();
            w.wait_quiet(s).unwrap();
            assert_eq!(lines() as u64, i);
            w.settle();
        }
        // Not waited for (a refused request): written after the pump settles.
        q.push_quiet(decision(4, 10)).unwrap();
        w.settle();
        let t = Instant::now();
        while lines() < 4 && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(lines(), 4, "a record nobody waited for was not written");
        // Due: the pump gives the lock back itself, then takes it again and goes quiet.
        std::thread::sleep(LINGER * 2);
        let s = q.push_quiet(decision(5, 10)).unwrap();
        w.wait_quiet(s).unwrap();
        std::thread::sleep(LINGER * 2);
        w.settle();
        let s = q.push_quiet(decision(6, 10)).unwrap();
        w.wait_quiet(s).unwrap();
        w.settle();
        assert!(
            lock_free_within(&path, Duration::from_secs(10)),
            "the audit log's lock was never given back"
        );
        assert_eq!(lines(), 6);
        q.close().unwrap();
        let report = verify::verify(std::slice::from_ref(&path));
        assert!(report.ok(), "{}", report.render());
    }

    /// Two sessions rotating one log through their queues: the set verifies as a whole.
    #[test]
    fn two_sessions_rotating_through_queues_keep_the_set_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, "").unwrap();
        let sessions: Vec<_> = (0..2)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut log = AuditLog::open(&path, false).unwrap();
                    log.set_rotation(Some(crate::audit::rotated::Rotation {
                        max_bytes: 3000,
                        keep: 1000,
                    }));
                    let q = AuditQueue::start(log).unwrap();
                    let w = q.watermark();
                    for i in 0..100 {
                        let s = q.push(decision(i, 10)).unwrap();
                        if i % 3 == 0 {
                            w.wait(s).unwrap();
                        }
                    }
                    q.close().unwrap();
                })
            })
            .collect();
        for s in sessions {
            s.join().unwrap();
        }
        let set = crate::audit::rotated::set_of(&path);
        assert!(set.len() >= 3, "{set:?}");
        let report = verify::verify(std::slice::from_ref(&path));
        assert!(report.ok(), "{}", report.render());
        let records: u64 = report.files.iter().map(|f| f.records).sum();
        assert_eq!(records, 200 + set.len() as u64 - 1);
    }
}
