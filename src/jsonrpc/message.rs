//! One client message read in one strict pass, without a tree of its envelope (issue 19).
//!
//! [`parse_strict`](super::parse_strict) builds an owned tree of the whole message, then
//! [`shape`](super::shape) classifies it. [`parse_message_reusing`] reads the same line by the same
//! rules (valid UTF-8 everywhere, one value, no duplicate key at any depth, no deeper than the
//! policy's limit) but keeps only what the stages read: `method` borrowed from the line, `id`
//! (a number, or a short string), and a tree of `params` alone; `result` and `error` are
//! checked, not kept.
//!
//! It only ever answers for a message [`shape`](super::shape) accepts: anything else (a
//! batch, any member or value `shape` would refuse, any line the strict parse refuses) is
//! `None`, and the caller reads the line the owned way, which alone says why it is refused.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::reuse::InPlace;
use super::strict::{Check, Key, Seed};
use super::Shape;

/// A message [`shape`](super::shape) accepts, its members as the stages read them.
#[derive(Debug, PartialEq)]
pub(crate) struct Message<'a> {
    pub(crate) id: Option<Value>,
    pub(crate) method: Option<Cow<'a, str>>,
    pub(crate) params: Option<Value>,
}

impl Message<'_> {
    /// What [`shape`](super::shape) says of the same message.
    pub(crate) fn shape(&self) -> Shape<'_> {
        match (&self.method, &self.id) {
            (Some(method), Some(id)) => Shape::Request {
                id,
                method,
                params: self.params.as_ref(),
            },
            (Some(method), None) => Shape::Notification {
                method,
                params: self.params.as_ref(),
            },
            (None, Some(id)) => Shape::Response { id },
            (None, None) => unreachable!("parse_message returns no such message"),
        }
    }
}

/// [`parse_message_reusing`] with nothing to reuse.
#[cfg(test)]
pub(crate) fn parse_message(line: &[u8], max_depth: usize) -> Option<Message<'_>> {
    parse_message_reusing(line, max_depth, None)
}

/// Read one line as a single JSON-RPC message, or `None` when the fast pass is unsure (see
/// the module's documentation): the caller then uses `parse_strict` and `shape`. Its
/// `params` are read into `spare` (an earlier message's `params`, done with) when there is
/// one: its allocations reused (`jsonrpc::reuse`), the same message.
pub(crate) fn parse_message_reusing(
    line: &[u8],
    max_depth: usize,
    spare: Option<Value>,
) -> Option<Message<'_>> {
    // The common message by hand first (`jsonrpc::plain`, which checks UTF-8 on its own);
    // serde for anything else.
    let mut spare = spare;
    if let Some(m) = super::plain::read(line, max_depth, &mut spare) {
        return Some(m);
    }
    // The whole line checked as UTF-8 once, then read as text: serde_json's slice reader
    // checks each string on its own instead (a call per key and value, 7% of the client
    // thread's instructions per call; issue 19). Both check `\u` escapes the same way; a
    // line that is not UTF-8 is left to the owned parse, which says why it is refused.
    let text = std::str::from_utf8(line).ok()?;
    serde_pass(text, max_depth, spare)
}

/// [`parse_message_reusing`] by serde alone (the tests' reference for `jsonrpc::plain`).
pub(super) fn serde_pass(
    text: &str,
    max_depth: usize,
    spare: Option<Value>,
) -> Option<Message<'_>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let found = Top { max_depth, spare }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    found.into_message()
}

/// What the pass found at the top level.
#[derive(Default)]
struct Found<'a> {
    jsonrpc: bool,
    id: Option<Value>,
    method: Option<Cow<'a, str>>,
    params: Option<Value>,
    result: bool,
    error: bool,
}

impl<'a> Found<'a> {
    /// The message, when `shape` accepts it (its exact rules, member by member).
    fn into_message(self) -> Option<Message<'a>> {
        if !self.jsonrpc {
            return None;
        }
        let ok = match (&self.method, &self.id) {
            (Some(_), _) => !self.result && !self.error,
            (None, Some(_)) => self.params.is_none() && self.result != self.error,
            (None, None) => false,
        };
        ok.then_some(Message {
            id: self.id,
            method: self.method,
            params: self.params,
        })
    }
}

/// Stops the pass: the line is left to the owned parse (the message of this error is never
/// shown).
fn unsure<E: serde::de::Error>() -> E {
    E::custom("capjail:not for the fast pass")
}

struct Top {
    max_depth: usize,
    /// What `params` is read into (`jsonrpc::reuse`), if anything.
    spare: Option<Value>,
}

impl<'de> DeserializeSeed<'de> for Top {
    type Value = Found<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found<'de>, D::Error> {
        // Anything but an object is refused by the visitor's defaults (unsure).
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top {
    type Value = Found<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found<'de>, A::Error> {
        let mut spare = self.spare;
        if 1 > self.max_depth {
            return Err(unsure());
        }
        // Members one level down, read by the strict parse's own rules.
        let seed = Seed {
            depth: 1,
            max_depth: self.max_depth,
        };
        let check = Check {
            depth: 1,
            max_depth: self.max_depth,
        };
        let mut found = Found::default();
        // A member twice is a duplicate key (the owned parse names it); an unknown member is
        // refused by `shape`: both unsure.
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "jsonrpc" if !found.jsonrpc => {
                    if !map.next_value_seed(Version)? {
                        return Err(unsure());
                    }
                    found.jsonrpc = true;
                }
                "id" if found.id.is_none() => {
                    let id = map.next_value_seed(seed)?;
                    if !(id.is_string() || id.is_i64() || id.is_u64()) {
                        return Err(unsure());
                    }
                    found.id = Some(id);
                }
                "method" if found.method.is_none() => {
                    found.method = Some(map.next_value_seed(MethodName)?);
                }
                "params" if found.params.is_none() => {
                    let p = match spare.take() {
                        Some(mut p) => {
                            map.next_value_seed(InPlace { slot: &mut p, seed })?;
                            p
                        }
                        None => map.next_value_seed(seed)?,
                    };
                    if !p.is_object() && !p.is_array() {
                        return Err(unsure());
                    }
                    found.params = Some(p);
                }
                "result" if !found.result => {
                    map.next_value_seed(check)?;
                    found.result = true;
                }
                "error" if !found.error => {
                    map.next_value_seed(check)?;
                    found.error = true;
                }
                _ => return Err(unsure()),
            }
        }
        Ok(found)
    }
}

/// `jsonrpc`: is it the string "2.0"? (Any other type: unsure.)
struct Version;

impl<'de> DeserializeSeed<'de> for Version {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Version {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"2.0\"")
    }
    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == "2.0")
    }
}

/// `method`: a string, borrowed from the line when it has no escapes (any other type: unsure).
struct MethodName;

impl<'de> DeserializeSeed<'de> for MethodName {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for MethodName {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_messages_are_read_in_one_pass() {
        let m = parse_message(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"m":"\u00e9"}}}"#, 64).unwrap();
        assert!(matches!(m.method, Some(Cow::Borrowed("tools/call"))));
        assert_eq!(m.id, Some(7.into()));
        assert_eq!(m.params.unwrap()["arguments"]["m"], "é");
        let m = parse_message(br#" {"method":"tools\/call","jsonrpc":"2\u002e0"} "#, 64).unwrap();
        assert_eq!(m.method.as_deref(), Some("tools/call"));
        assert!(matches!(
            parse_message(br#"{"jsonrpc":"2.0","id":"a","error":{"code":1}}"#, 64)
                .unwrap()
                .shape(),
            Shape::Response { .. }
        ));
    }

    #[test]
    fn what_shape_or_the_strict_parse_refuses_is_left_to_them() {
        for line in [
            &br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"a":1,"\u0061":2}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"a":1,"a":1}}"#,
            br#"{"jsonrpc":"2.0","id":1.0,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","id":null,"error":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":null}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":null}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":1,"params":{}}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            br#"{"jsonrpc":"2.0","id":1}"#,
            br#"{"jsonrpc":"2.0"}"#,
            br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
            br#"{"id":1,"method":"x"}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x","Method":"y"}"#,
            br#"[{"jsonrpc":"2.0","id":1,"method":"x"}]"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x"} x"#,
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}",
            // Not UTF-8 anywhere (the line is checked whole, once): in params, in a key, in
            // an ignored result, a lone lead byte, an over-long encoding, a surrogate.
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"a\":\"\xc3\"}}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"\xe9\":1}}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":[\"\xc0\xaf\"]}",
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"\xed\xa0\x80\"}",
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":["\ud800"]}"#,
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[[[1]]]}"#,
        ] {
            assert_eq!(
                parse_message(line, 3),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(parse_message(
            br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[[1]]}"#,
            3
        )
        .is_some());
    }
}
