//! A tool call that failed because the sandbox refused a path: say so on stderr, with the
//! policy line that would grant it (issue 12 §2). Inside the world a path the policy does not
//! grant fails with ENOENT, one Landlock refuses with EACCES or EPERM; servers report those
//! in their result text (`EACCES: permission denied, open '/x'`, `[Errno 13] Permission
//! denied: '/x'`). The answer itself is forwarded unchanged.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;

use crate::policy::{MountMode, Policy};

/// `(errno name, path)` of each permission refusal named in a result or error line.
pub(crate) fn refused_paths(line: &[u8]) -> Vec<(&'static str, PathBuf)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(
            r#"(?i)(EACCES|EPERM|\[Errno 13\] Permission denied|\[Errno 1\] Operation not permitted|Permission denied|Operation not permitted)[^'"\\]{0,80}?\\?['"](/[^'"\\]{1,4096})\\?['"]"#,
        )
        .expect("valid regex")
    });
    let text = String::from_utf8_lossy(line);
    let mut out: Vec<(&'static str, PathBuf)> = Vec::new();
    for c in re.captures_iter(&text) {
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
    out
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
    if policy.filesystem.mounts.is_none() || !may_name_a_refusal(line) {
        return;
    }
    for (errno, p) in refused_paths(line) {
        tracing::warn!("{}", explanation(errno, &p, policy));
    }
}

/// Does `line` hold `perm` or `eacc` in any case (every refusal [`refused_paths`] reads has
/// one)? A vectorised search for one letter of each, not a comparison at every byte: this
/// runs on every answer, of any size. `eacc` is found by its `a` (an answer's keys and prose
/// have far fewer `a`s than `e`s: a small answer had 16 `e`s to look at, issue 19). Both
/// letters are looked for in one pass over the line (there were two: a 16 MiB answer was
/// read twice, issue 19).
fn may_name_a_refusal(line: &[u8]) -> bool {
    let at = |i: usize, rest: &[u8]| {
        line.get(i..i + rest.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(rest))
    };
    let mut from = 0;
    while let Some(k) = p_or_a(&line[from..]) {
        let i = from + k;
        let hit = if line[i] | 0x20 == b'p' {
            at(i + 1, b"erm")
        } else {
            i > 0 && at(i - 1, b"e") && at(i + 1, b"cc")
        };
        if hit {
            return true;
        }
        from = i + 1;
    }
    false
}

/// The first `p`, `P`, `a` or `A` of `s`: blocks of 64 bytes, branch-free inside so they are
/// vectorised (with AVX2 where the CPU has it), the block that holds one read byte by byte.
fn p_or_a(s: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { p_or_a_avx2(s) };
    }
    p_or_a_blocks(s)
}

/// [`p_or_a`] compiled for AVX2 (the same code, vectorised 32 bytes at a time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn p_or_a_avx2(s: &[u8]) -> Option<usize> {
    p_or_a_blocks(s)
}

#[inline(always)]
fn p_or_a_blocks(s: &[u8]) -> Option<usize> {
    // `x | 0x20` folds exactly `P` onto `p` and `A` onto `a`.
    let wanted = |x: u8| (x | 0x20 == b'p') | (x | 0x20 == b'a');
    let mut at = 0;
    for c in s.chunks_exact(64) {
        // A byte, not a bool: OR-ing bools is not vectorised (a scalar loop, 14% of capjail's
        // samples under 16 MiB answers; a `u8` runs at memchr's speed).
        let mut hit = 0u8;
        for &x in c {
            hit |= u8::from(wanted(x));
        }
        if hit != 0 {
            break;
        }
        at += 64;
    }
    s[at..].iter().position(|&x| wanted(x)).map(|k| at + k)
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

    /// The one-pass quick look answers as the two memchr2 passes it replaced, on generated
    /// lines (every letter of `perm` and `eacc` in both cases, at every offset of a block).
    #[test]
    fn the_one_pass_quick_look_answers_as_two_passes() {
        fn two_passes(line: &[u8]) -> bool {
            let at = |i: usize, rest: &[u8]| {
                line.get(i..i + rest.len())
                    .is_some_and(|w| w.eq_ignore_ascii_case(rest))
            };
            memchr::memchr2_iter(b'p', b'P', line).any(|i| at(i + 1, b"erm"))
                || memchr::memchr2_iter(b'a', b'A', line)
                    .any(|i| i > 0 && at(i - 1, b"e") && at(i + 1, b"cc"))
        }
        let mut rng = crate::test_rng::XorShift::new(0x9e37_79b9_7f4a_7c15u64);
        let mut rand = move |n: usize| rng.below(n);
        let (mut hits, mut misses) = (0, 0);
        for _ in 0..20_000 {
            let len = [rand(8), rand(70), rand(300)][rand(3)];
            let alphabet: &[u8] =
                [&b"pPaAeErRmMcCx\x00\xf0"[..], b"xxxxxxxxxxxxxxxpermeacc"][rand(2)];
            let line: Vec<u8> = (0..len).map(|_| alphabet[rand(alphabet.len())]).collect();
            let want = two_passes(&line);
            assert_eq!(may_name_a_refusal(&line), want, "{line:?}");
            if want {
                hits += 1
            } else {
                misses += 1
            }
        }
        assert!(hits > 200 && misses > 1000, "{hits} {misses}");
        for pos in 0..200 {
            for word in [&b"PeRm"[..], b"eAcC", b"perm", b"eacc"] {
                let mut line = vec![b'x'; 200];
                line.splice(pos..pos, word.iter().copied());
                assert!(may_name_a_refusal(&line));
                line[pos + 1] = b'q';
                assert_eq!(may_name_a_refusal(&line), two_passes(&line));
            }
        }
    }

    #[test]
    fn the_quick_look_finds_what_the_regex_reads() {
        for (line, hit) in [
            (&b"Error: EACCES: permission denied"[..], true),
            (b"[Errno 1] Operation not permitted", true),
            (b"eAcC", true),
            (b"PeRm", true),
            (b"per", false),
            (b"pe rm eac c", false),
            (b"", false),
            (b"xxxxperxxxeacxxxxp", false),
        ] {
            assert_eq!(
                may_name_a_refusal(line),
                hit,
                "{:?}",
                String::from_utf8_lossy(line)
            );
            let slow = line
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"perm") || w.eq_ignore_ascii_case(b"eacc"));
            assert_eq!(slow, hit);
        }
    }

    /// The quick look against a comparison at every byte, on generated lines over the letters
    /// of both words (both cases) and a few others, every length up to 24.
    #[test]
    fn the_quick_look_equals_a_look_at_every_byte() {
        const ALPHABET: &[u8] = b"pPeEaAcCrRmMx \"";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut hits, mut misses) = (0, 0);
        for _ in 0..200_000 {
            let len = (next() % 25) as usize;
            let line: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let slow = line
                .windows(4)
                .any(|w| w.eq_ignore_ascii_case(b"perm") || w.eq_ignore_ascii_case(b"eacc"));
            assert_eq!(
                may_name_a_refusal(&line),
                slow,
                "{:?}",
                String::from_utf8_lossy(&line)
            );
            if slow {
                hits += 1;
            } else {
                misses += 1;
            }
        }
        assert!(hits > 1000 && misses > 1000, "{hits} / {misses}");
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
