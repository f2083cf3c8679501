//! `capjail compare`: pick the server and the policy, run the suite, print the report.

use std::time::Duration;

use crate::compare::{self, runner::Setup, Facts, Options};
use crate::exit;

use crate::cli::{CompareArgs, CompareServer};

pub(crate) fn compare(args: CompareArgs) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("capjail: error: cannot find my own executable: {e}");
            return exit::INTERNAL;
        }
    };
    // The policy: a built-in name or a file (made absolute: runs happen in the lab).
    let policy = match &args.policy {
        None => None,
        Some(p) => {
            if let Err(e) = crate::policy::load(p) {
                return super::report_policy_error(&e);
            }
            let path = std::path::Path::new(p);
            Some(if path.exists() {
                std::path::absolute(path)
                    .map(|a| a.display().to_string())
                    .unwrap_or_else(|_| p.clone())
            } else {
                p.clone()
            })
        }
    };
    let (server, label) = if !args.command.is_empty() {
        if !args
            .command
            .iter()
            .any(|a| a.contains("{lab}") || a.contains("{ws}"))
        {
            eprintln!("capjail: note: the server command has no {{lab}} or {{ws}}: it will not be pointed at the lab");
        }
        // Cases run with the lab as working directory: resolve a relative program path now.
        let mut cmd = args.command.clone();
        if cmd[0].contains('/') {
            if let Ok(abs) = std::path::absolute(&cmd[0]) {
                cmd[0] = abs.display().to_string();
            }
        }
        let label = args.command.join(" ");
        (cmd, label)
    } else {
        match (args.server, compare::default_fs_server()) {
            (None, None) => {
                eprintln!("capjail: note: no --server and no command, and the filesystem server is not installed (looked in $CAPJAIL_PEERS/node, ./.peers/node and the global npm folders): falling back to capjail's probe server, so the cases that need a file server's tools are skipped. Run scripts/setup-peers.sh, give the server command after --, or pass --server probe to choose the probe server");
                (
                    compare::probe_server(&exe),
                    "capjail probe-server --root {lab}".to_string(),
                )
            }
            (Some(CompareServer::Probe), _) => (
                compare::probe_server(&exe),
                "capjail probe-server --root {lab}".to_string(),
            ),
            (_, Some(fs)) => {
                let l = fs.join(" ");
                (fs, l)
            }
            (Some(CompareServer::Filesystem), None) => {
                eprintln!("capjail: error: the filesystem server is not installed (looked in $CAPJAIL_PEERS/node, ./.peers/node and the global npm folders); run scripts/setup-peers.sh or give the command after --");
                return exit::USAGE;
            }
        }
    };
    let setup = Setup {
        exe: exe.clone(),
        server,
        policy,
        timeout: Duration::from_secs(args.timeout),
    };
    eprintln!(
        "capjail: compare: checking the kernel layer, network namespaces and the server's tools ..."
    );
    if let Some(f) = &args.family {
        if !compare::suite::SUITE.iter().any(|c| c.family == f) {
            eprintln!("capjail: error: no case of family {f:?}");
            return exit::USAGE;
        }
    }
    let facts = Facts {
        kernel: compare::kernel_available(&exe),
        netns: compare::netns::available(),
        server_tools: compare::list_tools(&setup),
    };
    if facts.server_tools.is_none() {
        eprintln!(
            "capjail: warning: could not list the server's tools unconfined; every case will try"
        );
    }
    let opts = Options {
        setup,
        server_label: label,
        jobs: args.jobs as usize,
        progress: true,
        family: args.family.clone(),
    };
    let report = compare::run(&opts, facts);
    let out = if args.json {
        serde_json::to_string_pretty(&report.json()).unwrap_or_default() + "\n"
    } else if args.markdown {
        report.markdown()
    } else {
        report.text()
    };
    print!("{out}");
    eprintln!(
        "capjail: compare: {} cases in {:.0} s",
        report.rows.len() * report.modes.len(),
        report.seconds
    );
    let chosen = !args.command.is_empty() || args.server.is_some();
    if let Some(c) = report
        .full_counts()
        .filter(|c| c.mostly_skipped() && !chosen)
    {
        eprintln!(
            "capjail: error: {} of {} cases could not run against the fallback server; the report says little (choose it with --server probe to accept that)",
            c.skipped + c.legit_skipped + c.errors,
            c.attacks + c.legit
        );
        return exit::COMPARE_FAILED;
    }
    if report.ok() {
        0
    } else {
        exit::COMPARE_FAILED
    }
}
