//! Strict JSON: UTF-8 only, no duplicate object keys, bounded depth, one value per line.
//!
//! serde_json already refuses invalid UTF-8, lone surrogate escapes and trailing data; this
//! adds what it lets through: duplicate keys (the proxy would read one `name`, the server
//! another) and nesting deeper than the policy's limit.

use std::fmt;

use super::quiet::Quiet;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    /// Not JSON at all, invalid UTF-8, bad escapes: JSON-RPC's -32700.
    #[error("parse error: {0}")]
    Syntax(String),
    /// JSON, but refused by capjail's stricter rules: -32600.
    #[error("{0}")]
    Refused(String),
}

/// Parse one message line strictly.
pub(crate) fn parse_strict(line: &[u8], max_depth: usize) -> Result<Value, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(line);
    // Our own depth limit is lower than serde_json's (128); the seed enforces it.
    let v = Seed {
        depth: 0,
        max_depth,
    }
    .deserialize(&mut de)
    .map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(v)
}

const DUP: &str = "capjail:duplicate key ";
const DEEP: &str = "capjail:nesting deeper than ";

fn classify(e: serde_json::Error) -> ParseError {
    let msg = e.to_string();
    if let Some(p) = msg.find(DUP) {
        let rest = &msg[p + DUP.len()..];
        let key = rest.split(" at line").next().unwrap_or(rest);
        ParseError::Refused(format!("duplicate key {key} in a JSON object"))
    } else if let Some(p) = msg.find(DEEP) {
        let rest = &msg[p + DEEP.len()..];
        let n = rest.split(" at line").next().unwrap_or(rest);
        ParseError::Refused(format!("JSON nested deeper than {n} levels"))
    } else if msg.starts_with("recursion limit exceeded") {
        ParseError::Refused("JSON nested too deeply".into())
    } else {
        ParseError::Syntax(msg)
    }
}

#[derive(Clone, Copy)]
pub(super) struct Seed {
    pub(super) depth: usize,
    pub(super) max_depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Seed {
    pub(super) fn deeper<E: serde::de::Error>(self) -> Result<Seed, E> {
        if self.depth + 1 > self.max_depth {
            return Err(E::custom(format_args!("{DEEP}{}", self.max_depth)));
        }
        Ok(Seed {
            depth: self.depth + 1,
            max_depth: self.max_depth,
        })
    }
}

impl<'de> Visitor<'de> for Seed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(inner)?;
            // One search of the map per member (the check and the insertion).
            match out.entry(key) {
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(v);
                }
                serde_json::map::Entry::Occupied(e) => {
                    return Err(A::Error::custom(format_args!(
                        "{DUP}`{}`",
                        e.key().escape_debug()
                    )));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Check one line by the same rules as [`parse_strict`] without building it: valid UTF-8 (in
/// every string, also those no filter reads), valid JSON, one value, no duplicate keys at any
/// depth, no deeper than `max_depth`. For server lines that are relayed byte for byte: the
/// cost is one pass with no tree (keys of each object are compared, values are not kept).
#[cfg(test)]
pub(crate) fn validate_strict(line: &[u8], max_depth: usize) -> Result<(), ParseError> {
    let mut de = serde_json::Deserializer::from_slice(line);
    Check {
        depth: 0,
        max_depth,
    }
    .deserialize(&mut de)
    .map_err(classify)?;
    de.end().map_err(classify)
}

#[derive(Clone, Copy)]
pub(super) struct Check {
    pub(super) depth: usize,
    pub(super) max_depth: usize,
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// An object key, borrowed from the line when it has no escapes.
pub(super) struct Key<'de>(pub(super) std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Visitor<'de> for Check {
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
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = Check {
            depth: self.depth + 1,
            max_depth: self.max_depth,
        };
        if inner.depth > self.max_depth {
            return Err(A::Error::custom(format_args!("{DEEP}{}", self.max_depth)));
        }
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = Check {
            depth: self.depth + 1,
            max_depth: self.max_depth,
        };
        if inner.depth > self.max_depth {
            return Err(A::Error::custom(format_args!("{DEEP}{}", self.max_depth)));
        }
        let mut keys = Keys::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            map.next_value_seed(inner)?;
            keys.push(k);
        }
        if let Some(k) = keys.duplicate() {
            return Err(duplicate_key_error(&k));
        }
        Ok(())
    }
}

/// How many keys of one object are kept on the stack before [`Keys`] spills to the heap.
pub(super) const INLINE_KEYS: usize = 8;

/// The keys of one object, for the duplicate check: the first [`INLINE_KEYS`] on the stack (the
/// objects of a JSON-RPC message are small: no allocation per object), the rest on the heap.
#[derive(Default)]
pub(super) struct Keys<'de> {
    inline: [std::borrow::Cow<'de, str>; INLINE_KEYS],
    len: usize,
    spilled: Vec<std::borrow::Cow<'de, str>>,
}

impl<'de> Keys<'de> {
    pub(super) fn push(&mut self, k: std::borrow::Cow<'de, str>) {
        if self.len < INLINE_KEYS {
            self.inline[self.len] = k;
            self.len += 1;
        } else {
            self.spilled.push(k);
        }
    }

    /// How many keys were pushed.
    pub(super) fn len(&self) -> usize {
        self.len + self.spilled.len()
    }

    /// Every key pushed, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &str> {
        self.inline[..self.len]
            .iter()
            .chain(&self.spilled)
            .map(|k| k.as_ref())
    }

    /// The smallest key that occurs more than once (the one a sorted scan finds first).
    pub(super) fn duplicate(&self) -> Option<std::borrow::Cow<'de, str>> {
        if self.spilled.is_empty() {
            let keys = &self.inline[..self.len];
            let mut dup: Option<&std::borrow::Cow<'de, str>> = None;
            for (i, a) in keys.iter().enumerate() {
                if keys[i + 1..].contains(a) && dup.is_none_or(|d| a < d) {
                    dup = Some(a);
                }
            }
            return dup.cloned();
        }
        let mut all: Vec<&std::borrow::Cow<'de, str>> = self.inline[..self.len]
            .iter()
            .chain(&self.spilled)
            .collect();
        all.sort_unstable();
        all.windows(2).find(|w| w[0] == w[1]).map(|w| w[0].clone())
    }
}

/// The error of a duplicate key `k` (what [`classify`] reads back).
pub(super) fn duplicate_key_error<E: serde::de::Error>(k: &str) -> E {
    E::custom(format_args!("{DUP}`{}`", k.escape_debug()))
}

/// The members of a message that say what it is, read in the same pass that checks the whole
/// line by the rules of [`validate_strict`]: one pass over a server line, no tree built
/// (only the id, small, is kept as a value).
#[derive(Debug, Default, PartialEq)]
pub struct Envelope<'a> {
    /// The line is a JSON object.
    pub object: bool,
    pub id: Option<Value>,
    pub method: Option<std::borrow::Cow<'a, str>>,
    /// `method` is present but not a string.
    pub bad_method: bool,
    /// Certainly no failure report: the scanner read the line and found neither an `error`
    /// member nor a `result` object whose `isError` is `true`. `false` for a failure, and for
    /// any line the serde pass read (it does not look).
    pub not_failed: bool,
}

/// [`validate_strict`], returning the line's [`Envelope`].
///
/// A scanner that builds nothing reads the common line (an object; no escaped key, no
/// surrogate escape, no exponent) at memory speed; any other line, and every line it would
/// refuse, is read again by the serde pass below, which alone says why a line is refused.
#[cfg(test)]
pub fn validate_envelope(line: &[u8], max_depth: usize) -> Result<Envelope<'_>, ParseError> {
    match scan::envelope(line, max_depth, usize::MAX, &mut Vec::new()) {
        Some(env) => Ok(env),
        None => envelope_by_serde(line, max_depth),
    }
}

/// A string value without escapes, at least [`LONG_STRING`] bytes long, that
/// [`validate_envelope_spans`] read: its contents are `line[start..end]` (`line[end]` is its
/// closing quote) and `ascii` says every one of them is below 0x80.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) ascii: bool,
}

/// The shortest string [`validate_envelope_spans`] reports: shorter ones cost the content
/// reader less to find again than to look up.
pub(crate) const LONG_STRING: usize = 4096;

/// Deeper than this in a `result` (the result itself: 0), no string is a text for the content
/// checks (`content::results::collect`, `content::borrowed`).
pub(crate) const TEXT_MAX_DEPTH: usize = 64;

/// Is `key` a member of an object inside a `result` (not the result itself) whose value is not
/// text for the model? Binary payloads and identifiers (`content::results::collect`,
/// `content::borrowed`).
#[inline]
pub(crate) fn not_text_member(key: &[u8]) -> bool {
    matches!(
        key,
        b"blob" | b"data" | b"mimeType" | b"uri" | b"type" | b"_meta"
    )
}

/// The most texts [`ResultTexts`] lists; an answer with more is walked by the content reader.
pub(crate) const MAX_LISTED_TEXTS: usize = 256;

/// A string of a line's `result` member that the content checks read as a text: its contents
/// are `line[start..end]` as written (`line[end]` is its closing quote), `escaped` says they
/// hold a backslash, `ascii` that every byte is below 0x80.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TextSpan {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) ascii: bool,
    pub(crate) escaped: bool,
}

/// The texts of a line's `result` as the envelope scanner met them (issue 19: a small
/// answer's texts were found by a second walk over the line, about a tenth of a call).
/// Kept from one line to the next (cleared by each scan).
#[derive(Debug, Default)]
pub(crate) struct ResultTexts {
    spans: Vec<TextSpan>,
    /// The scanner read the whole line and `spans` lists every text of its `result`, in the
    /// line's order. `false`: the line went to the serde pass, or had more than
    /// [`MAX_LISTED_TEXTS`] texts; the content reader walks it.
    complete: bool,
    /// The line has a `result` member.
    has_result: bool,
}

impl ResultTexts {
    /// Every text of the line's `result`, in order, when the scanner listed them all; `None`
    /// when the content reader must walk the line. `Some((false, _))`: no `result` member.
    pub(crate) fn listed(&self) -> Option<(bool, &[TextSpan])> {
        self.complete.then_some((self.has_result, &self.spans[..]))
    }

    fn clear(&mut self) {
        self.spans.clear();
        self.complete = false;
        self.has_result = false;
    }
}

/// [`validate_envelope`], also reporting in `spans` (cleared first, in the line's order) the
/// string values of at least `min_len` bytes without escapes that the scanner read, so the
/// content reader (`content::borrowed::each_text_spans`) does not read a large answer's text
/// a second time to find its end (issue 19). Nothing is reported for a line the serde pass
/// reads.
#[cfg(test)]
pub(crate) fn validate_envelope_spans<'a>(
    line: &'a [u8],
    max_depth: usize,
    min_len: usize,
    spans: &mut Vec<Span>,
) -> Result<Envelope<'a>, ParseError> {
    validate_envelope_hinted(line, max_depth, min_len, &[], spans, None)
}

/// [`validate_envelope_spans`] told the line's quiet stretches (`jsonrpc::quiet`, found while
/// the line was read): the string values' bytes in them are not read again. Given `texts`,
/// it also lists there the texts of the line's `result` ([`ResultTexts`]).
pub(crate) fn validate_envelope_hinted<'a>(
    line: &'a [u8],
    max_depth: usize,
    min_len: usize,
    quiet: &[Quiet],
    spans: &mut Vec<Span>,
    texts: Option<&mut ResultTexts>,
) -> Result<Envelope<'a>, ParseError> {
    spans.clear();
    match scan::envelope_hinted(line, max_depth, min_len, quiet, spans, texts) {
        Some(env) => Ok(env),
        None => {
            spans.clear();
            envelope_by_serde(line, max_depth)
        }
    }
}

/// The serde pass of [`validate_envelope`] (the reference the scanner is tested against).
fn envelope_by_serde(line: &[u8], max_depth: usize) -> Result<Envelope<'_>, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let env = Top { max_depth }.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(env)
}

pub(crate) use scan::special;

#[derive(Clone, Copy)]
struct Top {
    max_depth: usize,
}

impl<'de> DeserializeSeed<'de> for Top {
    type Value = Envelope<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Envelope<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl Top {
    fn check(self, depth: usize) -> Check {
        Check {
            depth,
            max_depth: self.max_depth,
        }
    }
    fn not_an_object<E>(self) -> Result<Envelope<'static>, E> {
        Ok(Envelope::default())
    }
}

impl<'de> Visitor<'de> for Top {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Envelope<'de>, E> {
        self.not_an_object()
    }
    fn visit_i64<E>(self, _: i64) -> Result<Envelope<'de>, E> {
        self.not_an_object()
    }
    fn visit_u64<E>(self, _: u64) -> Result<Envelope<'de>, E> {
        self.not_an_object()
    }
    fn visit_f64<E>(self, _: f64) -> Result<Envelope<'de>, E> {
        self.not_an_object()
    }
    fn visit_str<E>(self, _: &str) -> Result<Envelope<'de>, E> {
        self.not_an_object()
    }
    fn visit_unit<E>(self) -> Result<Envelope<'de>, E> {
        self.not_an_object()
    }
    fn visit_none<E>(self) -> Result<Envelope<'de>, E> {
        self.not_an_object()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Envelope<'de>, A::Error> {
        self.check(0).visit_seq(seq)?;
        self.not_an_object()
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<'de>, A::Error> {
        if 1 > self.max_depth {
            return Err(A::Error::custom(format_args!("{DEEP}{}", self.max_depth)));
        }
        let mut env = Envelope {
            object: true,
            ..Envelope::default()
        };
        let mut keys = Keys::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "id" => {
                    env.id = Some(map.next_value_seed(Seed {
                        depth: 1,
                        max_depth: self.max_depth,
                    })?)
                }
                "method" => match map.next_value_seed(Method(self.check(1)))? {
                    Some(m) => env.method = m,
                    None => env.bad_method = true,
                },
                _ => map.next_value_seed(self.check(1))?,
            }
            keys.push(k);
        }
        if let Some(k) = keys.duplicate() {
            return Err(duplicate_key_error(&k));
        }
        Ok(env)
    }
}

/// A `method` member: `Some(Some(string))`, `Some(None)` for `null` (as if absent), or
/// `None` (checked like any value) when it is something else.
struct Method(Check);

impl<'de> DeserializeSeed<'de> for Method {
    type Value = Option<Option<std::borrow::Cow<'de, str>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Method {
    type Value = Option<Option<std::borrow::Cow<'de, str>>>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Some(std::borrow::Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Some(std::borrow::Cow::Owned(v.to_owned()))))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(seq).map(|()| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map).map(|()| None)
    }
}

/// The fast path of [`validate_envelope`]: a JSON scanner over the line's bytes that keeps
/// only the keys of the open objects (for the duplicate check) and the top-level `id` and
/// `method`. It accepts a line only when the serde pass would accept it with the same
/// envelope; when it is not sure (or the line is wrong) it answers `None`.
mod scan {
    use super::super::quiet::{special_hinted, Hints, Quiet};
    use super::Envelope;
    use smallvec::SmallVec;
    use std::borrow::Cow;

    /// Deeper than this the scanner leaves the line to serde (its own limit is 128).
    const MAX_SCAN_DEPTH: usize = 100;
    /// Integer digits beyond this could overflow an f64 (serde refuses that): left to serde.
    const MAX_INT_DIGITS: usize = 300;

    #[derive(Clone, Copy, PartialEq)]
    enum Member {
        Id,
        Method,
        Error,
        Result,
    }

    #[cfg(test)]
    pub(super) fn envelope<'a>(
        line: &'a [u8],
        max_depth: usize,
        min_len: usize,
        spans: &mut Vec<super::Span>,
    ) -> Option<Envelope<'a>> {
        envelope_hinted(line, max_depth, min_len, &[], spans, None)
    }

    /// [`envelope`] jumping over the quiet stretches in string values.
    pub(super) fn envelope_hinted<'a>(
        line: &'a [u8],
        max_depth: usize,
        min_len: usize,
        quiet: &[Quiet],
        spans: &mut Vec<super::Span>,
        mut texts: Option<&mut super::ResultTexts>,
    ) -> Option<Envelope<'a>> {
        let b = line;
        if let Some(t) = texts.as_deref_mut() {
            t.clear();
        }
        // The texts of the `result` (`super::ResultTexts`): the stack length of the object
        // whose member being read is not text (`not_text_member`; 0: none), and whether a
        // `result` member was met.
        let (mut not_text_at, mut has_result) = (0usize, false);
        let mut hints = Hints::new(quiet, line.len());
        // Every byte of every string, OR-ed as the strings are read: its top bit says that a
        // string holds a byte >= 0x80 (outside strings only ASCII is JSON), and only then is
        // the line's UTF-8 checked, at the end (an ASCII line is UTF-8).
        let mut high = 0u8;
        let limit = max_depth.min(MAX_SCAN_DEPTH);
        let mut i = ws(b, 0);
        if b.get(i) != Some(&b'{') || limit < 1 {
            return None;
        }
        // Open containers: is it an object, and where its keys start in `keys`.
        // Held inline up to 8 containers and 16 keys: a small message's need no allocation
        // (two per line were about a tenth of a small answer's cost, issue 19).
        let mut stack: SmallVec<[(bool, usize); 8]> = SmallVec::new();
        let mut keys: Keys<'_> = SmallVec::new();
        let mut env = Envelope {
            object: true,
            ..Envelope::default()
        };
        // The top-level member whose value is being read, and where that value starts.
        let mut member: Option<(Member, usize)> = None;
        let mut id_range: Option<(usize, usize)> = None;
        let mut method_range: Option<(usize, usize)> = None;
        // A failure reported: an `error` member, or `true` as the `isError` member of the
        // `result` object (`in_result`: the open object at depth 2 is it; `is_error_key`: its
        // last key was `isError`).
        let (mut failed, mut in_result, mut is_error_key) = (false, false, false);
        'value: loop {
            i = ws(b, i);
            if stack.len() == 1 {
                if let Some((m, _)) = member {
                    member = Some((m, i));
                }
            }
            match *b.get(i)? {
                open @ (b'{' | b'[') => {
                    if stack.len() + 1 > limit {
                        return None;
                    }
                    let object = open == b'{';
                    if stack.len() == 1 && object {
                        in_result = matches!(member, Some((Member::Result, _)));
                    }
                    stack.push((object, keys.len()));
                    i = ws(b, i + 1);
                    let close = if object { b'}' } else { b']' };
                    if b.get(i) == Some(&close) {
                        stack.pop();
                        i += 1;
                    } else if object {
                        i = key(b, i, &mut keys, stack.len() == 1, &mut member, &mut high)?;
                        is_error_key =
                            in_result && stack.len() == 2 && keys.last() == Some(&&b"isError"[..]);
                        if texts.is_some() {
                            not_text_at = skipped_member(&stack, &keys, member, not_text_at);
                            has_result |= stack.len() == 1 && is_result(member);
                        }
                        continue 'value;
                    } else {
                        continue 'value;
                    }
                }
                b'"' => {
                    // The string's own OR: whether its contents are ASCII.
                    let mut or = 0u8;
                    let (end, escaped) = value_string(b, i + 1, &mut or, &mut hints)?;
                    high |= or;
                    // A text: in the `result` (the value of its member, while `member` says so),
                    // not in a member that is not text, not too deep.
                    if not_text_at == 0
                        && stack.len() <= super::TEXT_MAX_DEPTH + 1
                        && is_result(member)
                    {
                        if let Some(t) = texts.as_deref_mut() {
                            if t.spans.len() < super::MAX_LISTED_TEXTS {
                                t.spans.push(super::TextSpan {
                                    start: i + 1,
                                    end: end - 1,
                                    ascii: or < 0x80,
                                    escaped,
                                });
                            } else {
                                texts = None; // too many: the content reader walks the line
                            }
                        }
                    }
                    if !escaped && end - 1 - (i + 1) >= min_len {
                        spans.push(super::Span {
                            start: i + 1,
                            end: end - 1,
                            ascii: or < 0x80,
                        });
                    }
                    i = end;
                }
                b't' if b[i..].starts_with(b"true") => {
                    failed |= is_error_key && stack.len() == 2;
                    i += 4
                }
                b'f' if b[i..].starts_with(b"false") => i += 5,
                b'n' if b[i..].starts_with(b"null") => i += 4,
                b'-' | b'0'..=b'9' => i = number(b, i)?,
                _ => return None,
            }
            // A value ended at `i`: close what it ends, up to the next value.
            loop {
                if stack.len() == 1 {
                    if let Some((m, start)) = member.take() {
                        let r = Some((start, i));
                        match m {
                            Member::Id => id_range = r,
                            Member::Method => method_range = r,
                            Member::Error => failed = true,
                            Member::Result => {}
                        }
                    }
                }
                let Some(&(object, start)) = stack.last() else {
                    break 'value;
                };
                i = ws(b, i);
                match (*b.get(i)?, object) {
                    (b',', true) => {
                        i = key(
                            b,
                            ws(b, i + 1),
                            &mut keys,
                            stack.len() == 1,
                            &mut member,
                            &mut high,
                        )?;
                        is_error_key =
                            in_result && stack.len() == 2 && keys.last() == Some(&&b"isError"[..]);
                        if texts.is_some() {
                            not_text_at = skipped_member(&stack, &keys, member, not_text_at);
                            has_result |= stack.len() == 1 && is_result(member);
                        }
                        continue 'value;
                    }
                    (b',', false) => {
                        i += 1;
                        continue 'value;
                    }
                    (b'}', true) => {
                        if duplicate(&mut keys[start..]) {
                            return None;
                        }
                        keys.truncate(start);
                        if not_text_at == stack.len() {
                            not_text_at = 0;
                        }
                        stack.pop();
                        if stack.len() == 1 {
                            in_result = false;
                        }
                        i += 1;
                    }
                    (b']', false) => {
                        stack.pop();
                        i += 1;
                    }
                    _ => return None,
                }
            }
        }
        if ws(b, i) != b.len() {
            return None;
        }
        if high >= 0x80 {
            std::str::from_utf8(line).ok()?;
        }
        env.not_failed = !failed;
        if let Some(t) = texts {
            t.complete = true;
            t.has_result = has_result;
        }
        if let Some((s, e)) = id_range {
            env.id = Some(serde_json::from_slice(&b[s..e]).ok()?);
        }
        if let Some((s, e)) = method_range {
            match b[s] {
                b'"' => {
                    let m = std::str::from_utf8(&b[s + 1..e - 1]).ok()?;
                    if m.contains('\\') {
                        return None; // escapes: serde decodes them
                    }
                    env.method = Some(Cow::Borrowed(m));
                }
                b'n' => {}
                _ => env.bad_method = true,
            }
        }
        Some(env)
    }

    /// Is the top-level member being read the `result`?
    #[inline(always)]
    fn is_result(member: Option<(Member, usize)>) -> bool {
        matches!(member, Some((Member::Result, _)))
    }

    /// After a key was read into the open object (the last of `stack`): the stack length of
    /// the object whose member is not text ([`super::not_text_member`]), given what it was.
    /// Only objects inside the `result`'s value count (depth 1 and deeper: the result itself,
    /// at stack length 2, never skips a member), and a member inside a skipped one changes
    /// nothing.
    #[inline(always)]
    fn skipped_member(
        stack: &[(bool, usize)],
        keys: &Keys<'_>,
        member: Option<(Member, usize)>,
        was: usize,
    ) -> usize {
        let at = stack.len();
        if at < 3 || !is_result(member) || (was != 0 && was < at) {
            return was;
        }
        if super::not_text_member(keys.last().copied().unwrap_or_default()) {
            at
        } else {
            0
        }
    }

    /// The keys of the open objects (see `envelope`).
    type Keys<'a> = SmallVec<[&'a [u8]; 16]>;

    fn ws(b: &[u8], mut i: usize) -> usize {
        while matches!(b.get(i), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            i += 1;
        }
        i
    }

    /// A key at `i` (its `"`), its `:`; returns where its value starts. Escaped keys are left
    /// to serde (it compares them decoded).
    fn key<'a>(
        b: &'a [u8],
        i: usize,
        keys: &mut Keys<'a>,
        top: bool,
        member: &mut Option<(Member, usize)>,
        high: &mut u8,
    ) -> Option<usize> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string(b, i + 1, high)?;
        if escaped {
            return None;
        }
        let k = &b[i + 1..end - 1];
        keys.push(k);
        if top {
            *member = match k {
                b"id" => Some((Member::Id, 0)),
                b"method" => Some((Member::Method, 0)),
                b"error" => Some((Member::Error, 0)),
                b"result" => Some((Member::Result, 0)),
                _ => None,
            };
        }
        let i = ws(b, end);
        (b.get(i) == Some(&b':')).then_some(i + 1)
    }

    /// A string whose opening quote is before `i`: the index after its closing quote, and
    /// whether it has escapes; its bytes are OR-ed into `high`. Surrogate escapes are left to
    /// serde (pairs, lone halves).
    fn string(b: &[u8], i: usize, high: &mut u8) -> Option<(usize, bool)> {
        let (k, or) = special(b.get(i..)?);
        *high |= or;
        string_from_stop(b, i + k?, high)
    }

    /// [`string`] for a value (a key is short), jumping over the quiet stretches in `hints`.
    fn value_string(
        b: &[u8],
        i: usize,
        high: &mut u8,
        hints: &mut Hints<'_>,
    ) -> Option<(usize, bool)> {
        b.get(i..)?;
        let (k, or) = special_hinted(b, i, hints);
        *high |= or;
        string_from_stop(b, k?, high)
    }

    /// The end of a string whose first stop (`"`, `\\` or a control character) is at `i`.
    #[inline(always)]
    fn string_from_stop(b: &[u8], i: usize, high: &mut u8) -> Option<(usize, bool)> {
        match b[i] {
            b'"' => Some((i + 1, false)),
            b'\\' => escaped_string(b, i, high).map(|end| (end, true)),
            _ => None, // a control character: serde refuses it
        }
    }

    /// The rest of a string from its first escape's backslash at `i` (see `string`): the
    /// stops after it are walked a block's bit mask at a time
    /// ([`StringStops`](super::super::stops::StringStops)), or with AVX2 the one-byte escapes
    /// are passed over inside each block ([`escaped_string_avx2`]).
    #[inline(never)]
    fn escaped_string(b: &[u8], i: usize, high: &mut u8) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::fast() {
            // SAFETY: the CPU has the vector paths' features (`simd::fast`, just above).
            return unsafe { escaped_string_avx2(b, i, high) };
        }
        escaped_string_walk(b, i, high)
    }

    /// The end of the escape whose backslash is at `i` (serde's escapes; surrogates are left
    /// to serde).
    #[inline(always)]
    fn escape_end(b: &[u8], i: usize) -> Option<usize> {
        let c = *b.get(i + 1)?;
        if super::super::stops::SHORT_ESCAPES[usize::from(c)] != 0 {
            return Some(i + 2);
        }
        if c != b'u' {
            return None;
        }
        let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let v = u16::from_str_radix(hex, 16).ok()?;
        if (0xD800..=0xDFFF).contains(&v) {
            return None;
        }
        Some(i + 6)
    }

    /// [`escaped_string`] without AVX2: every stop walked.
    pub(super) fn escaped_string_walk(b: &[u8], mut i: usize, high: &mut u8) -> Option<usize> {
        let mut stops = super::super::stops::StringStops::new(b);
        loop {
            i = escape_end(b, i)?;
            let (k, outside_ascii) = stops.next(i);
            *high |= u8::from(outside_ascii) << 7;
            i = k?;
            match b[i] {
                b'"' => return Some(i + 1),
                b'\\' => {}
                _ => return None, // a control character: serde refuses it
            }
        }
    }

    /// [`escaped_string`] with AVX2, 64 bytes at a time: a block's stops are found once, as a
    /// bit mask, and a backslash followed by one of the one-byte escapes (`\n`, `\"`: a file's
    /// text has one every twenty bytes or so) only clears its two bits. A walk from stop to
    /// stop waited on a load, a compare and a bit scan after each escape (0.21 ms per MiB of
    /// such text). A `\u` escape, a backslash ending a block and the line's last bytes (under
    /// 64) take the walk's steps.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
    pub(super) fn escaped_string_avx2(b: &[u8], mut i: usize, high: &mut u8) -> Option<usize> {
        use super::super::stops::{load_avx2, stop_bits_avx2, top_bits_avx2, SHORT_ESCAPES};
        loop {
            // `i`: a backslash.
            let mut base = escape_end(b, i)?;
            i = loop {
                let Some(block) = b.get(base..base + 64) else {
                    let (k, or) = special(&b[base..]);
                    *high |= or;
                    break base + k?;
                };
                let block: &[u8; 64] = block.try_into().expect("64 bytes");
                let v = load_avx2(block);
                let (mut stops, top) = (stop_bits_avx2(v), top_bits_avx2(v));
                let stop = loop {
                    if stops == 0 {
                        break None;
                    }
                    let p = stops.trailing_zeros() as usize;
                    let short = block[p] == b'\\'
                        && block
                            .get(p + 1)
                            .is_some_and(|&c| SHORT_ESCAPES[usize::from(c)] != 0);
                    if !short {
                        break Some(p);
                    }
                    // Past the escape's two bytes (a `\\` or `\"` escapes its second one).
                    stops &= (u64::MAX << 1).checked_shl(p as u32 + 1).unwrap_or(0);
                };
                match stop {
                    Some(p) => {
                        *high |= u8::from(top & ((1u64 << p) - 1) != 0) << 7;
                        break base + p;
                    }
                    None => {
                        *high |= u8::from(top != 0) << 7;
                        base += 64;
                    }
                }
            };
            match b[i] {
                b'"' => return Some(i + 1),
                b'\\' => {}
                _ => return None, // a control character: serde refuses it
            }
        }
    }

    /// Where a string's contents stop: the first `"`, `\\` or control character (below 0x20,
    /// which serde refuses in a string) of `s`, and a byte whose top bit says whether any byte
    /// before it has its top bit set (a byte outside ASCII; every caller reads only that bit).
    /// One pass over the bytes where there were three (UTF-8, the quote or backslash, the
    /// control characters). With AVX2, 32 bytes at a time to a bit mask whose lowest bit is
    /// the stop: a text with an escape every few dozen bytes (any file's lines) stops that
    /// often, and the portable blocks read each stop's block twice. (Inlined: it is every
    /// string's first step.)
    #[inline(always)]
    pub(crate) fn special(s: &[u8]) -> (Option<usize>, u8) {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::fast() {
            // Most strings of a small message (its keys, ids, method names) end within two
            // words: read there in a general register first, where a vector block's loads and
            // masks cost ~80 instructions a string (issue 19). The blocks read the words again.
            let mut or = 0;
            if let Ok(found) = head_words(s, 2, &mut or) {
                return found;
            }
            // SAFETY: the CPU has the vector paths' features (`simd::fast`, just above).
            return unsafe { special_avx2(s) };
        }
        special_blocks(s)
    }

    /// [`special`] over the first `words` words of `s` (eight bytes each, as many as `s` holds
    /// whole) in a general register: `Ok` with the answer when one of them holds the stop,
    /// else `Err` with where they end; `or` gathers the bytes read.
    #[inline(always)]
    fn head_words(s: &[u8], words: usize, or: &mut u8) -> Result<(Option<usize>, u8), usize> {
        let mut head = 0;
        while head < 8 * words {
            let Some(word) = s.get(head..head + 8) else {
                break;
            };
            let x = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            let hit = stop_flags(x);
            if hit != 0 {
                let k = (hit.trailing_zeros() / 8) as usize;
                // The bytes before the stop (the low `k` bytes of the word).
                let before = x & ((1u64 << (8 * k)) - 1);
                return Ok((Some(head + k), *or | fold(before)));
            }
            *or |= fold(x);
            head += 8;
        }
        Err(head)
    }

    /// [`special`] with AVX2: each 64 bytes compared with the quote, the backslash and the
    /// control range, to one bit per byte (`stops::stop_bits_avx2`, as the walk over an
    /// escaped string's stops reads them); the tail (under 64 bytes) by [`special_blocks`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
    fn special_avx2(s: &[u8]) -> (Option<usize>, u8) {
        use super::super::stops::{load_avx2, stop_bits_avx2, top_bits_avx2};
        use std::arch::x86_64::{_mm256_movemask_epi8, _mm256_or_si256, _mm256_setzero_si256};
        // The OR of the blocks read whole (only its top bits are looked at).
        let mut seen = _mm256_setzero_si256();
        let mut i = 0;
        while let Some(block) = s.get(i..i + 64) {
            let v = load_avx2(block.try_into().expect("64 bytes"));
            let stop = stop_bits_avx2(v);
            if stop != 0 {
                let k = stop.trailing_zeros();
                let before = top_bits_avx2(v) & ((1u64 << k) - 1);
                let high = before != 0 || _mm256_movemask_epi8(seen) != 0;
                return (Some(i + k as usize), u8::from(high) << 7);
            }
            seen = _mm256_or_si256(seen, _mm256_or_si256(v.0, v.1));
            i += 64;
        }
        let (k, or) = special_blocks(&s[i..]);
        let high = _mm256_movemask_epi8(seen) != 0;
        (k.map(|k| i + k), or | u8::from(high) << 7)
    }

    /// [`special`] without SIMD intrinsics (its blocks are written to be vectorised), and
    /// the OR of every byte before the stop.
    #[inline(always)]
    pub(super) fn special_blocks(s: &[u8]) -> (Option<usize>, u8) {
        let mut or = 0u8;
        // Most strings of a small message (its keys, ids, method names, a short text) end
        // within a few words: eight bytes at a time in a general register first, where the
        // byte loop below took about seven instructions a byte (issue 19).
        let head = match head_words(s, HEAD / 8, &mut or) {
            Ok(found) => return found,
            Err(head) => head,
        };
        // Long blocks for long strings, short ones for the rest (and the block with the byte).
        let at = plain_blocks::<128>(s, head, &mut or);
        let at = plain_blocks::<16>(s, at, &mut or);
        for (k, &x) in s[at..].iter().enumerate() {
            if stops(x) {
                return (Some(at + k), or);
            }
            or |= x;
        }
        (None, or)
    }

    /// The bytes [`special_blocks`] reads a word at a time before its blocks.
    const HEAD: usize = 32;

    /// A flag (the byte's top bit) for each byte of `x` that [`stops`] a string: `< 0x20`, `"`
    /// or `\\`. Of the flags the word tricks raise, the lowest is always a true one (a false
    /// one can only follow a true one, through a borrow), as in `audit::canon::next_escape`.
    #[inline(always)]
    fn stop_flags(x: u64) -> u64 {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let ctrl = x.wrapping_sub(ONES * 0x20) & !x;
        let q = x ^ (ONES * u64::from(b'"'));
        let q = q.wrapping_sub(ONES) & !q;
        let s = x ^ (ONES * u64::from(b'\\'));
        let s = s.wrapping_sub(ONES) & !s;
        (ctrl | q | s) & HIGH
    }

    /// The OR of the eight bytes of `x`.
    #[inline(always)]
    fn fold(x: u64) -> u8 {
        let x = x | x >> 32;
        let x = x | x >> 16;
        (x | x >> 8) as u8
    }

    #[inline(always)]
    fn stops(x: u8) -> bool {
        (x == b'"') | (x == b'\\') | (x < 0x20)
    }

    /// Past the blocks of `N` bytes from `at` that hold no byte that [`stops`] a string (their
    /// bytes OR-ed into `or`): where the first block with one, or the last whole block, ends.
    #[inline(always)]
    fn plain_blocks<const N: usize>(s: &[u8], mut at: usize, or: &mut u8) -> usize {
        for c in s[at..].chunks_exact(N) {
            let (mut stop, mut all) = (0u8, 0u8);
            for &x in c {
                stop |= u8::from(stops(x));
                all |= x;
            }
            if stop != 0 {
                break;
            }
            *or |= all;
            at += N;
        }
        at
    }

    /// A number at `i`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?`; exponents and very long integers are
    /// left to serde (it refuses what overflows an f64).
    fn number(b: &[u8], mut i: usize) -> Option<usize> {
        if b[i] == b'-' {
            i += 1;
        }
        let int = i;
        match *b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        if i - int > MAX_INT_DIGITS {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let frac = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == frac {
                return None;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            return None;
        }
        Some(i)
    }

    /// Does a key occur twice among one object's keys (all unescaped: bytes compare)?
    fn duplicate(keys: &mut [&[u8]]) -> bool {
        if keys.len() <= 16 {
            return keys
                .iter()
                .enumerate()
                .any(|(i, a)| keys[i + 1..].contains(a));
        }
        keys.sort_unstable();
        keys.windows(2).any(|w| w[0] == w[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_the_parser() {
        for line in [
            &br#"{"a":[1,2,{"b":null}],"c":"\u00e9"}"#[..],
            br#"{"name":"a","Name":"b"}"#,
            br#"{"a":"a\u0000b"}"#,
        ] {
            assert!(validate_strict(line, 64).is_ok());
        }
        for line in [
            &br#"{"name":"a","name":"b"}"#[..],
            br#"{"p":{"path":"x","path":"y"}}"#,
            br#"{"name":"a","n\u0061me":"b"}"#,
            b"{\"a\":\"\xff\xfe\"}",
            b"{\"r\":{\"x\":[\"ok\",\"\xc3\"]}}",
            br#"{"a":"\ud800"}"#,
            br#"{"a":1} {"b":2}"#,
            b"{",
        ] {
            assert_eq!(
                validate_strict(line, 64).is_err(),
                parse_strict(line, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(line)
            );
            assert!(validate_strict(line, 64).is_err());
        }
        // The envelope pass refuses exactly what the validation refuses.
        for line in [
            &br#"{"a":[1,2,{"b":null}],"c":"\u00e9"}"#[..],
            br#"{"id":{"x":1,"x":2},"result":1}"#,
            br#"{"method":{"a":1,"a":2}}"#,
            br#"{"id":1,"id":2}"#,
            br#"{"method":"a","method":"a"}"#,
            b"{\"method\":\"\xff\"}",
            br#"[{"a":1,"a":1}]"#,
            br#"{"a":1} {"b":2}"#,
        ] {
            assert_eq!(
                validate_envelope(line, 64).is_err(),
                validate_strict(line, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(validate_envelope(deep.as_bytes(), 64).is_err());
        assert!(matches!(
            validate_strict(deep.as_bytes(), 64),
            Err(ParseError::Refused(_))
        ));
    }

    /// The scanner accepts a line only when the serde pass accepts it, with the same envelope
    /// (differential, on generated and mutated lines).
    #[test]
    fn the_envelope_scanner_agrees_with_serde() {
        let mut rng = crate::test_rng::XorShift::new(0x2545_f491_4f6c_dd1du64);
        let mut rand = move |n: usize| rng.below(n);
        const ATOMS: &[&str] = &[
            "0",
            "-0",
            "12",
            "-7.25",
            "1e3",
            "01",
            "1.",
            "-",
            "0.5e-2",
            "true",
            "false",
            "null",
            "tru",
            "\"\"",
            "\"a\"",
            "\"\\n\\\"x\"",
            "\"\\u00e9\"",
            "\"\\ud83d\\ude00\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"\\u12\"",
            "\"é ü\"",
            "\"\u{1}\"",
            "\"tab\there\"",
            "123456789012345678901234567890",
            "{}",
            "[]",
            "[1,]",
            "{\"a\":}",
            "\"id\"",
        ];
        const KEYS: &[&str] = &[
            "id", "method", "result", "params", "jsonrpc", "a", "b", "i\\u0064", "method", "text",
            "\\\"", "",
        ];
        fn value(rand: &mut dyn FnMut(usize) -> usize, depth: usize, out: &mut String) {
            match if depth > 4 { 0 } else { rand(5) } {
                0..=2 => out.push_str(ATOMS[rand(ATOMS.len())]),
                3 => {
                    out.push('[');
                    for j in 0..rand(4) {
                        if j > 0 {
                            out.push(',');
                        }
                        value(rand, depth + 1, out);
                    }
                    out.push(']');
                }
                _ => object(rand, depth + 1, out),
            }
        }
        fn object(rand: &mut dyn FnMut(usize) -> usize, depth: usize, out: &mut String) {
            out.push('{');
            for j in 0..rand(5) {
                if j > 0 {
                    out.push_str([",", " , ", ",\n"][rand(3)]);
                }
                out.push('"');
                out.push_str(KEYS[rand(KEYS.len())]);
                out.push_str(["\":", "\" : "][rand(2)]);
                value(rand, depth, out);
            }
            out.push('}');
        }
        let (mut accepted, mut total) = (0, 0);
        for _ in 0..10_000 {
            let mut line = String::new();
            if rand(10) == 0 {
                line.push(' ');
            }
            object(&mut rand, 0, &mut line);
            let mut bytes = line.into_bytes();
            match rand(6) {
                0 if !bytes.is_empty() => {
                    let at = rand(bytes.len());
                    bytes[at] = b"{}[]\",:\\ \x01\xffa0"[rand(13)];
                }
                1 if !bytes.is_empty() => bytes.truncate(rand(bytes.len())),
                2 => bytes.extend_from_slice([&b" "[..], b"\r", b"x", b" {}"][rand(4)]),
                _ => {}
            }
            for max_depth in [1, 2, 3, 64] {
                total += 1;
                if let Some(mut env) = scan::envelope(&bytes, max_depth, 0, &mut Vec::new()) {
                    accepted += 1;
                    env.not_failed = false; // (the serde pass does not look)
                    assert_eq!(
                        envelope_by_serde(&bytes, max_depth).as_ref(),
                        Ok(&env),
                        "{:?} at depth {max_depth}",
                        String::from_utf8_lossy(&bytes)
                    );
                }
                // And the envelope the proxy uses is the serde pass's, accepted or refused.
                assert_eq!(
                    unlooked(validate_envelope(&bytes, max_depth)),
                    envelope_by_serde(&bytes, max_depth)
                );
            }
        }
        // The scanner reads most lines (the rest go to serde).
        assert!(accepted * 10 > total, "{accepted} of {total}");
    }

    /// The one-pass string scan finds what the three passes it replaced found (memchr2 for the
    /// quote or backslash, a control-character check before it, UTF-8 of the line), at every
    /// offset of the 32-byte blocks, on generated strings of ASCII, multi-byte and invalid
    /// UTF-8 bytes.
    #[test]
    fn the_one_pass_string_scan_matches_the_three_passes() {
        let mut rng = crate::test_rng::XorShift::new(0x9e37_79b9_7f4a_7c15u64);
        let mut rand = move |n: usize| rng.below(n);
        // The old passes: where the string stops (None: it does not, or a control character
        // comes first) and whether the bytes before are free of bytes >= 0x80.
        let old = |s: &[u8]| -> (Option<usize>, bool) {
            match memchr::memchr2(b'"', b'\\', s) {
                Some(k) if !s[..k].iter().any(|&x| x < 0x20) => (Some(k), s[..k].is_ascii()),
                _ => (None, true),
            }
        };
        // (With the neighbours of the stopping bytes, and them with the top bit set: the word
        // tricks of `special_blocks` must not take them for stops.)
        const BYTES: &[u8] =
            b"ab x\"\\\x00\x1f\x7f\x80\xc3\xa9\xff !#[]\x1e\x20\xa2\xdc\x9f\xa0\x01";
        for case in 0..20_000 {
            let len = [rand(8), rand(40), rand(100), rand(300)][rand(4)];
            let plain = rand(3) == 0;
            let mut s: Vec<u8> = (0..len)
                .map(|_| {
                    if plain || rand(8) > 0 {
                        b"abcxyz 019"[rand(10)]
                    } else {
                        BYTES[rand(BYTES.len())]
                    }
                })
                .collect();
            if case % 5 == 0 {
                s.push(b'"');
            }
            let (at, top) = scan::special(&s);
            // The CPU's variant and the portable one agree (on the top bit: the rest of the
            // CPU variant's byte means nothing).
            let (at_blocks, or) = scan::special_blocks(&s);
            assert_eq!((at, top & 0x80), (at_blocks, or & 0x80));
            // Where the new scan stops is the first quote, backslash or control byte.
            let first = s.iter().position(|&x| x == b'"' || x == b'\\' || x < 0x20);
            assert_eq!(at, first, "{s:?}");
            // The OR is exactly that of the bytes before the stop.
            let before = &s[..at.unwrap_or(s.len())];
            assert_eq!(or, before.iter().fold(0, |a, &x| a | x), "{s:?}");
            assert_eq!(or >= 0x80, !s[..at.unwrap_or(s.len())].is_ascii(), "{s:?}");
            assert_eq!(top >= 0x80, !before.is_ascii(), "{s:?}");
            // What the old passes concluded follows: the same end, the same ASCII answer.
            let (old_end, old_ascii) = old(&s);
            let new_end = at.filter(|&k| s[k] >= 0x20);
            assert_eq!(new_end, old_end, "{s:?}");
            if old_end.is_some() {
                assert_eq!(or < 0x80, old_ascii, "{s:?}");
            }
        }
    }

    /// Long strings (past the 32-byte blocks) with quotes, escapes, control characters and
    /// multi-byte or invalid UTF-8 at every place: the scanner agrees with serde.
    #[test]
    fn the_envelope_scanner_agrees_with_serde_on_long_strings() {
        let mut rng = crate::test_rng::XorShift::new(0x1234_5678_9abc_def1u64);
        let mut rand = move |n: usize| rng.below(n);
        const PIECES: &[&[u8]] = &[
            b"\\\"",
            b"\\n",
            b"\\u00e9",
            b"\\ud800",
            b"\x01",
            b"\x1f",
            b"\x7f",
            "\u{e9}".as_bytes(),
            "\u{20ac}".as_bytes(),
            "\u{1f600}".as_bytes(),
            b"\xc3",
            b"\xff",
            b"\xed\xa0\x80",
            b"\"",
        ];
        for _ in 0..5_000 {
            let mut text: Vec<u8> = (0..rand(200)).map(|_| b"abcdefgh "[rand(9)]).collect();
            for _ in 0..rand(3) {
                let at = rand(text.len() + 1);
                let piece = PIECES[rand(PIECES.len())];
                text.splice(at..at, piece.iter().copied());
            }
            let mut line =
                br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":""#.to_vec();
            line.extend_from_slice(&text);
            line.extend_from_slice(br#""}]}}"#);
            if let Some(mut env) = scan::envelope(&line, 64, 0, &mut Vec::new()) {
                env.not_failed = false; // (the serde pass does not look)
                assert_eq!(
                    envelope_by_serde(&line, 64).as_ref(),
                    Ok(&env),
                    "{:?}",
                    String::from_utf8_lossy(&line)
                );
            }
            assert_eq!(
                unlooked(validate_envelope(&line, 64)),
                envelope_by_serde(&line, 64)
            );
        }
    }

    /// The end of a string after its first escape, and whether it holds bytes outside ASCII:
    /// the AVX2 blocks find what the walk from stop to stop finds, on generated strings dense
    /// in escapes of every kind (bad ones too), quotes, control characters and bytes outside
    /// ASCII, long and short, with the line going on after them or ending.
    #[test]
    fn both_escaped_string_scans_agree() {
        #[cfg(target_arch = "x86_64")]
        if crate::simd::fast() {
            let mut rng = crate::test_rng::XorShift::new(0x0e5c_a9ed_57a1_04b5u64);
            let mut rand = move |n: usize| rng.below(n);
            const PIECES: &[&[u8]] = &[
                b"\\n",
                b"\\\"",
                b"\\\\",
                b"\\/",
                b"\\t",
                b"\\b",
                b"\\u00e9",
                b"\\uD83D",
                b"\\u12",
                b"\\q",
                b"\\",
                b"\"",
                b"\x01",
                b"\x1f",
                b"\xc3\xa9",
                b"\xff",
            ];
            let (mut ended, mut refused) = (0, 0);
            for _ in 0..20_000 {
                let mut s = b"\\n".to_vec();
                let len = [rand(10), rand(70), rand(300)][rand(3)];
                while s.len() < len {
                    if rand(4) == 0 {
                        s.extend_from_slice(PIECES[rand(PIECES.len())]);
                    } else {
                        s.push(b"abcdefgh "[rand(9)]);
                    }
                }
                if rand(2) == 0 {
                    s.extend_from_slice(b"\"}, \"more\": \"");
                    s.extend((0..rand(100)).map(|_| b'x'));
                }
                let (mut high_walk, mut high_avx2) = (0u8, 0u8);
                let walk = scan::escaped_string_walk(&s, 0, &mut high_walk);
                // SAFETY: the CPU has the vector paths' features (`simd::fast`, above).
                let avx2 = unsafe { scan::escaped_string_avx2(&s, 0, &mut high_avx2) };
                assert_eq!(avx2, walk, "{:?}", String::from_utf8_lossy(&s));
                if walk.is_some() {
                    assert_eq!(
                        high_avx2 >> 7,
                        high_walk >> 7,
                        "{:?}",
                        String::from_utf8_lossy(&s)
                    );
                    ended += 1;
                } else {
                    refused += 1;
                }
            }
            assert!(ended > 2_000 && refused > 2_000, "{ended} {refused}");
        }
    }

    #[test]
    fn the_envelope_scanner_reads_ordinary_answers() {
        for line in [
            &br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"a\nb \"q\" \u00e9"}]}}"#[..],
            br#"{"jsonrpc":"2.0","id":"capjail:1:2","method":"notifications/x","params":{"p":[1,-2.5,true,null]}}"#,
            br#" {"id" : 7 , "method" : null , "result":{"a":"\n"}} "#,
            br#"{"method":3}"#,
            "{\"result\":\"ü€😀\"}".as_bytes(),
        ] {
            let env = scan::envelope(line, 64, 0, &mut Vec::new()).unwrap_or_else(|| panic!("{line:?}"));
            assert_eq!(unlooked(Ok(env)), envelope_by_serde(line, 64));
        }
        for line in [
            &b"{\"a\":\"\x01\"}"[..],
            br#"{"a":1,"a":2}"#,
            br#"{"\u0069d":1,"id":2}"#,
            br#"{"a":"\ud800"}"#,
            br#"{"a":1e999}"#,
            br#"[1]"#,
            br#"{"a":{"b":1}}"#,
        ] {
            assert!(
                scan::envelope(line, 2, 0, &mut Vec::new()).is_none()
                    || line == br#"{"a":{"b":1}}"#
            );
        }
        assert!(scan::envelope(br#"{"a":{"b":1}}"#, 1, 0, &mut Vec::new()).is_none());
        assert!(scan::envelope(br#"{"a":{"b":1}}"#, 2, 0, &mut Vec::new()).is_some());
    }

    #[test]
    fn duplicates_are_found_past_the_inline_keys() {
        for n in [2, 7, 8, 9, 20] {
            let mut members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
            let ok = format!("{{{}}}", members.join(","));
            assert!(validate_strict(ok.as_bytes(), 64).is_ok(), "{ok}");
            assert!(validate_envelope(ok.as_bytes(), 64).is_ok(), "{ok}");
            members.push("\"k1\":0".into());
            members.insert(0, "\"k0\":0".into());
            let dup = format!("{{{}}}", members.join(","));
            for r in [
                validate_strict(dup.as_bytes(), 64),
                validate_envelope(dup.as_bytes(), 64).map(|_| ()),
            ] {
                // The smallest duplicated key is named, as with every object size.
                assert!(
                    matches!(&r, Err(ParseError::Refused(m)) if m.contains("`k0`")),
                    "{dup}: {r:?}"
                );
            }
        }
    }

    #[test]
    fn the_envelope_of_a_line() {
        let env = validate_envelope(
            br#"{"jsonrpc":"2.0","id":{"k":[1]},"method":"tools/call","params":{"x":"y"}}"#,
            64,
        )
        .unwrap();
        assert_eq!(env.id, Some(serde_json::json!({"k": [1]})));
        assert_eq!(env.method.as_deref(), Some("tools/call"));
        assert!(env.object && !env.bad_method);
        let env = validate_envelope(br#"{"id":7,"method":null,"result":{"a":"\n"}}"#, 64).unwrap();
        assert_eq!(
            (env.id, env.method, env.bad_method),
            (Some(7.into()), None, false)
        );
        assert!(
            validate_envelope(br#"{"method":3}"#, 64)
                .unwrap()
                .bad_method
        );
        assert!(!validate_envelope(b"[1,2]", 64).unwrap().object);
        assert!(!validate_envelope(b"null", 64).unwrap().object);
        let env = validate_envelope(br#"{"method":"a\u0062"}"#, 64).unwrap();
        assert_eq!(env.method.as_deref(), Some("ab"));
    }

    /// The envelope as the serde pass gives it (which does not look for a failure report).
    fn unlooked(env: Result<Envelope<'_>, ParseError>) -> Result<Envelope<'_>, ParseError> {
        env.map(|env| Envelope {
            not_failed: false,
            ..env
        })
    }

    /// An answer that reports a failure (an `error` member, a `result` whose `isError` is
    /// `true`) is never taken for one that reports none, wherever `isError` or `true` appear
    /// elsewhere; a line the serde pass reads is never said to report none.
    #[test]
    fn a_failure_report_is_never_missed() {
        let failed = |line: &str| {
            let v: Value = serde_json::from_str(line).unwrap();
            v.get("error").is_some() || v.pointer("/result/isError") == Some(&Value::Bool(true))
        };
        let lines = [
            (r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#, true),
            (r#"{"id":1,"result":{"content":[],"isError":true}}"#, false),
            (
                r#"{"id":1,"result":{"isError" : true ,"content":[]}}"#,
                false,
            ),
            (r#"{"id":1,"result":{"isError":false,"ok":true}}"#, true),
            (r#"{"id":1,"result":{"content":[{"isError":true}]}}"#, true),
            (r#"{"id":1,"result":{"a":{"isError":true},"b":true}}"#, true),
            (r#"{"id":1,"result":{"isError":[true]}}"#, true),
            (r#"{"id":1,"result":{"isError":{"x":true}}}"#, true),
            (r#"{"id":1,"result":[true],"x":{"isError":true}}"#, true),
            (r#"{"id":1,"params":{"isError":true},"result":{}}"#, true),
            (r#"{"id":1,"isError":true,"result":{}}"#, true),
            (r#"{"id":1,"result":{"x":1},"y":{"isError":true}}"#, true),
            (r#"{"id":1,"result":{"isError":false},"z":true}"#, true),
            (
                r#"{"id":1,"error":{"code":-32000,"message":"EACCES"}}"#,
                false,
            ),
            (r#"{"id":1,"error":null}"#, false),
            (r#"{"id":1,"result":{"t":"\n","isError":true}}"#, false),
            (r#"{"id":1,"result":{"isError":true,"t":1e3}}"#, false),
            (r#"{"id":1,"result":{"is\u0045rror":true}}"#, false),
            (r#"{"id":1,"result":{"ok":1e3}}"#, false),
        ];
        for (line, not_failed) in lines {
            let env = validate_envelope(line.as_bytes(), 64).unwrap();
            assert_eq!(env.not_failed, not_failed, "{line}");
            assert!(!(env.not_failed && failed(line)), "{line}");
        }
        // Generated answers: never `not_failed` for a failure.
        let mut rng = crate::test_rng::XorShift::new(0x0fa1_1ed0_5eedu64);
        let pieces = [
            r#""isError":true"#,
            r#""isError":false"#,
            r#""isError":[true]"#,
            r#""a":true"#,
            r#""b":{"isError":true}"#,
            r#""c":[{"isError":true},true]"#,
            r#""d":"isError""#,
        ];
        for _ in 0..3000 {
            let mut members = Vec::new();
            for _ in 0..rng.below(4) {
                members.push(pieces[rng.below(pieces.len())].to_string());
            }
            members.sort();
            members.dedup_by(|a, b| a.split(':').next() == b.split(':').next());
            let result = format!("{{{}}}", members.join(","));
            let line = match rng.below(4) {
                0 => format!(r#"{{"id":1,"result":{result}}}"#),
                1 => format!(r#"{{"id":1,"x":{result},"result":{{}}}}"#),
                2 => format!(r#"{{"id":1,"result":[{result}]}}"#),
                _ => format!(r#"{{"id":1,"error":{result}}}"#),
            };
            let env = validate_envelope(line.as_bytes(), 64).unwrap();
            assert_eq!(env.not_failed, !failed(&line), "{line}");
        }
    }

    /// `cargo test --release --lib strict::tests::cost_of_validation -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn cost_of_validation() {
        let text = "x".repeat(16 << 20);
        let line = serde_json::to_vec(&serde_json::json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":text}]}})).unwrap();
        let many: Vec<Value> = (0..200_000)
            .map(|i| serde_json::json!({"name": format!("f{i}"), "size": i, "kind": "file"}))
            .collect();
        let objects = serde_json::to_vec(
            &serde_json::json!({"jsonrpc":"2.0","id":1,"result":{"entries":many}}),
        )
        .unwrap();
        for (what, l) in [
            ("one 16 MiB string", &line),
            ("200k small objects", &objects),
        ] {
            let t = std::time::Instant::now();
            for _ in 0..5 {
                serde_json::from_slice::<serde::de::IgnoredAny>(l).unwrap();
            }
            let ignored = t.elapsed() / 5;
            let t = std::time::Instant::now();
            for _ in 0..5 {
                validate_strict(l, 64).unwrap();
            }
            let strict = t.elapsed() / 5;
            let t = std::time::Instant::now();
            for _ in 0..5 {
                envelope_by_serde(l, 64).unwrap();
            }
            let by_serde = t.elapsed() / 5;
            let t = std::time::Instant::now();
            for _ in 0..5 {
                validate_envelope(l, 64).unwrap();
            }
            let envelope = t.elapsed() / 5;
            eprintln!(
                "{what} ({} bytes): IgnoredAny {ignored:?}, validate_strict {strict:?}, envelope by serde {by_serde:?}, validate_envelope {envelope:?}",
                l.len()
            );
        }
    }

    #[test]
    fn accepts_ordinary_json() {
        let v = parse_strict(br#"{"a":[1,2,{"b":null}],"c":"\u00e9"}"#, 64).unwrap();
        assert_eq!(v["c"], "é");
        // Escaped key that decodes to a different name is not a duplicate.
        assert!(parse_strict(br#"{"name":"a","Name":"b"}"#, 64).is_ok());
    }

    #[test]
    fn duplicate_keys_are_refused_even_when_escaped() {
        for line in [
            &br#"{"name":"a","name":"b"}"#[..],
            br#"{"p":{"path":"x","path":"y"}}"#,
            br#"{"name":"a","n\u0061me":"b"}"#,
        ] {
            assert!(
                matches!(parse_strict(line, 64), Err(ParseError::Refused(m)) if m.contains("duplicate")),
                "{:?}",
                std::str::from_utf8(line)
            );
        }
    }

    #[test]
    fn syntax_and_encoding() {
        assert!(matches!(parse_strict(b"{", 64), Err(ParseError::Syntax(_))));
        assert!(matches!(
            parse_strict(b"{\"a\":\"\xff\xfe\"}", 64),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_strict(br#"{"a":"\ud800"}"#, 64),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(
            parse_strict(br#"{"a":1} {"b":2}"#, 64),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(parse_strict(b"", 64), Err(ParseError::Syntax(_))));
        assert!(parse_strict(br#"{"a":"a\u0000b"}"#, 64).is_ok());
    }

    #[test]
    fn depth_limit() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert!(matches!(
            parse_strict(deep.as_bytes(), 64),
            Err(ParseError::Refused(_))
        ));
        let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_strict(ok.as_bytes(), 64).is_ok());
        let very = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            parse_strict(very.as_bytes(), 64),
            Err(ParseError::Refused(_))
        ));
    }
}
