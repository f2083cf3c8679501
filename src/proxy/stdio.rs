//! The stdio transport: frames the client's stdin and the server's stdout into lines, hands
//! each line to the session's pipeline (`pipeline::Session`) and carries out its outputs.
//! Nothing here judges a message.
//!
//! Write before forward: an allowed client line is held until the audit log is written up to
//! its decision's record. Lines already waiting in the input buffer (a pipelined client) are
//! judged first and released together, so they share one audit batch.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::sync::OnceLock;

use super::framing::{Frame, InPlaceLines, LineReader, Slice};
use super::held;
use super::outbox::Outbox;
use super::pipeline::{Output, Session};
use super::MAX_SERVER_LINE_BYTES;

const PUMP_BUFFER: usize = 256 * 1024;
/// The server's stdout pipe's capacity (`widen_pipe`): twice the kernel's default. Wider
/// (up to 1 MiB, the most an unprivileged process may set by default) saves wake-ups but
/// each large answer then lies in the pipe whole, in pages the cache no longer holds when
/// the pump reads them (1 MiB answers pinned to one CPU: 0.87x the relay at 1 MiB, 0.93x at
/// 128 KiB; the default 64 KiB loses unpinned, where each wake-up crosses CPUs).
const SERVER_PIPE: usize = 128 * 1024;

/// capjail's stdout (fd 1), never closed.
pub(crate) struct ClientStdout(ManuallyDrop<File>);

impl ClientStdout {
    pub(crate) fn fd1() -> ClientStdout {
        // SAFETY: fd 1 stays open for the life of the process; ManuallyDrop never closes it.
        ClientStdout(ManuallyDrop::new(unsafe { File::from_raw_fd(1) }))
    }
}

impl Write for ClientStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0 as &File).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// capjail's stdin (fd 0), never closed. A `&File`, not a wrapper type: `Read for &File` reads
/// straight into the pump's buffer (`read_buf`), where a wrapper implementing only `read`
/// makes `BufReader` zero its whole buffer (256 KiB) before the first read, and those pages
/// stay resident; a pipe's read fills at most what the pipe holds (64 KiB by default).
pub(crate) fn client_stdin() -> &'static File {
    static FD0: OnceLock<ManuallyDrop<File>> = OnceLock::new();
    // SAFETY: fd 0 stays open for the life of the process; ManuallyDrop never closes it.
    FD0.get_or_init(|| ManuallyDrop::new(unsafe { File::from_raw_fd(0) }))
}

/// How many bytes of the client's input a read returns without waiting (`FIONREAD` on fd 0;
/// 0 when it cannot tell: the pump then reads no further before releasing what it holds).
pub(crate) fn client_waiting() -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD on fd 0 writes one int into `n`.
    let r = unsafe { libc::ioctl(0, libc::FIONREAD, &mut n) };
    if r == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// Client -> server. Returns a [`super::fatal::AuditFailure`] for a fatal audit failure.
/// `waiting` says how many input bytes a read returns at once ([`client_waiting`] for fd 0).
pub(crate) fn pump_client(
    session: &Session,
    input: impl Read,
    waiting: impl Fn() -> usize,
    out: &Outbox,
) -> io::Result<()> {
    let checking = session.checking();
    let max_line = session.max_line();
    let mut reader = LineReader::new(BufReader::with_capacity(PUMP_BUFFER, input), max_line);
    let recorder = session.recorder().clone();
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
    // The last release carried more than one line: the client sends in bursts.
    let mut bursting = false;
    let mut buf = Vec::new();
    // What each line comes to (one buffer for every line).
    let mut outputs = Vec::new();
    loop {
        if !held.is_empty() && (!reader.line_buffered() || held.is_full()) {
            // In a burst (more than one line judged since the last release, or released then)
            // whose next lines have arrived meanwhile: judge them first, so that they share the
            // audit batch and the forward (unpinned with the log on, the client pump is the
            // bottleneck, issue 19). Only bytes already there are read: the pump never waits
            // with lines held. A lone request (a round trip) never asks.
            if (bursting || held.len() > 1) && !held.is_full() && reader.fill_ready(&waiting)? {
                continue;
            }
            bursting = held.len() > 1;
            let seq = recorder
                .lock()
                .map_err(|_| io::Error::other("recorder lock poisoned"))?
                .last_seq;
            let released = held.release(watermark.as_ref(), seq, out)?;
            settle(watermark.as_ref());
            if !released {
                return Ok(());
            }
        } else if held.is_empty() {
            // What stages sent to the server while this pump judged a line (outbox).
            out.flush_deferred()?;
            settle(watermark.as_ref());
        }
        match reader.next_into(&mut buf) {
            Ok(Frame::Eof) => {
                if !held.is_empty() {
                    let seq = recorder.lock().map(|r| r.last_seq).unwrap_or(u64::MAX);
                    held.release(watermark.as_ref(), seq, out)?;
                }
                out.flush_deferred()?;
                settle(watermark.as_ref());
                return Ok(());
            }
            Ok(Frame::TooLong(n)) => {
                for o in session.on_client_oversized(n) {
                    match o {
                        // The refusal's record first, as for any refused line.
                        Output::Record(r) => session.record_from_client_pump(r)?,
                        Output::ToClient(mut line) => {
                            line.push(b'\n');
                            out.send_to_client(&line)?;
                        }
                        Output::Forward | Output::ToServer(_) => {}
                    }
                }
            }
            Ok(Frame::Line(line)) => {
                match session.on_client_message_into(&line, &mut outputs) {
                    Ok(()) => {}
                    Err(e) => {
                        let e = match super::fatal::AuditFailure::find(&e) {
                            Some(a) => super::fatal::AuditFailure::io(format!(
                                "cannot record a decision: {a}"
                            )),
                            None => e,
                        };
                        held.hold(&line, None);
                        held.refuse_all(out, &e);
                        return Err(e);
                    }
                };
                for o in outputs.drain(..) {
                    match o {
                        Output::Forward => held.hold(&line, None),
                        Output::ToServer(rewritten) => held.hold(&line, Some(rewritten)),
                        Output::ToClient(mut reply) => {
                            reply.push(b'\n');
                            out.send_to_client(&reply)?;
                        }
                        // Queued now; the line is released once the log holds it (`held`).
                        Output::Record(r) => {
                            if let Err(e) = session.record_from_client_pump(r) {
                                // Nothing of this line, nor of the lines held, is carried out.
                                held.hold(&line, None);
                                held.refuse_all(out, &e);
                                return Err(e);
                            }
                        }
                    }
                }
                buf = line;
            }
            Err(e) => return Err(e),
        }
    }
}

/// After the pump forwarded, or before it may block reading: what the audit queue put off
/// until then (the wake-up of its writer thread, giving back a kept lock).
fn settle(watermark: Option<&crate::audit::queue::Watermark>) {
    if let Some(w) = watermark {
        w.settle();
    }
}

/// Server -> client. Returns a [`super::fatal::AuditFailure`] for a fatal audit failure.
/// The lines for the client are queued in the outbox and written together once no further
/// line is at hand (one `write` per burst of answers; a lone answer is written at once).
/// `woke` is told how many lines each wake-up brought (the lines judged before none was
/// buffered any more: `latency::ServerPace`).
pub(crate) fn pump_server(
    session: &Session,
    server_out: impl Read + AsFd,
    out: &Outbox,
    woke: impl FnMut(usize),
) -> io::Result<()> {
    widen_pipe(server_out.as_fd());
    let pumped = relay_server(session, server_out, out, woke);
    if pumped.is_err() {
        // What was judged before the failure still goes out, as it would have unqueued.
        let _ = out.flush_client();
    }
    pumped
}

/// The server's stdout pipe holds `SERVER_PIPE` bytes instead of the kernel's default 64 KiB
/// (best effort: an unprivileged user over its pipe quota keeps the default). A large answer
/// then crosses it with half the wake-ups of the server and of this pump. The pipe's pages
/// are taken only while it holds unread bytes. Nothing else changes: the pump reads what the
/// server wrote, in order, whatever the pipe's size.
fn widen_pipe(fd: BorrowedFd<'_>) {
    // SAFETY: fcntl on an open descriptor; F_SETPIPE_SZ changes only the pipe's capacity (and
    // fails on anything that is not a pipe).
    let r = unsafe {
        libc::fcntl(
            fd.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            SERVER_PIPE as libc::c_int,
        )
    };
    if r < 0 {
        tracing::debug!(
            "the server's pipe keeps its size: {}",
            io::Error::last_os_error()
        );
    }
}

fn relay_server(
    session: &Session,
    server_out: impl Read,
    out: &Outbox,
    mut woke: impl FnMut(usize),
) -> io::Result<()> {
    // Lines are judged and relayed from the reader's buffer: a relayed answer is copied once,
    // from that buffer into the client's pipe (or the outbox queue, for small ones).
    let mut reader = InPlaceLines::new(server_out, PUMP_BUFFER, MAX_SERVER_LINE_BYTES)
        .with_text_shapes(session.content_checks());
    // One buffer of outputs for every line.
    let mut outputs = Vec::new();
    // Lines judged since none was buffered.
    let mut lines = 0;
    loop {
        if !reader.line_buffered() {
            // The next read may wait for the server: what is queued goes out first.
            out.flush_client()?;
            woke(std::mem::take(&mut lines));
        }
        lines += 1;
        let whole = match reader.next()? {
            Slice::Eof => return out.flush_client(),
            Slice::TooLong(n) => {
                outputs = session.on_server_oversized(n, MAX_SERVER_LINE_BYTES);
                &[][..]
            }
            Slice::Line { whole, len, facts } => {
                session.on_server_message_into(&whole[..len], facts, &mut outputs);
                whole
            }
        };
        for o in outputs.drain(..) {
            match o {
                Output::Forward if whole.last() == Some(&b'\n') => out.queue_to_client(whole)?,
                Output::Forward => {
                    // The last line, without a newline.
                    let mut l = whole.to_vec();
                    l.push(b'\n');
                    out.queue_to_client(&l)?;
                }
                Output::ToClient(mut l) => {
                    l.push(b'\n');
                    out.queue_to_client(&l)?;
                }
                Output::Record(r) => session.record(r)?,
                Output::ToServer(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's stdout that hands out one chunk per read.
    struct Chunks(Vec<Vec<u8>>);

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let c = self.0.remove(0);
            buf[..c.len()].copy_from_slice(&c);
            Ok(c.len())
        }
    }

    /// The server pump says how many lines each read brought, once it has judged them: what
    /// `latency::ServerPace` paces itself by.
    #[test]
    fn the_server_pump_counts_the_lines_of_each_wake_up() {
        let session = super::super::pipeline::tests::offline();
        let line = b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n";
        let chunks = Chunks(vec![line.repeat(3), line.to_vec(), line.repeat(2)]);
        let mut woke = Vec::new();
        relay_server(&session, chunks, &Outbox::discarding(), |n| woke.push(n)).unwrap();
        assert_eq!(woke, [0, 3, 1, 2]);
    }
}
