//! capjail's end-to-end tests: ONE test binary (one compile of `support`), one module per former
//! test file. A new file tests/X.rs must be declared here as `mod X;` (Cargo.toml sets
//! `autotests = false`); `every_test_file_is_in_the_suite` fails when one is forgotten.
//! Run one module: `cargo nextest run -E 'test(/^kernel_world::/)'`.

#[macro_use]
mod support;

mod approvals;
mod bad_peers;
mod bypasses;
mod check_vs_run;
mod cli;
mod compare;
mod content_benign;
mod content_checks;
mod content_fetch;
mod egress;
mod egress_fallback;
mod first_hour;
mod first_hour_gaps;
mod kernel_confinement;
mod kernel_probe;
mod kernel_servers;
mod kernel_walls;
mod kernel_world;
mod launchers;
mod lifecycle;
mod readings;
mod seed_capfence;
mod seed_mcpjail;
mod transparency_inspector;
mod transparency_python;
mod transparency_rmcp;
mod transparency_ts;
mod trust_pins;

/// A tests/*.rs file that is not declared above would never be compiled nor run: fail loudly.
#[test]
fn every_test_file_is_in_the_suite() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let me = std::fs::read_to_string(dir.join("suite.rs")).expect("read tests/suite.rs");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read tests/") {
        let path = entry.expect("dir entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs")
            && stem != "suite"
            && !me.contains(&format!("\nmod {stem};"))
        {
            missing.push(stem.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "tests/{{{}}}.rs not declared in tests/suite.rs: add `mod NAME;`",
        missing.join(",")
    );
}

/// Every capjail a test starts keeps its state under target/ (.cargo/config.toml sets
/// XDG_STATE_HOME for everything cargo runs; scripts/test.sh does too), never the user's
/// ~/.local/state/capjail.
#[test]
fn capjail_state_stays_under_target() {
    let state =
        std::env::var("XDG_STATE_HOME").expect("XDG_STATE_HOME is set (.cargo/config.toml)");
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    assert!(
        std::path::Path::new(&state).starts_with(&target),
        "XDG_STATE_HOME={state} is outside {}",
        target.display()
    );
}
