//! The texts of a result read straight from the response line, without building it as a
//! tree: the common case (nothing found) costs one pass and no copy of the strings. The texts
//! are the ones `results::check_result` reads (same members skipped, same depth bound).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Deeper than this, `results::collect` reads nothing.
const MAX_DEPTH: usize = 64;
const STOP: &str = "capjail:stop";

/// Call `text` on every text of the line's `result` member, in order, until it returns
/// `false`. `Some(true)`: every text was read and accepted; `Some(false)`: stopped by
/// `text`; `None`: the line has no `result` object member to read, or cannot be read.
pub(crate) fn each_text(line: &[u8], text: &mut dyn FnMut(&str) -> bool) -> Option<bool> {
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
