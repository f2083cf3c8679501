//! capjail's own voice in a session.
//!
//! Some stages must speak for themselves instead of relaying: list the server's tools before
//! deciding on a call (pinning), ask the person at the client (`elicitation/create` for an
//! approval), or hold a client request and forward it later, once a verdict arrives from
//! another thread. [`Outbox`] is the one place that does this for every stage:
//!
//! - **Own requests** ([`Outbox::request_server`], [`Outbox::request_client`]) get ids from
//!   capjail's own id space — strings `capjail:<session nonce>:<n>` — that neither peer can
//!   use: a client request or a server request with such an id is refused by the filters
//!   ([`Outbox::is_own_id`]). The answer is routed to the callback given with the request
//!   ([`Outbox::take_answer`], called by the filters before anything else looks at a
//!   response) and never relayed to the other side.
//! - **Held messages** are sent later from any thread with [`Outbox::send_to_server`] /
//!   [`Outbox::send_to_client`]; each whole line is written with its newline in one call under
//!   that side's lock, so it never interleaves with the pumps' lines.
//!
//! Write before forward holds here too: once [`Outbox::set_durability`] is called, a line sent
//! to the server from any thread other than the client pump waits until the audit log is
//! written up to the last record queued; a line sent to the server FROM the client pump (a
//! stage acting while the pump judges a message) is deferred and written by the pump after the
//! lines it holds for the audit log ([`Outbox::flush_deferred`]), so capjail's own requests
//! never overtake the client's messages (a `tools/list` never reaches the server before the
//! `notifications/initialized` the pump still holds).
//!
//! Lines the server pump relays are queued ([`Outbox::queue_to_client`]) and written together
//! when it has no further line at hand ([`Outbox::flush_client`]): one `write` for a burst of
//! answers instead of one each. Every other line to the client is written after what is
//! queued, under the same lock, so nothing overtakes a queued line.
//!
//! When the session ends, [`Outbox::close`] answers every waiting callback with
//! [`Answer::Closed`] so no stage waits for ever.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::session::id_key;

/// How capjail's own request was answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    /// The `result` member.
    Result(Value),
    /// The `error` member.
    Error(Value),
    /// The session ended (or the request was cancelled) before an answer came.
    Closed,
}

/// Called once with the answer, on the thread that read it (a pump): keep it short, or hand
/// the work to another thread.
pub(crate) type OnAnswer = Box<dyn FnOnce(Answer) + Send>;

/// Which peer an own request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    Server,
    Client,
}

/// A sink for whole lines (the server's stdin, capjail's stdout, or a buffer in tests).
pub(crate) type LineSink = Box<dyn Write + Send>;

pub(crate) struct Outbox {
    server: Mutex<LineSink>,
    client: Mutex<ClientSink>,
    prefix: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<String, (Peer, OnAnswer)>>,
    closed: std::sync::atomic::AtomicBool,
    /// The client pump's thread: its server lines are deferred (see the module doc).
    client_pump: std::sync::OnceLock<std::thread::ThreadId>,
    deferred: Mutex<Vec<u8>>,
    durability: std::sync::OnceLock<Durability>,
    /// Answers taken whose callback has not finished: what it does next (a held call released
    /// once capjail's own `tools/list` is answered) is still owed to the server.
    answering: Arc<AtomicUsize>,
}

/// Counts one taken answer until its callback has run (or was dropped uncalled).
struct Answering(Arc<AtomicUsize>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a server line waits for: the audit log written up to the last queued record.
pub(crate) struct Durability {
    pub(crate) watermark: crate::audit::queue::Watermark,
    pub(crate) recorder: super::recorder::SharedRecorder,
}

impl Durability {
    fn wait(&self) -> io::Result<()> {
        let seq = self
            .recorder
            .lock()
            .map_err(|_| io::Error::other("recorder lock poisoned"))?
            .last_seq;
        self.watermark
            .wait(seq)
            .map_err(|e| super::fatal::AuditFailure::io(format!("cannot record a decision: {e}")))
    }
}

/// capjail's stdout and the server pump's lines queued for it (written before anything else).
struct ClientSink {
    sink: LineSink,
    queued: Vec<u8>,
}

/// Bytes the server pump queues for the client before writing them (a pipe's capacity); a
/// line at least this long is written on its own, never copied.
const CLIENT_BATCH: usize = 64 * 1024;

impl ClientSink {
    fn flush_queued(&mut self) -> io::Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        let written = self.sink.write_all(&self.queued);
        self.queued.clear();
        written
    }
}

/// The prefix of every id capjail gives its own requests.
pub(crate) const OWN_ID_PREFIX: &str = "capjail:";

impl Outbox {
    pub(crate) fn new(server: LineSink, client: LineSink) -> Arc<Outbox> {
        Arc::new(Outbox {
            server: Mutex::new(server),
            client: Mutex::new(ClientSink {
                sink: client,
                queued: Vec::new(),
            }),
            prefix: format!("{OWN_ID_PREFIX}{:016x}:", nonce()),
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            client_pump: std::sync::OnceLock::new(),
            deferred: Mutex::new(Vec::new()),
            durability: std::sync::OnceLock::new(),
            answering: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// An outbox whose lines go nowhere (`capjail check`, `audit replay`, unit tests).
    pub(crate) fn discarding() -> Arc<Outbox> {
        Outbox::new(Box::new(io::sink()), Box::new(io::sink()))
    }

    /// Is this id in capjail's own id space? Such ids are refused from either peer.
    pub(crate) fn is_own_id(id: &Value) -> bool {
        id.as_str().is_some_and(|s| s.starts_with(OWN_ID_PREFIX))
    }

    /// Send capjail's own request to the server; `on_answer` gets the server's answer.
    /// Returns the id used.
    pub(crate) fn request_server(
        &self,
        method: &str,
        params: Option<Value>,
        on_answer: OnAnswer,
    ) -> io::Result<Value> {
        self.request(Peer::Server, method, params, on_answer)
    }

    /// Send capjail's own request to the client; `on_answer` gets the client's answer.
    pub(crate) fn request_client(
        &self,
        method: &str,
        params: Option<Value>,
        on_answer: OnAnswer,
    ) -> io::Result<Value> {
        self.request(Peer::Client, method, params, on_answer)
    }

    fn request(
        &self,
        peer: Peer,
        method: &str,
        params: Option<Value>,
        on_answer: OnAnswer,
    ) -> io::Result<Value> {
        if self.closed.load(Ordering::Acquire) {
            on_answer(Answer::Closed);
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the session has ended",
            ));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = Value::String(format!("{}{n}", self.prefix));
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(p) = params {
            msg["params"] = p;
        }
        self.waiting
            .lock()
            .map_err(|_| io::Error::other("outbox lock poisoned"))?
            .insert(id_key(&id), (peer, on_answer));
        let line = serde_json::to_vec(&msg).map_err(io::Error::other)?;
        let sent = match peer {
            Peer::Server => self.send_to_server(&line),
            Peer::Client => self.send_to_client(&line),
        };
        if let Err(e) = sent {
            if let Some(cb) = self.cancel(&id) {
                cb(Answer::Closed);
            }
            return Err(e);
        }
        Ok(id)
    }

    /// If `id` is one of capjail's own requests to `from`, take its callback (the filters
    /// then call it with the answer and relay nothing). A response with an own id from the
    /// other peer is not taken: the filters drop it as an answer to nothing.
    pub(crate) fn take_answer(&self, from: Peer, id: &Value) -> Option<OnAnswer> {
        if !Outbox::is_own_id(id) {
            return None;
        }
        let mut waiting = self.waiting.lock().ok()?;
        let key = id_key(id);
        match waiting.get(&key) {
            Some((peer, _)) if *peer == from => waiting.remove(&key).map(|(_, cb)| {
                // Counted under the `waiting` lock: `close_server_if_idle` never sees the
                // request gone before its answer's work is counted.
                self.answering.fetch_add(1, Ordering::AcqRel);
                let guard = Answering(self.answering.clone());
                Box::new(move |a: Answer| {
                    cb(a);
                    drop(guard);
                }) as OnAnswer
            }),
            _ => None,
        }
    }

    /// Forget an own request (a stage gave up waiting); returns its callback, uncalled.
    pub(crate) fn cancel(&self, id: &Value) -> Option<OnAnswer> {
        self.waiting
            .lock()
            .ok()?
            .remove(&id_key(id))
            .map(|(_, cb)| cb)
    }

    /// Server lines wait for the audit log from now on (see the module doc).
    pub(crate) fn set_durability(&self, d: Durability) {
        let _ = self.durability.set(d);
    }

    /// Close the server's input (its stdin gets EOF, as a direct run's would when the client's
    /// ends) when nothing is owed to it: no own request waits for its answer or is being
    /// answered (a held call is released after capjail's own `tools/list` is answered) and no
    /// deferred line waits to be sent. Later lines to the server fail with `BrokenPipe`. True when closed
    /// (now or before).
    pub(crate) fn close_server_if_idle(&self) -> bool {
        let Ok(waiting) = self.waiting.lock() else {
            return false;
        };
        if !waiting.is_empty()
            || self.answering.load(Ordering::Acquire) > 0
            || self.deferred.lock().map_or(true, |d| !d.is_empty())
        {
            return false;
        }
        let Ok(mut server) = self.server.lock() else {
            return false;
        };
        *server = Box::new(ClosedInput);
        true
    }

    /// The calling thread is the client pump: its server lines are deferred.
    pub(crate) fn mark_client_pump(&self) {
        let _ = self.client_pump.set(std::thread::current().id());
    }

    /// Write one whole line (the newline is added) to the server: after the audit log holds
    /// every record queued so far, or, from the client pump, after the lines it holds.
    pub(crate) fn send_to_server(&self, line: &[u8]) -> io::Result<()> {
        if self.client_pump.get() == Some(&std::thread::current().id()) {
            let mut d = self
                .deferred
                .lock()
                .map_err(|_| io::Error::other("outbox lock poisoned"))?;
            d.extend_from_slice(line);
            if line.last() != Some(&b'\n') {
                d.push(b'\n');
            }
            return Ok(());
        }
        if let Some(d) = self.durability.get() {
            d.wait()?;
        }
        write_line(&self.server, line)
    }

    /// The client pump's own path to the server: `lines` (whole lines, each with its newline)
    /// were already waited for by the pump; the deferred lines follow them, after waiting for
    /// the audit log again.
    pub(crate) fn pump_to_server(&self, lines: &[u8]) -> io::Result<()> {
        if !lines.is_empty() {
            write_line(&self.server, lines)?;
        }
        self.flush_deferred()
    }

    /// Write what the client pump deferred (see the module doc).
    pub(crate) fn flush_deferred(&self) -> io::Result<()> {
        let pending = {
            let mut d = self
                .deferred
                .lock()
                .map_err(|_| io::Error::other("outbox lock poisoned"))?;
            if d.is_empty() {
                return Ok(());
            }
            std::mem::take(&mut *d)
        };
        if let Some(d) = self.durability.get() {
            d.wait()?;
        }
        write_line(&self.server, &pending)
    }

    /// Write one whole line (the newline is added) to the client, after the lines queued.
    pub(crate) fn send_to_client(&self, line: &[u8]) -> io::Result<()> {
        let mut out = self
            .client
            .lock()
            .map_err(|_| io::Error::other("outbox lock poisoned"))?;
        out.flush_queued()?;
        write_whole(&mut out.sink, line)
    }

    /// The server pump's lines: queue `line` (one whole line with its newline) for the client;
    /// it is written by the next [`Outbox::flush_client`] or line to the client, or now when
    /// the queue is full.
    pub(crate) fn queue_to_client(&self, line: &[u8]) -> io::Result<()> {
        debug_assert_eq!(line.last(), Some(&b'\n'));
        let mut out = self
            .client
            .lock()
            .map_err(|_| io::Error::other("outbox lock poisoned"))?;
        if out.queued.len() + line.len() > CLIENT_BATCH {
            out.flush_queued()?;
        }
        if line.len() >= CLIENT_BATCH {
            return out.sink.write_all(line);
        }
        out.queued.extend_from_slice(line);
        Ok(())
    }

    /// Write the lines queued for the client.
    pub(crate) fn flush_client(&self) -> io::Result<()> {
        self.client
            .lock()
            .map_err(|_| io::Error::other("outbox lock poisoned"))?
            .flush_queued()
    }

    /// The session is over: every waiting callback gets [`Answer::Closed`]; later requests
    /// fail at once.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let drained: Vec<OnAnswer> = match self.waiting.lock() {
            Ok(mut w) => w.drain().map(|(_, (_, cb))| cb).collect(),
            Err(_) => Vec::new(),
        };
        for cb in drained {
            cb(Answer::Closed);
        }
    }
}

/// Split a response into the answer for an own request.
pub(crate) fn answer_of(response: &Value) -> Answer {
    if let Some(r) = response.get("result") {
        Answer::Result(r.clone())
    } else if let Some(e) = response.get("error") {
        Answer::Error(e.clone())
    } else {
        Answer::Closed
    }
}

/// The server's input after [`Outbox::close_server_if_idle`]: the pipe is gone.
struct ClosedInput;

impl Write for ClosedInput {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the server's input is closed (the client's ended)",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_line(sink: &Mutex<LineSink>, line: &[u8]) -> io::Result<()> {
    let mut out = sink
        .lock()
        .map_err(|_| io::Error::other("outbox lock poisoned"))?;
    write_whole(&mut out, line)
}

fn write_whole(out: &mut LineSink, line: &[u8]) -> io::Result<()> {
    // One write of the whole line: copy only when the caller's slice lacks the newline.
    if line.last() == Some(&b'\n') {
        out.write_all(line)
    } else {
        let mut whole = Vec::with_capacity(line.len() + 1);
        whole.extend_from_slice(line);
        whole.push(b'\n');
        out.write_all(&whole)
    }
}

fn nonce() -> u64 {
    let mut b = [0u8; 8];
    // getrandom(2) via libc; fall back to time and pid (uniqueness, not secrecy, is needed:
    // the filters refuse every id with the prefix anyway).
    // SAFETY: writes at most 8 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ ((std::process::id() as u64) << 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn own_requests_get_own_ids_and_their_answers_come_back() {
        let (server, client) = (Buf::default(), Buf::default());
        let ob = Outbox::new(Box::new(server.clone()), Box::new(client.clone()));
        let (tx, rx) = mpsc::channel();
        let id = ob
            .request_server("tools/list", None, Box::new(move |a| tx.send(a).unwrap()))
            .unwrap();
        assert!(Outbox::is_own_id(&id));
        let sent: Value = serde_json::from_slice(&server.0.lock().unwrap()).unwrap();
        assert_eq!(sent["method"], "tools/list");
        assert_eq!(sent["id"], id);
        assert!(client.0.lock().unwrap().is_empty());
        // An answer from the wrong peer is not taken; from the right one it is, once.
        assert!(ob.take_answer(Peer::Client, &id).is_none());
        let cb = ob.take_answer(Peer::Server, &id).unwrap();
        assert!(ob.take_answer(Peer::Server, &id).is_none());
        cb(answer_of(&json!({"id": id, "result": {"tools": []}})));
        assert_eq!(rx.recv().unwrap(), Answer::Result(json!({"tools": []})));
        assert!(!Outbox::is_own_id(&json!(1)));
        assert!(!Outbox::is_own_id(&json!("capjai")));
    }

    #[test]
    fn the_servers_input_stays_open_while_an_answer_is_being_handled() {
        let ob = Outbox::new(Box::new(Buf::default()), Box::new(Buf::default()));
        let id = ob
            .request_server("tools/list", None, Box::new(|_| {}))
            .unwrap();
        assert!(!ob.close_server_if_idle(), "an own request waits");
        let cb = ob.take_answer(Peer::Server, &id).unwrap();
        // Taken, not yet handled: what the callback does next is still owed to the server.
        assert!(!ob.close_server_if_idle(), "an answer is being handled");
        cb(Answer::Result(json!({"tools": []})));
        assert!(ob.close_server_if_idle());
        // A callback dropped uncalled releases too.
        let ob = Outbox::new(Box::new(Buf::default()), Box::new(Buf::default()));
        let id = ob
            .request_server("tools/list", None, Box::new(|_| {}))
            .unwrap();
        drop(ob.take_answer(Peer::Server, &id).unwrap());
        assert!(ob.close_server_if_idle());
    }

    #[test]
    fn close_answers_every_waiter_and_refuses_later_requests() {
        let ob = Outbox::discarding();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        ob.request_client(
            "elicitation/create",
            Some(json!({})),
            Box::new(move |a| tx.send(a).unwrap()),
        )
        .unwrap();
        ob.close();
        assert_eq!(rx.recv().unwrap(), Answer::Closed);
        assert!(ob
            .request_server("ping", None, Box::new(move |a| tx2.send(a).unwrap()))
            .is_err());
        assert_eq!(rx.recv().unwrap(), Answer::Closed);
    }

    #[test]
    fn queued_lines_go_first_and_long_ones_are_not_copied() {
        let c = Buf::default();
        let ob = Outbox::new(Box::new(io::sink()), Box::new(c.clone()));
        ob.queue_to_client(b"1\n").unwrap();
        ob.queue_to_client(b"2\n").unwrap();
        assert!(c.0.lock().unwrap().is_empty(), "queued, not written");
        // Another writer's line follows what was queued before it.
        ob.send_to_client(b"own").unwrap();
        assert_eq!(&*c.0.lock().unwrap(), b"1\n2\nown\n");
        ob.queue_to_client(b"3\n").unwrap();
        let mut long = vec![b'x'; CLIENT_BATCH];
        long.push(b'\n');
        ob.queue_to_client(&long).unwrap();
        assert_eq!(
            c.0.lock().unwrap().len(),
            10 + long.len(),
            "written at once"
        );
        ob.queue_to_client(b"4\n").unwrap();
        ob.flush_client().unwrap();
        ob.flush_client().unwrap();
        assert!(c.0.lock().unwrap().ends_with(b"x\n4\n"));
    }

    #[test]
    fn lines_are_written_whole_with_one_newline() {
        let s = Buf::default();
        let ob = Outbox::new(Box::new(s.clone()), Box::new(io::sink()));
        ob.send_to_server(b"{\"a\":1}").unwrap();
        ob.send_to_server(b"{\"b\":2}\n").unwrap();
        assert_eq!(&*s.0.lock().unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
    }
}
