//! `capjail run`.

use std::sync::Arc;

use capjail::exit;
use capjail::proxy::{run as run_proxy, RunConfig, RunError, SpawnError};

use crate::cli::{Mode, RunArgs};

pub fn run(args: RunArgs) -> i32 {
    let mut policy = match super::load_policy(&args.policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Some(n) = args.max_line_bytes {
        policy.limits.max_line_bytes = n;
    }
    let forced_profile = match super::load_profile(args.policy.profile.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let cwd = match args.cwd.clone().map(Ok).unwrap_or_else(std::env::current_dir) {
        Ok(c) => std::path::absolute(c).unwrap_or_default(),
        Err(e) => {
            eprintln!("capjail: cannot determine the working directory: {e}");
            return exit::INTERNAL;
        }
    };
    let filter = match args.mode {
        Mode::Proxy | Mode::Full => true,
        Mode::Kernel => false,
    };
    if args.mode != Mode::Proxy {
        eprintln!("capjail: --mode {:?} needs the kernel layer, which this build does not have yet; use --mode proxy", args.mode);
        return exit::KERNEL_REQUIRED;
    }
    let audit = match capjail::audit::resolve_location(args.audit.as_deref(), &policy) {
        Ok(Some(path)) => match capjail::audit::AuditLog::open_for_policy(&path, &policy) {
            Ok(log) => Some(log),
            Err(e) => {
                eprintln!("capjail: {e}");
                return exit::AUDIT;
            }
        },
        Ok(None) => None,
        Err(e) => {
            eprintln!("capjail: {e}");
            return exit::AUDIT;
        }
    };
    let cfg = RunConfig {
        policy: Arc::new(policy),
        argv: args.command,
        forced_profile,
        cwd,
        filter,
        confine: None,
        audit,
        mode_label: format!("{:?}", args.mode).to_lowercase(),
        kernel_label: "not enforced (proxy mode)".into(),
    };
    match run_proxy(cfg) {
        Ok(code) => code,
        Err(RunError::Spawn(e)) => {
            eprintln!("capjail: {e}");
            match e {
                SpawnError::NotFound(_) => exit::NOT_FOUND,
                SpawnError::CannotExecute(..) => exit::CANNOT_EXECUTE,
                SpawnError::Other(..) => exit::CANNOT_EXECUTE,
            }
        }
        Err(RunError::Audit(e)) => {
            eprintln!("capjail: audit log: {e}");
            exit::AUDIT
        }
        Err(e) => {
            eprintln!("capjail: {e}");
            exit::INTERNAL
        }
    }
}
