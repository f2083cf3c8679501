//! The stdio relay: the client on capjail's stdin/stdout, the server on a pipe pair.
//!
//! Shape: two pump threads (client -> server, server -> client) doing blocking I/O on large
//! buffers, and the main thread running a small tokio runtime for the lifecycle (signals,
//! grace timers, the server's exit). Blocking threads rather than async tasks for the pumps:
//! tokio's stdin is itself a blocking thread behind a channel, and a direct thread per
//! direction is the shape of the fastest possible relay, so the proxy costs its checks and
//! nothing else. Every message is written with its newline in one `write` call under the
//! client-output lock, so replies and relayed lines never interleave.

pub mod catalog;
pub mod child;
pub mod client_filter;
pub mod framing;
mod held;
pub mod outbox;
pub mod recorder;
mod refusals;
pub mod roots;
pub mod server_filter;
pub mod session;

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use self::client_filter::{ClientFilter, Outcome, Shared};
use self::framing::{Frame, LineReader};
use self::outbox::Outbox;
use self::recorder::{Recorder, SharedRecorder};
use self::server_filter::{ServerFilter, ServerOutcome};
use crate::audit::{AuditLog, AuditQueue, Direction, Event, SessionEnd, SessionStart};
use crate::check::path::PathContext;
use crate::check::RealWorld;
use crate::jsonrpc::{self, code};
use crate::policy::Policy;
use crate::profile::Profile;

pub use child::SpawnError;

/// Longest server line relayed (responses can be large: a 16 MiB file read).
pub const MAX_SERVER_LINE_BYTES: usize = 256 * 1024 * 1024;
const PUMP_BUFFER: usize = 256 * 1024;

/// A hook that adds confinement to the server's command before it is spawned.
pub type CommandHook = Box<dyn FnOnce(&mut Command) -> io::Result<()>>;

pub struct RunConfig {
    pub policy: Arc<Policy>,
    pub argv: Vec<String>,
    pub forced_profile: Option<Profile>,
    /// The server's working directory (relative paths in tool arguments resolve against it).
    pub cwd: PathBuf,
    /// Check messages (proxy layer). When false, lines are relayed unchecked.
    pub filter: bool,
    /// Kernel confinement, applied to the command before spawning.
    pub confine: Option<CommandHook>,
    /// The audit log, when auditing is on.
    pub audit: Option<AuditLog>,
    /// The server's environment (the policy's allowlist applied), set in every mode; `None`:
    /// it inherits capjail's.
    pub env: Option<Vec<(String, String)>>,
    /// For the audit log's session record: the layers in force, what the kernel enforces.
    pub mode_label: String,
    pub kernel_label: String,
    /// Where tool definitions are pinned (`trust`).
    pub pins: crate::trust::PinsConfig,
    /// The egress point, started once the server's network namespace handed out its listener
    /// (`network: allowlist` in kernel/full mode; see `crate::egress`).
    pub egress: Option<crate::egress::launch::EgressStart>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("{0}")]
    Setup(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The audit log could not be written: nothing further is forwarded.
    #[error("audit log: {0}")]
    Audit(String),
}

enum PumpEvent {
    ClientEof,
    ServerEof,
    Exited(std::process::ExitStatus),
    /// A decision could not be recorded: stop.
    Fatal(String),
}

/// Run the server behind the proxy; returns the exit code for capjail.
pub fn run(cfg: RunConfig) -> Result<i32, RunError> {
    let grace = cfg.policy.limits.grace;
    let kernel_backstop = cfg.confine.is_some();
    let mut cmd = child::command(&cfg.argv);
    cmd.current_dir(&cfg.cwd);
    if let Some(env) = &cfg.env {
        // The kernel layer's hook sets the same allowlist again; proxy mode gets it here.
        cmd.env_clear();
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
    }
    match cfg.confine {
        // The kernel layer's pre_exec starts the session and sets PDEATHSIG itself.
        Some(confine) => confine(&mut cmd)
            .map_err(|e| RunError::Setup(format!("cannot prepare the sandbox: {e}")))?,
        None => child::tie_to_parent(&mut cmd),
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
                argv: &cfg.argv,
                policy: &cfg.policy,
                mode: &cfg.mode_label,
                kernel: &cfg.kernel_label,
                cwd: &cfg.cwd,
                home: home.as_deref(),
                profile: profile.as_deref(),
            };
            log.record(&Event::SessionStart(start))
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
    let mut server = match child::spawn(cmd, &cfg.argv[0]) {
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
    // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop never closes it.
    let client_out = ClientStdout(ManuallyDrop::new(unsafe { File::from_raw_fd(1) }));
    let outbox = Outbox::new(Box::new(server_in), Box::new(client_out));
    // Lines stages send to the server wait for the audit log like the pump's own.
    let watermark = recorder.lock().ok().and_then(|r| r.watermark());
    if let Some(watermark) = watermark {
        outbox.set_durability(outbox::Durability {
            watermark,
            recorder: recorder.clone(),
        });
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<PumpEvent>();

    let filter = ClientFilter {
        policy: cfg.policy.clone(),
        paths: PathContext {
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
        },
        world: Box::new(RealWorld),
        shared: shared.clone(),
        recorder: recorder.clone(),
        outbox: outbox.clone(),
        weight: 0,
        held: None,
        single: false,
        approvals: crate::approval::for_policy(&cfg.policy, &outbox),
        rejudging: false,
    };
    let paths = filter.paths.clone();
    // One client filter for the session: the client pump judges each line with it, and a call
    // held until capjail has listed the tools is judged again with it, whole (every stage),
    // when the listing is in.
    let filter = Arc::new(Mutex::new(filter));
    let checking = cfg.filter;
    if let Some(t) = shared.lock().expect("shared").trust.as_mut() {
        // capjail's own tools/list and the calls held for it (`trust::listing`).
        t.listing.decider = Some(crate::trust::listing::Decider {
            policy: cfg.policy.clone(),
            paths,
            recorder: recorder.clone(),
            outbox: outbox.clone(),
            kernel_backstop,
            rejudge: Some(rejudge_with(filter.clone(), shared.clone(), outbox.clone())),
        });
    }
    let max_line = cfg.policy.limits.max_line_bytes;
    {
        let tx = tx.clone();
        let out = outbox.clone();
        std::thread::Builder::new()
            .name("client->server".into())
            .spawn(move || {
                let r = pump_client(&filter, checking, max_line, &out);
                if let Err(e) = &r {
                    if e.kind() == io::ErrorKind::Other {
                        let _ = tx.send(PumpEvent::Fatal(e.to_string()));
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
        let mut sfilter = ServerFilter {
            shared: shared.clone(),
            policy: cfg.policy.clone(),
            outbox: outbox.clone(),
        };
        let recorder = recorder.clone();
        std::thread::Builder::new()
            .name("server->client".into())
            .spawn(move || {
                if let Err(e) = pump_server(&mut sfilter, checking, server_out, &out, &recorder) {
                    if e.kind() == io::ErrorKind::Other {
                        let _ = tx.send(PumpEvent::Fatal(e.to_string()));
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
    let outcome = rt.block_on(lifecycle(pid, grace, &mut rx));
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
) -> Result<(i32, Option<i32>), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigquit = signal(SignalKind::quit())?;
    // Escalation: None, then SIGTERM at the first deadline, SIGKILL at the second.
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut next_signal = libc::SIGTERM;
    let mut fatal: Option<String> = None;
    let mut stdout_closed = false;
    let status = loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(PumpEvent::ClientEof) => {
                    tracing::debug!("client closed stdin; the server got EOF");
                    deadline.get_or_insert(tokio::time::Instant::now() + grace);
                }
                Some(PumpEvent::ServerEof) => stdout_closed = true,
                Some(PumpEvent::Exited(status)) => break status,
                Some(PumpEvent::Fatal(msg)) => {
                    tracing::error!("{msg}; stopping the server");
                    fatal = Some(msg);
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
    let code = child::exit_code(status);
    tracing::info!(code, "server exited");
    match fatal {
        Some(msg) => Err(RunError::Audit(msg)),
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

/// capjail's stdout (fd 1), never closed.
struct ClientStdout(ManuallyDrop<File>);

impl Write for ClientStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0 as &File).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Client -> server. Returns `ErrorKind::Other` only for a fatal audit failure.
///
/// Write before forward: an allowed line is held until the audit log is written up to its
/// decision's record. Lines already waiting in the input buffer (a pipelined client) are
/// decided first and released together, so they share one audit batch.
fn pump_client(
    filter: &Mutex<ClientFilter>,
    checking: bool,
    max_line: usize,
    out: &Outbox,
) -> io::Result<()> {
    // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop never closes it.
    let stdin = ManuallyDrop::new(unsafe { File::from_raw_fd(0) });
    let mut reader = LineReader::new(BufReader::with_capacity(PUMP_BUFFER, &*stdin), max_line);
    let recorder = filter
        .lock()
        .map_err(|_| io::Error::other("client filter lock poisoned"))?
        .recorder
        .clone();
    let watermark = if checking {
        recorder
            .lock()
            .map_err(|_| io::Error::other("recorder lock poisoned"))?
            .watermark()
    } else {
        None
    };
    if checking {
        out.mark_client_pump();
    }
    let mut held = held::Held::default();
    let mut buf = Vec::new();
    loop {
        if !held.is_empty() && (!reader.line_buffered() || held.is_full()) {
            let seq = recorder
                .lock()
                .map_err(|_| io::Error::other("recorder lock poisoned"))?
                .last_seq;
            if !held.release(watermark.as_ref(), seq, out)? {
                return Ok(());
            }
        } else if held.is_empty() {
            // What stages sent to the server while this pump judged a line (outbox).
            out.flush_deferred()?;
        }
        match reader.next_into(&mut buf) {
            Ok(Frame::Eof) => {
                if !held.is_empty() {
                    let seq = recorder.lock().map(|r| r.last_seq).unwrap_or(u64::MAX);
                    held.release(watermark.as_ref(), seq, out)?;
                }
                out.flush_deferred()?;
                return Ok(());
            }
            Ok(Frame::TooLong(n)) => {
                tracing::warn!("refused a client message of {n} bytes (limit {max_line})");
                let mut line = jsonrpc::error_response(
                    &serde_json::Value::Null,
                    code::INVALID_REQUEST,
                    &format!("Invalid Request: message of {n} bytes exceeds capjail's limit of {max_line} bytes"),
                    None,
                );
                line.push(b'\n');
                out.send_to_client(&line)?;
            }
            Ok(Frame::Line(line)) => {
                let outcome = if checking {
                    let judged = match filter.lock() {
                        Ok(mut f) => f.on_line(&line),
                        Err(_) => Err(io::Error::other("client filter lock poisoned")),
                    };
                    match judged {
                        Ok(o) => o,
                        Err(e) => {
                            let e = io::Error::other(format!("cannot record a decision: {e}"));
                            held.hold(&line, None);
                            held.refuse_all(out, &e);
                            return Err(e);
                        }
                    }
                } else if line.iter().all(u8::is_ascii_whitespace) {
                    Outcome::Drop
                } else {
                    Outcome::Forward
                };
                match outcome {
                    Outcome::Forward => held.hold(&line, None),
                    Outcome::ForwardRewritten(rewritten) => held.hold(&line, Some(rewritten)),
                    Outcome::Reply(mut reply) => {
                        reply.push(b'\n');
                        out.send_to_client(&reply)?;
                    }
                    // A stage holds the message and sends or answers it later (outbox).
                    Outcome::Drop | Outcome::Held => {}
                }
                buf = line;
            }
            Err(e) => return Err(e),
        }
    }
}

/// How a call held for capjail's own tools listing is judged once the listing is in: the
/// whole client filter again (capability decision, pins, content checks, flows, approvals),
/// then forwarded (after its record is written), answered, or held by a stage.
fn rejudge_with(
    filter: Arc<Mutex<ClientFilter>>,
    shared: Arc<Mutex<Shared>>,
    outbox: Arc<Outbox>,
) -> crate::trust::listing::Rejudge {
    Arc::new(move |call: crate::trust::listing::HeldCall| {
        // The id was reserved while the call waited; the filter reserves it again.
        shared
            .lock()
            .map_err(|_| io::Error::other("shared state lock poisoned"))?
            .pending
            .remove(&client_filter::id_key(&call.id));
        let outcome = {
            let mut f = filter
                .lock()
                .map_err(|_| io::Error::other("client filter lock poisoned"))?;
            f.rejudging = true;
            let o = f.on_line(&call.line);
            f.rejudging = false;
            o?
        };
        match outcome {
            Outcome::Forward => outbox.send_to_server(&call.line),
            Outcome::ForwardRewritten(line) => outbox.send_to_server(&line),
            Outcome::Reply(line) => outbox.send_to_client(&line),
            Outcome::Drop | Outcome::Held => Ok(()),
        }
    })
}

/// Server -> client. Returns `ErrorKind::Other` only for a fatal audit failure.
fn pump_server(
    filter: &mut ServerFilter,
    checking: bool,
    server_out: std::process::ChildStdout,
    out: &Outbox,
    recorder: &SharedRecorder,
) -> io::Result<()> {
    let record = |dropped: bool, reason: &str| -> io::Result<()> {
        recorder
            .lock()
            .map_err(|_| io::Error::other("recorder lock poisoned"))?
            .filtered(Direction::ServerToClient, None, None, dropped, reason)
            .map_err(|e| io::Error::other(format!("cannot record a filtered response: {e}")))
    };
    let mut reader = LineReader::new(
        BufReader::with_capacity(PUMP_BUFFER, server_out),
        MAX_SERVER_LINE_BYTES,
    );
    let mut buf = Vec::new();
    loop {
        match reader.next_into(&mut buf)? {
            Frame::Eof => return Ok(()),
            Frame::TooLong(n) => {
                tracing::error!(
                    "dropped a server message of {n} bytes (limit {MAX_SERVER_LINE_BYTES})"
                );
                record(true, &format!("a server message of {n} bytes exceeds the limit of {MAX_SERVER_LINE_BYTES}"))?;
            }
            Frame::Line(mut line) => {
                let outcome = if checking {
                    filter.on_line(&line)
                } else {
                    ServerOutcome::Forward
                };
                match outcome {
                    ServerOutcome::Forward => {
                        line.push(b'\n');
                        out.send_to_client(&line)?;
                    }
                    ServerOutcome::Rewritten(mut rewritten) => {
                        record(false, "tools/list rewritten: tools the policy blocks, or whose definitions changed or are suspicious, were not shown as served")?;
                        rewritten.push(b'\n');
                        out.send_to_client(&rewritten)?;
                    }
                    ServerOutcome::Content(mut rewritten, why) => {
                        tracing::warn!("content checks rewrote a result: {why}");
                        record(false, &why)?;
                        rewritten.push(b'\n');
                        out.send_to_client(&rewritten)?;
                    }
                    ServerOutcome::Flagged(why) => {
                        tracing::warn!("content finding recorded: {why}");
                        recorder
                            .lock()
                            .map_err(|_| io::Error::other("recorder lock poisoned"))?
                            .flagged(Direction::ServerToClient, None, &why)
                            .map_err(|e| {
                                io::Error::other(format!("cannot record a finding: {e}"))
                            })?;
                        line.push(b'\n');
                        out.send_to_client(&line)?;
                    }
                    // The answer to one of capjail's own requests, handed to its stage.
                    ServerOutcome::Consumed => {}
                    ServerOutcome::Drop(reason) => {
                        if reason != "blank line" {
                            tracing::warn!("dropped a server message: {reason}");
                            record(true, &reason)?;
                        }
                    }
                }
                buf = line;
            }
        }
    }
}
