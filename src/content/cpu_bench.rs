//! CPU cost of the result checks, per MiB of text, printed (no timed assertions). Run with
//! `cargo test --release --lib content::cpu_bench -- --ignored --nocapture`
//! (`CAPJAIL_CPU_ONLY=NAME`: only the inputs whose name holds NAME).

use super::config::compile_content;
use super::known::KnownSecrets;

fn prose(len: usize) -> String {
    let words = [
        "the",
        "server",
        "returned",
        "a",
        "list",
        "of",
        "files,",
        "each",
        "with",
        "its",
        "size",
        "and",
        "modification",
        "time.",
        "See",
        "https://example.test/docs/page?id=42",
        "for",
        "details;",
        "function",
        "call(x)",
        "{",
        "}",
        "return",
        "value:",
        "12345",
        "\n",
    ];
    let mut s = String::with_capacity(len + 32);
    let mut i = 0usize;
    while s.len() < len {
        s.push_str(words[i % words.len()]);
        s.push(' ');
        i = i.wrapping_mul(31).wrapping_add(7) % 1009;
    }
    s.truncate(len);
    s
}

/// Runs of 300 pseudo-random BIP-39 words that hold no phrase (every word is drawn again
/// while a phrase would end with it), each run ended by a word not in the list.
fn seed_runs(len: usize) -> String {
    let list: Vec<&str> = include_str!("data/bip39-english.txt").lines().collect();
    let mut s = String::with_capacity(len + 16);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut run: Vec<u16> = Vec::new();
    while s.len() < len {
        if run.len() == 300 {
            s.push_str("qq ");
            run.clear();
            continue;
        }
        loop {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            run.push((x % 2048) as u16);
            let ends_a_phrase = [12, 15, 18, 21, 24].iter().any(|&n| {
                run.len() >= n
                    && super::secrets::tests::reference::mnemonic_valid(&run[run.len() - n..])
            });
            if !ends_a_phrase {
                break;
            }
            run.pop();
        }
        s.push_str(list[run[run.len() - 1] as usize]);
        s.push(' ');
    }
    s.truncate(len);
    s
}

/// This thread's CPU time in seconds (the machine is shared: wall time counts the others).
fn cpu_secs() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn ms_per_mib(text: &str, rounds: usize, f: &mut dyn FnMut(&str)) -> f64 {
    f(text);
    let t = cpu_secs();
    for _ in 0..rounds {
        f(text);
    }
    (cpu_secs() - t) * 1e3 / rounds as f64 / (text.len() as f64 / (1 << 20) as f64)
}

#[test]
#[ignore = "timing, printed only"]
fn content_cpu() {
    let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
    let p = compile_content(None, &env).unwrap();
    let mut known = KnownSecrets::default();
    known.add("s3cr3t-value-42-known", "environment variable X");
    let inputs = [
        ("x 1MiB", "x".repeat(1 << 20)),
        ("prose 1MiB", prose(1 << 20)),
        ("prose+e9 1MiB", format!("{}\u{e9}", prose((1 << 20) - 2))),
        ("base64 1MiB", super::samples::base64_lines(1 << 20)),
        ("source 1MiB", super::samples::source_text(1 << 20)),
        // The seed search's worst case: runs of 300 list words (the first 280 of each run are
        // tried as phrases, five lengths at each of 256 starts), broken by a short word.
        ("seed runs 1MiB", seed_runs(1 << 20)),
        // The word list itself, over and over (one run of list words).
        ("word list 1MiB", {
            let one = include_str!("data/bip39-english.txt");
            let mut t = one.repeat((1 << 20) / one.len() + 1);
            t.truncate(t[..1 << 20].rfind('\n').unwrap_or(0));
            t
        }),
        // Every few bytes a key of the marker search, never a marker: its worst case.
        ("dense marker keys 1MiB", {
            let mut t = "Tell must instructions\t".repeat((1 << 20) / 23);
            t.truncate(1 << 20);
            t
        }),
    ];
    // `CAPJAIL_CPU_ONLY=base64` measures only the inputs whose name holds it (for a profile).
    let only = std::env::var("CAPJAIL_CPU_ONLY").unwrap_or_default();
    for (name, t) in inputs.iter().filter(|(n, _)| n.contains(only.as_str())) {
        let clean = ms_per_mib(t, 20, &mut |s| {
            // (The word list holds phrases.)
            let c = super::results::text_is_clean(s, &p, &mut known);
            assert!(c || name.starts_with("word list"));
        });
        let sec = ms_per_mib(t, 20, &mut |s| {
            let mut v = Vec::new();
            super::secrets::scan(s, &mut v);
        });
        let wif = ms_per_mib(t, 20, &mut |s| {
            let mut v = Vec::new();
            super::secrets::wif_keys(s, &mut v);
        });
        let seed = ms_per_mib(t, 20, &mut |s| {
            let mut v = Vec::new();
            super::secrets::seed_phrases(s, &mut v);
        });
        // The seed scan as `scan` runs it: only the stretches the shape pass found.
        let sh = super::shape::shape(t.as_bytes());
        let seed_in = ms_per_mib(t, 20, &mut |s| {
            let mut v = Vec::new();
            super::secrets::seed_phrases_in(s, &mut v, &sh.seeds);
        });
        // The same stretches through the previous seed scan (every word looked up in order).
        let seed_old = ms_per_mib(t, 20, &mut |s| {
            let mut v = Vec::new();
            for (from, to) in sh.seeds.kept() {
                super::secrets::tests::reference::seed_range(s, from, to, &mut v, |w| {
                    super::secrets::word_index(w)
                });
            }
            assert!(sh.seeds.rest().is_none());
        });
        let kn = ms_per_mib(t, 20, &mut |s| {
            let _ = known.scan(s);
        });
        let tok = ms_per_mib(t, 20, &mut |s| {
            let _ = super::encodings::candidate_tokens(s).count();
        });
        let shape = ms_per_mib(t, 20, &mut |s| {
            std::hint::black_box(super::shape::shape(s.as_bytes()));
        });
        let inj = ms_per_mib(t, 20, &mut |s| {
            let _ = super::text::injection_marker(s);
        });
        let hid = ms_per_mib(t, 20, &mut |s| {
            let _ = super::text::count_hidden(s);
            let _ = super::text::normalize(s);
        });
        eprintln!(
            "content-cpu {name}: text_is_clean {clean:.3} ms/MiB (secrets {sec:.3} [shape {shape:.3}, wif {wif:.3}, seed {seed:.3}, seed_in {seed_in:.3}, seed_in_old {seed_old:.3}], known {kn:.3}, tokens {tok:.3}, injection {inj:.3}, hidden {hid:.3})"
        );
    }
}

/// The answers `capjail-bench echo-server` writes (the same `json!` values, serialised the
/// same way): a `large N BYTES` answer holds `BYTES` of `x`, a pipelined one a short sentence.
pub(super) fn echo_answer(id: u64, bytes: usize) -> Vec<u8> {
    let text = if bytes > 0 {
        "x".repeat(bytes)
    } else {
        "echo: the quick brown fox jumps over the lazy dog".to_string()
    };
    let result = serde_json::json!({"content": [{"type": "text", "text": text}]});
    let resp = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result});
    serde_json::to_vec(&resp).unwrap()
}

fn bench_policy() -> (crate::policy::Policy, super::SessionContent) {
    use crate::policy::{load_str, PolicySource};
    let policy = load_str(
        "name: b\nfilesystem: {mode: any}\nnetwork: {mode: none}\ntools: {mode: blocklist, blocked: [run_shell]}\n",
        PolicySource::Inline,
    )
    .unwrap();
    assert!(policy.content.enabled);
    (policy, super::SessionContent::default())
}

/// The request in flight an answer with id 7 belongs to (as the client side records it).
fn track_request(st: &mut super::SessionContent) {
    st.requests.insert(
        "7".into(),
        super::RequestInfo {
            tool: Some("echo".into()),
            sensitive: None,
        },
    );
}

fn one_result(policy: &crate::policy::Policy, st: &mut super::SessionContent, line: &[u8]) {
    track_request(st);
    let r = super::hook::on_result(policy, st, "7", line);
    assert_eq!(r, super::hook::ResultOutcome::Forward);
}

/// The whole result hook (`hook::on_result`) on the bench's answers, with the realistic
/// bench policy's content defaults: ms per MiB for the large answers, ns per small answer.
#[test]
#[ignore = "timing, printed only"]
fn content_cpu_bench_payloads() {
    let (policy, mut st) = bench_policy();
    let mut one = |line: &[u8]| one_result(&policy, &mut st, line);
    for bytes in [1usize << 20, 16 << 20] {
        let line = echo_answer(7, bytes);
        let rounds = if bytes > 1 << 20 { 5 } else { 40 };
        let ms = ms_per_mib(std::str::from_utf8(&line).unwrap(), rounds, &mut |s| {
            one(s.as_bytes())
        });
        eprintln!("content-cpu on_result large {bytes}: {ms:.3} ms/MiB");
    }
}

/// Per small answer (the pipelined bench's): ns per `hook::on_result`.
#[test]
#[ignore = "timing, printed only"]
fn content_cpu_bench_small() {
    let (policy, mut st) = bench_policy();
    let mut one = |line: &[u8]| one_result(&policy, &mut st, line);
    let line = echo_answer(7, 0);
    let n = 400_000;
    for _ in 0..1000 {
        one(&line);
    }
    let t = cpu_secs();
    for _ in 0..n {
        one(&line);
    }
    let ns = (cpu_secs() - t) * 1e9 / n as f64;
    eprintln!(
        "content-cpu on_result small ({} bytes): {ns:.0} ns/response (incl. request map insert)",
        line.len()
    );
    // The map insert alone, to subtract.
    let t = cpu_secs();
    for _ in 0..n {
        track_request(&mut st);
        std::hint::black_box(st.requests.remove("7"));
    }
    let ns0 = (cpu_secs() - t) * 1e9 / n as f64;
    eprintln!("content-cpu request map insert+remove: {ns0:.0} ns");
}

/// The passes over a large answer's bytes, one by one (ms per MiB): what the server pump's
/// checks are made of, next to a copy.
#[test]
#[ignore = "timing, printed only"]
fn content_cpu_passes() {
    let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
    let p = compile_content(None, &env).unwrap();
    let mut known = KnownSecrets::default();
    let source_line = |bytes: usize| {
        let result = serde_json::json!({"content": [{"type": "text", "text": super::samples::source_text(bytes)}]});
        serde_json::to_vec(&serde_json::json!({"jsonrpc": "2.0", "id": 7, "result": result}))
            .unwrap()
    };
    for (kind, bytes) in [("x", 1usize << 20), ("x", 16 << 20), ("source", 1 << 20)] {
        let line = match kind {
            "x" => echo_answer(7, bytes),
            _ => source_line(bytes),
        };
        let s = std::str::from_utf8(&line).unwrap();
        let rounds = if bytes > 1 << 20 { 8 } else { 100 };
        let mut dst = vec![0u8; line.len()];
        let copy = ms_per_mib(s, rounds, &mut |s| {
            dst.copy_from_slice(s.as_bytes());
            std::hint::black_box(&dst);
        });
        let utf8 = ms_per_mib(s, rounds, &mut |s| {
            std::hint::black_box(std::str::from_utf8(std::hint::black_box(s.as_bytes())).is_ok());
        });
        let nl = ms_per_mib(s, rounds, &mut |s| {
            std::hint::black_box(memchr::memchr(b'\n', s.as_bytes()));
        });
        let m2 = ms_per_mib(s, rounds, &mut |s| {
            std::hint::black_box(memchr::memchr2(b'\n', b'\\', s.as_bytes()));
        });
        let shape = ms_per_mib(s, rounds, &mut |s| {
            std::hint::black_box(super::shape::shape(s.as_bytes()));
        });
        let scan = ms_per_mib(s, rounds, &mut |s| {
            let mut v = Vec::new();
            std::hint::black_box(super::secrets::scan_shaped(s, &mut v));
        });
        // The seed search alone, over the stretches the shape pass found (as `scan_shaped`).
        let sh = super::shape::shape(s.as_bytes());
        let seed = ms_per_mib(s, rounds, &mut |s| {
            let mut v = Vec::new();
            super::secrets::seed_phrases_in(s, &mut v, &sh.seeds);
            std::hint::black_box(v);
        });
        // The scratch kept from one answer to the next, as the server pump keeps it.
        let mut scratch = super::borrowed::TextScratch::default();
        let walk = ms_per_mib(s, rounds, &mut |s| {
            std::hint::black_box(super::borrowed::each_text_spans(
                s.as_bytes(),
                &[],
                &mut scratch,
                &mut |_| true,
            ));
        });
        let clean = ms_per_mib(s, rounds, &mut |s| {
            std::hint::black_box(super::borrowed::each_text_spans(
                s.as_bytes(),
                &[],
                &mut scratch,
                &mut |t| super::results::text_is_clean(t, &p, &mut known),
            ));
        });
        let env = ms_per_mib(s, rounds, &mut |s| {
            std::hint::black_box(crate::jsonrpc::validate_envelope(s.as_bytes(), 64).is_ok());
        });
        eprintln!(
            "content-cpu passes {kind} {bytes}: copy {copy:.3} utf8 {utf8:.3} memchr {nl:.3} memchr2 {m2:.3} shape {shape:.3} scan_shaped {scan:.3} seed_in {seed:.3} each_text {walk:.3} each_text+clean {clean:.3} envelope {env:.3}"
        );
    }
}
