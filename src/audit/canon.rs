//! Pure encoding: canonical JSON, the chain hash, and one record line <-> its parts.
//!
//! A line is `BODY` with the member `,"hash":"<64 hex>"` inserted before its final `}`, plus
//! `\n`. `BODY` is the record without `hash`, serialised canonically (object keys sorted by
//! byte order, no whitespace, serde_json's string escaping). The hash covers the bytes of
//! `BODY` exactly as they appear in the line: `hash = SHA-256(prev_hex || BODY)`. A verifier
//! therefore never re-serialises anything (see docs/audit-format.md).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The `prev` of the first record of a file.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What separates the body from the hash in a line.
pub const HASH_MEMBER: &[u8] = b",\"hash\":\"";

/// Canonical JSON: object keys sorted by byte order (recursively), no whitespace, serde_json
/// escaping for strings, numbers as serde_json prints them (records only hold integers; a
/// float can only come from a client's params, and is hashed as written in the line).
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        // Scalars: serde_json's own compact form.
        other => out.push_str(&other.to_string()),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `SHA-256(prev_hex_ascii || body)`, lower-case hex.
pub fn chain_hash(prev: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(body);
    hex::encode(h.finalize())
}

/// Serialise a record (which must not hold `hash`) into its line, newline included.
/// Returns the line and the record's hash.
pub fn encode_line(record: &Map<String, Value>, prev: &str) -> (Vec<u8>, String) {
    debug_assert!(!record.contains_key("hash"));
    let body = canonical_json(&Value::Object(record.clone()));
    let hash = chain_hash(prev, body.as_bytes());
    let mut line = Vec::with_capacity(body.len() + HASH_MEMBER.len() + 64 + 3);
    line.extend_from_slice(&body.as_bytes()[..body.len() - 1]);
    line.extend_from_slice(HASH_MEMBER);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    (line, hash)
}

/// A line split into its parts (not yet checked against the chain).
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine {
    /// `BODY`: the bytes the hash covers.
    pub body: Vec<u8>,
    /// The stored hash.
    pub hash: String,
    pub record: Map<String, Value>,
    pub seq: u64,
    pub prev: String,
    pub kind: String,
}

/// Split a line (without its `\n`) into body and stored hash and read the chain fields.
/// `Err` says why the line is not a record.
pub fn parse_line(line: &[u8]) -> Result<ParsedLine, String> {
    const TAIL: usize = 64 + 2; // hex + `"}`
    if line.len() < HASH_MEMBER.len() + TAIL + 1 || !line.ends_with(b"\"}") {
        return Err(not_record(line));
    }
    let cut = line.len() - TAIL - HASH_MEMBER.len();
    if &line[cut..cut + HASH_MEMBER.len()] != HASH_MEMBER {
        return Err(not_record(line));
    }
    let hash = &line[line.len() - TAIL..line.len() - 2];
    if !hash
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return Err("the `hash` member is not 64 lower-case hex digits".into());
    }
    let mut body = line[..cut].to_vec();
    body.push(b'}');
    let record: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("invalid JSON: {e}")),
    };
    if record.contains_key("hash") {
        return Err("`hash` appears twice".into());
    }
    let seq = record
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or("missing or non-integer `seq`")?;
    let prev = match record.get("prev").and_then(Value::as_str) {
        Some(p)
            if p.len() == 64
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            p.to_string()
        }
        _ => return Err("missing or malformed `prev`".into()),
    };
    let kind = record
        .get("kind")
        .and_then(Value::as_str)
        .ok_or("missing `kind`")?
        .to_string();
    Ok(ParsedLine {
        body,
        hash: String::from_utf8_lossy(hash).into_owned(),
        record,
        seq,
        prev,
        kind,
    })
}

fn not_record(line: &[u8]) -> String {
    match serde_json::from_slice::<Value>(line) {
        Ok(_) => {
            "valid JSON but not a record line (it must end with `,\"hash\":\"<64 hex>\"}`)".into()
        }
        Err(e) => format!("invalid JSON: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys_by_bytes_and_has_no_whitespace() {
        let v = json!({"b": 1, "a": {"z": [1, "x\n\u{1}"], "Z": null}, "é": true, "_": -3});
        assert_eq!(
            canonical_json(&v),
            r#"{"_":-3,"a":{"Z":null,"z":[1,"x\n\u0001"]},"b":1,"é":true}"#
        );
    }

    #[test]
    fn line_round_trip_and_hash_covers_body() {
        let rec = json!({"kind": "decision", "seq": 1, "prev": GENESIS, "time": "t"});
        let (line, hash) = encode_line(rec.as_object().unwrap(), GENESIS);
        assert!(line.ends_with(b"\"}\n"));
        let text = std::str::from_utf8(&line).unwrap();
        assert_eq!(
            text,
            format!("{{\"kind\":\"decision\",\"prev\":\"{GENESIS}\",\"seq\":1,\"time\":\"t\",\"hash\":\"{hash}\"}}\n")
        );
        let p = parse_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(p.hash, hash);
        assert_eq!(chain_hash(GENESIS, &p.body), hash);
        assert_eq!((p.seq, p.kind.as_str()), (1, "decision"));
        // The whole line is valid JSON too.
        let _: Value = serde_json::from_slice(&line).unwrap();
    }

    #[test]
    fn known_answer() {
        // echo -n '0…0{}' | sha256sum
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(chain_hash("", b"abc"), sha256_hex(b"abc"));
    }

    #[test]
    fn not_records() {
        assert!(parse_line(b"{\"kind\":\"x\"")
            .unwrap_err()
            .starts_with("invalid JSON"));
        assert!(parse_line(b"{}").unwrap_err().contains("not a record"));
        let rec = json!({"kind": "x", "seq": 1, "prev": "zz"});
        let (line, _) = encode_line(rec.as_object().unwrap(), GENESIS);
        assert!(parse_line(&line[..line.len() - 1])
            .unwrap_err()
            .contains("prev"));
    }
}
