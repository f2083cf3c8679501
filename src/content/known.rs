//! Values capjail knows are secret in this session: environment variables it withheld from the
//! server, and what the server returned for reads of `sensitive` paths. Bounded in count and
//! size; one Aho-Corasick automaton finds them all in one pass.

use aho_corasick::AhoCorasick;

/// Most values remembered.
pub(crate) const MAX_VALUES: usize = 1024;
/// Shortest value remembered (shorter ones would match ordinary text).
pub(crate) const MIN_LEN: usize = 8;

#[derive(Default)]
pub(crate) struct KnownSecrets {
    values: Vec<String>,
    /// Where each value came from (`environment variable GITHUB_TOKEN`, `/home/u/.env`).
    labels: Vec<String>,
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
