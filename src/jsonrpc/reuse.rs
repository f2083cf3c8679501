//! A message's `params` read into the tree of an earlier message's, reusing its allocations
//! (issue 19).
//!
//! A client sends the same few calls over and over: the same keys, strings of similar
//! lengths. Building each call's `params` afresh took eight allocations for the common
//! `tools/call` (the two maps, their four keys, the tool's name, the argument's text) and as
//! many frees when the call's record was written, about a tenth of a call's instructions.
//! [`InPlace`] reads a value by exactly the rules of the strict parse's [`Seed`] (the same
//! types, the same depth limit, a duplicate key at any depth refused) but into an existing
//! tree: a member already there is read in place (a string's buffer reused, a map's node
//! kept), a new one is inserted, one the new message lacks is removed. The tree it leaves is
//! equal to the one [`Seed`] builds (serde_json's maps keep their keys sorted, so not even the
//! order differs); only capacities differ.
//!
//! On any error the tree is left half written: the caller drops it.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::strict::{duplicate_key_error, Key, Keys, Seed, INLINE_KEYS};

/// Read one value into `slot` (see the module's documentation).
pub(super) struct InPlace<'t> {
    pub(super) slot: &'t mut Value,
    pub(super) seed: Seed,
}

impl<'de> DeserializeSeed<'de> for InPlace<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for InPlace<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        *self.slot = Value::Bool(v);
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        *self.slot = Value::from(v);
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        *self.slot = Value::from(v);
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        *self.slot = self.seed.visit_f64(v)?;
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        match self.slot {
            Value::String(s) => {
                s.clear();
                s.push_str(v);
            }
            other => *other = Value::String(v.to_owned()),
        }
        Ok(())
    }
    fn visit_string<E>(self, v: String) -> Result<(), E> {
        *self.slot = Value::String(v);
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        *self.slot = Value::Null;
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        *self.slot = Value::Null;
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.seed.deeper()?;
        if !self.slot.is_array() {
            *self.slot = Value::Array(Vec::new());
        }
        let Value::Array(items) = self.slot else {
            unreachable!("made an array just above")
        };
        let mut n = 0;
        loop {
            if let Some(slot) = items.get_mut(n) {
                let seed = InPlace { slot, seed: inner };
                if seq.next_element_seed(seed)?.is_none() {
                    break;
                }
            } else {
                match seq.next_element_seed(inner)? {
                    Some(v) => items.push(v),
                    None => break,
                }
            }
            n += 1;
        }
        items.truncate(n);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.seed.deeper()?;
        if !self.slot.is_object() {
            *self.slot = Value::Object(serde_json::Map::new());
        }
        let Value::Object(out) = self.slot else {
            unreachable!("made an object just above")
        };
        let mut keys = Keys::default();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            match out.get_mut(k.as_ref()) {
                // A duplicate reads into the same member twice: refused below, the tree dropped.
                Some(slot) => map.next_value_seed(InPlace { slot, seed: inner })?,
                None => {
                    let v = map.next_value_seed(inner)?;
                    out.insert(k.clone().into_owned(), v);
                }
            }
            keys.push(k);
        }
        if let Some(k) = keys.duplicate() {
            return Err(duplicate_key_error(&k));
        }
        if out.len() != keys.len() {
            // Members of the earlier message this one lacks.
            retain_keys(out, &keys);
        }
        Ok(())
    }
}

/// Keep only `keys`' members of `out` (distinct keys; looked up in place while they are few,
/// as `Keys` holds them, sorted once when there are more).
pub(super) fn retain_keys(out: &mut serde_json::Map<String, Value>, keys: &Keys<'_>) {
    if keys.len() <= INLINE_KEYS {
        out.retain(|k, _| keys.iter().any(|x| x == k));
        return;
    }
    let mut sorted: Vec<&str> = keys.iter().collect();
    sorted.sort_unstable();
    out.retain(|k, _| sorted.binary_search(&k.as_str()).is_ok());
}

#[cfg(test)]
mod tests {
    use crate::jsonrpc::message::{parse_message, parse_message_reusing};
    use crate::test_rng::XorShift;
    use serde_json::{json, Value};

    fn call(params: &str) -> Vec<u8> {
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}"#)
            .into_bytes()
    }

    /// `line` read into `spare` is exactly `line` read afresh, or refused exactly when it is.
    fn same_as_fresh(spare: &Value, line: &[u8], max_depth: usize) {
        let fresh = parse_message(line, max_depth);
        let reused = parse_message_reusing(line, max_depth, Some(spare.clone()));
        assert_eq!(
            fresh,
            reused,
            "{} read into {spare}",
            String::from_utf8_lossy(line)
        );
    }

    const PARAMS: &[&str] = &[
        r#"{"name":"echo","arguments":{"message":"hello","bytes":0}}"#,
        r#"{"name":"echo","arguments":{"message":"a longer text than before, to grow","bytes":7}}"#,
        r#"{"name":"write_file","arguments":{"path":"/tmp/x","content":"y"}}"#,
        r#"{"name":"echo","arguments":{"message":["a",{"b":null}],"bytes":-1.5}}"#,
        r#"{"name":"echo","arguments":{}}"#,
        r#"{"name":"e\u0063ho","arguments":{"m\u0065ssage":"\ud83d\ude00"}}"#,
        r#"{"arguments":{"message":{"message":{"message":true}}},"name":"echo"}"#,
        r#"["echo",{"message":"hi"},[1,2,3]]"#,
        r#"{"name":"echo","_meta":{"progressToken":3},"arguments":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10}}"#,
        r#"{"name":"echo","arguments":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"a":10}}"#,
        r#"{"name":"echo","name":"write_file","arguments":{}}"#,
        r#"{"name":"echo","arguments":{"message":"x","message":"y"}}"#,
        r#"{"name":"echo","arguments":{"message":"x","m\u0065ssage":"y"}}"#,
        r#"{"name":"echo","arguments":{"message":[[[["deep"]]]]}}"#,
        r#"{"name":"echo","arguments":{"message":"\ud800"}}"#,
        r#"{}"#,
        r#"[]"#,
        r#"7"#,
    ];

    #[test]
    fn a_message_read_into_an_earlier_one_s_params_is_the_same_message() {
        let spares: Vec<Value> = PARAMS
            .iter()
            .filter_map(|p| serde_json::from_str(p).ok())
            .chain([json!({}), json!(null), json!("text"), json!([{"name": 1}])])
            .collect();
        for spare in &spares {
            for p in PARAMS {
                for max_depth in [3, 4, 64] {
                    same_as_fresh(spare, &call(p), max_depth);
                }
            }
        }
    }

    #[test]
    fn a_duplicate_key_is_refused_when_the_earlier_tree_holds_it() {
        // The earlier message had `name` and `message`: a duplicate reads into the same member
        // twice, and is still refused (the proxy would read one, the server another).
        let spare = json!({"name": "echo", "arguments": {"message": "hello"}});
        for p in [
            r#"{"name":"echo","name":"write_file","arguments":{}}"#,
            r#"{"name":"echo","arguments":{"message":"x","message":"y"}}"#,
            r#"{"arguments":{"message":"x"},"name":"a","arguments":{}}"#,
        ] {
            assert_eq!(
                parse_message_reusing(&call(p), 64, Some(spare.clone())),
                None,
                "{p}"
            );
        }
    }

    #[test]
    fn members_the_new_message_lacks_are_gone() {
        let spare = json!({"name": "echo", "extra": [1, 2], "arguments": {"a": 1, "b": "x"}});
        let line = call(r#"{"name":"echo","arguments":{"b":"y"}}"#);
        let m = parse_message_reusing(&line, 64, Some(spare)).unwrap();
        assert_eq!(
            m.params,
            Some(json!({"name": "echo", "arguments": {"b": "y"}}))
        );
    }

    /// A random value of depth at most `depth`, from a small alphabet of keys and strings so
    /// that consecutive values share members (what the reuse reads into).
    fn random_value(r: &mut XorShift, depth: usize, out: &mut String) {
        let pick = if depth == 0 { r.below(4) } else { r.below(7) };
        match pick {
            0 => out.push_str(["null", "true", "-3", "2.5e3"][r.below(4)]),
            1 | 2 => {
                out.push('"');
                out.push_str(["", "a", "hello", "\\u00e9t\\u00e9", "/etc/passwd"][r.below(5)]);
                out.push('"');
            }
            3 => out.push_str(&r.below(1000).to_string()),
            4 | 5 => {
                out.push('{');
                let wide = r.below(8) == 0;
                let n = r.below(if wide { 12 } else { 4 });
                for i in 0..n {
                    if i > 0 {
                        out.push(',');
                    }
                    let k = ["name", "arguments", "path", "a", "b", "\\u0061"][r.below(6)];
                    out.push_str(&format!("\"{k}\":"));
                    random_value(r, depth - 1, out);
                }
                out.push('}');
            }
            _ => {
                out.push('[');
                for i in 0..r.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    random_value(r, depth - 1, out);
                }
                out.push(']');
            }
        }
    }

    #[test]
    fn random_messages_read_into_the_last_one_s_params_are_the_same() {
        let mut r = XorShift::new(0x5eed_1234_abcd_0001);
        let mut spare: Option<Value> = None;
        let (mut read, mut refused) = (0, 0);
        for _ in 0..5000 {
            let mut p = String::new();
            random_value(&mut r, 4, &mut p);
            let line = call(&p);
            let max_depth = 2 + r.below(4);
            let fresh = parse_message(&line, max_depth);
            let reused = parse_message_reusing(&line, max_depth, spare.take());
            assert_eq!(fresh, reused, "{p} (max depth {max_depth})");
            match reused {
                Some(m) => {
                    read += 1;
                    spare = m.params;
                }
                None => refused += 1,
            }
        }
        // Both outcomes are covered (duplicates and depth refuse some).
        assert!(
            read > 1000 && refused > 500,
            "{read} read, {refused} refused"
        );
    }
}
