//! The benign corpus (tests/fixtures/benign: code, docs with example keys, UUIDs, hashes,
//! base64 images, git output, minified JS, lockfiles, URLs) gives ZERO findings under the
//! default content policy, whether it leaves (a tool argument, a URL) or comes back (a result).
//! This is what decides how strict the defaults may be.

use std::path::PathBuf;

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/benign");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn benign_corpus_has_zero_findings() {
    let files = corpus();
    assert!(files.len() >= 10, "the corpus is missing");
    let mut findings = Vec::new();
    let mut bytes = 0;
    for (name, text) in &files {
        bytes += text.len();
        for f in capjail::content::scan_outgoing_str(text) {
            findings.push(format!("{name} (outgoing, whole): {f}"));
        }
        for (i, line) in text.lines().enumerate() {
            for f in capjail::content::scan_outgoing_str(line) {
                findings.push(format!("{name}:{} (outgoing): {f}", i + 1));
            }
        }
        // Every line also as the query of a URL to an allowed host (entropy checks apply).
        for (i, line) in text.lines().enumerate() {
            let q: String = line
                .bytes()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || b"-_.~".contains(&c) {
                        (c as char).to_string()
                    } else {
                        format!("%{c:02X}")
                    }
                })
                .collect();
            for f in
                capjail::content::scan_outgoing_str(&format!("http://allowed.test/search?q={q}"))
            {
                findings.push(format!("{name}:{} (as a URL query): {f}", i + 1));
            }
        }
        for f in capjail::content::scan_result_str(text) {
            findings.push(format!("{name} (result): {f}"));
        }
    }
    eprintln!(
        "benign corpus: {} files, {bytes} bytes, {} findings",
        files.len(),
        findings.len()
    );
    assert!(
        findings.is_empty(),
        "false positives:\n{}",
        findings.join("\n")
    );
}
