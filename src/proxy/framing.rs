//! Newline-delimited framing with a size limit.
//!
//! A line longer than the limit is not buffered: its bytes are skipped up to the next newline
//! and reported as [`Frame::TooLong`], so the stream stays in sync and memory stays bounded.

use std::io::{self, BufRead};

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// One complete line, without its `\n` (a `\r` before it is kept: JSON treats it as blank).
    Line(Vec<u8>),
    /// A line over the limit was skipped; its length in bytes.
    TooLong(usize),
    /// The stream ended. A last line without a newline is returned as `Line` first.
    Eof,
}

pub(crate) struct LineReader<R> {
    inner: R,
    max: usize,
}

impl<R: BufRead> LineReader<R> {
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max }
    }

    /// Read the next frame into `buf` (cleared first); `buf` is reused across calls.
    pub(crate) fn next_into(&mut self, buf: &mut Vec<u8>) -> io::Result<Frame> {
        buf.clear();
        let mut skipped: Option<usize> = None;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(match skipped {
                    Some(n) => Frame::TooLong(n),
                    None if buf.is_empty() => Frame::Eof,
                    None => Frame::Line(std::mem::take(buf)),
                });
            }
            let (chunk, found) = match memchr(available) {
                Some(i) => (&available[..i], Some(i)),
                None => (available, None),
            };
            let used = chunk.len() + usize::from(found.is_some());
            match skipped.as_mut() {
                Some(n) => *n += chunk.len(),
                None if buf.len() + chunk.len() > self.max => {
                    skipped = Some(buf.len() + chunk.len());
                    buf.clear();
                    buf.shrink_to(64 * 1024);
                }
                None => buf.extend_from_slice(chunk),
            }
            self.inner.consume(used);
            if found.is_some() {
                return Ok(match skipped {
                    Some(n) => Frame::TooLong(n),
                    None => Frame::Line(std::mem::take(buf)),
                });
            }
        }
    }
}

impl<T: io::Read> LineReader<io::BufReader<T>> {
    /// Is a whole line already buffered (the next `next_into` returns without reading)?
    pub(crate) fn line_buffered(&self) -> bool {
        memchr(self.inner.buffer()).is_some()
    }
}

/// The first newline (SIMD search: a 16 MiB line is scanned at memory speed).
fn memchr(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8], max: usize, cap: usize) -> Vec<Frame> {
        let mut r = LineReader::new(io::BufReader::with_capacity(cap, input), max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for _ in 0..100 {
            let f = r.next_into(&mut buf).unwrap();
            let eof = f == Frame::Eof;
            out.push(f);
            if eof {
                break;
            }
        }
        out
    }

    #[test]
    fn splits_lines_across_buffer_boundaries() {
        let f = frames(b"abc\ndefgh\n\nlast", 100, 2);
        assert_eq!(
            f,
            vec![
                Frame::Line(b"abc".to_vec()),
                Frame::Line(b"defgh".to_vec()),
                Frame::Line(vec![]),
                Frame::Line(b"last".to_vec()),
                Frame::Eof
            ]
        );
    }

    #[test]
    fn too_long_lines_are_skipped_and_the_stream_stays_in_sync() {
        let f = frames(b"0123456789abc\nok\n0123456789", 5, 3);
        assert_eq!(
            f,
            vec![
                Frame::TooLong(13),
                Frame::Line(b"ok".to_vec()),
                Frame::TooLong(10),
                Frame::Eof
            ]
        );
        let f = frames(b"12345\n123456\n", 5, 64);
        assert_eq!(
            f,
            vec![
                Frame::Line(b"12345".to_vec()),
                Frame::TooLong(6),
                Frame::Eof
            ]
        );
    }
}
