//! Linux kernel confinement of the server process: the second, independent layer.
//!
//! - `plan` (pure): policy + command + [`HostFacts`] -> [`SandboxPlan`], every Landlock rule
//!   with its reason, the network decision, the environment, rlimits.
//! - `facts`: the I/O that feeds the plan (exec chain, shebangs, ELF loader, runtimes).
//! - `landlock`, `seccomp`, `privileges`, `env`: one mechanism each.
//! - `enforcement`: what the running kernel actually enforces, exactly.
//! - `apply`: [`prepare`] (parent, before fork) and [`apply_to`] (installs the async-signal-safe
//!   `pre_exec` confinement on a `std::process::Command`).
//! - `world`: the server's own world (namespaces, a fresh root, PID 1), built by capjail
//!   re-executed as a setup process; [`apply_to`] switches to it when the plan has one.
//! - `watcher`: without a world, the server runs under a watcher that ends its whole tree when
//!   capjail dies (the fallback's stand-in for the PID namespace).
//! - `doctor`: the machine report.
//!
//! Typical use:
//! ```no_run
//! # #[cfg(target_os = "linux")] {
//! # let policy: capjail::policy::Policy = todo!();
//! use capjail::sandbox::{self, HostFacts};
//! let argv: Vec<String> = vec!["node".into(), "server.js".into()];
//! let plan = sandbox::plan(&policy, &argv, &HostFacts::gather(&argv));
//! let prepared = sandbox::prepare(plan, /* --require-kernel */ false)?;
//! let mut cmd = std::process::Command::new(&argv[0]);
//! cmd.args(&argv[1..]);
//! sandbox::apply_to(&prepared, &mut cmd);
//! let child = cmd.spawn()?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// Which layers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// The stdio JSON-RPC proxy only.
    Proxy,
    /// Kernel confinement only (the server's stdio is passed through unchecked).
    Kernel,
    /// Both (the default on Linux).
    Full,
}

impl Mode {
    pub(crate) fn uses_kernel(self) -> bool {
        matches!(self, Mode::Kernel | Mode::Full)
    }
    pub(crate) fn uses_proxy(self) -> bool {
        matches!(self, Mode::Proxy | Mode::Full)
    }
}

impl Default for Mode {
    fn default() -> Self {
        if cfg!(target_os = "linux") {
            Mode::Full
        } else {
            Mode::Proxy
        }
    }
}

/// Is the kernel layer compiled in?
pub(crate) const KERNEL_LAYER_AVAILABLE: bool = cfg!(target_os = "linux");

#[cfg(target_os = "linux")]
mod apply;
#[cfg(target_os = "linux")]
mod doctor;
#[cfg(target_os = "linux")]
pub(crate) mod enforcement;
#[cfg(target_os = "linux")]
pub(crate) mod env;
#[cfg(target_os = "linux")]
pub(crate) mod facts;
#[cfg(target_os = "linux")]
pub(crate) mod landlock;
#[cfg(target_os = "linux")]
pub(crate) mod plan;
#[cfg(target_os = "linux")]
pub(crate) mod privileges;
/// uvx / uv run / pipx run: their package caches and uv's interpreter.
pub(crate) mod pylaunch;
#[cfg(target_os = "linux")]
pub(crate) mod seccomp;
#[cfg(target_os = "linux")]
pub(crate) mod watcher;
#[cfg(target_os = "linux")]
pub(crate) mod world;

#[cfg(target_os = "linux")]
pub use apply::{apply_to, prepare, prepare_with, PreparedSandbox, SandboxError};
#[cfg(target_os = "linux")]
pub use doctor::doctor_report;
#[cfg(target_os = "linux")]
pub use enforcement::KernelFeatures;
#[cfg(target_os = "linux")]
pub(crate) use enforcement::Overall;
#[cfg(target_os = "linux")]
pub use facts::HostFacts;
#[cfg(target_os = "linux")]
pub use plan::{plan, SandboxPlan};

/// Elsewhere: no kernel layer; the report says so.
#[cfg(not(target_os = "linux"))]
pub fn doctor_report(_policy: Option<&crate::policy::Policy>) -> String {
    format!(
        "kernel: {} — capjail's kernel layer (Landlock, seccomp) exists only on Linux; only `--mode proxy` is possible here\n",
        std::env::consts::OS
    )
}
