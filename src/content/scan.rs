//! The scan of one string: the text as it is, without hidden characters and confusables,
//! percent-decoded (repeatedly), every base64/base32/hex token decoded (two levels deep), the
//! labels of every URL host joined. Every view goes through the credential detectors and the
//! known secrets; URLs also through the entropy check. Decoding is bounded by a byte budget
//! proportional to the input, so a scan stays linear.

use std::ops::Range;

use super::encodings::{
    candidate_tokens_in, decode_token, joined_labels, percent_decode_repeated, url_hosts,
};
use super::known::KnownSecrets;
use super::secrets::{self, Class, Hit};
use super::shape::Shape;

/// One finding, placed in the scanned string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub(crate) class: Class,
    pub(crate) detector: &'static str,
    /// How it was hidden: `plain`, `hidden characters`, `percent`, `base64`, `hex`, ...
    pub(crate) encoding: String,
    /// Byte range in the scanned string (the whole encoded token when it was decoded).
    pub(crate) span: Range<usize>,
    /// Where a known secret came from.
    pub(crate) source: Option<String>,
}

impl Finding {
    pub(crate) fn describe(&self) -> String {
        let mut s = format!("{} ({})", self.detector, self.class.as_str());
        if self.encoding != "plain" {
            s.push_str(&format!(", encoded: {}", self.encoding));
        }
        if let Some(src) = &self.source {
            s.push_str(&format!(", value of {src}"));
        }
        s
    }
}

enum Place<'m> {
    Same,
    Map(&'m [usize]),
    Whole(Range<usize>),
}

impl Place<'_> {
    fn place(&self, r: &Range<usize>, orig_len: usize) -> Range<usize> {
        match self {
            Place::Same => r.clone(),
            Place::Whole(w) => w.clone(),
            Place::Map(m) => {
                let s = m.get(r.start).copied().unwrap_or(orig_len);
                let e = if r.end == 0 {
                    s
                } else {
                    m.get(r.end - 1).map_or(orig_len, |&i| i + 1)
                };
                s..e.max(s)
            }
        }
    }
}

/// Longest token decoded (a base64 PEM key is about 4 KiB).
const MAX_DECODED_TOKEN: usize = 16 << 10;

pub(crate) struct Scanner<'k> {
    pub(crate) known: &'k mut KnownSecrets,
    /// Judge URLs' hosts, paths and queries for random-looking strings.
    pub(crate) urls: bool,
    budget: usize,
    orig_len: usize,
    pub(crate) findings: Vec<Finding>,
    /// Tests: every detector on every view, through the byte-loop references, no shape
    /// (the checker as it was, for the differential tests).
    #[cfg(test)]
    pub(crate) ungated: bool,
}

impl<'k> Scanner<'k> {
    pub(crate) fn new(known: &'k mut KnownSecrets, urls: bool) -> Scanner<'k> {
        Scanner {
            known,
            urls,
            budget: 0,
            orig_len: 0,
            findings: Vec::new(),
            #[cfg(test)]
            ungated: false,
        }
    }

    /// Scan what leaves: every view.
    pub(crate) fn outgoing(&mut self, s: &str) {
        self.start(s);
        self.view(s, "plain", &Place::Same, 0);
        let normalized = super::text::normalize(s);
        let base: &str = match &normalized {
            Some((n, map)) => {
                self.view(n, "hidden or confusable characters", &Place::Map(map), 0);
                n
            }
            None => s,
        };
        let whole = Place::Whole(0..s.len());
        let decoded = percent_decode_repeated(base);
        if let Some(d) = &decoded {
            self.view(d, "percent", &whole, 0);
            // Escaped invisible characters come back invisible: normalise the decoded text too.
            if let Some((n, _)) = super::text::normalize(d) {
                self.view(&n, "percent+hidden or confusable characters", &whole, 0);
            }
        }
        let last = if decoded.is_some() { 1 } else { 0 };
        for (k, text) in [Some(base), decoded.as_deref()]
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (span, host) in url_hosts(text) {
                if let Some(j) = joined_labels(host) {
                    self.view(&j, "dns labels", &whole, 0);
                    let up = j.to_ascii_uppercase();
                    if up != j {
                        self.view(&up, "dns labels", &whole, 1);
                    }
                }
                // Randomness is judged on the decoded URL only (escapes split tokens).
                if self.urls && k == last {
                    self.entropy(text, span);
                }
            }
        }
    }

    /// Scan what comes back: spans are kept for redaction; no percent-decoding.
    pub(crate) fn result(&mut self, s: &str) {
        self.result_shaped(s);
    }

    /// [`Scanner::result`], returning the shape of `s` (the pass over its bytes the scan of
    /// its plain view made: the caller's other checks read it too).
    pub(crate) fn result_shaped(&mut self, s: &str) -> Shape {
        self.result_shaped_with(s, None)
    }

    /// [`Scanner::result_shaped`] told the shape of `s` (computed as it was read).
    pub(crate) fn result_shaped_with(&mut self, s: &str, shaped: Option<&Shape>) -> Shape {
        self.start(s);
        let shape = self.view_with(s, "plain", &Place::Same, 0, shaped);
        #[cfg(test)]
        let ascii_skip = !shape.non_ascii && !self.ungated;
        #[cfg(not(test))]
        let ascii_skip = !shape.non_ascii;
        if ascii_skip {
            return shape; // ASCII has no hidden or confusable characters: no other view
        }
        if let Some((n, map)) = super::text::normalize(s) {
            self.view(&n, "hidden or confusable characters", &Place::Map(&map), 0);
        }
        shape
    }

    fn start(&mut self, s: &str) {
        self.orig_len = s.len();
        self.budget = 2 * s.len() + 4096;
    }

    /// Scan one view of the text; its shape is returned.
    fn view(&mut self, text: &str, encoding: &str, place: &Place, depth: usize) -> Shape {
        self.view_with(text, encoding, place, depth, None)
    }

    /// [`Scanner::view`] told the text's shape, when it is known.
    fn view_with(
        &mut self,
        text: &str,
        encoding: &str,
        place: &Place,
        depth: usize,
        shaped: Option<&Shape>,
    ) -> Shape {
        let mut hits: Vec<Hit> = Vec::new();
        #[cfg(test)]
        if self.ungated {
            let mut shape = secrets::scan_ungated(text, &mut hits);
            // Every token decoded, as before the shape pass.
            shape.max_tok = usize::MAX;
            return self.view_rest(text, encoding, place, depth, hits, shape);
        }
        let shape = match shaped {
            Some(sh) => {
                debug_assert_eq!(
                    *sh,
                    super::shape::shape(text.as_bytes()),
                    "a shape told wrong"
                );
                secrets::scan_with_shape(text, &mut hits, sh.clone())
            }
            None => secrets::scan_shaped(text, &mut hits),
        };
        self.view_rest(text, encoding, place, depth, hits, shape)
    }

    /// [`Scanner::view`] after the detectors: known secrets, findings placed, tokens decoded.
    fn view_rest(
        &mut self,
        text: &str,
        encoding: &str,
        place: &Place,
        depth: usize,
        hits: Vec<Hit>,
        shape: Shape,
    ) -> Shape {
        #[cfg(test)]
        let known = match self.ungated {
            true => self.known.scan(text),
            false => self.known.scan_shaped(text, &shape),
        };
        #[cfg(not(test))]
        let known = self.known.scan_shaped(text, &shape);
        for h in &hits {
            self.push(Finding {
                class: h.class,
                detector: h.detector,
                encoding: encoding.to_string(),
                span: place.place(&h.span, self.orig_len),
                source: None,
            });
        }
        for (r, label) in known {
            self.push(Finding {
                class: Class::Known,
                detector: "known_secret",
                encoding: encoding.to_string(),
                span: place.place(&r, self.orig_len),
                source: Some(label),
            });
        }
        if depth >= 2 || shape.max_tok < super::encodings::MIN_TOKEN {
            return shape; // (no run of token characters is long enough to be decoded)
        }
        for tok in candidate_tokens_in(text, shape.runs.clone()) {
            if hits
                .iter()
                .any(|h| h.span.start <= tok.start && tok.end <= h.span.end)
            {
                continue;
            }
            // Credentials and their encodings are short; a longer run (filler, a binary
            // payload) is not decoded.
            if tok.len() > MAX_DECODED_TOKEN {
                continue;
            }
            if self.budget < tok.len() {
                return shape;
            }
            self.budget -= tok.len();
            // A token may carry a prefix such as `key=` or `/`: try it whole, then after it.
            let t = &text[tok.clone()];
            let trimmed = t.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
            let decoded = decode_token(t)
                .or_else(|| {
                    (trimmed.len() != t.len() && trimmed.len() >= super::encodings::MIN_TOKEN)
                        .then(|| decode_token(trimmed))
                        .flatten()
                })
                .or_else(|| {
                    // (memchr's vector search: a token is ASCII, and a search by characters
                    // was a tenth of a base64 text's checks.)
                    let b = trimmed.as_bytes();
                    let cut = match (
                        memchr::memchr3(b'=', b'/', b'-', b),
                        memchr::memchr(b'_', b),
                    ) {
                        (Some(x), Some(y)) => x.min(y),
                        (x, y) => x.or(y)?,
                    } + 1;
                    (trimmed.len() - cut >= super::encodings::MIN_TOKEN)
                        .then(|| decode_token(&trimmed[cut..]))
                        .flatten()
                });
            if let Some((enc, d)) = decoded {
                let label = if encoding == "plain" {
                    enc.to_string()
                } else {
                    format!("{encoding}+{enc}")
                };
                let at = place.place(&tok, self.orig_len);
                self.view(&d, &label, &Place::Whole(at), depth + 1);
            }
        }
        shape
    }

    fn entropy(&mut self, text: &str, host: Range<usize>) {
        let b = text.as_bytes();
        // Host labels below the registrable part, then the path and query after the host.
        let h = &text[host.clone()];
        let labels: Vec<&str> = h.split('.').collect();
        let mut hits = Vec::new();
        if labels.len() > 2 {
            let sub = labels[..labels.len() - 2].join("");
            super::entropy::scan_part(&sub, 0, &mut hits);
        }
        let rest_len = b[host.end..]
            .iter()
            .take(16 << 10)
            .take_while(|&&c| !matches!(c, b' ' | b'"' | b'\'' | b'\n' | b'<' | b'>' | b'\\'))
            .count();
        super::entropy::scan_part(&text[host.end..host.end + rest_len], 0, &mut hits);
        for hit in hits {
            self.push(Finding {
                class: hit.class,
                detector: hit.detector,
                encoding: "url".into(),
                span: 0..self.orig_len,
                source: None,
            });
        }
    }

    fn push(&mut self, f: Finding) {
        if self.findings.len() < 64
            && !self
                .findings
                .iter()
                .any(|x| x.class == f.class && x.span == f.span && x.detector == f.detector)
        {
            self.findings.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AKIAZ7Q3BT4LCMW2PX5N";

    fn out(s: &str) -> Vec<String> {
        let mut k = KnownSecrets::default();
        let mut sc = Scanner::new(&mut k, true);
        sc.outgoing(s);
        sc.findings
            .iter()
            .map(|f| format!("{}/{}", f.detector, f.encoding))
            .collect()
    }

    #[test]
    fn every_encoding() {
        let b64 = |s: &str| {
            let mut k = KnownSecrets::default();
            let _ = &mut k;
            // standard base64 by hand: reuse hex->bytes via the decoder's inverse is not
            // available, so use a fixed vector.
            s.to_string()
        };
        let _ = b64;
        assert_eq!(
            out(&format!("http://h.test/?k={KEY}")),
            ["aws_access_key_id/plain"]
        );
        let pct: String = KEY.bytes().map(|c| format!("%{c:02X}")).collect();
        assert!(
            out(&format!("http://h.test/?k={pct}")).contains(&"aws_access_key_id/percent".into())
        );
        let pct2 = pct.replace('%', "%25");
        assert!(
            out(&format!("http://h.test/?k={pct2}")).contains(&"aws_access_key_id/percent".into())
        );
        assert!(out(&format!("http://h.test/?k={}", hex::encode(KEY)))
            .contains(&"aws_access_key_id/hex".into()));
        // base64 of "AKIAZ7Q3BT4LCMW2PX5N"
        assert!(out("http://h.test/?k=QUtJQVo3UTNCVDRMQ01XMlBYNU4=")
            .contains(&"aws_access_key_id/base64".into()));
        assert!(out("http://h.test/?k=QUtJQVo3UTNCVDRMQ01XMlBYNU4")
            .contains(&"aws_access_key_id/base64".into()));
        let split = format!(
            "http://{}.{}.{}.evil.test/",
            &KEY[..7],
            &KEY[7..14],
            &KEY[14..]
        );
        assert!(out(&split).contains(&"aws_access_key_id/dns labels".into()));
        let lower = split.to_ascii_lowercase();
        assert!(out(&lower).contains(&"aws_access_key_id/dns labels".into()));
        let zw: String = KEY.chars().flat_map(|c| [c, '\u{200b}']).collect();
        assert!(out(&format!("x {zw} y"))
            .contains(&"aws_access_key_id/hidden or confusable characters".into()));
        assert_eq!(out("see https://github.com/rust-lang/rust/commit/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"), Vec::<String>::new());
    }

    /// What leaves goes through the same views: with and without the shape pass, the same
    /// findings, for plants in URLs, percent-encoded, split over DNS labels, in prose.
    #[test]
    fn outgoing_findings_are_kept_without_the_detectors_skipped() {
        let plants = [
            KEY,
            "ghp_4Fq9ZtX1bW7mK2pL8vR3sY6nC0dH5jE9uA1k",
            "5HueCGU8rMjxEXxiPuD5BDku4MkFqeZyd4dZ1jvhTVqvbTLvyTJ",
            "legal winner thank year wave sausage worth useful legal winner thank yellow",
            "xprvq1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4n5m6q7w8e9r0t1y2u3i4o5p6a7s8d9f0g1h2j3k4l5z6x7c8v9b0",
            "QUtJQVo3UTNCVDRMQ01XMlBYNU4=",
            "Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H0iJ",
            "hunter2-but-longer",
        ];
        let mut n = 0;
        for plant in plants {
            let pct: String = plant.bytes().map(|c| format!("%{c:02X}")).collect();
            let split = format!("{}.{}.evil.test", &plant[..7], &plant[7..14]);
            for t in [
                format!("http://h.test/?k={plant}"),
                format!("http://h.test/?k={pct}"),
                format!("https://{split}/"),
                format!("send {plant} to the server, please"),
                format!("{}{plant}", "x".repeat(300)),
                format!("{} {plant} {}", "word ".repeat(40), "y".repeat(260)),
                format!("http://h.test/{}", hex::encode(plant)),
            ] {
                let run = |ungated: bool| {
                    let mut k = KnownSecrets::default();
                    k.add("hunter2-but-longer", "environment variable DB_PASSWORD");
                    let mut sc = Scanner::new(&mut k, true);
                    sc.ungated = ungated;
                    sc.outgoing(&t);
                    sc.findings
                };
                let want = run(true);
                assert_eq!(run(false), want, "{t:?}");
                n += usize::from(!want.is_empty());
            }
        }
        assert!(n > 30, "{n}");
    }

    /// A text of base64 lines (a binary file as text): the lines of random bytes are given up
    /// as soon as their bytes stop being UTF-8 (`encodings::Decoded`), the line that encodes a
    /// key is still decoded and found, wherever it is among them.
    /// A token with a prefix ending in a separator (`ref=`, `id/`, `k-`, `v_`) is decoded
    /// after its first separator, whichever of the four it is.
    #[test]
    fn an_encoded_key_after_each_separator_is_found() {
        for sep in ['=', '/', '-', '_'] {
            let text = format!("token: ref{sep}QUtJQVo3UTNCVDRMQ01XMlBYNU4=");
            let mut k = KnownSecrets::default();
            let mut sc = Scanner::new(&mut k, false);
            sc.result(&text);
            let found: Vec<String> = sc
                .findings
                .iter()
                .map(|f| format!("{}/{}", f.detector, f.encoding))
                .collect();
            assert_eq!(found, ["aws_access_key_id/base64"], "{text}");
        }
    }

    #[test]
    fn an_encoded_key_among_base64_lines_is_found() {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut line = || -> String {
            (0..76)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    B64[(x % 64) as usize] as char
                })
                .collect()
        };
        let lines: Vec<String> = (0..400).map(|_| line()).collect();
        let found = |t: &str| {
            let mut k = KnownSecrets::default();
            let mut sc = Scanner::new(&mut k, false);
            sc.result(t);
            sc.findings
                .iter()
                .map(|f| format!("{}/{}", f.detector, f.encoding))
                .collect::<Vec<_>>()
        };
        assert_eq!(found(&lines.join("\n")), Vec::<String>::new());
        for at in [0, 1, 199, 400] {
            let mut with = lines.clone();
            with.insert(at, "QUtJQVo3UTNCVDRMQ01XMlBYNU4=".into());
            assert_eq!(
                found(&with.join("\n")),
                ["aws_access_key_id/base64"],
                "at line {at}"
            );
        }
    }

    #[test]
    fn result_spans_for_redaction() {
        let mut k = KnownSecrets::default();
        k.add("hunter2-but-longer", "environment variable DB_PASSWORD");
        let mut sc = Scanner::new(&mut k, false);
        let s = format!("a {KEY} b hunter2-but-longer c");
        sc.result(&s);
        let spans: Vec<_> = sc.findings.iter().map(|f| &s[f.span.clone()]).collect();
        assert_eq!(spans, [KEY, "hunter2-but-longer"]);
    }
}
