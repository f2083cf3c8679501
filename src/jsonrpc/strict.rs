//! Strict JSON: UTF-8 only, no duplicate object keys, bounded depth, one value per line.
//!
//! serde_json already refuses invalid UTF-8, lone surrogate escapes and trailing data; this
//! adds what it lets through: duplicate keys (the proxy would read one `name`, the server
//! another) and nesting deeper than the policy's limit.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all, invalid UTF-8, bad escapes: JSON-RPC's -32700.
    #[error("parse error: {0}")]
    Syntax(String),
    /// JSON, but refused by capjail's stricter rules: -32600.
    #[error("{0}")]
    Refused(String),
}

/// Parse one message line strictly.
pub fn parse_strict(line: &[u8], max_depth: usize) -> Result<Value, ParseError> {
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
struct Seed {
    depth: usize,
    max_depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Seed {
    fn deeper<E: serde::de::Error>(self) -> Result<Seed, E> {
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
            if out.contains_key(&key) {
                return Err(A::Error::custom(format_args!(
                    "{DUP}`{}`",
                    key.escape_debug()
                )));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
