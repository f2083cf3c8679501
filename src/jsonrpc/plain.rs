//! The common client message read by hand (issue 19).
//!
//! serde_json's reader took about a fifth of a small call's instructions on the client thread
//! (its string scan, its visitor calls, a look-up per member), the thread that is the
//! bottleneck when capjail's threads run on different CPUs. Most messages a client sends are
//! plain: an object of `jsonrpc`, `id`, `method` and `params`, keys without escapes, integers
//! that are not large, no surrogate escape. [`read`] reads such a message byte by byte, with
//! the vectorised string scan the envelope scanner uses (`strict::special`), into the same
//! [`Message`] the serde pass gives, its `params` read into the earlier message's tree as
//! `reuse::InPlace` does. Anything else — another member, an escaped key, a number with a
//! fraction, an exponent or more than [`MAX_DIGITS`] digits, `-0`, a surrogate escape, a
//! duplicate key, a container deeper than allowed, anything malformed — is `None`: the serde
//! pass reads the line, which alone says why a line is refused. So this reader only needs to
//! be right about what it accepts; the tests compare it with the serde pass on every message
//! of the corpora and on generated ones.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::message::Message;
use super::reuse::retain_keys;
use super::strict::{special, Keys};

/// Deeper than this (or the policy's limit) the serde pass reads the line (its own limit is
/// 128).
const MAX_PLAIN_DEPTH: usize = 100;
/// Integers with more digits are left to the serde pass (ten to the 18th fits an `i64`).
const MAX_DIGITS: usize = 18;

/// Read `line` (a whole line) as a plain message, its `params` into `spare`'s tree (taken
/// from `spare` only when the message is read; on `None` whatever tree there is stays in
/// `spare`, half written: a tree read into is always read whole again).
///
/// The line is not checked as UTF-8 first: outside strings only the ASCII bytes of JSON's
/// grammar are read, and each string's bytes are checked only when one of them is not ASCII
/// (the string scan ORs them); a line this reader accepts is UTF-8.
pub(super) fn read<'a>(
    line: &'a [u8],
    max_depth: usize,
    spare: &mut Option<Value>,
) -> Option<Message<'a>> {
    let mut r = Reader {
        b: line,
        i: 0,
        max_depth: max_depth.min(MAX_PLAIN_DEPTH),
    };
    let mut params = None;
    match r.message(spare, &mut params) {
        Some((id, method)) => Some(Message {
            id,
            method: Some(method),
            params,
        }),
        None => {
            if params.is_some() {
                *spare = params;
            }
            None
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
    max_depth: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// The next byte after whitespace, consumed.
    fn next(&mut self) -> Option<u8> {
        self.ws();
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    /// The top-level object: its `id` and `method` (its `params` read into `params`, from
    /// `spare`'s tree).
    fn message(
        &mut self,
        spare: &mut Option<Value>,
        params: &mut Option<Value>,
    ) -> Option<(Option<Value>, Cow<'a, str>)> {
        if self.next()? != b'{' || self.max_depth < 1 {
            return None;
        }
        let (mut jsonrpc, mut id, mut method) = (false, None, None);
        loop {
            if self.next()? != b'"' {
                return None;
            }
            let key = self.key()?;
            if self.next()? != b':' {
                return None;
            }
            self.ws();
            match key {
                "jsonrpc" if !jsonrpc => {
                    if self.next()? != b'"' || self.key()? != "2.0" {
                        return None;
                    }
                    jsonrpc = true;
                }
                "id" if id.is_none() => id = Some(self.id()?),
                "method" if method.is_none() => {
                    if self.next()? != b'"' {
                        return None;
                    }
                    method = Some(self.text()?);
                }
                "params" if params.is_none() => {
                    if !matches!(self.b.get(self.i), Some(b'{' | b'[')) {
                        return None;
                    }
                    let mut p = spare.take().unwrap_or(Value::Null);
                    let read = self.value(&mut p, 1);
                    *params = Some(p);
                    read?;
                }
                // `result`, `error` (a response), a member twice, an unknown member.
                _ => return None,
            }
            match self.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        self.ws();
        if self.i != self.b.len() || !jsonrpc {
            return None;
        }
        Some((id, method?))
    }

    /// An `id`: a string or an integer.
    fn id(&mut self) -> Option<Value> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                Some(Value::String(self.text()?.into_owned()))
            }
            b'-' | b'0'..=b'9' => self.integer(),
            _ => None,
        }
    }

    /// `b[start..end]` as text; `or` is the OR of its bytes.
    fn str_of(&self, start: usize, end: usize, or: u8) -> Option<&'a str> {
        let b = &self.b[start..end];
        if or < 0x80 {
            // SAFETY: every byte is below 0x80 (their OR is): ASCII, which is UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(b) })
        } else {
            std::str::from_utf8(b).ok()
        }
    }

    /// The contents of a string without escapes whose opening quote was consumed (a key).
    fn key(&mut self) -> Option<&'a str> {
        let (k, or) = special(&self.b[self.i..]);
        let end = self.i + k?;
        if self.b[end] != b'"' {
            return None; // an escape, or a control character
        }
        let s = self.str_of(self.i, end, or)?;
        self.i = end + 1;
        Some(s)
    }

    /// A string whose opening quote was consumed: borrowed from the line without escapes.
    fn text(&mut self) -> Option<Cow<'a, str>> {
        let (k, or) = special(&self.b[self.i..]);
        let end = self.i + k?;
        if self.b[end] == b'"' {
            let s = self.str_of(self.i, end, or)?;
            self.i = end + 1;
            return Some(Cow::Borrowed(s));
        }
        let mut s = String::new();
        self.string_into(&mut s)?;
        Some(Cow::Owned(s))
    }

    /// A string whose opening quote was consumed, unescaped into `out` (cleared first).
    fn string_into(&mut self, out: &mut String) -> Option<()> {
        out.clear();
        loop {
            let (k, or) = special(&self.b[self.i..]);
            let stop = self.i + k?;
            // (A UTF-8 sequence holds no `"`, `\` or control byte: each piece between stops is
            // checked on its own.)
            out.push_str(self.str_of(self.i, stop, or)?);
            self.i = stop + 1;
            match self.b[stop] {
                b'"' => return Some(()),
                b'\\' => self.escape(out)?,
                _ => return None, // a control character
            }
        }
    }

    /// The escape after a backslash (consumed). A surrogate escape is left to serde (pairs,
    /// lone halves).
    fn escape(&mut self, out: &mut String) -> Option<()> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        out.push(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hex = self.b.get(self.i..self.i + 4)?;
                let mut code = 0u32;
                for &h in hex {
                    code = code * 16 + char::from(h).to_digit(16)?;
                }
                self.i += 4;
                if (0xD800..0xE000).contains(&code) {
                    return None;
                }
                char::from_u32(code)?
            }
            _ => return None,
        });
        Some(())
    }

    /// An integer of at most [`MAX_DIGITS`] digits, as serde_json reads it (a `u64`, or a
    /// negative `i64`); no fraction, no exponent, no `-0`.
    fn integer(&mut self) -> Option<Value> {
        let neg = self.b[self.i] == b'-';
        let start = self.i + usize::from(neg);
        let mut j = start;
        let mut n: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = self.b.get(j) {
            n = n * 10 + u64::from(d - b'0');
            j += 1;
            if j - start > MAX_DIGITS {
                return None;
            }
        }
        let digits = j - start;
        if digits == 0 || (digits > 1 && self.b[start] == b'0') {
            return None;
        }
        if matches!(self.b.get(j), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.i = j;
        if neg {
            // `-0` is a float to serde_json.
            (n != 0).then(|| Value::from(-(n as i64)))
        } else {
            Some(Value::from(n))
        }
    }

    /// One value into `slot`, read as `strict::Seed { depth, .. }` reads it (a container
    /// here is at depth `depth + 1`).
    fn value(&mut self, slot: &mut Value, depth: usize) -> Option<()> {
        self.ws();
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                match slot {
                    Value::String(s) => self.string_into(s),
                    other => {
                        let mut s = String::new();
                        self.string_into(&mut s)?;
                        *other = Value::String(s);
                        Some(())
                    }
                }
            }
            b'{' if depth < self.max_depth => {
                self.i += 1;
                self.object(slot, depth + 1)
            }
            b'[' if depth < self.max_depth => {
                self.i += 1;
                self.array(slot, depth + 1)
            }
            b't' => self.word("true", Value::Bool(true), slot),
            b'f' => self.word("false", Value::Bool(false), slot),
            b'n' => self.word("null", Value::Null, slot),
            b'-' | b'0'..=b'9' => {
                *slot = self.integer()?;
                Some(())
            }
            _ => None,
        }
    }

    fn word(&mut self, w: &str, v: Value, slot: &mut Value) -> Option<()> {
        if !self.b[self.i..].starts_with(w.as_bytes()) {
            return None;
        }
        self.i += w.len();
        *slot = v;
        Some(())
    }

    /// An object at `depth` whose `{` was consumed, into `slot`: members already there read
    /// in place, new ones inserted, missing ones removed (`reuse::InPlace`).
    fn object(&mut self, slot: &mut Value, depth: usize) -> Option<()> {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(map) = slot else {
            unreachable!("made an object just above")
        };
        if self.next()? == b'}' {
            map.clear();
            return Some(());
        }
        self.i -= 1;
        let mut keys = Keys::default();
        loop {
            if self.next()? != b'"' {
                return None;
            }
            let k = self.key()?;
            if self.next()? != b':' {
                return None;
            }
            match map.get_mut(k) {
                // A duplicate reads into the same member twice: refused below.
                Some(v) => self.value(v, depth)?,
                None => {
                    let mut v = Value::Null;
                    self.value(&mut v, depth)?;
                    map.insert(k.to_owned(), v);
                }
            }
            keys.push(Cow::Borrowed(k));
            match self.next()? {
                b',' => {}
                b'}' => break,
                _ => return None,
            }
        }
        if keys.duplicate().is_some() {
            return None;
        }
        if map.len() != keys.len() {
            retain_keys(map, &keys);
        }
        Some(())
    }

    /// An array at `depth` whose `[` was consumed, into `slot` (its items read in place).
    fn array(&mut self, slot: &mut Value, depth: usize) -> Option<()> {
        if !slot.is_array() {
            *slot = Value::Array(Vec::new());
        }
        let Value::Array(items) = slot else {
            unreachable!("made an array just above")
        };
        if self.next()? == b']' {
            items.clear();
            return Some(());
        }
        self.i -= 1;
        let mut n = 0;
        loop {
            match items.get_mut(n) {
                Some(v) => self.value(v, depth)?,
                None => {
                    let mut v = Value::Null;
                    self.value(&mut v, depth)?;
                    items.push(v);
                }
            }
            n += 1;
            match self.next()? {
                b',' => {}
                b']' => break,
                _ => return None,
            }
        }
        items.truncate(n);
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::read;
    use crate::jsonrpc::message::serde_pass;
    use crate::test_rng::XorShift;
    use serde_json::{json, Value};

    /// What the plain reader says of `line` (into a copy of `spare`) is the serde pass's, or
    /// it leaves the line to it. `true` when it read the line.
    fn agrees(line: &str, max_depth: usize, spare: &Option<Value>) -> bool {
        let want = serde_pass(line, max_depth, None);
        let mut into = spare.clone();
        match read(line.as_bytes(), max_depth, &mut into) {
            Some(got) => {
                assert_eq!(
                    Some(got),
                    want,
                    "{line} (max depth {max_depth}, into {spare:?})"
                );
                true
            }
            None => {
                // Nothing of the line's tree is handed on as read (the serde pass reads it all
                // again, into whatever tree is left).
                let again = serde_pass(line, max_depth, into);
                assert_eq!(again, want, "{line} read again after the plain reader");
                false
            }
        }
    }

    #[test]
    fn plain_messages_are_read_as_serde_reads_them() {
        let spares = [
            None,
            Some(json!({"name": "echo", "arguments": {"message": "hello", "bytes": 0}})),
            Some(json!({"name": 1, "extra": [1, 2, {"a": "b"}], "arguments": [1]})),
            Some(json!(["x", {"y": null}])),
            Some(json!("text")),
        ];
        let read_cases = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello","bytes":0}}}"#,
            r#" { "method" : "tools/call" ,"params":{ "arguments" : { "message":"a\nb\t\"q\" \\ \/ \u00e9 \u4E2D \u0000","bytes":-12} , "name":"echo"},"id":"abc","jsonrpc":"2.0" } "#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":-7,"method":"x\u0079","params":[]}"#,
            r#"{"jsonrpc":"2.0","id":123456789012345678,"method":"x","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":0,"method":"x","params":[true,false,null,[],{},[[1]],"é"]}"#,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"t\":\"caf\u{e9} \u{1f600}\"}}",
        ];
        let left_cases = [
            r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":-0,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":01,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1234567890123456789,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1e3}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\ud83d\ude00"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\ud800"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"\u0061":1}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1,"a":2}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":{"b":1,"b":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#,
            r#"{"jsonrpc":"2\u002e0","id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","extra":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x"} x"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x",}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1,]}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":tru}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\q"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\u00g0"}}"#,
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"a\":\"\t\"}}",
            r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"id":1,"method":"x"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"x"}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[[[["deep"]]]]}"#,
        ];
        for spare in &spares {
            for line in read_cases {
                assert!(agrees(line, 64, spare), "not read: {line}");
            }
            for line in left_cases {
                assert!(!agrees(line, 4, spare), "read: {line}");
            }
        }
        // The depth limit, exactly where the serde pass puts it.
        let nested = r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[[1]]}"#;
        assert!(!agrees(nested, 2, &None));
        assert!(agrees(nested, 3, &None));
        assert!(!agrees(nested, 0, &None));
    }

    /// A line that is not UTF-8 is never read, wherever the bad bytes are (the reader checks
    /// only strings that are not ASCII).
    #[test]
    fn a_line_that_is_not_utf8_is_left_to_serde() {
        for bad in [
            &b"\xff"[..],
            b"\xc3",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"a\xe9b",
        ] {
            for (before, after) in [
                (&br#"{"jsonrpc":"2.0","id":1,"method":""#[..], &br#""}"#[..]),
                (br#"{"jsonrpc":"2.0","id":""#, br#"","method":"x"}"#),
                (
                    br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{""#,
                    br#"":1}}"#,
                ),
                (
                    br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":""#,
                    br#""}}"#,
                ),
                (
                    br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":"\n"#,
                    br#"\t"}}"#,
                ),
                (
                    br#"{"jsonrpc":"2.0","id":1,"method":"x","params":["#,
                    br#"]}"#,
                ),
                (br#"{"jsonrpc":"2.0","id":1,"method":"x"}"#, b""),
            ] {
                let line = [before, bad, after].concat();
                assert!(std::str::from_utf8(&line).is_err());
                assert_eq!(read(&line, 64, &mut None), None, "{line:?}");
            }
        }
        // Valid non-ASCII text in every place is read.
        let ok = "{\"jsonrpc\":\"2.0\",\"id\":\"\u{e9}\",\"method\":\"\u{4e2d}\",\"params\":{\"\u{e9}\":\"a\\n\u{1f600}\"}}";
        assert!(agrees(ok, 64, &None));
    }

    /// Random messages: every one the plain reader reads is the serde pass's, read afresh or
    /// into the last message's params; most ordinary ones are read.
    #[test]
    fn random_messages_are_read_as_serde_reads_them() {
        let mut r = XorShift::new(0x91a1_2cfe_0b5d_7e33);
        let mut spare: Option<Value> = None;
        let (mut read_n, mut left) = (0, 0);
        for _ in 0..20_000 {
            let line = random_message(&mut r);
            let max_depth = 2 + r.below(5);
            if agrees(&line, max_depth, &spare) {
                read_n += 1;
                spare = serde_pass(&line, max_depth, None).and_then(|m| m.params);
            } else {
                left += 1;
            }
        }
        assert!(read_n > 6000 && left > 8000, "{read_n} read, {left} left");
    }

    fn pick<'a>(r: &mut XorShift, from: &[&'a str]) -> &'a str {
        from[r.below(from.len())]
    }

    fn ws(r: &mut XorShift, out: &mut String) {
        if r.below(6) == 0 {
            out.push_str(pick(r, &[" ", "\n", "\t ", "\r\n", "  "]));
        }
    }

    /// One of `good`, or now and then (one in `rare`) one of `bad`.
    fn mostly<'a>(r: &mut XorShift, rare: usize, good: &[&'a str], bad: &[&'a str]) -> &'a str {
        if r.below(rare) == 0 {
            pick(r, bad)
        } else {
            pick(r, good)
        }
    }

    fn string(r: &mut XorShift, out: &mut String) {
        out.push('"');
        for _ in 0..r.below(4) {
            let piece = mostly(
                r,
                12,
                &[
                    "hello",
                    "a b",
                    "é",
                    "\u{1f600}",
                    "\\n",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\u00e9",
                    "\\u4E2D",
                    "\\u0000",
                    "",
                    "/etc",
                ],
                &["\\ud83d\\ude00", "\\ud800", "\\x", "\t", "\\u12"],
            );
            out.push_str(piece);
        }
        out.push('"');
    }

    fn value(r: &mut XorShift, depth: usize, out: &mut String) {
        ws(r, out);
        let kinds = if depth == 0 { 4 } else { 7 };
        match r.below(kinds) {
            0 => out.push_str(mostly(r, 12, &["null", "true", "false"], &["nul", "truex"])),
            1 | 2 => string(r, out),
            3 => out.push_str(mostly(
                r,
                6,
                &["0", "7", "-3", "123456789012345678", "-42"],
                &[
                    "-0",
                    "01",
                    "1.5",
                    "2e3",
                    "1234567890123456789",
                    "18446744073709551615",
                    "-",
                    "99999999999999999999",
                ],
            )),
            4 | 5 => {
                out.push('{');
                let wide = r.below(8) == 0;
                let n = r.below(if wide { 11 } else { 4 });
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    ws(r, out);
                    let k = mostly(
                        r,
                        15,
                        &[
                            "name",
                            "arguments",
                            "path",
                            "a",
                            "b",
                            "é",
                            "c",
                            "d",
                            "e",
                            "f",
                        ],
                        &["\\u0061"],
                    );
                    out.push_str(&format!("\"{k}\""));
                    ws(r, out);
                    out.push(':');
                    value(r, depth - 1, out);
                }
                ws(r, out);
                out.push('}');
            }
            _ => {
                out.push('[');
                for i in 0..r.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    value(r, depth - 1, out);
                }
                ws(r, out);
                out.push(']');
            }
        }
        ws(r, out);
    }

    fn random_message(r: &mut XorShift) -> String {
        let mut members: Vec<String> = Vec::new();
        if r.below(20) > 0 {
            let v = mostly(r, 8, &["\"2.0\""], &["\"1.0\"", "2", "\"2\\u002e0\""]);
            members.push(format!("\"jsonrpc\":{v}"));
        }
        if r.below(4) > 0 {
            let mut id = String::new();
            if r.below(3) == 0 {
                string(r, &mut id);
            } else {
                value(r, 0, &mut id);
            }
            members.push(format!("\"id\":{id}"));
        }
        if r.below(12) > 0 {
            let m = mostly(
                r,
                8,
                &[
                    "\"tools/call\"",
                    "\"ping\"",
                    "\"tools\\/call\"",
                    "\"\\u0070ing\"",
                ],
                &["1", "null"],
            );
            members.push(format!("\"method\":{m}"));
        }
        if r.below(4) > 0 {
            let mut p = String::new();
            value(r, 3, &mut p);
            if !p.trim_start().starts_with(['{', '[']) && r.below(8) > 0 {
                p = format!("{{\"arguments\":{p}}}");
            }
            members.push(format!("\"params\":{p}"));
        }
        if r.below(15) == 0 {
            members.push(pick(r, &["\"result\":{}", "\"error\":{}", "\"x\":1", "\"id\":2"]).into());
        }
        // Any order.
        for i in (1..members.len()).rev() {
            let j = r.below(i + 1);
            members.swap(i, j);
        }
        let mut out = String::new();
        ws(r, &mut out);
        out.push('{');
        for (i, m) in members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            ws(r, &mut out);
            out.push_str(m);
            ws(r, &mut out);
        }
        out.push('}');
        if r.below(30) == 0 {
            out.push_str(pick(r, &[" x", ",", "{}"]));
        }
        ws(r, &mut out);
        out
    }
}
