//! Values capjail knows are secret in this session: environment variables it withheld from the
//! server, and what the server returned for reads of `sensitive` paths. Bounded in count and
//! size; one Aho-Corasick automaton finds them all in one pass.

use aho_corasick::AhoCorasick;

use super::shape::{Shape, ANCHOR_BYTES};

/// Most values remembered.
pub(crate) const MAX_VALUES: usize = 1024;
/// Shortest value remembered (shorter ones would match ordinary text).
pub(crate) const MIN_LEN: usize = 8;

#[derive(Default)]
pub(crate) struct KnownSecrets {
    values: Vec<String>,
    /// Where each value came from (`environment variable GITHUB_TOKEN`, `/home/u/.env`).
    labels: Vec<String>,
    /// What each value needs of a text's shape to occur in it.
    needs: Vec<Needs>,
    automaton: Option<AhoCorasick>,
    dirty: bool,
}

impl std::fmt::Debug for KnownSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KnownSecrets({} values)", self.values.len())
    }
}

impl KnownSecrets {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// Remember `value` (trimmed) if it is long and varied enough to be a secret.
    pub(crate) fn add(&mut self, value: &str, label: &str) {
        let v = value.trim().trim_matches(|c| c == '"' || c == '\'');
        if v.len() < MIN_LEN || self.values.len() >= MAX_VALUES || v.len() > 4096 {
            return;
        }
        let mut seen = std::collections::BTreeSet::new();
        if v.chars().filter(|c| seen.insert(*c)).count() < 6 || self.values.iter().any(|x| x == v) {
            return;
        }
        self.values.push(v.to_string());
        self.labels.push(label.to_string());
        self.needs.push(Needs::of(v));
        self.dirty = true;
    }

    /// Remember the secret parts of a file's contents: `NAME=value` values, and every other
    /// line of 16 characters or more (key material, tokens).
    pub(crate) fn add_file(&mut self, contents: &str, label: &str) {
        for line in contents.lines().take(512) {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with("-----") {
                continue;
            }
            match line.split_once('=') {
                Some((k, v))
                    if !k.is_empty()
                        && k.bytes().all(|c| {
                            c.is_ascii_alphanumeric() || c == b'_' || c == b' ' || c == b'.'
                        }) =>
                {
                    self.add(v, label)
                }
                _ if line.len() >= 16 => self.add(line, label),
                _ => {}
            }
        }
    }

    /// [`KnownSecrets::scan`], skipped when the shape of `text` (the pass the detectors made
    /// over it, [`super::shape::shape`]) proves that no value can occur in it: each value holds
    /// a byte the text lacks (an anchor byte such as `/`, a `v`, a blank, a byte outside
    /// ASCII) or a run of letters and digits (or of token characters) longer than any of the
    /// text's. A path such as `/etc/ssl/certs/ca.crt` in a 16 MiB answer of `x`s was
    /// searched for at memory speed on every answer (issue 19).
    pub(crate) fn scan_shaped(
        &mut self,
        text: &str,
        shape: &Shape,
    ) -> Vec<(std::ops::Range<usize>, String)> {
        if shape.complete && !self.needs.iter().any(|n| n.may_occur_in(shape)) {
            return Vec::new();
        }
        self.scan(text)
    }

    /// Every remembered value in `text`: (span, label).
    pub(crate) fn scan(&mut self, text: &str) -> Vec<(std::ops::Range<usize>, String)> {
        if self.values.is_empty() {
            return Vec::new();
        }
        if self.dirty || self.automaton.is_none() {
            self.automaton = AhoCorasick::new(&self.values).ok();
            self.dirty = false;
        }
        let Some(ac) = &self.automaton else {
            return Vec::new();
        };
        ac.find_iter(text)
            .map(|m| (m.range(), self.labels[m.pattern().as_usize()].clone()))
            .collect()
    }
}

/// What a value needs of a text to occur in it, in the terms of its [`Shape`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Needs {
    anchor_byte: bool,
    v: bool,
    marker_byte: bool,
    non_ascii: bool,
    /// Its longest run of `[A-Za-z0-9]` (a text holding it has one at least as long).
    alnum: usize,
    /// Its longest run of `[A-Za-z0-9+/=_-]`.
    tok: usize,
}

impl Needs {
    fn of(v: &str) -> Needs {
        let b = v.as_bytes();
        let longest = |class: &dyn Fn(u8) -> bool| {
            b.split(|&c| !class(c)).map(<[u8]>::len).max().unwrap_or(0)
        };
        Needs {
            anchor_byte: b.iter().any(|c| ANCHOR_BYTES.contains(c)),
            v: b.contains(&b'v'),
            marker_byte: b.iter().any(|c| b" \t<[\n".contains(c)),
            non_ascii: !b.is_ascii(),
            alnum: longest(&|c: u8| c.is_ascii_alphanumeric()),
            tok: longest(&|c: u8| c.is_ascii_alphanumeric() || b"+/=_-".contains(&c)),
        }
    }

    /// Can a text of shape `sh` (read whole: `sh.complete`) hold the value?
    fn may_occur_in(&self, sh: &Shape) -> bool {
        (!self.anchor_byte || sh.anchor_byte)
            && (!self.v || sh.v)
            && (!self.marker_byte || sh.marker_byte)
            && (!self.non_ascii || sh.non_ascii)
            && self.alnum <= sh.max_alnum
            && self.tok <= sh.max_tok
    }
}

/// The values of the environment variables capjail withholds from the server because their
/// names look like credentials (src/sandbox/env.rs decides which).
pub(crate) fn withheld_env(
    inherited: &[(String, String)],
    section: &crate::policy::sections::EnvironmentPolicy,
) -> Vec<(String, String)> {
    let plan = crate::sandbox::env::filter_env(inherited, section);
    plan.dropped
        .iter()
        .filter(|(_, why)| *why == crate::sandbox::env::DropReason::Secret)
        .filter_map(|(name, _)| {
            inherited
                .iter()
                .find(|(k, _)| k == name)
                .map(|(k, v)| (k.clone(), v.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search skipped by the shape finds what the whole search finds: values of every
    /// kind (anchor bytes, `v`, blanks, non-ASCII, long runs) planted at every offset of
    /// generated texts, and texts without them.
    #[test]
    fn the_shaped_search_finds_what_the_search_finds() {
        let values = [
            "/etc/ssl/certs/ca-certificates.crt",
            "hunter2butlonger",
            "s3cr3t value 42",
            "caf\u{e9}-au-lait-99",
            "qwertzuiopvbnm12",
            "x9y8z7w6x9y8z7w6x9y8z7w6x9y8z7w6x9y8z7",
            "Zq8vX2mN4pL7kR9sT1wYb3c5D6e7F8g9H0iJ",
            "abc<def[ghi",
        ];
        let mut texts = crate::content::secrets::tests::mixed_texts(400);
        texts.extend(crate::content::secrets::tests::run_texts(400));
        texts.push("x".repeat(70_000));
        let base = texts.clone();
        for (k, v) in values.iter().enumerate() {
            for t in base.iter().take(60) {
                for at in [0, t.len() / 3, t.len()] {
                    if t.is_char_boundary(at) {
                        texts.push(format!("{}{v}{}", &t[..at], &t[at..]));
                    }
                }
            }
            texts.push(format!("{}{v}", "x".repeat(5000 + k)));
        }
        let (mut skipped, mut found) = (0, 0);
        let sets: Vec<Vec<&str>> = values
            .iter()
            .map(|v| vec![*v])
            .chain([values.to_vec()])
            .collect();
        for set in &sets {
            let mut k = KnownSecrets::default();
            for v in set {
                k.add(v, "label");
            }
            assert_eq!(k.len(), set.len());
            for t in &texts {
                let sh = crate::content::shape::shape(t.as_bytes());
                let want = k.scan(t);
                let got = k.scan_shaped(t, &sh);
                assert_eq!(got, want, "{t:?}");
                found += usize::from(!want.is_empty());
                skipped += usize::from(sh.complete && !k.needs.iter().any(|x| x.may_occur_in(&sh)));
            }
        }
        assert!(found > 500 && skipped > 500, "{found} {skipped}");
    }

    #[test]
    fn remembers_and_finds() {
        let mut k = KnownSecrets::default();
        k.add("short", "x");
        k.add("aaaaaaaaaaaa", "x");
        k.add_file("# c\nAPI_TOKEN=\"s3cr3t-value-42\"\nDEBUG=1\n", "/p/.env");
        assert_eq!(k.len(), 1);
        let hits = k.scan("send s3cr3t-value-42 now");
        assert_eq!(hits, vec![(5..20, "/p/.env".to_string())]);
        let env = vec![
            ("GITHUB_TOKEN".to_string(), "tok-123456789".to_string()),
            ("PATH".to_string(), "/usr/bin".to_string()),
        ];
        assert_eq!(
            withheld_env(&env, &Default::default()),
            vec![("GITHUB_TOKEN".into(), "tok-123456789".into())]
        );
    }
}
