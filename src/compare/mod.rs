//! `capjail compare`: the shipped attack suite, run against a server in every mode, judged by
//! effect, printed as a matrix (attack x mode).
//!
//! - [`suite`]: the cases as data (family, target layer, requests, effects).
//! - [`lab`]: a fresh lab per case (random canary tokens, generated policy, outside process).
//! - [`netns`]: a private network namespace (loopback only) and the canary inside it.
//! - [`egress_lab`]: the egress family's allowed origin, DNS canary, names and policy.
//! - [`runner`]: one case in one mode: spawn, talk MCP, observe the effects (bounded).
//! - [`judge`]: pure: observations -> outcome.
//! - [`report`]: pure: outcomes -> text / JSON / markdown.

pub(crate) mod egress_lab;
pub(crate) mod judge;
pub mod lab;
pub(crate) mod netns;
pub(crate) mod report;
pub(crate) mod runner;
pub mod suite;
pub(crate) mod walls_lab;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use judge::{Layers, Outcome};
use suite::{Case, Target, SUITE};

/// A column of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// The server alone, without capjail: shows which attacks are real against it.
    Unconfined,
    Proxy,
    Kernel,
    Full,
}

impl Mode {
    pub(crate) const ALL: [Mode; 4] = [Mode::Unconfined, Mode::Proxy, Mode::Kernel, Mode::Full];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Unconfined => "unconfined",
            Mode::Proxy => "proxy",
            Mode::Kernel => "kernel",
            Mode::Full => "full",
        }
    }

    /// `capjail run --mode` value; `None` for the unconfined baseline.
    pub(crate) fn run_flag(self) -> Option<&'static str> {
        match self {
            Mode::Unconfined => None,
            m => Some(m.name()),
        }
    }

    pub(crate) fn layers(self) -> Layers {
        Layers {
            proxy: matches!(self, Mode::Proxy | Mode::Full),
            kernel: matches!(self, Mode::Kernel | Mode::Full),
        }
    }
}

/// What `capjail compare` was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) setup: runner::Setup,
    /// How the server was chosen (for the report).
    pub(crate) server_label: String,
    /// Cases run in parallel.
    pub(crate) jobs: usize,
    /// Print a progress line per finished case on stderr.
    pub(crate) progress: bool,
    /// Only the cases of this family (`--family`).
    pub(crate) family: Option<String>,
}

/// Environment facts decided once.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    /// `Err(why)` when the kernel layer is not fully available here.
    pub(crate) kernel: Result<(), String>,
    /// `Err(why)` when no private network namespace can be made.
    pub(crate) netns: Result<(), String>,
    /// The server's tools (unconfined `tools/list`), when it could be listed.
    pub(crate) server_tools: Option<Vec<String>>,
}

/// Is the kernel layer fully enforced here? (`capjail run --mode kernel --require-kernel -- true`)
pub(crate) fn kernel_available(exe: &std::path::Path) -> Result<(), String> {
    let out = std::process::Command::new(exe)
        .args([
            "run",
            "--quiet",
            "--mode",
            "kernel",
            "--require-kernel",
            "--audit",
            "off",
            "--",
            "true",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!("kernel layer not fully available: {}", err.trim()))
    }
}

/// Decide up front what can be known without running the case.
fn pre_skip(case: &Case, mode: Mode, facts: &Facts) -> Option<Outcome> {
    if mode.layers().kernel {
        if let Err(e) = &facts.kernel {
            return Some(Outcome::Skipped(e.clone()));
        }
    }
    if case.network {
        if let Err(e) = &facts.netns {
            return Some(Outcome::Skipped(format!(
                "no private network namespace: {e}"
            )));
        }
    }
    if case.target == Target::Server && !case.needs_tool.is_empty() {
        if let Some(tools) = &facts.server_tools {
            if !tools.iter().any(|t| t == case.needs_tool) {
                return Some(Outcome::Skipped(format!(
                    "the server has no tool {}",
                    case.needs_tool
                )));
            }
        }
    }
    None
}

/// Run the whole suite. Returns the report (not yet printed).
pub(crate) fn run(opts: &Options, facts: Facts) -> report::Report {
    let cases: Vec<&'static Case> = SUITE
        .iter()
        .filter(|c| opts.family.as_deref().is_none_or(|f| c.family == f))
        .collect();
    let jobs: Vec<(usize, usize)> = (0..cases.len())
        .flat_map(|c| (0..Mode::ALL.len()).map(move |m| (c, m)))
        .collect();
    let results: Mutex<Vec<Vec<Option<Outcome>>>> =
        Mutex::new(vec![vec![None; Mode::ALL.len()]; cases.len()]);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let total = jobs.len();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..opts.jobs.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(c, m)) = jobs.get(i) else { break };
                let (case, mode) = (cases[c], Mode::ALL[m]);
                let outcome = pre_skip(case, mode, &facts).unwrap_or_else(|| {
                    // A thread of its own: a network case moves its thread into a namespace.
                    let setup = opts.setup.clone();
                    std::thread::spawn(move || runner::run_case(&setup, case, mode))
                        .join()
                        .unwrap_or_else(|_| Outcome::Error("the case panicked".into()))
                });
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if opts.progress {
                    eprintln!(
                        "[{n}/{total}] {:<10} {:<28} {}",
                        mode.name(),
                        case.id,
                        outcome.label()
                    );
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[c][m] = Some(outcome);
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    let rows = cases
        .into_iter()
        .zip(results)
        .map(|(case, outs)| {
            let mut outs: Vec<Outcome> = outs
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Outcome::Error("not run".into())))
                .collect();
            let base = outs[0].clone();
            if case.kind == suite::Kind::Attack {
                for o in outs.iter_mut().skip(1) {
                    *o = judge::reconcile(&base, o.clone());
                }
            }
            report::Row {
                case,
                outcomes: outs,
            }
        })
        .collect();
    report::Report {
        server: opts.server_label.clone(),
        policy: opts.setup.policy.clone().unwrap_or_else(|| {
            "generated per lab: the lab workspace read-write, no network (the egress family: one allowed origin under network: allowlist)".into()
        }),
        kernel: facts.kernel.err(),
        netns: facts.netns.err(),
        modes: Mode::ALL.to_vec(),
        rows,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The default server: the real filesystem server when it is installed (`$CAPJAIL_PEERS` or
/// `./.peers`, then the global npm folders) as `node .../dist/index.js {ws} {lab}`, else `None`
/// (use the probe server).
pub(crate) fn default_fs_server() -> Option<Vec<String>> {
    const REL: &str = "node_modules/@modelcontextprotocol/server-filesystem/dist/index.js";
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("CAPJAIL_PEERS").filter(|p| !p.is_empty()) {
        dirs.push(PathBuf::from(p).join("node"));
    }
    dirs.push(PathBuf::from(".peers/node"));
    dirs.push(PathBuf::from("/usr/local/lib"));
    dirs.push(PathBuf::from("/usr/lib"));
    let js = dirs
        .into_iter()
        .map(|d| d.join(REL))
        .find(|p| p.is_file())?;
    let js = std::path::absolute(js).ok()?;
    // Both directories: the server may touch the whole lab (an over-broad server configuration,
    // the case a sandbox is for), and paths in the workspace resolve from the workspace (the
    // server lists each directory from the longest allowed one down).
    Some(vec![
        "node".into(),
        js.display().to_string(),
        "{ws}".into(),
        "{lab}".into(),
    ])
}

/// The probe server as "the server under test": `capjail probe-server --root {lab}`.
pub(crate) fn probe_server(exe: &std::path::Path) -> Vec<String> {
    vec![
        exe.display().to_string(),
        "probe-server".into(),
        "--root".into(),
        "{lab}".into(),
    ]
}

/// The server's tools, listed once without confinement (to skip cases it cannot run).
pub(crate) fn list_tools(setup: &runner::Setup) -> Option<Vec<String>> {
    runner::list_tools(setup, Duration::from_secs(20))
}
