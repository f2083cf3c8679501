//! CPU cost of the result checks, per MiB of text, printed (no timed assertions). Run with
//! `cargo test --release --lib content::cpu_bench -- --ignored --nocapture`.

use std::time::Instant;

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

fn ms_per_mib(text: &str, rounds: usize, f: &mut dyn FnMut(&str)) -> f64 {
    f(text);
    let t = Instant::now();
    for _ in 0..rounds {
        f(text);
    }
    t.elapsed().as_secs_f64() * 1e3 / rounds as f64 / (text.len() as f64 / (1 << 20) as f64)
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
    ];
    for (name, t) in &inputs {
        let clean = ms_per_mib(t, 20, &mut |s| {
            assert!(super::results::text_is_clean(s, &p, &mut known));
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
        let kn = ms_per_mib(t, 20, &mut |s| {
            let _ = known.scan(s);
        });
        let tok = ms_per_mib(t, 20, &mut |s| {
            let _ = super::encodings::candidate_tokens(s).count();
        });
        let inj = ms_per_mib(t, 20, &mut |s| {
            let _ = super::text::injection_marker(s);
        });
        let hid = ms_per_mib(t, 20, &mut |s| {
            let _ = super::text::count_hidden(s);
            let _ = super::text::normalize(s);
        });
        eprintln!(
            "content-cpu {name}: text_is_clean {clean:.3} ms/MiB (secrets {sec:.3} [wif {wif:.3}, seed {seed:.3}], known {kn:.3}, tokens {tok:.3}, injection {inj:.3}, hidden {hid:.3})"
        );
    }
}
