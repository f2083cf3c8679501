//! A JSON (and JSONC: comments, trailing commas) scanner that keeps byte spans, so a config
//! file can be edited in place: only the values capjail rewrites change, every other byte
//! (order, indentation, comments) stays as the user wrote it.

/// A parsed value and where it is in the text (`start..end`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Object(Vec<(String, Node)>, usize, usize),
    Array(Vec<Node>, usize, usize),
    /// A string, number, `true`, `false` or `null`.
    Leaf(usize, usize),
}

impl Node {
    pub(crate) fn span(&self) -> (usize, usize) {
        match self {
            Node::Object(_, s, e) | Node::Array(_, s, e) | Node::Leaf(s, e) => (*s, *e),
        }
    }
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(m, ..) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
    /// The value as a string, when it is a JSON string.
    pub(crate) fn as_str(&self, text: &str) -> Option<String> {
        match self {
            Node::Leaf(s, e) => serde_json::from_str::<String>(&text[*s..*e]).ok(),
            _ => None,
        }
    }
    /// An array of strings.
    pub(crate) fn as_strings(&self, text: &str) -> Option<Vec<String>> {
        match self {
            Node::Array(items, ..) => items.iter().map(|n| n.as_str(text)).collect(),
            _ => None,
        }
    }
}

pub(crate) fn parse(text: &str) -> Result<Node, String> {
    let mut p = P {
        b: text.as_bytes(),
        i: 0,
    };
    p.ws()?;
    let v = p.value()?;
    p.ws()?;
    if p.i != p.b.len() {
        return Err(format!("unexpected text at byte {}", p.i));
    }
    Ok(v)
}

struct P<'a> {
    b: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) -> Result<(), String> {
        loop {
            match self.b.get(self.i) {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.i += 1,
                Some(b'/') if self.b.get(self.i + 1) == Some(&b'/') => {
                    while self.i < self.b.len() && self.b[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                Some(b'/') if self.b.get(self.i + 1) == Some(&b'*') => {
                    let rest = &self.b[self.i + 2..];
                    let end = rest
                        .windows(2)
                        .position(|w| w == b"*/")
                        .ok_or("unterminated comment")?;
                    self.i += 2 + end + 2;
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Node, String> {
        let start = self.i;
        match self.b.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                loop {
                    self.ws()?;
                    if self.b.get(self.i) == Some(&b'}') {
                        self.i += 1;
                        return Ok(Node::Object(members, start, self.i));
                    }
                    let ks = self.i;
                    self.string()?;
                    let key: String = serde_json::from_slice(&self.b[ks..self.i])
                        .map_err(|e| format!("bad key at byte {ks}: {e}"))?;
                    self.ws()?;
                    if self.b.get(self.i) != Some(&b':') {
                        return Err(format!("expected `:` at byte {}", self.i));
                    }
                    self.i += 1;
                    self.ws()?;
                    let v = self.value()?;
                    members.push((key, v));
                    self.ws()?;
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {}
                        _ => return Err(format!("expected `,` or `}}` at byte {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws()?;
                    if self.b.get(self.i) == Some(&b']') {
                        self.i += 1;
                        return Ok(Node::Array(items, start, self.i));
                    }
                    items.push(self.value()?);
                    self.ws()?;
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {}
                        _ => return Err(format!("expected `,` or `]` at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => {
                self.string()?;
                Ok(Node::Leaf(start, self.i))
            }
            Some(_) => {
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b'/'
                    )
                {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(format!("unexpected character at byte {start}"));
                }
                let lit = std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?;
                serde_json::from_str::<serde_json::Value>(lit)
                    .map_err(|_| format!("bad value `{lit}` at byte {start}"))?;
                Ok(Node::Leaf(start, self.i))
            }
            None => Err("unexpected end of file".into()),
        }
    }

    fn string(&mut self) -> Result<(), String> {
        if self.b.get(self.i) != Some(&b'"') {
            return Err(format!("expected a string at byte {}", self.i));
        }
        self.i += 1;
        while let Some(&c) = self.b.get(self.i) {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => return Ok(()),
                _ => {}
            }
        }
        Err("unterminated string".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_jsonc() {
        let t = "{\n  // servers\n  \"a\": {\"command\": \"npx\", \"args\": [\"-y\", \"x\"],},\n  /* c */ \"n\": 1.5\n}";
        let n = parse(t).unwrap();
        let a = n.get("a").unwrap();
        assert_eq!(a.get("command").unwrap().as_str(t).unwrap(), "npx");
        assert_eq!(a.get("args").unwrap().as_strings(t).unwrap(), ["-y", "x"]);
        let (s, e) = a.get("command").unwrap().span();
        assert_eq!(&t[s..e], "\"npx\"");
        assert!(parse("{\"a\": }").is_err());
        assert!(parse("{\"a\": 1} x").is_err());
    }
}
