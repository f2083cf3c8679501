//! THE EGRESS POINT: the only way out of the server's network namespace under
//! `network: allowlist` in kernel/full mode.
//!
//! An HTTP forward proxy (absolute-form `GET http://host:port/...`) and CONNECT proxy served on
//! a listener handed in (in `run`, a loopback port created inside the server's namespace and
//! passed out over a unix socket: see `netns`). For every connection and every plain-HTTP
//! request it
//! 1. judges the destination with the proxy's own URL check (`check::net::check_url`: the
//!    compiled `allowed_hosts` with the policy's port semantics, then every address the host
//!    resolves to: private, loopback, link-local, metadata, NAT64, ... as the proxy does),
//!    resolving the name itself (`resolve`);
//! 2. records the decision in the audit log (a `decision` record, method `egress/<METHOD>`,
//!    with the rule) BEFORE anything is sent;
//! 3. connects to one of the addresses it checked (no second lookup), or answers `403` with a
//!    text body naming the rule (and an `X-Capjail-Rule` header).
//!
//! TLS is not intercepted: a CONNECT is judged by host and port only. One request per
//! upstream connection: the egress point asks for `Connection: close` both ways, so a redirect
//! the server's client follows arrives as a new request and is judged again.
//!
//! Modules: `http` (heads, pure), `check` (the decision, pure given a resolver), `resolve`
//! (lookup off the reactor, connect to checked addresses), `connect` (tunnel and forward I/O),
//! `netns` (the namespace with one loopback port, Linux).

pub(crate) mod check;
pub(crate) mod connect;
pub(crate) mod content;
pub(crate) mod http;
#[cfg(target_os = "linux")]
pub(crate) mod launch;
/// No network namespaces off Linux: the egress route never applies.
#[cfg(not(target_os = "linux"))]
pub(crate) mod launch {
    pub(crate) struct EgressStart;
    impl EgressStart {
        pub(crate) fn start(
            self,
            _: crate::proxy::recorder::SharedRecorder,
        ) -> std::io::Result<()> {
            Ok(())
        }
    }
}
#[cfg(target_os = "linux")]
pub(crate) mod netns;
pub(crate) mod resolve;
pub(crate) mod socks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::check::net::{Destination, NetRefusal};
use crate::check::{RealWorld, World};
use crate::policy::{NetworkPolicy, RuleId};
use crate::proxy::recorder::SharedRecorder;

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 256;
/// Longest time a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The egress point's configuration.
#[derive(Clone)]
pub(crate) struct Egress {
    pub(crate) policy: Arc<NetworkPolicy>,
    /// Where decisions are recorded (the session's recorder); `None`: not audited (tests).
    pub(crate) recorder: Option<SharedRecorder>,
    /// The resolver (the system's; tests use a fake).
    pub(crate) world: Arc<dyn World + Send + Sync>,
    /// The outgoing content checks (`None`: `content.enabled: false`).
    pub(crate) content: Option<Arc<content::OutgoingCheck>>,
}

impl Egress {
    pub(crate) fn new(policy: NetworkPolicy, recorder: Option<SharedRecorder>) -> Egress {
        Egress {
            policy: Arc::new(policy),
            recorder,
            world: Arc::new(RealWorld),
            content: None,
        }
    }
}

/// A listener handed in: TCP (a loopback port) or a unix socket.
pub(crate) enum Listener {
    Tcp(std::net::TcpListener),
    /// Served, but no caller hands one in yet (the egress point is a loopback TCP port).
    #[allow(dead_code)]
    Unix(std::os::unix::net::UnixListener),
}

/// Serve on `listener` in a thread of its own (a single-threaded runtime). The thread ends
/// when the listener fails (never in normal operation: capjail exits with the session).
pub(crate) fn spawn(
    listener: Listener,
    egress: Egress,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    match &listener {
        Listener::Tcp(l) => l.set_nonblocking(true)?,
        Listener::Unix(l) => l.set_nonblocking(true)?,
    }
    std::thread::Builder::new()
        .name("egress".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("egress point: cannot start: {e}");
                    return;
                }
            };
            rt.block_on(serve(listener, egress));
        })
}

/// Serve one accepted connection on its own task; its slot is freed when it ends.
fn spawn_handler<S>(s: S, egress: &Egress, permit: tokio::sync::OwnedSemaphorePermit)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let e = egress.clone();
    tokio::spawn(async move {
        handle(s, &e).await;
        drop(permit);
    });
}

/// A failed accept (out of descriptors, ...): wait a little instead of spinning.
async fn accept_failed(e: std::io::Error) {
    tracing::debug!("egress accept: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

async fn serve(listener: Listener, egress: Egress) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    match listener {
        Listener::Tcp(l) => {
            let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                return;
            };
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                match l.accept().await {
                    Ok((s, _)) => spawn_handler(s, &egress, permit),
                    Err(e) => accept_failed(e).await,
                }
            }
        }
        Listener::Unix(l) => {
            let Ok(l) = tokio::net::UnixListener::from_std(l) else {
                return;
            };
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                match l.accept().await {
                    Ok((s, _)) => spawn_handler(s, &egress, permit),
                    Err(e) => accept_failed(e).await,
                }
            }
        }
    }
}

/// One client connection: one CONNECT tunnel, one plain-HTTP request, or one SOCKS5 CONNECT.
async fn handle<C>(mut client: C, egress: &Egress)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let mut buf = Vec::with_capacity(2048);
    // The first byte says which protocol: SOCKS5 starts with 5, HTTP with a method's letter.
    match tokio::time::timeout(HEAD_TIMEOUT, read_more(&mut client, &mut buf)).await {
        Ok(Ok(0)) => return, // connected and left
        Ok(Ok(_)) if buf[0] == socks::VERSION => {
            handle_socks(client, egress, buf, started).await;
            return;
        }
        _ => {}
    }
    let end = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client, &mut buf)).await {
        Ok(Ok(Some(end))) => end,
        Ok(Ok(None)) if buf.is_empty() => return,
        _ => {
            let reason = "no complete request head (HTTP/1.x proxy request expected)";
            refuse(
                &mut client,
                egress,
                "?",
                "",
                RuleId::EgressRequest,
                400,
                reason,
                started,
            )
            .await;
            return;
        }
    };
    let head = match http::parse_request_head(&buf[..end]) {
        Ok(h) => h,
        Err(reason) => {
            refuse(
                &mut client,
                egress,
                "?",
                "",
                RuleId::EgressRequest,
                400,
                &reason,
                started,
            )
            .await;
            return;
        }
    };
    let ask = match http::classify(&head) {
        Ok(a) => a,
        Err(reason) => {
            refuse(
                &mut client,
                egress,
                &head.method,
                &head.target,
                RuleId::EgressRequest,
                400,
                &reason,
                started,
            )
            .await;
            return;
        }
    };
    let (url, written, forwarded) = match &ask {
        http::Ask::Connect { url, authority } => (url.clone(), authority.clone(), None),
        http::Ask::Forward { url, .. } => {
            let headers: Vec<(String, String)> = head
                .headers
                .iter()
                .filter(|(n, _)| !http::hop_header(n))
                .cloned()
                .collect();
            (url.clone(), url.clone(), Some(headers))
        }
    };
    let dest = match gate(
        egress,
        &head.method,
        &written,
        url,
        forwarded.as_deref(),
        started,
    )
    .await
    {
        Gate::Go(d) => d,
        Gate::Refused { rule, body } => {
            let _ = client
                .write_all(&http::page(403, rule.as_str(), &body))
                .await;
            let _ = client.shutdown().await;
            return;
        }
        Gate::AuditFailed(body) => {
            let _ = client
                .write_all(&http::page(
                    500,
                    crate::policy::RuleId::Audit.static_id(),
                    &body,
                ))
                .await;
            return;
        }
    };
    let upstream = match resolve::connect_checked(&dest).await {
        Ok(s) => s,
        Err(e) => {
            let body = format!(
                "capjail egress: cannot connect to {}: {e}",
                target_text(&dest)
            );
            let _ = client
                .write_all(&http::page(
                    502,
                    crate::policy::RuleId::EgressUpstream.static_id(),
                    &body,
                ))
                .await;
            return;
        }
    };
    let early = buf[end..].to_vec();
    let r = match &ask {
        http::Ask::Connect { .. } => {
            connect::tunnel(&mut client, upstream, &early, connect::ESTABLISHED).await
        }
        http::Ask::Forward { origin, .. } => {
            connect::forward(
                &mut client,
                upstream,
                &head,
                origin,
                &host_header(&dest),
                &early,
            )
            .await
        }
    };
    if let Err(e) = r {
        tracing::debug!("egress {}: {e}", target_text(&dest));
    }
}

/// What the egress point does with one destination.
enum Gate {
    /// Connect to one of these checked addresses.
    Go(Destination),
    /// Refused (recorded): the rule and the text the client shows.
    Refused { rule: RuleId, body: String },
    /// The audit log failed: nothing is sent.
    AuditFailed(String),
}

/// Judge a destination (`url`) and what the request carries out (`forwarded`: the headers of a
/// plain-HTTP request; `None` for a tunnel, judged by host and port), and record the decision
/// before it takes effect.
async fn gate(
    egress: &Egress,
    method: &str,
    written: &str,
    url: String,
    forwarded: Option<&[(String, String)]>,
    started: Instant,
) -> Gate {
    let outcome = resolve::judge(url.clone(), egress.policy.clone(), egress.world.clone()).await;
    let refused = match (&outcome, &egress.content) {
        (Ok(d), Some(check)) => check
            .judge(&content::Outgoing {
                url: &url,
                url_entropy: forwarded.is_some(),
                host: &d.host,
                port: d.port,
                headers: forwarded.unwrap_or_default(),
            })
            .map(|notes| {
                for n in notes {
                    tracing::warn!("egress {}: {n}", target_text(d));
                }
            })
            .err(),
        _ => None,
    };
    let decision = match &refused {
        None => check::decision(method, written, &outcome, &egress.policy),
        Some(r) => {
            let allowed = check::decision(method, &r.redacted, &outcome, &egress.policy);
            check::refused(method, allowed.accesses, r.rule.clone(), &r.reason)
        }
    };
    if let Err(e) = record_decision(egress, decision, started, written.len()) {
        return Gate::AuditFailed(format!(
            "capjail egress: the audit log failed, nothing is sent: {e}"
        ));
    }
    match (outcome, refused) {
        (Ok(_), Some(r)) => {
            tracing::warn!(rule = %r.rule, target = %r.redacted, "egress refused: {}", r.reason);
            let body = format!(
                "capjail egress refused {} (rule {}): {}",
                r.redacted, r.rule, r.reason
            );
            Gate::Refused { rule: r.rule, body }
        }
        (Ok(d), None) => Gate::Go(d),
        (Err(r), _) => {
            tracing::warn!(rule = %r.rule, target = %r.target, "egress refused: {}", r.reason);
            Gate::Refused {
                rule: r.rule.clone(),
                body: refusal_body(&r),
            }
        }
    }
}

/// One SOCKS5 client (`buf` holds its first bytes): no authentication, CONNECT only, the target
/// judged as an HTTP CONNECT is.
async fn handle_socks<C>(mut client: C, egress: &Egress, mut buf: Vec<u8>, started: Instant)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    const MAX_SOCKS: usize = 1024;
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    let used = loop {
        match socks::choose_method(&buf) {
            Ok(Some((used, true))) => break used,
            Ok(Some((_, false))) => {
                let _ = client.write_all(&[socks::VERSION, 0xff]).await;
                let reason = "SOCKS5 without a no-authentication method (the only one served)";
                socks_refusal(egress, reason, started);
                return;
            }
            Ok(None) => {}
            Err(reason) => {
                socks_refusal(egress, &reason, started);
                return;
            }
        }
        if buf.len() > MAX_SOCKS
            || !matches!(tokio::time::timeout_at(deadline, read_more(&mut client, &mut buf)).await, Ok(Ok(n)) if n > 0)
        {
            return;
        }
    };
    buf.drain(..used);
    if client.write_all(&[socks::VERSION, 0]).await.is_err() {
        return;
    }
    let (used, authority, url) = loop {
        match socks::parse_request(&buf) {
            Ok(Some(r)) => break r,
            Ok(None) => {}
            Err((code, reason)) => {
                socks_refusal(egress, &reason, started);
                let _ = client.write_all(&socks::reply(code)).await;
                return;
            }
        }
        if buf.len() > MAX_SOCKS
            || !matches!(tokio::time::timeout_at(deadline, read_more(&mut client, &mut buf)).await, Ok(Ok(n)) if n > 0)
        {
            return;
        }
    };
    let early = buf[used..].to_vec();
    let dest = match gate(egress, "SOCKS5", &authority, url, None, started).await {
        Gate::Go(d) => d,
        Gate::Refused { .. } => {
            let _ = client.write_all(&socks::reply(socks::NOT_ALLOWED)).await;
            return;
        }
        Gate::AuditFailed(_) => {
            let _ = client
                .write_all(&socks::reply(socks::GENERAL_FAILURE))
                .await;
            return;
        }
    };
    let upstream = match resolve::connect_checked(&dest).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("egress SOCKS5 {}: {e}", target_text(&dest));
            let _ = client
                .write_all(&socks::reply(socks::HOST_UNREACHABLE))
                .await;
            return;
        }
    };
    let ok = socks::reply(socks::SUCCEEDED);
    if let Err(e) = connect::tunnel(&mut client, upstream, &early, &ok).await {
        tracing::debug!("egress SOCKS5 {}: {e}", target_text(&dest));
    }
}

/// Read what is there (at most 4 KiB) onto `buf`: the count, 0 at EOF.
async fn read_more<C: AsyncRead + Unpin>(c: &mut C, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 4096];
    let n = c.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Read until the end of the head; `Ok(None)`: EOF or head too long.
async fn read_head<C: AsyncRead + Unpin>(
    c: &mut C,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = http::head_end(buf) {
            return Ok(Some(end));
        }
        if buf.len() > http::MAX_HEAD {
            return Ok(None);
        }
        let n = c.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[allow(clippy::too_many_arguments)]
async fn refuse<C: AsyncWrite + Unpin>(
    client: &mut C,
    egress: &Egress,
    method: &str,
    written: &str,
    rule: RuleId,
    status: u16,
    reason: &str,
    started: Instant,
) {
    let body = format!("capjail egress refused this request (rule {rule}): {reason}");
    let page = http::page(status, rule.as_str(), &body);
    if !record_refusal(egress, method, written, rule, reason, started) {
        return;
    }
    let _ = client.write_all(&page).await;
    let _ = client.shutdown().await;
}

/// A SOCKS5 handshake or request capjail refuses (no target read yet: `egress.request`).
fn socks_refusal(egress: &Egress, reason: &str, started: Instant) {
    record_refusal(egress, "SOCKS5", "", RuleId::EgressRequest, reason, started);
}

/// Record a refusal of a malformed request. `false`: the audit log failed.
fn record_refusal(
    egress: &Egress,
    method: &str,
    written: &str,
    rule: RuleId,
    reason: &str,
    started: Instant,
) -> bool {
    tracing::warn!(rule = %rule, "egress refused: {reason}");
    let outcome = Err(NetRefusal {
        rule,
        reason: reason.to_string(),
        target: http::shown(written),
    });
    let decision = check::decision(method, written, &outcome, &egress.policy);
    record_decision(egress, decision, started, written.len()).is_ok()
}

/// The refusal text the server's HTTP client shows.
fn refusal_body(r: &NetRefusal) -> String {
    format!(
        "capjail egress refused {} (rule {}): {}",
        r.target, r.rule, r.reason
    )
}

/// Record the decision before it takes effect. `Err`: the audit log failed (fail closed).
fn record_decision(
    egress: &Egress,
    decision: crate::check::decide::Decision,
    started: Instant,
    weight: usize,
) -> std::io::Result<()> {
    let Some(rec) = &egress.recorder else {
        return Ok(());
    };
    let mut r = rec
        .lock()
        .map_err(|_| std::io::Error::other("recorder lock poisoned"))?;
    // A connection or request the server made: `direction: server_to_client`.
    use crate::audit::{DecisionRecord, Direction, Record};
    r.record(Record::Decision(Box::new(DecisionRecord {
        latency_us: started.elapsed().as_micros() as u64,
        weight,
        ..DecisionRecord::new(Direction::ServerToClient, None, None, decision)
    })))
}

fn target_text(d: &Destination) -> String {
    if d.host.contains(':') {
        format!("[{}]:{}", d.host, d.port)
    } else {
        format!("{}:{}", d.host, d.port)
    }
}

/// The `Host` header for a checked plain-HTTP destination.
fn host_header(d: &Destination) -> String {
    if d.port == 80 {
        if d.host.contains(':') {
            format!("[{}]", d.host)
        } else {
            d.host.clone()
        }
    } else {
        target_text(d)
    }
}

/// The environment that points the server's HTTP clients at the egress point.
pub(crate) fn proxy_env(url: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for k in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        v.push((k.to_string(), url.to_string()));
        v.push((k.to_ascii_lowercase(), url.to_string()));
    }
    // Nothing bypasses the egress point: inside the namespace there is nothing else to reach.
    v.push(("NO_PROXY".into(), String::new()));
    v.push(("no_proxy".into(), String::new()));
    v
}

#[cfg(test)]
mod tests;
