//! `capjail run`: the client on capjail's stdin/stdout, the server on a pipe pair.
//!
//! `run` spawns the server, starts the audit log and wires one session's pipeline
//! (`pipeline::Session`: every stage, both directions) to the stdio transport (`stdio`: framing
//! and carrying out the pipeline's outputs); the lifecycle (signals, grace, exit) stays here.
//!
//! Shape: two pump threads (client -> server, server -> client) doing blocking I/O on large
//! buffers, and the main thread running a small tokio runtime for the lifecycle (signals,
//! grace timers, the server's exit). Blocking threads rather than async tasks for the pumps:
//! tokio's stdin is itself a blocking thread behind a channel, and a direct thread per
//! direction is the shape of the fastest possible relay, so the proxy costs its checks and
//! nothing else. Every message is written with its newline in one `write` call under the
//! client-output lock, so replies and relayed lines never interleave.

pub(crate) mod catalog;
pub(crate) mod child;
pub(crate) mod client_filter;
pub(crate) mod fatal;
pub(crate) mod framing;
mod held;
pub(crate) mod latency;
pub(crate) mod outbox;
pub(crate) mod pipeline;
pub(crate) mod recorder;
mod refusals;
mod resident;
pub(crate) mod roots;
pub(crate) mod server_filter;
pub(crate) mod session;
mod stdio;

use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use self::client_filter::{ClientFilter, Shared};
use self::outbox::Outbox;
use self::pipeline::Session;
use self::recorder::{Recorder, SharedRecorder};
use crate::audit::{AuditLog, AuditQueue, Record, SessionEnd, SessionStart};
use crate::check::path::PathContext;
use crate::check::RealWorld;
use crate::policy::Policy;
use crate::profile::Profile;

pub(crate) use child::SpawnError;

/// Longest server line relayed (responses can be large: a 16 MiB file read).
pub(crate) const MAX_SERVER_LINE_BYTES: usize = 256 * 1024 * 1024;

/// A hook that adds confinement to the server's command before it is spawned.
pub(crate) type CommandHook = Box<dyn FnOnce(&mut Command) -> io::Result<()>>;

pub(crate) struct RunConfig {
    pub(crate) policy: Arc<Policy>,
    pub(crate) argv: Vec<String>,
    pub(crate) forced_profile: Option<Profile>,
    /// The server's working directory (relative paths in tool arguments resolve against it).
    pub(crate) cwd: PathBuf,
    /// Check messages (proxy layer). When false, lines are relayed unchecked.
    pub(crate) filter: bool,
    /// Kernel confinement, applied to the command before spawning.
    pub(crate) confine: Option<CommandHook>,
    /// The audit log, when auditing is on.
    pub(crate) audit: Option<AuditLog>,
    /// The server's environment (the policy's allowlist applied), set in every mode; `None`:
    /// it inherits capjail's.
    pub(crate) env: Option<Vec<(String, String)>>,
    /// For the audit log's session record: the layers in force, what the kernel enforces.
    pub(crate) mode_label: String,
    pub(crate) kernel_label: String,
    /// Where tool definitions are pinned (`trust`).
    pub(crate) pins: crate::trust::PinsConfig,
    /// The egress point, started once the server's network namespace handed out its listener
    /// (`network: allowlist` in kernel/full mode; see `crate::egress`).
    pub(crate) egress: Option<crate::egress::launch::EgressStart>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The audit log could not be written: nothing further is forwarded.
    #[error("audit log: {0}")]
    Audit(String),
    /// Anything else that stopped a pump (a poisoned lock, ...): the internal status.
    #[error("{0}")]
    Internal(String),
}

enum PumpEvent {
    ClientEof,
    ServerEof,
    Exited(std::process::ExitStatus),
    /// A decision could not be recorded (`RunError::Audit`), or a pump failed otherwise: stop.
    Fatal(RunError),
}

/// Run the server behind the proxy; returns the exit code for capjail.
pub(crate) fn run(cfg: RunConfig) -> Result<i32, RunError> {
    malloc_settings();
    // The command line and the policy are read (and the sandbox's setup process forked): what
    // that needed goes back before the session's own setup maps what it needs (`resident`),
    // so the two phases' pages are never resident together. (With an early setup process the
    // world is being built meanwhile: this is not on the server's way to its start.)
    resident::release_startup_pages();
    let grace = cfg.policy.limits.grace;
    let kernel_backstop = cfg.confine.is_some();
    child::become_subreaper();
    let mut cmd = child::command(&cfg.argv);
    cmd.current_dir(&cfg.cwd);
    if let Some(env) = &cfg.env {
        // The kernel layer's hook sets the same allowlist again; proxy mode gets it here.
        cmd.env_clear();
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
    }
    // An early setup process the hook below sends the plan to runs the server only once
    // `take_early_child` says so; a return before that sends it away.
    #[cfg(target_os = "linux")]
    let _early = crate::sandbox::world::launch::EarlyGuard;
    match cfg.confine {
        // The kernel layer's pre_exec starts the session and sets PDEATHSIG itself.
        Some(confine) => confine(&mut cmd)
            .map_err(|e| RunError::Setup(format!("cannot prepare the sandbox: {e}")))?,
        // Proxy mode: the watcher (no process of the session outlives it), then the tie.
        None => {
            child::watch(&mut cmd)?;
            child::tie_to_parent(&mut cmd)
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let shared = Arc::new(Mutex::new(Shared::new(catalog::SessionCatalog::new(
        cfg.forced_profile,
        &cfg.argv,
    ))));
    let profile = shared
        .lock()
        .expect("shared")
        .catalog
        .profile()
        .map(|p| p.name.clone());
    if let Some(p) = &profile {
        tracing::info!(profile = %p, "profile picked by command line");
    }
    // The session record is written synchronously, before the server starts; every later
    // record goes through the audit queue (written off the proxy's threads, never dropped).
    let audit = match cfg.audit {
        Some(mut log) => {
            let start = SessionStart {
                argv: cfg.argv.clone(),
                policy: cfg.policy.clone(),
                mode: cfg.mode_label.clone(),
                kernel: cfg.kernel_label.clone(),
                cwd: cfg.cwd.clone(),
                home: home.clone(),
                profile: profile.clone(),
            };
            log.record(&Record::SessionStart(Box::new(start)))
                .map_err(|e| RunError::Audit(e.to_string()))?;
            tracing::info!(path = %log.path().display(), session = log.session_id(), "auditing");
            Some(AuditQueue::start(log)?)
        }
        None => None,
    };
    let recorder = Recorder::new(audit);
    if cfg.filter {
        match crate::trust::TrustSession::new(
            &cfg.policy.trust,
            cfg.pins.clone(),
            crate::trust::identity::identify(&cfg.argv),
            recorder.clone(),
        ) {
            Ok(t) => shared.lock().expect("shared").trust = Some(t),
            Err(e) => {
                let _ = end_session(&recorder, None, None);
                return Err(RunError::Setup(e.to_string()));
            }
        }
    }
    // The sandbox's setup process may already run (started early, waiting for its plan).
    #[cfg(target_os = "linux")]
    let spawned = match crate::sandbox::world::launch::take_early_child() {
        Some(r) => r.map_err(|e| SpawnError::Other(cfg.argv[0].clone(), e)),
        None => child::spawn(cmd, &cfg.argv[0]),
    };
    #[cfg(not(target_os = "linux"))]
    let spawned = child::spawn(cmd, &cfg.argv[0]);
    let mut server = match spawned {
        Ok(s) => s,
        Err(e) => {
            // 127/126 as the shell (and `capjail run`) would report them: `audit show` says why.
            let code = match e {
                SpawnError::NotFound(_) => crate::exit::NOT_FOUND,
                _ => crate::exit::CANNOT_EXECUTE,
            };
            let _ = end_session(&recorder, Some(code), None);
            return Err(e.into());
        }
    };
    let pid = server.id();
    if let Some(e) = cfg.egress {
        if let Err(e) = e.start(recorder.clone()) {
            child::signal_group(pid, libc::SIGKILL);
            let _ = server.wait();
            let _ = end_session(&recorder, None, None);
            return Err(RunError::Setup(format!(
                "the egress point did not start: {e}"
            )));
        }
    }
    tracing::info!(pid, command = %cfg.argv.join(" "), policy = %cfg.policy.name, "server started");
    let server_in = server.stdin.take().expect("piped stdin");
    let server_out = server.stdout.take().expect("piped stdout");

    // fd 1, unbuffered: every write is one whole message. Both sides' writes go through the
    // outbox, so capjail's own messages and held requests never interleave with relayed lines.
    let outbox = Outbox::new(Box::new(server_in), Box::new(stdio::ClientStdout::fd1()));
    // Lines stages send to the server wait for the audit log like the pump's own.
    let watermark = recorder.lock().ok().and_then(|r| r.watermark());
    if let Some(watermark) = watermark {
        outbox.set_durability(outbox::Durability {
            watermark,
            recorder: recorder.clone(),
        });
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<PumpEvent>();

    let paths = PathContext {
        cwd: cfg.cwd.clone(),
        home,
        argv_dirs: crate::check::readings::argv_dirs(&cfg.argv, &cfg.cwd),
        roots: Vec::new(),
        env: Some(
            cfg.env
                .clone()
                .unwrap_or_else(|| std::env::vars().collect()),
        ),
        readings: shared
            .lock()
            .expect("shared")
            .catalog
            .profile()
            .map(|p| p.paths.clone())
            .unwrap_or_default(),
    };
    let approvals = crate::approval::for_policy(&cfg.policy, &outbox);
    let filter = ClientFilter::new(
        cfg.policy.clone(),
        paths.clone(),
        Box::new(RealWorld),
        shared.clone(),
        recorder.clone(),
        outbox.clone(),
        approvals.clone(),
    );
    // One pipeline for the session: the client pump judges each line with it, and a call held
    // until capjail has listed the tools is judged again with it, whole (every stage), when
    // the listing is in.
    let session = Arc::new(Session::new(filter, cfg.filter));
    if let Some(t) = shared.lock().expect("shared").trust.as_mut() {
        // capjail's own tools/list and the calls held for it (`trust::listing`).
        t.listing.decider = Some(crate::trust::listing::Decider {
            policy: cfg.policy.clone(),
            paths,
            recorder: recorder.clone(),
            outbox: outbox.clone(),
            kernel_backstop,
            rejudge: Some(session.rejudge()),
        });
    }
    {
        let tx = tx.clone();
        let out = outbox.clone();
        let session = session.clone();
        std::thread::Builder::new()
            .name("client->server".into())
            .spawn(move || {
                latency::pump_thread();
                let r = stdio::pump_client(
                    &session,
                    stdio::client_stdin(),
                    stdio::client_waiting,
                    &out,
                );
                if let Err(e) = &r {
                    if let Some(fatal) = fatal_error(e) {
                        let _ = tx.send(PumpEvent::Fatal(fatal));
                        return;
                    }
                    tracing::debug!("client pump ended: {e}");
                }
                let _ = tx.send(PumpEvent::ClientEof);
            })?;
    }
    {
        let tx = tx.clone();
        let out = outbox.clone();
        let session = session.clone();
        std::thread::Builder::new()
            .name("server->client".into())
            .spawn(move || {
                let mut pace = latency::ServerPace::start();
                let woke = |lines| pace.woke(lines);
                if let Err(e) = stdio::pump_server(&session, server_out, &out, woke) {
                    if let Some(fatal) = fatal_error(&e) {
                        let _ = tx.send(PumpEvent::Fatal(fatal));
                        return;
                    }
                    tracing::debug!("server pump ended: {e}");
                }
                let _ = tx.send(PumpEvent::ServerEof);
            })?;
    }
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("wait".into())
            .spawn(move || {
                if let Ok(status) = server.wait() {
                    let _ = tx.send(PumpEvent::Exited(status));
                }
            })?;
    }
    drop(tx);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // After the client's EOF the server gets its own EOF as soon as nothing capjail still owes
    // it is pending (an own request's answer, a deferred line, a call waiting for a person).
    let close_input = {
        let outbox = outbox.clone();
        move || {
            let asking = approvals.as_ref().is_some_and(|a| a.pending());
            !asking && outbox.close_server_if_idle()
        }
    };
    // The session is set up: what only the startup needed goes back (`resident`).
    resident::release_startup_pages();
    let outcome = rt.block_on(lifecycle(pid, grace, &mut rx, close_input));
    // Stages waiting for an answer from a peer get `Closed` and settle.
    outbox.close();
    let finished = match &outcome {
        Ok((code, signal)) => end_session(&recorder, Some(*code), *signal),
        Err(_) => end_session(&recorder, None, None),
    };
    let code = outcome.map(|(code, _)| code)?;
    // Records still queued when the stream ended are part of the session: failing to write
    // them is the audit failure it would have been on the hot path.
    finished.map_err(|e| RunError::Audit(e.to_string()))?;
    Ok(code)
}

/// One malloc arena for the whole process, set before the pumps and the audit writer start.
/// glibc gives each thread that allocates its own arena (per-thread heaps of freed chunks):
/// under a sustained pipelined load the two pumps' and the audit writer's arenas each kept
/// about 0.5-1.3 MiB resident (measured with `/proc/PID/smaps`), a third of capjail's anonymous
/// memory. The threads' small allocations mostly stay in glibc's per-thread caches, so one
/// arena costs no measurable throughput. `MALLOC_ARENA_MAX` in the environment still decides.
///
/// And a fixed mmap threshold (glibc's default, 128 KiB): glibc otherwise raises it to the
/// size of every large block freed (the startup frees a few of 320 KB), so the server pump's
/// buffer growing for a 1 MiB line (256 KiB, 512 KiB, then mmap) left its first two steps as
/// free, touched chunks in the heap: ~0.7 MiB of the heap's 1.6 MiB at the peak under 1 MiB
/// answers. Fixed, large blocks are their own mappings, grown by `mremap` and given back when
/// freed. No large block is allocated per message (heaptrack: the 1 MiB run's blocks over
/// 128 KiB are the startup's and the buffer's growth), so the hot path makes no more calls.
/// `MALLOC_MMAP_THRESHOLD_` or `GLIBC_TUNABLES` in the environment still decide.
fn malloc_settings() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets an allocator parameter; no memory is touched.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
        let tuned = std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"));
        if !tuned {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
    }
}

/// glibc's default mmap threshold, made fixed (see [`malloc_settings`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;

/// Write the session's last record and everything still queued.
fn end_session(
    recorder: &SharedRecorder,
    code: Option<i32>,
    signal: Option<i32>,
) -> Result<(), crate::audit::AuditError> {
    let mut r = recorder.lock().unwrap_or_else(|p| p.into_inner());
    let t = r.tally;
    tracing::info!(
        allowed = t.allowed,
        denied = t.denied,
        filtered = t.filtered,
        "session summary"
    );
    let exit_code = if signal.is_some() { None } else { code };
    let finished = r.finish(SessionEnd { exit_code, signal });
    if let Err(e) = &finished {
        tracing::error!("cannot write the end of the session to the audit log: {e}");
    }
    finished
}

/// Returns the exit code and, when a signal ended the server, the signal.
async fn lifecycle(
    pid: u32,
    grace: Duration,
    rx: &mut mpsc::UnboundedReceiver<PumpEvent>,
    close_input: impl Fn() -> bool,
) -> Result<(i32, Option<i32>), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigquit = signal(SignalKind::quit())?;
    // Escalation: None, then SIGTERM at the first deadline, SIGKILL at the second.
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut next_signal = libc::SIGTERM;
    let mut fatal: Option<RunError> = None;
    let mut stdout_closed = false;
    // The client's stdin ended and the server's stdin is not closed yet (retried every 20 ms).
    let mut input_open_after_eof = false;
    let status = loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let retry_close = async {
            if input_open_after_eof {
                tokio::time::sleep(Duration::from_millis(20)).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            _ = retry_close => {
                if close_input() {
                    input_open_after_eof = false;
                    tracing::debug!("the server's stdin is closed (the client's ended)");
                }
            }
            ev = rx.recv() => match ev {
                Some(PumpEvent::ClientEof) => {
                    input_open_after_eof = !close_input();
                    tracing::debug!(closed = !input_open_after_eof, "client closed stdin");
                    deadline.get_or_insert(tokio::time::Instant::now() + grace);
                }
                Some(PumpEvent::ServerEof) => stdout_closed = true,
                Some(PumpEvent::Exited(status)) => break status,
                Some(PumpEvent::Fatal(e)) => {
                    tracing::error!("{e}; stopping the server");
                    fatal = Some(e);
                    child::signal_group(pid, libc::SIGTERM);
                    next_signal = libc::SIGKILL;
                    deadline = Some(tokio::time::Instant::now() + grace);
                }
                None => return Err(RunError::Setup("lost track of the server process".into())),
            },
            _ = sigint.recv() => forward(pid, libc::SIGINT, grace, &mut deadline, &mut next_signal),
            _ = sigterm.recv() => forward(pid, libc::SIGTERM, grace, &mut deadline, &mut next_signal),
            _ = sighup.recv() => forward(pid, libc::SIGHUP, grace, &mut deadline, &mut next_signal),
            _ = sigquit.recv() => forward(pid, libc::SIGQUIT, grace, &mut deadline, &mut next_signal),
            _ = sleep => {
                tracing::info!(signal = next_signal, "server still running after the grace period; signalling it");
                child::signal_group(pid, next_signal);
                next_signal = libc::SIGKILL;
                deadline = Some(tokio::time::Instant::now() + grace);
            }
        }
    };
    // Let the last responses drain, then make sure nothing of the server's tree survives.
    if !stdout_closed {
        let drain = async {
            while let Some(ev) = rx.recv().await {
                if matches!(ev, PumpEvent::ServerEof) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(grace.max(Duration::from_millis(200)), drain).await;
    }
    child::signal_group(pid, libc::SIGKILL);
    // What left the server's group (setsid, double fork) was adopted by capjail: end it too.
    child::end_descendants();
    let code = child::exit_code(status);
    tracing::info!(code, "server exited");
    match fatal {
        Some(e) => Err(e),
        None => Ok((code, std::os::unix::process::ExitStatusExt::signal(&status))),
    }
}

fn forward(
    pid: u32,
    sig: libc::c_int,
    grace: Duration,
    deadline: &mut Option<tokio::time::Instant>,
    next: &mut libc::c_int,
) {
    tracing::info!(signal = sig, "forwarding signal to the server");
    child::signal_group(pid, sig);
    // If the server ignores it, escalate to SIGKILL after the grace period.
    *next = libc::SIGKILL;
    *deadline = Some(tokio::time::Instant::now() + grace);
}

/// How a pump's error ends the session: an audit failure (by type: [`fatal::AuditFailure`]) with
/// the audit status, another `ErrorKind::Other` (a poisoned lock, ...) with the internal status;
/// `None` for an ordinary end of a stream (a closed pipe).
fn fatal_error(e: &io::Error) -> Option<RunError> {
    if let Some(a) = fatal::AuditFailure::find(e) {
        return Some(RunError::Audit(a.to_string()));
    }
    (e.kind() == io::ErrorKind::Other).then(|| RunError::Internal(e.to_string()))
}
