//! One function per subcommand; each returns capjail's exit code.

mod audit;
mod check;
mod compare;
mod kernel;
mod pins;
mod policy;
mod run;
mod wrap;

use std::path::Path;

use crate::exit;
use crate::policy::{builtin, Policy, PolicyError};

use crate::cli::{Command, PolicyArgs};

pub(crate) fn dispatch(command: Command) -> i32 {
    match command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::check(args),
        Command::Compare(args) => compare::compare(args),
        Command::Policy(cmd) => policy::policy(cmd),
        Command::Audit(cmd) => audit::audit(cmd),
        Command::Pins(cmd) => pins::pins(cmd),
        Command::ProbeServer(args) => crate::probe::run(args.into()),
        Command::Doctor { policy, workspace } => {
            kernel::doctor(policy.as_deref(), workspace.as_deref())
        }
        Command::Replay { file, policy } => audit::replay(&file, &policy),
        Command::Wrap(args) => wrap::wrap(args),
        Command::Unwrap(args) => wrap::unwrap(args),
    }
}

/// Load the policy named on the command line (or the default), with `--workspace` applied.
pub(crate) fn load_policy(args: &PolicyArgs) -> Result<Policy, i32> {
    let name = args.policy.as_deref().unwrap_or(builtin::DEFAULT);
    load_named(name, args.workspace.as_deref())
}

/// Load `name` (built-in or file) with `--workspace` passed to compilation (it stands for
/// `${CAPJAIL_WORKSPACE}`; the process environment is never changed).
pub(crate) fn load_named(name: &str, workspace: Option<&Path>) -> Result<Policy, i32> {
    let workspace = workspace_dir(workspace)?;
    crate::policy::load_in(name, workspace.as_deref()).map_err(|e| report_policy_error(&e))
}

/// `--workspace DIR` made absolute.
pub(crate) fn workspace_dir(dir: Option<&Path>) -> Result<Option<std::path::PathBuf>, i32> {
    dir.map(|dir| {
        std::path::absolute(dir).map_err(|e| {
            eprintln!("capjail: error: --workspace {}: {e}", dir.display());
            exit::USAGE
        })
    })
    .transpose()
}

pub(crate) fn report_policy_error(e: &PolicyError) -> i32 {
    eprintln!("capjail: error: policy: {e}");
    exit::POLICY
}

pub(crate) fn load_profile(name: Option<&str>) -> Result<Option<crate::profile::Profile>, i32> {
    match name {
        None => Ok(None),
        Some(n) => crate::profile::load(n).map(Some).map_err(|e| {
            eprintln!("capjail: error: profile: {e}");
            exit::POLICY
        }),
    }
}
