//! The texts of a result read straight from the response line, without building it as a
//! tree: the common case (nothing found) costs one pass and no copy of the strings. The texts
//! are the ones `results::check_result` reads (same members skipped, same depth bound).
//!
//! The line reaching here was already judged strict JSON by `jsonrpc::validate_envelope`
//! (`proxy::server_filter` runs it first; a line `check::env_read` rewrote is serde's output).
//! So this reader does not judge the grammar again: it finds the ends of the strings it hands
//! out with one vectorised pass that also ORs their bytes (`quote_or_backslash`; skipped
//! values with `memchr2`), borrows the contents of strings without escapes, and checks UTF-8
//! only on the strings it hands out that are not all ASCII (the one `unsafe`: an all-ASCII
//! string is taken as text unchecked, on the proof of that OR). On a line that is not JSON after all it returns
//! `None` (or reads texts of a malformed line the serde reader would have refused part way:
//! harmless, the caller then parses the line with serde, which refuses it). The serde reader
//! it replaced is kept as the test oracle (`tests::each_text_serde`).

use crate::jsonrpc::stops::{StringStops, SHORT_ESCAPES};
use crate::jsonrpc::strict::{Span, TextSpan};

/// Deeper than this, `results::collect` reads nothing.
const MAX_DEPTH: usize = crate::jsonrpc::strict::TEXT_MAX_DEPTH;

/// Why a walk ended early.
enum End {
    /// `text` returned `false`.
    Stopped,
    /// The line cannot be read.
    Bad,
}

/// Call `text` on every text of the line's `result` member, in order, until it returns
/// `false`. `Some(true)`: every text was read and accepted; `Some(false)`: stopped by
/// `text`; `None`: the line has no `result` member to read, or cannot be read.
#[cfg(test)]
pub(crate) fn each_text(line: &[u8], text: &mut dyn FnMut(&str) -> bool) -> Option<bool> {
    each_text_spans(line, &[], &mut TextScratch::default(), text)
}

/// The buffer strings with escapes are unescaped into, kept from one answer to the next: a
/// large answer's text unescaped into fresh memory faulted in every page of it again (a
/// sixth of capjail's CPU on 16 MiB answers of a file's text was page faults, issue 19).
/// Given back (to [`KEPT`] bytes) after [`SHRINK_AFTER`] answers in a row that are shorter
/// than a quarter of it, as the line buffer is (`proxy::framing`).
#[derive(Debug, Default)]
pub(crate) struct TextScratch {
    buf: Vec<u8>,
    small_run: usize,
}

/// The scratch kept however small the answers are.
const KEPT: usize = 64 * 1024;
/// Small answers in a row after which a grown scratch is given back.
const SHRINK_AFTER: usize = 16;

impl TextScratch {
    /// After an answer of `len` bytes was read.
    fn after(&mut self, len: usize) {
        if self.buf.capacity() <= KEPT || len >= self.buf.capacity() / 4 {
            self.small_run = 0;
            return;
        }
        self.small_run += 1;
        if self.small_run >= SHRINK_AFTER {
            self.buf = Vec::new();
            self.small_run = 0;
        }
    }
}

/// [`each_text`], told where the line's long strings end (`spans`, in the line's order: what
/// `jsonrpc::strict::validate_envelope_spans` found in this very line). A string that starts
/// where a span starts is taken from the span, not searched again: a large answer's text is
/// then read once by the envelope scanner and once by the content checks, not a third time
/// to find its end (issue 19). `&[]` reads every string as [`each_text`] does. Strings with
/// escapes are unescaped into `scratch`.
pub(crate) fn each_text_spans(
    line: &[u8],
    spans: &[Span],
    scratch: &mut TextScratch,
    text: &mut dyn FnMut(&str) -> bool,
) -> Option<bool> {
    let mut r = Reader {
        b: line,
        i: 0,
        scratch: &mut scratch.buf,
        spans,
    };
    let read = r.top(text);
    scratch.after(line.len());
    answer(read)
}

/// What a read says: `Ok(found)` (every text accepted; `found`: the line has a `result`),
/// or why it ended early.
fn answer(read: Result<bool, End>) -> Option<bool> {
    match read {
        Ok(true) => Some(true),
        Ok(false) => None,
        Err(End::Stopped) => Some(false),
        Err(End::Bad) => None,
    }
}

/// [`each_text_spans`] over the texts the envelope scanner listed in this very line
/// (`jsonrpc::strict::ResultTexts::listed`: whether it has a `result` member, and its texts in
/// order): the line is not walked again, and only a text with escapes is read again (to
/// unescape it). Answers as [`each_text`] does.
pub(crate) fn each_listed_text(
    line: &[u8],
    (has_result, texts): (bool, &[TextSpan]),
    scratch: &mut TextScratch,
    text: &mut dyn FnMut(&str) -> bool,
) -> Option<bool> {
    if !has_result {
        return None;
    }
    let mut r = Reader {
        b: line,
        i: 0,
        scratch: &mut scratch.buf,
        spans: &[],
    };
    let read = texts.iter().try_for_each(|t| {
        let s = if t.escaped {
            r.i = t.start;
            r.string()?
        } else {
            Str::Line(t.start, t.end, t.ascii)
        };
        if text(r.get(&s)?) {
            Ok(())
        } else {
            Err(End::Stopped)
        }
    });
    scratch.after(line.len());
    answer(read.map(|()| true))
}

/// Where a string's contents are: borrowed from the line, or unescaped into the scratch; and
/// whether they are all ASCII.
enum Str {
    Line(usize, usize, bool),
    Scratch(bool),
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    /// Strings with escapes, unescaped ([`TextScratch`]).
    scratch: &'a mut Vec<u8>,
    /// The long strings the envelope scanner already read ([`each_text_spans`]).
    spans: &'a [Span],
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> Result<u8, End> {
        self.ws();
        let c = *self.b.get(self.i).ok_or(End::Bad)?;
        self.i += 1;
        Ok(c)
    }

    fn peek(&mut self) -> Result<u8, End> {
        self.ws();
        self.b.get(self.i).copied().ok_or(End::Bad)
    }

    /// The message object: `result` is walked, every other member skipped. `Ok(found)`.
    fn top(&mut self, text: &mut dyn FnMut(&str) -> bool) -> Result<bool, End> {
        if self.next()? != b'{' {
            return Err(End::Bad);
        }
        let mut found = false;
        if self.peek()? == b'}' {
            return Ok(false);
        }
        loop {
            if self.next()? != b'"' {
                return Err(End::Bad);
            }
            let s = self.string()?;
            let is_result = self.get(&s)? == "result";
            if self.next()? != b':' {
                return Err(End::Bad);
            }
            if is_result {
                found = true;
                self.walk(0, text)?;
            } else {
                self.skip()?;
            }
            match self.next()? {
                b',' => {}
                b'}' => return Ok(found),
                _ => return Err(End::Bad),
            }
        }
    }

    /// One value at `depth` (0: the result itself), as `results::collect` walks it.
    fn walk(&mut self, depth: usize, text: &mut dyn FnMut(&str) -> bool) -> Result<(), End> {
        if depth > MAX_DEPTH {
            return self.skip();
        }
        match self.next()? {
            b'"' => {
                let s = self.string()?;
                if text(self.get(&s)?) {
                    Ok(())
                } else {
                    Err(End::Stopped)
                }
            }
            b'[' => {
                if self.peek()? == b']' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.walk(depth + 1, text)?;
                    match self.next()? {
                        b',' => {}
                        b']' => return Ok(()),
                        _ => return Err(End::Bad),
                    }
                }
            }
            b'{' => {
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    if self.next()? != b'"' {
                        return Err(End::Bad);
                    }
                    let s = self.string()?;
                    // Binary payloads and identifiers are not text for the model.
                    let skipped = depth > 0 && {
                        let k = self.get(&s)?;
                        crate::jsonrpc::strict::not_text_member(k.as_bytes())
                    };
                    if self.next()? != b':' {
                        return Err(End::Bad);
                    }
                    if skipped {
                        self.skip()?;
                    } else {
                        self.walk(depth + 1, text)?;
                    }
                    match self.next()? {
                        b',' => {}
                        b'}' => return Ok(()),
                        _ => return Err(End::Bad),
                    }
                }
            }
            b't' => self.word(b"rue"),
            b'f' => self.word(b"alse"),
            b'n' => self.word(b"ull"),
            b'-' | b'0'..=b'9' => {
                self.number();
                Ok(())
            }
            _ => Err(End::Bad),
        }
    }

    fn word(&mut self, rest: &[u8]) -> Result<(), End> {
        if self.b[self.i..].starts_with(rest) {
            self.i += rest.len();
            Ok(())
        } else {
            Err(End::Bad)
        }
    }

    fn number(&mut self) {
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Skip one value, whatever its depth (no recursion).
    fn skip(&mut self) -> Result<(), End> {
        let mut open = 0usize;
        loop {
            match self.next()? {
                b'"' => self.skip_string()?,
                b'[' | b'{' => open += 1,
                b']' | b'}' => open = open.checked_sub(1).ok_or(End::Bad)?,
                b',' | b':' if open > 0 => {}
                b't' => self.word(b"rue")?,
                b'f' => self.word(b"alse")?,
                b'n' => self.word(b"ull")?,
                b'-' | b'0'..=b'9' => self.number(),
                _ => return Err(End::Bad),
            }
            if open == 0 {
                return Ok(());
            }
        }
    }

    /// Past a string whose opening quote was consumed.
    fn skip_string(&mut self) -> Result<(), End> {
        loop {
            let at = memchr::memchr2(b'"', b'\\', &self.b[self.i..]).ok_or(End::Bad)?;
            self.i += at + 1;
            if self.b[self.i - 1] == b'"' {
                return Ok(());
            }
            self.i += 1; // the escaped byte (a `\u`'s hex digits hold no quote)
        }
    }

    /// A string whose opening quote was consumed: its contents, unescaped.
    fn string(&mut self) -> Result<Str, End> {
        let start = self.i;
        if let Ok(k) = self.spans.binary_search_by_key(&start, |s| s.start) {
            // Read by the envelope scanner: no escape, its end and ASCII-ness known (the same
            // `special` pass `quote_or_backslash` makes, over the same bytes).
            let s = self.spans[k];
            debug_assert_eq!(quote_or_backslash(self.b, start), Some((s.end, s.ascii)));
            self.i = s.end + 1;
            return Ok(Str::Line(start, s.end, s.ascii));
        }
        let (at, ascii) = quote_or_backslash(self.b, start).ok_or(End::Bad)?;
        if self.b[at] == b'"' {
            self.i = at + 1;
            return Ok(Str::Line(start, at, ascii));
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&self.b[start..at]);
        #[cfg(target_arch = "x86_64")]
        if crate::simd::fast() {
            // SAFETY: the CPU has the vector paths' features (`simd::fast`, just above).
            return unsafe { self.unescape_avx2(at, ascii) };
        }
        self.unescape_walk(at, ascii)
    }

    /// The rest of a string from its first escape's backslash at `at` (the bytes before it
    /// in the scratch), unescaped into the scratch: the stops are walked a block's bit mask
    /// at a time ([`StringStops`]), the bytes between them copied.
    fn unescape_walk(&mut self, mut at: usize, mut ascii: bool) -> Result<Str, End> {
        let mut stops = StringStops::new(self.b);
        loop {
            if self.b[at] == b'"' {
                self.i = at + 1;
                return Ok(Str::Scratch(ascii));
            }
            self.i = at + 1;
            ascii &= self.escape()?;
            let from = self.i;
            let (next, piece) =
                walk_to_quote_or_backslash(&mut stops, self.b, from).ok_or(End::Bad)?;
            self.scratch.extend_from_slice(&self.b[from..next]);
            (at, ascii) = (next, ascii && piece);
        }
    }

    /// [`Reader::unescape_walk`] with AVX2, 64 bytes at a time: a block's quotes and
    /// backslashes are found once, as bit masks, and its one-byte escapes (`\n`, `\"`: a
    /// file's text has one every twenty bytes or so) handled from the masks' bits, the bytes
    /// between them copied with vector stores ([`copy_short`]). A walk that found each next
    /// stop from the last one (a load, a compare and a bit scan after each escape) waited on
    /// that chain: about 17 cycles an escape, 0.33 ms per MiB of such text. A `\u` escape, a
    /// backslash ending a block and the last bytes of the line (under 64) go through the
    /// walk's steps.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
    fn unescape_avx2(&mut self, mut at: usize, mut ascii: bool) -> Result<Str, End> {
        use crate::jsonrpc::stops::{eq_bits_avx2, load_avx2, top_bits_avx2};
        let b = self.b;
        loop {
            // `at`: a stop, every byte before it in the scratch.
            if b[at] == b'"' {
                self.i = at + 1;
                return Ok(Str::Scratch(ascii));
            }
            self.i = at + 1;
            ascii &= self.escape()?;
            let mut base = self.i;
            at = loop {
                let Some(block) = b.get(base..base + 64) else {
                    // The line's last bytes.
                    let (next, piece) = quote_or_backslash(b, base).ok_or(End::Bad)?;
                    self.scratch.extend_from_slice(&b[base..next]);
                    ascii &= piece;
                    break next;
                };
                let v = load_avx2(block.try_into().expect("64 bytes"));
                let quotes = eq_bits_avx2(v, b'"');
                let mut stops = quotes | eq_bits_avx2(v, b'\\');
                let top = top_bits_avx2(v);
                // Room for the block's bytes and `copy_short`'s overreach.
                self.scratch.reserve(128);
                let out = self.scratch.as_mut_ptr();
                let mut len = self.scratch.len();
                let mut from = 0;
                let stop = loop {
                    if stops == 0 {
                        // SAFETY: `copy_short`'s terms: `base + from..base + 64` lies in `b`;
                        // the scratch has 128 bytes of room past `len`, and `len` grows by at
                        // most 64 in a block.
                        unsafe { copy_short(b, base + from, 64 - from, out.add(len)) };
                        len += 64 - from;
                        break None;
                    }
                    let p = stops.trailing_zeros() as usize;
                    // SAFETY: as above, over `base + from..base + p`.
                    unsafe { copy_short(b, base + from, p - from, out.add(len)) };
                    len += p - from;
                    let byte = match block.get(p + 1) {
                        Some(&c) if quotes >> p & 1 == 0 => SHORT_ESCAPES[usize::from(c)],
                        _ => 0,
                    };
                    if byte == 0 {
                        // A quote, a `\u` or bad escape, or a backslash ending the block.
                        break Some(p);
                    }
                    // SAFETY: within the room reserved (one byte out for two in).
                    unsafe { out.add(len).write(byte) };
                    len += 1;
                    from = p + 2;
                    // Past the escape's two bytes (a `\\` or `\"` escapes its second one).
                    stops &= (u64::MAX << 1).checked_shl(p as u32 + 1).unwrap_or(0);
                };
                // SAFETY: every byte up to `len` was written (copies and escapes, in order).
                unsafe { self.scratch.set_len(len) };
                match stop {
                    Some(p) => {
                        ascii &= top & ((1u64 << p) - 1) == 0;
                        break base + p;
                    }
                    None => {
                        ascii &= top == 0;
                        base += 64;
                    }
                }
            };
        }
    }

    /// One escape, after its backslash, appended to the scratch (as serde_json reads it:
    /// a lone surrogate cannot be read); whether what it appended is ASCII.
    fn escape(&mut self) -> Result<bool, End> {
        let c = *self.b.get(self.i).ok_or(End::Bad)?;
        self.i += 1;
        let byte = SHORT_ESCAPES[usize::from(c)];
        if byte != 0 {
            self.scratch.push(byte);
            return Ok(true);
        }
        if c != b'u' {
            return Err(End::Bad);
        }
        let n = self.hex4()?;
        let ch = match n {
            0xD800..=0xDBFF => {
                if !self.b[self.i..].starts_with(b"\\u") {
                    return Err(End::Bad);
                }
                self.i += 2;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(End::Bad);
                }
                0x10000 + ((n - 0xD800) << 10) + (lo - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(End::Bad),
            n => n,
        };
        let ch = char::from_u32(ch).ok_or(End::Bad)?;
        let mut buf = [0u8; 4];
        self.scratch
            .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        Ok(ch.is_ascii())
    }

    fn hex4(&mut self) -> Result<u32, End> {
        let h = self.b.get(self.i..self.i + 4).ok_or(End::Bad)?;
        let mut n = 0u32;
        for &d in h {
            n = n * 16 + (d as char).to_digit(16).ok_or(End::Bad)?;
        }
        self.i += 4;
        Ok(n)
    }

    /// A string read by [`Reader::string`], as text (its UTF-8 checked here, once, unless the
    /// read found it ASCII).
    fn get(&self, s: &Str) -> Result<&str, End> {
        let (bytes, ascii) = match *s {
            Str::Line(a, z, ascii) => (&self.b[a..z], ascii),
            Str::Scratch(ascii) => (&self.scratch[..], ascii),
        };
        if ascii {
            debug_assert!(bytes.is_ascii());
            // SAFETY: `string` OR-ed every byte of these contents (`quote_or_backslash`, and
            // each escape's output) and found no top bit set: they are all ASCII, which is
            // UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).map_err(|_| End::Bad)
    }
}

/// The first `"` or `\\` of `b` at or after `from`, and whether every byte before it (from
/// `from`) is ASCII: one vectorised pass (`jsonrpc::strict::special`) where there were two
/// (memchr2, then UTF-8 over the string). A control character (which a validated line does
/// not hold in a string) is read past as part of the string.
fn quote_or_backslash(b: &[u8], mut from: usize) -> Option<(usize, bool)> {
    let mut or = 0u8;
    loop {
        let (k, o) = crate::jsonrpc::strict::special(b.get(from..)?);
        or |= o;
        let at = from + k?;
        if matches!(b[at], b'"' | b'\\') {
            return Some((at, or < 0x80));
        }
        from = at + 1;
    }
}

/// Copy `b[from..from + n]` (`n` <= 64) to `dst` with one or two 32-byte moves where `b` has
/// 64 bytes from `from` (writing up to 64 bytes at `dst`), else with `memcpy`.
///
/// # Safety
/// `from + n <= b.len()`, and `dst` is valid for writes of 64 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
#[inline]
unsafe fn copy_short(b: &[u8], from: usize, n: usize, dst: *mut u8) {
    use std::arch::x86_64::*;
    debug_assert!(n <= 64 && from + n <= b.len());
    if from + 64 <= b.len() {
        // SAFETY: the loads lie in `b` (64 bytes from `from`); the stores in the caller's 64.
        unsafe {
            let src = b.as_ptr().add(from);
            _mm256_storeu_si256(dst.cast(), _mm256_loadu_si256(src.cast()));
            if n > 32 {
                _mm256_storeu_si256(dst.add(32).cast(), _mm256_loadu_si256(src.add(32).cast()));
            }
        }
    } else {
        // SAFETY: `b[from..from + n]` is in bounds; `dst` holds `n` <= 64 bytes; `dst` is in
        // the scratch's spare room, never in `b`.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr().add(from), dst, n) };
    }
}

/// [`quote_or_backslash`] through a walk over the stops (the same answers; each block of 64
/// bytes compared once however many escapes it holds).
#[inline]
fn walk_to_quote_or_backslash(
    stops: &mut StringStops,
    b: &[u8],
    mut from: usize,
) -> Option<(usize, bool)> {
    let mut outside_ascii = false;
    loop {
        let (k, high) = stops.next(from);
        outside_ascii |= high;
        let at = k?;
        if matches!(b[at], b'"' | b'\\') {
            return Some((at, !outside_ascii));
        }
        from = at + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The serde reader this module used before: the oracle of `same_texts_as_serde`.
    mod oracle {
        use super::super::MAX_DEPTH;
        use std::fmt;

        use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

        /// Deeper than this, `results::collect` reads nothing.
        const STOP: &str = "capjail:stop";

        /// Call `text` on every text of the line's `result` member, in order, until it returns
        /// `false`. `Some(true)`: every text was read and accepted; `Some(false)`: stopped by
        /// `text`; `None`: the line has no `result` object member to read, or cannot be read.
        pub(super) fn each_text_serde(
            line: &[u8],
            text: &mut dyn FnMut(&str) -> bool,
        ) -> Option<bool> {
            let mut de = serde_json::Deserializer::from_slice(line);
            let mut found = false;
            match (Top {
                text,
                found: &mut found,
            })
            .deserialize(&mut de)
            {
                Ok(()) if found => Some(true),
                Ok(()) => None,
                Err(e) if e.to_string().starts_with(STOP) => Some(false),
                Err(_) => None,
            }
        }

        /// The message object: `result` is walked, every other member skipped.
        struct Top<'f, 'g> {
            text: &'f mut dyn FnMut(&str) -> bool,
            found: &'g mut bool,
        }

        impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_map(self)
            }
        }

        impl<'de> Visitor<'de> for Top<'_, '_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON-RPC message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "result" {
                        *self.found = true;
                        map.next_value_seed(Walk {
                            text: &mut *self.text,
                            depth: 0,
                        })?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(())
            }
        }

        /// One value at `depth` (0: the result itself), as `results::collect` walks it.
        struct Walk<'f> {
            text: &'f mut dyn FnMut(&str) -> bool,
            depth: usize,
        }

        impl<'de> DeserializeSeed<'de> for Walk<'_> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                if self.depth > MAX_DEPTH {
                    return d.deserialize_ignored_any(IgnoredAny).map(|_| ());
                }
                d.deserialize_any(self)
            }
        }

        impl<'de> Visitor<'de> for Walk<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<(), E> {
                Ok(())
            }
            fn visit_i64<E>(self, _: i64) -> Result<(), E> {
                Ok(())
            }
            fn visit_u64<E>(self, _: u64) -> Result<(), E> {
                Ok(())
            }
            fn visit_f64<E>(self, _: f64) -> Result<(), E> {
                Ok(())
            }
            fn visit_unit<E>(self) -> Result<(), E> {
                Ok(())
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
                if (self.text)(v) {
                    Ok(())
                } else {
                    Err(E::custom(STOP))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while seq
                    .next_element_seed(Walk {
                        text: &mut *self.text,
                        depth: self.depth + 1,
                    })?
                    .is_some()
                {}
                Ok(())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    // Binary payloads and identifiers are not text for the model.
                    if self.depth > 0
                        && matches!(
                            key.as_ref(),
                            "blob" | "data" | "mimeType" | "uri" | "type" | "_meta"
                        )
                    {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    map.next_value_seed(Walk {
                        text: &mut *self.text,
                        depth: self.depth + 1,
                    })?;
                }
                Ok(())
            }
        }
    }
    use oracle::each_text_serde;
    use serde_json::{json, Value};

    fn texts(line: &str) -> (Option<bool>, Vec<String>) {
        let mut out = Vec::new();
        let r = each_text(line.as_bytes(), &mut |s| {
            out.push(s.to_string());
            true
        });
        (r, out)
    }

    /// The same texts, in the same order, as the tree walk of `results::check_result`.
    #[test]
    fn the_texts_the_tree_walk_reads() {
        let line = json!({"jsonrpc": "2.0", "id": 3, "result": {"content": [
            {"type": "text", "text": "a\nb \"q\" \u{e9}"},
            {"type": "image", "data": "QUJD", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///x", "text": "inner", "_meta": {"k": "v"}}}],
            "structuredContent": {"list": ["s1", 2, null, {"type": "t", "deep": "s2"}]}, "isError": false}})
        .to_string();
        let (r, got) = texts(&line);
        assert_eq!(r, Some(true));
        let mut v: Value = serde_json::from_str(&line).unwrap();
        let mut want = Vec::new();
        crate::content::results::collect_for_test(v.get_mut("result").unwrap(), &mut want);
        assert_eq!(got, want);
        assert_eq!(
            texts(r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#).0,
            None
        );
        assert_eq!(
            texts(r#"{"jsonrpc":"2.0","id":1,"result":"plain"}"#).1,
            ["plain"]
        );
        let mut n = 0;
        let stopped = each_text(line.as_bytes(), &mut |_| {
            n += 1;
            n < 2
        });
        assert_eq!((stopped, n), (Some(false), 2));
    }

    /// A small deterministic generator of JSON answers, written as text so that every way of
    /// writing a string occurs: escapes of all kinds, `\u` escapes in either case, surrogate
    /// pairs, raw non-ASCII, long and empty strings, whitespace between tokens.
    struct Gen(u64);

    impl Gen {
        fn n(&mut self, m: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % m
        }
        fn ws(&mut self, o: &mut String) {
            for _ in 0..self.n(4).saturating_sub(2) {
                o.push([' ', '\t', '\n', '\r'][self.n(4) as usize]);
            }
        }
        fn string(&mut self, o: &mut String) {
            o.push('"');
            let pieces = match self.n(8) {
                0 => 0,
                1 => 40,
                _ => self.n(6),
            };
            for _ in 0..pieces {
                let piece: String = match self.n(14) {
                    0 => "plain words ".into(),
                    1 => "\u{e9}\u{4e2d}\u{1f600}".into(),
                    2 => r#"\""#.into(),
                    3 => r"\\".into(),
                    4 => r"\/".into(),
                    5 => [r"\b", r"\f", r"\n", r"\r", r"\t"][self.n(5) as usize].into(),
                    6 => [
                        r"\u00e9", r"\u00E9", r"\u4e2d", r"\u0000", r"\u001f", r"\u0022", r"\u005c",
                    ][self.n(7) as usize]
                        .into(),
                    7 => [
                        r"\ud83d\ude00",
                        r"\uD83D\uDE00",
                        r"\udbff\udfff",
                        r"\ud800\udc00",
                    ][self.n(4) as usize]
                        .into(),
                    8 => "x".repeat(self.n(5000) as usize),
                    9 => "AKIAIOSFODNN7EXAMPLE".into(),
                    _ => ((b'a' + self.n(26) as u8) as char).to_string(),
                };
                o.push_str(&piece);
            }
            o.push('"');
        }
        fn key(&mut self, o: &mut String) {
            let k = [
                "\"text\"",
                "\"data\"",
                "\"blob\"",
                "\"type\"",
                "\"uri\"",
                "\"mimeType\"",
                "\"_meta\"",
                "\"result\"",
                "\"content\"",
                r#""d\u0061ta""#,
                r#""t\u0065xt""#,
                r#""_met\u0061""#,
            ];
            match self.n(14) {
                12 | 13 => self.string(o),
                i => o.push_str(k[i as usize]),
            }
        }
        fn value(&mut self, o: &mut String, depth: usize) {
            self.ws(o);
            let leaf = depth > 6;
            match self.n(if leaf { 4 } else { 7 }) {
                0 | 1 => self.string(o),
                2 => o.push_str(
                    [
                        "-0", "12", "3.5e-7", "1E+10", "-123.456", "true", "false", "null",
                    ][self.n(8) as usize],
                ),
                3 if self.n(40) == 0 => {
                    // Past the depth bound: texts deeper than 64 are not read.
                    let d = 60 + self.n(10) as usize;
                    o.push_str(&"[".repeat(d));
                    self.string(o);
                    o.push_str(&"]".repeat(d));
                }
                3 => self.string(o),
                4 | 5 => {
                    o.push('[');
                    for i in 0..self.n(5) {
                        if i > 0 {
                            o.push(',');
                        }
                        self.value(o, depth + 1);
                    }
                    self.ws(o);
                    o.push(']');
                }
                _ => {
                    o.push('{');
                    for i in 0..self.n(5) {
                        if i > 0 {
                            o.push(',');
                        }
                        self.ws(o);
                        self.key(o);
                        self.ws(o);
                        o.push(':');
                        self.value(o, depth + 1);
                    }
                    self.ws(o);
                    o.push('}');
                }
            }
            self.ws(o);
        }
        fn answer(&mut self) -> String {
            let mut o = String::from("{");
            let mut members = vec![r#""jsonrpc":"2.0""#.to_string(), r#""id":7"#.to_string()];
            for _ in 0..1 + self.n(2) {
                let mut m = String::new();
                self.ws(&mut m);
                match self.n(6) {
                    0 => m.push_str(r#""res\u0075lt""#),
                    1 => m.push_str(r#""error""#),
                    2 => self.key(&mut m),
                    _ => m.push_str(r#""result""#),
                }
                self.ws(&mut m);
                m.push(':');
                self.value(&mut m, 0);
                members.push(m);
            }
            let k = self.n(members.len() as u64) as usize;
            let last = members.len() - 1;
            members.swap(k, last);
            o.push_str(&members.join(","));
            o.push('}');
            o
        }
    }

    type ReadFn = fn(&[u8], &mut dyn FnMut(&str) -> bool) -> Option<bool>;

    fn run(f: ReadFn, line: &str, stop_at: usize) -> (Option<bool>, Vec<String>) {
        let mut out = Vec::new();
        let r = f(line.as_bytes(), &mut |s| {
            out.push(s.to_string());
            out.len() < stop_at
        });
        (r, out)
    }

    /// The one-pass search for a string's end finds what memchr2 found, and its ASCII answer
    /// is the bytes' (old: memchr2, then UTF-8 over the string), on generated bytes: ASCII,
    /// multi-byte and invalid UTF-8, control characters, at every offset of the scan's blocks.
    #[test]
    fn quote_or_backslash_matches_memchr2() {
        let mut g = Gen(0x2545_f491_4f6c_dd1d);
        const BYTES: &[u8] = b"\"\\\x00\x1f\x7f\x80\xc3\xa9\xff";
        for case in 0..20_000 {
            let len = [g.n(8), g.n(40), g.n(100), g.n(400)][g.n(4) as usize] as usize;
            let rare = g.n(3) == 0;
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    if rare || g.n(10) > 0 {
                        b"abc xyz09"[g.n(9) as usize]
                    } else {
                        BYTES[g.n(BYTES.len() as u64) as usize]
                    }
                })
                .collect();
            let from = if b.is_empty() || case % 2 == 0 {
                0
            } else {
                g.n(b.len() as u64) as usize
            };
            let old = memchr::memchr2(b'"', b'\\', &b[from..])
                .map(|k| (from + k, b[from..from + k].is_ascii()));
            assert_eq!(quote_or_backslash(&b, from), old, "{b:?} from {from}");
            // The walk over the stops answers the same, from here and on past each answer.
            let mut stops = StringStops::new(&b);
            let mut at = from;
            for _ in 0..=len {
                let want = quote_or_backslash(&b, at);
                assert_eq!(
                    walk_to_quote_or_backslash(&mut stops, &b, at),
                    want,
                    "{b:?} {at}"
                );
                match want {
                    Some((k, _)) => at = k + 1 + g.n(3) as usize,
                    None => break,
                }
            }
        }
    }

    /// A text with bytes that are not UTF-8 cannot be read (as before the one-pass search).
    #[test]
    fn invalid_utf8_texts_are_not_read() {
        for text in [
            &b"\xff"[..],
            b"ab\xc3",
            b"\xed\xa0\x80",
            b"\x80x",
            b"\\n\xff",
        ] {
            let mut long = b"x".repeat(100);
            long.extend_from_slice(text);
            for t in [text, &long[..]] {
                let mut line =
                    br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":""#
                        .to_vec();
                line.extend_from_slice(t);
                line.extend_from_slice(br#""}]}}"#);
                assert_eq!(each_text(&line, &mut |_| true), None, "{line:?}");
            }
        }
        let ok = "{\"result\":{\"text\":\"\u{e9}\\n\\u00e9 \u{1f600}\"}}";
        let mut got = Vec::new();
        assert_eq!(
            each_text(ok.as_bytes(), &mut |t| {
                got.push(t.to_string());
                true
            }),
            Some(true)
        );
        assert_eq!(got, vec!["\u{e9}\n\u{e9} \u{1f600}".to_string()]);
    }

    thread_local! {
        /// Strings [`each_text_scanned`] took from the envelope scanner's spans.
        static SPANS_USED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// [`each_text_spans`] with every unescaped string value the envelope scanner read as a
    /// span (`min_len` 0: the production threshold, `LONG_STRING`, would leave the generated
    /// answers' strings out).
    fn each_text_scanned(line: &[u8], text: &mut dyn FnMut(&str) -> bool) -> Option<bool> {
        let mut spans = Vec::new();
        if crate::jsonrpc::strict::validate_envelope_spans(line, 64, 0, &mut spans).is_err() {
            spans.clear();
        }
        SPANS_USED.set(SPANS_USED.get() + spans.len());
        for s in &spans {
            assert_eq!(line[s.end], b'"');
            assert_eq!(s.ascii, line[s.start..s.end].is_ascii());
        }
        // One scratch for every line of a test (as a session has): what an earlier line left
        // in it must not show in a later one's texts.
        SCRATCH.with_borrow_mut(|scratch| each_text_spans(line, &spans, scratch, text))
    }

    thread_local! {
        static SCRATCH: std::cell::RefCell<TextScratch> = Default::default();
        /// Lines [`each_text_listed`] read from the envelope scanner's list of texts.
        static LISTED_USED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// What the server filter hands the content checks: the texts the envelope scanner listed
    /// ([`each_listed_text`]) when it listed them, else the walk told its spans.
    fn each_text_listed(line: &[u8], text: &mut dyn FnMut(&str) -> bool) -> Option<bool> {
        use crate::jsonrpc::strict::{validate_envelope_hinted, ResultTexts, LONG_STRING};
        let mut spans = Vec::new();
        let mut texts = ResultTexts::default();
        let ok = validate_envelope_hinted(line, 64, LONG_STRING, &[], &mut spans, Some(&mut texts))
            .is_ok();
        SCRATCH.with_borrow_mut(|scratch| match texts.listed() {
            Some(listed) => {
                assert!(ok);
                LISTED_USED.set(LISTED_USED.get() + 1);
                for t in listed.1 {
                    assert_eq!(line[t.end], b'"');
                    assert_eq!(t.ascii, line[t.start..t.end].is_ascii());
                    assert_eq!(t.escaped, line[t.start..t.end].contains(&b'\\'));
                }
                each_listed_text(line, listed, scratch, text)
            }
            None => each_text_spans(line, &spans, scratch, text),
        })
    }

    /// The texts the envelope scanner lists are the walk's: where the depth bound falls, which
    /// members are not text (and only below the result itself), escapes, a result that is a
    /// string, no result; and an answer with more texts than it lists is walked.
    #[test]
    fn the_scanner_lists_the_texts_the_walk_reads() {
        use crate::jsonrpc::strict::{validate_envelope_hinted, ResultTexts, MAX_LISTED_TEXTS};
        let listed = |line: &str| {
            let mut texts = ResultTexts::default();
            let r = validate_envelope_hinted(
                line.as_bytes(),
                128,
                usize::MAX,
                &[],
                &mut Vec::new(),
                Some(&mut texts),
            );
            assert!(r.is_ok(), "{line}");
            let (has, spans) = texts.listed()?;
            let mut out = Vec::new();
            let read = each_listed_text(
                line.as_bytes(),
                (has, spans),
                &mut TextScratch::default(),
                &mut |t| {
                    out.push(t.to_string());
                    true
                },
            );
            Some((read, out))
        };
        let deep = |d: usize| {
            format!(
                r#"{{"id":1,"result":{}"t"{}}}"#,
                "[".repeat(d),
                "]".repeat(d)
            )
        };
        let cases = [
            r#"{"jsonrpc":"2.0","id":3,"result":{"type":"top","data":"d0","content":[{"type":"text","text":"a\nb \"q\" é"},{"data":"QUJD","mimeType":"x","blob":"b","uri":"u","_meta":{"text":"m"}},{"resource":{"uri":"file:///x","text":"inner","_meta":{"k":"v","type":"w"},"after":"a2"}}],"structuredContent":{"list":["s1",2,null,{"type":"t","deep":"s2"}]},"isError":false}}"#.to_string(),
            r#"{"jsonrpc":"2.0","id":1,"result":"plain"}"#.into(),
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"}}"#.into(),
            r#"{"method":"x","params":{"text":"p"},"result":{"a":["b",{"uri":{"data":["c"]},"d":"e"}]},"more":"z"}"#.into(),
            r#"{"result":{"x":{"type":{"type":"t"},"y":"y"}},"id":2}"#.into(),
            r#"{"result":{"t":"\u00e9\\\t x"}}"#.into(),
            deep(63),
            deep(64),
            deep(65),
        ];
        for line in &cases {
            let (r, want) = run(each_text_serde, line, usize::MAX);
            assert_eq!(listed(line), Some((r, want)), "{line}");
        }
        assert_eq!(listed(&deep(64)).unwrap().1, ["t"]);
        assert!(listed(&deep(65)).unwrap().1.is_empty());
        // More texts than it lists: the walk reads them.
        let many = |n: usize| format!(r#"{{"id":1,"result":[{}]}}"#, vec![r#""t""#; n].join(","));
        assert_eq!(
            listed(&many(MAX_LISTED_TEXTS)).unwrap().1.len(),
            MAX_LISTED_TEXTS
        );
        assert_eq!(listed(&many(MAX_LISTED_TEXTS + 1)), None);
        let line = many(MAX_LISTED_TEXTS + 1);
        assert_eq!(
            run(each_text_listed, &line, usize::MAX),
            run(each_text_serde, &line, usize::MAX)
        );
    }

    /// The scratch keeps a large answer's memory for the next one, and gives it back after
    /// [`SHRINK_AFTER`] small answers in a row (not after one less; a large one between
    /// starts the count again).
    #[test]
    fn the_scratch_is_kept_then_given_back() {
        let escaped = |n: usize| format!(r#"{{"result":{{"t":"{}"}}}}"#, "ab\\n".repeat(n));
        let mut scratch = TextScratch::default();
        let read = |scratch: &mut TextScratch, line: &str| {
            let mut texts = 0;
            each_text_spans(line.as_bytes(), &[], scratch, &mut |_| {
                texts += 1;
                true
            });
            assert_eq!(texts, 1);
        };
        read(&mut scratch, &escaped(200_000));
        let big = scratch.buf.capacity();
        assert!(big >= 3 * 200_000, "{big}");
        for round in 0..2 {
            for _ in 0..SHRINK_AFTER - 1 {
                read(&mut scratch, &escaped(10));
                assert_eq!(scratch.buf.capacity(), big);
            }
            if round == 0 {
                read(&mut scratch, &escaped(200_000));
                assert_eq!(scratch.buf.capacity(), big);
            }
        }
        read(&mut scratch, &escaped(10));
        assert_eq!(scratch.buf.capacity(), 0);
    }

    /// A string with escapes is unescaped as serde_json reads it, by the walk over the stops
    /// and by the AVX2 copy alike (each run on its own: the reader takes one of them), for
    /// escapes of every kind at every offset of the 32-byte loads and past the last whole one,
    /// with bytes outside ASCII before and after them; and neither reads a bad escape.
    #[test]
    fn both_unescapes_read_what_serde_reads() {
        fn read(line: &[u8], avx2: bool) -> Option<(String, usize)> {
            let mut scratch = Vec::new();
            let mut r = Reader {
                b: line,
                i: 1,
                scratch: &mut scratch,
                spans: &[],
            };
            let (at, ascii) = quote_or_backslash(line, 1)?;
            r.scratch.extend_from_slice(&line[1..at]);
            let s = if avx2 {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: only called when the CPU has the vector paths' features.
                let s = unsafe { r.unescape_avx2(at, ascii) };
                #[cfg(not(target_arch = "x86_64"))]
                let s = r.unescape_walk(at, ascii);
                s
            } else {
                r.unescape_walk(at, ascii)
            }
            .ok()?;
            let text = r.get(&s).ok()?.to_string();
            Some((text, r.i))
        }
        let avx2 = {
            #[cfg(target_arch = "x86_64")]
            let a = crate::simd::fast();
            #[cfg(not(target_arch = "x86_64"))]
            let a = false;
            a
        };
        let escapes = [
            r"\n",
            r#"\""#,
            r"\\",
            r"\/",
            r"\t",
            r"\u00e9",
            r"\u4E2D",
            r"\ud83d\ude00",
        ];
        let fillers = ["x", "\u{e9}", "ab\u{4e2d}"];
        let mut cases = 0;
        for lead in 0..70 {
            for esc in escapes {
                for gap in [0usize, 1, 2, 5, 30, 31, 32, 33, 61, 62, 63, 64, 65] {
                    for fill in fillers {
                        let body = format!(
                            "{}{esc}{}{esc}{}{esc}{esc}a{esc}",
                            fill.repeat(lead / fill.chars().count().max(1)),
                            "y".repeat(gap),
                            fill.repeat(gap % 7)
                        );
                        // The string, then more of the line or none: the blocks of 64 run
                        // past the string's end, or the line ends within one.
                        let trailer = " ".repeat(lead % 3 * 50);
                        let line = format!("\"{body}\"{trailer},");
                        let end = body.len() + 2;
                        let want: String = serde_json::from_str(&line[..end]).unwrap();
                        let got = read(line.as_bytes(), false);
                        assert_eq!(got, Some((want.clone(), end)), "{line}");
                        if avx2 {
                            assert_eq!(read(line.as_bytes(), true), Some((want, end)), "{line}");
                        }
                        cases += 1;
                    }
                }
            }
        }
        assert!(cases > 20_000);
        for bad in [
            r#""a\q""#,
            r#""a\ud800x""#,
            r#""a\u12""#,
            r#""a\n"#,
            r#""a\"#,
        ] {
            assert_eq!(read(bad.as_bytes(), false), None, "{bad}");
            if avx2 {
                assert_eq!(read(bad.as_bytes(), true), None, "{bad}");
            }
        }
    }

    /// The reader gives the texts the serde reader gave, in the same order, with the same
    /// answer, on generated answers, reading all or stopping part way; and so does it told
    /// the envelope scanner's spans.
    #[test]
    fn same_texts_as_serde() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let mut with_texts = 0;
        for _ in 0..4000 {
            let line = g.answer();
            assert!(
                serde_json::from_str::<Value>(&line).is_ok(),
                "generated JSON: {line}"
            );
            let want = run(each_text_serde, &line, usize::MAX);
            assert_eq!(run(each_text, &line, usize::MAX), want, "{line}");
            assert_eq!(run(each_text_scanned, &line, usize::MAX), want, "{line}");
            assert_eq!(run(each_text_listed, &line, usize::MAX), want, "{line}");
            if !want.1.is_empty() {
                with_texts += 1;
                let k = 1 + g.n(want.1.len() as u64) as usize;
                assert_eq!(
                    run(each_text, &line, k),
                    run(each_text_serde, &line, k),
                    "{line}"
                );
                assert_eq!(
                    run(each_text_scanned, &line, k),
                    run(each_text_serde, &line, k),
                    "{line}"
                );
                assert_eq!(
                    run(each_text_listed, &line, k),
                    run(each_text_serde, &line, k),
                    "{line}"
                );
            }
        }
        assert!(with_texts > 1000, "{with_texts}");
        assert!(SPANS_USED.get() > 1000, "{}", SPANS_USED.get());
        assert!(LISTED_USED.get() > 1000, "{}", LISTED_USED.get());
        for bad in [
            "",
            "[]",
            "\"x\"",
            "{",
            "{\"result\":",
            "{\"result\":[1,}",
            "{\"result\":\"\\ud800\"}",
            "{\"result\":\"\\udc00x\"}",
            "{\"result\":\"\\ud800\\u0041\"}",
            "{\"result\":\"\\q\"}",
        ] {
            assert_eq!(run(each_text, bad, usize::MAX).0, None, "{bad}");
            assert_eq!(run(each_text_serde, bad, usize::MAX).0, None, "{bad}");
        }
    }
}
