//! A tool call that failed because the sandbox refused a path: say so on stderr, with the
//! policy line that would grant it (issue 12 §2). Inside the world a path the policy does not
//! grant fails with ENOENT, one Landlock refuses with EACCES or EPERM; servers report those
//! in their result text (`EACCES: permission denied, open '/x'`, `[Errno 13] Permission
//! denied: '/x'`). The answer itself is forwarded unchanged.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;

use crate::policy::{MountMode, Policy};

/// The refusals [`refused_paths`] reads: an errno's words, up to 80 characters, a quote, a path.
fn refusal_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r#"(?i)(EACCES|EPERM|\[Errno 13\] Permission denied|\[Errno 1\] Operation not permitted|Permission denied|Operation not permitted)[^'"\\]{0,80}?\\?['"](/[^'"\\]{1,4096})\\?['"]"#,
        )
        .expect("valid regex")
    })
}

/// Every match of [`refusal_regex`] begins with one of its errno words, and each word holds a
/// `perm` or an `eacc` (ASCII letters in any case: no other character folds onto `p`, `e`, `r`,
/// `m`, `a` or `c`, a test checks it) at most 24 bytes after the match's start
/// (`[Errno 1] Operation not permitted`); this bound is generous (40 characters of 4 bytes).
const LOOKBACK: usize = 4 * 40;
/// After a word's `perm`/`eacc`, the match's closing quote (or the backslash before it) is the
/// first `'`, `"` or `\` and comes within the rest of the word and 80 characters (4 bytes each).
const TO_QUOTE: usize = 4 * (40 + 80);
/// The longest match in bytes: the word, 80 characters, the path's 4096, quotes and backslashes.
const MAX_MATCH: usize = 4 * (40 + 80 + 1 + 4096) + 8;

/// `(errno name, path)` of each permission refusal named in a result or error line: the
/// matches of [`refusal_regex`] over the line's text (lossy UTF-8), in order, each path once.
///
/// The regex is not run over the whole line (a 16 MiB answer that names a permission in its
/// prose took the regex's slowest engine over all of it: a fifth of capjail's CPU, issue 19).
/// A match needs a `perm`/`eacc` followed by its closing quote and a `/` soon after
/// ([`plausible_hits`]); the regex runs only on a window around each such place, which holds
/// every match that can start near it whole, so the matches are those of the whole-line search
/// (the test `windowed_search_equals_the_whole_line_search` compares them).
pub(crate) fn refused_paths(line: &[u8]) -> Vec<(&'static str, PathBuf)> {
    let mut out: Vec<(&'static str, PathBuf)> = Vec::new();
    let plausible = plausible_hits(line);
    if plausible.is_empty() {
        return out;
    }
    let Ok(text) = std::str::from_utf8(line) else {
        // (Never for a server's line: the envelope check refuses invalid UTF-8.) The offsets of
        // the lossy text are not the line's: the whole text, as before.
        let text = String::from_utf8_lossy(line);
        for c in refusal_regex().captures_iter(&text) {
            note(&mut out, &c);
        }
        return out;
    };
    // Every match starting before `pos` has been read.
    let mut pos = 0;
    for h in plausible {
        // A match starting at `pos` or later whose word holds `h` starts in `a..=h`; none
        // starts between `pos` and `a` (its word's `perm`/`eacc` would be a plausible hit
        // before `h`, whose window held it). The window ends past any match starting by `h`.
        while h >= pos {
            let a = ceil_boundary(text, pos.max(h.saturating_sub(LOOKBACK)));
            let b = ceil_boundary(text, text.len().min(h + MAX_MATCH));
            match refusal_regex().captures(&text[a..b]) {
                Some(c) if a + c.get(0).map_or(usize::MAX, |m| m.start()) <= h => {
                    note(&mut out, &c);
                    pos = a + c.get(0).map_or(b - a, |m| m.end());
                }
                // The leftmost match in the window starts after `h` (it may be cut by the
                // window's end): the next plausible hit's window reads it.
                _ => break,
            }
        }
    }
    out
}

/// One match of [`refusal_regex`]: its errno, and its path unless already named.
fn note(out: &mut Vec<(&'static str, PathBuf)>, c: &regex::Captures<'_>) {
    let what = c[1].to_ascii_lowercase();
    let errno = if what.contains("eperm") || what.contains("not permitted") {
        "EPERM"
    } else {
        "EACCES"
    };
    let p = PathBuf::from(&c[2]);
    if !out.iter().any(|(_, q)| q == &p) {
        out.push((errno, p));
    }
}

/// The first character boundary of `text` at or after `i` (`i` <= its length).
fn ceil_boundary(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The places of `perm`/`eacc` (any case) a refusal's words can hold: those followed, before
/// any other `'`, `"` or `\` and within [`TO_QUOTE`] bytes, by a quote and a `/` (or a
/// backslash, a quote and a `/`), as the regex needs after its words (whose letters after
/// `perm`/`eacc` are no quotes).
fn plausible_hits(line: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(h) = next_hit(line, from) {
        let e = h + 4;
        let end = line.len().min(e + TO_QUOTE + 1);
        if let Some(k) = memchr::memchr3(b'\'', b'"', b'\\', &line[e..end]) {
            let q = e + k;
            let quote = |i: usize| line.get(i).is_some_and(|&c| c == b'\'' || c == b'"');
            let slash = |i: usize| line.get(i) == Some(&b'/');
            if (quote(q) && slash(q + 1)) || (line[q] == b'\\' && quote(q + 1) && slash(q + 2)) {
                out.push(h);
            }
        }
        from = h + 1;
    }
    out
}

/// Is `w` (4 bytes) `perm` or `eacc` in any case? (`x | 0x20` folds exactly the upper-case
/// ASCII letter onto its lower case for these letters.) Branch-free, for the vectorised blocks.
#[inline(always)]
fn word(a: u8, b: u8, c: u8, d: u8) -> bool {
    let (a, b, c, d) = (a | 0x20, b | 0x20, c | 0x20, d | 0x20);
    ((a == b'p') & (b == b'e') & (c == b'r') & (d == b'm'))
        | ((a == b'e') & (b == b'a') & (c == b'c') & (d == b'c'))
}

/// The first place at or after `from` where `line` holds `perm` or `eacc` (any case).
fn next_hit(line: &[u8], from: usize) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if crate::simd::fast() {
        // SAFETY: the CPU has the vector paths' features (`simd::fast`, just above).
        return unsafe { next_hit_avx2(line, from) };
    }
    next_hit_blocks(line, from)
}

/// [`next_hit`] compiled for AVX2 (the same code, vectorised 32 bytes at a time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt,bmi1,lzcnt")]
fn next_hit_avx2(line: &[u8], from: usize) -> Option<usize> {
    next_hit_blocks(line, from)
}

const BLOCK: usize = 64;

/// Blocks of 64 places, each tested whole without a branch (vectorised: the 4 bytes of every
/// place compared at once), the block with a hit read place by place. This replaced a search
/// for one letter of each word, which stopped at every `p` and `a` of prose (in-process, a
/// 16 MiB source text: 14.2 -> 1.9 ms; 16 MiB of `x`: 0.74 ms, as before).
#[inline(always)]
fn next_hit_blocks(line: &[u8], from: usize) -> Option<usize> {
    let at = |i: usize| word(line[i], line[i + 1], line[i + 2], line[i + 3]);
    let mut i = from;
    while i + BLOCK + 3 <= line.len() {
        let c: &[u8; BLOCK + 3] = line[i..i + BLOCK + 3].try_into().expect("a block");
        // First the second letters alone (`e`, `a`): as cheap as one letter's search, and
        // enough for text without them (N `x`s); then the words.
        let mut second = 0u8;
        for j in 0..BLOCK {
            let x = c[j + 1] | 0x20;
            second |= u8::from((x == b'e') | (x == b'a'));
        }
        if second != 0 {
            let mut hit = 0u8;
            for j in 0..BLOCK {
                hit |= u8::from(word(c[j], c[j + 1], c[j + 2], c[j + 3]));
            }
            if hit != 0 {
                return (i..i + BLOCK).find(|&k| at(k));
            }
        }
        i += BLOCK;
    }
    (i..line.len().saturating_sub(3)).find(|&k| at(k))
}

/// The stderr line for one refused path: what was refused and the line that grants it.
pub(crate) fn explanation(errno: &str, path: &Path, policy: &Policy) -> String {
    let mount = policy
        .filesystem
        .mounts
        .iter()
        .flatten()
        .filter(|m| path.starts_with(&m.path))
        .max_by_key(|m| m.path.components().count());
    let grant = match mount {
        Some(m) if m.mode == MountMode::Ro => format!(
            "it is inside the read-only mount `{}`: to let the server write there, make it \
             `- {{path: {}, mode: rw}}`",
            m.written, m.written
        ),
        Some(m) => format!(
            "it is inside the mount `{}` (rw): the file's own permissions refused it",
            m.written
        ),
        None => format!(
            "no mount of policy `{}` contains it: to grant it add `filesystem.mounts: - {{path: {}, mode: ro}}` (or `mode: rw`; `kernel.extra_read: [{}]` for a program or library)",
            policy.name,
            path.display(),
            path.display()
        ),
    };
    format!(
        "a tool call failed with {errno} on {}: the sandbox (or the file's permissions) refused it; {grant}",
        path.display()
    )
}

/// Warn on stderr for each refusal named in a server's answer line.
pub(crate) fn on_answer(policy: &Policy, line: &[u8]) {
    if policy.filesystem.mounts.is_none() {
        return;
    }
    for (errno, p) in refused_paths(line) {
        tracing::warn!("{}", explanation(errno, &p, policy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};

    #[test]
    fn node_and_python_refusals_are_read() {
        let node = br#"{"result":{"content":[{"type":"text","text":"Error: EACCES: permission denied, open '/srv/ro/x.txt'"}],"isError":true}}"#;
        assert_eq!(
            refused_paths(node),
            vec![("EACCES", PathBuf::from("/srv/ro/x.txt"))]
        );
        let py = br#"{"result":{"content":[{"type":"text","text":"[Errno 1] Operation not permitted: '/etc/x'"}]}}"#;
        assert_eq!(refused_paths(py), vec![("EPERM", PathBuf::from("/etc/x"))]);
        assert!(refused_paths(
            br#"{"result":{"content":[{"type":"text","text":"hello /etc/x"}]}}"#
        )
        .is_empty());
    }

    /// The matches of the regex over the whole line's lossy text: how refusals were read before
    /// the windows (issue 19).
    fn whole_line(line: &[u8]) -> Vec<(&'static str, PathBuf)> {
        let mut out = Vec::new();
        for c in refusal_regex().captures_iter(&String::from_utf8_lossy(line)) {
            note(&mut out, &c);
        }
        out
    }

    fn every_place(line: &[u8]) -> Vec<usize> {
        (0..line.len().saturating_sub(3))
            .filter(|&i| {
                let w = &line[i..i + 4];
                w.eq_ignore_ascii_case(b"perm") || w.eq_ignore_ascii_case(b"eacc")
            })
            .collect()
    }

    /// The blocks find every place of `perm`/`eacc` a look at every byte finds, on generated
    /// lines over the letters of both words (both cases), at every offset of a block.
    #[test]
    fn the_blocks_find_every_place() {
        let mut rng = crate::test_rng::XorShift::new(0x9e37_79b9_7f4a_7c15u64);
        let mut rand = move |n: usize| rng.below(n);
        let mut found = 0;
        for _ in 0..20_000 {
            let len = [rand(8), rand(70), rand(300)][rand(3)];
            let alphabet: &[u8] =
                [&b"pPaAeErRmMcCx\x00\xf0"[..], b"xxxxxxxxxxxxxxxpermeacc"][rand(2)];
            let line: Vec<u8> = (0..len).map(|_| alphabet[rand(alphabet.len())]).collect();
            let mut got = Vec::new();
            let mut from = 0;
            while let Some(h) = next_hit(&line, from) {
                got.push(h);
                from = h + 1;
            }
            let want = every_place(&line);
            found += want.len();
            assert_eq!(got, want, "{line:?}");
            assert_eq!(next_hit_blocks(&line, 0), want.first().copied());
        }
        assert!(found > 300, "{found}");
        for pos in 0..200 {
            for word in [&b"PeRm"[..], b"eAcC", b"perm", b"eacc"] {
                let mut line = vec![b'x'; 200];
                line.splice(pos..pos, word.iter().copied());
                assert_eq!(next_hit(&line, 0), Some(pos));
                assert_eq!(next_hit(&line, pos + 1), None);
                line[pos + 1] = b'q';
                assert_eq!(next_hit(&line, 0), None);
            }
        }
    }

    /// The hits assume no character outside ASCII matches `p`, `e`, `r`, `m`, `a` or `c` under
    /// the regex's case folding (`k` and `s` have such characters: `K`, `ſ`).
    #[test]
    fn no_other_character_folds_onto_the_hits_letters() {
        let re = Regex::new("(?i)^[permac]$").unwrap();
        let mut buf = [0u8; 4];
        for c in (0x80..=0x10ffff).filter_map(char::from_u32) {
            assert!(!re.is_match(c.encode_utf8(&mut buf)), "{c:?}");
        }
        let re = Regex::new("(?i)^s$").unwrap();
        assert!(re.is_match("ſ"), "the check above would not see a fold");
    }

    /// The windows read what the whole-line search reads: generated lines of refusals (every
    /// word, any case, `ſ` for `s`, escaped quotes, paths up to and over 4096 characters,
    /// characters of 2 to 4 bytes, invalid UTF-8), near misses and long filler that puts
    /// matches on and across the windows' edges.
    #[test]
    fn windowed_search_equals_the_whole_line_search() {
        let words: &[&str] = &[
            "EACCES",
            "eacces",
            "EPERM",
            "ePeRm",
            "Permission denied",
            "PERMISSION DENIED",
            "permiſſion denied",
            "[Errno 13] Permission denied",
            "[ERRNO 1] operation not permitted",
            "Operation not permitted",
            "operation not permitted",
            "permission",
            "perm",
            "eacc",
            "EACCEſ",
        ];
        let between: &[&str] = &[
            ": ", ", open ", " ", "", ": é ", "🦀", "\\n", "\\\\", "x", "'", "\"",
        ];
        let quotes: &[&str] = &["'", "\"", "\\'", "\\\"", "\\", ""];
        let mut rng = crate::test_rng::XorShift::new(0x2545_f491_4f6c_dd1du64);
        let mut rand = move |n: usize| rng.below(n);
        let (mut lines, mut named) = (0, 0);
        for _ in 0..800 {
            let mut line: Vec<u8> = b"{\"result\":{\"text\":\"".to_vec();
            for _ in 0..1 + rand(12) {
                match rand(9) {
                    0 => line.extend("x".repeat([1, 50, 81, 200, 17_000][rand(5)]).bytes()),
                    1 => line.extend(between[rand(between.len())].bytes()),
                    2 => line.push([0xff, 0xc3, 0x80, b'/'][rand(4)]),
                    3 => line.extend("é".repeat([1, 40, 90][rand(3)]).bytes()),
                    _ => {
                        let q = quotes[rand(quotes.len())];
                        let path_len = [1, 5, 4095, 4096, 4097, 5000][rand(6)];
                        let path: String = match rand(3) {
                            0 => "/srv/ro/x.txt".into(),
                            1 => format!("/{}", "p".repeat(path_len - 1)),
                            _ => format!("/{}", "é".repeat(path_len / 2)),
                        };
                        let y = "y".repeat(rand(100));
                        let gap = ["", ": ", ", open ", &y][rand(4)];
                        line.extend(
                            format!("{}{gap}{q}{path}{q}", words[rand(words.len())]).bytes(),
                        );
                    }
                }
            }
            line.extend(b"\"}}");
            let want = whole_line(&line);
            named += usize::from(!want.is_empty());
            lines += 1;
            assert_eq!(
                refused_paths(&line),
                want,
                "{:?}",
                String::from_utf8_lossy(&line)
            );
        }
        assert!(named > 200 && lines - named > 80, "{named} of {lines}");
    }

    #[test]
    fn a_long_answer_without_a_refusal_is_not_read_by_the_regex() {
        // Prose that names a permission every hundred bytes, as the bench's source text.
        let prose = "a path that cannot be opened is reported with its error (ENOENT, or a \
                     permission the process does not have).\\n";
        let line = format!("{{\"text\":\"{}\"}}", prose.repeat(20_000));
        assert!(plausible_hits(line.as_bytes()).is_empty());
        assert!(refused_paths(line.as_bytes()).is_empty());
        let named = format!("{line}EACCES: permission denied, open '/srv/x'");
        assert_eq!(
            refused_paths(named.as_bytes()),
            vec![("EACCES", PathBuf::from("/srv/x"))]
        );
    }

    #[test]
    fn the_line_to_add_depends_on_the_mount() {
        let p = load_str(
            "name: p\nfilesystem:\n  mounts:\n    - {path: /srv/ro, mode: ro}\n",
            PolicySource::Inline,
        )
        .unwrap();
        let e = explanation("EACCES", Path::new("/srv/ro/x"), &p);
        assert!(e.contains("mode: rw}"), "{e}");
        let e = explanation("EACCES", Path::new("/opt/y"), &p);
        assert!(
            e.contains("filesystem.mounts: - {path: /opt/y, mode: ro}"),
            "{e}"
        );
    }
}
