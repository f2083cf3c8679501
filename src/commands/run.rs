//! `capjail run`.

use std::sync::Arc;

use crate::exit;
use crate::proxy::{run as run_proxy, RunConfig, RunError, SpawnError};

use crate::cli::{Mode, RunArgs};

pub(crate) fn run(args: RunArgs) -> i32 {
    let mut policy = match super::load_policy(&args.policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Some(n) = args.max_line_bytes {
        policy.limits.max_line_bytes = n;
    }
    // The server's world is started first (its namespaces and scaffold are made while the
    // rest of capjail's start runs).
    #[cfg(target_os = "linux")]
    if Mode::from(args.mode).uses_kernel() && !args.dry_run {
        super::kernel::start_world(&policy, &args.command);
    }
    // The built-in profiles (the session picks one by the command line before the server
    // starts) are parsed now, while the world's namespaces are being made.
    crate::profile::builtin_profiles();
    let forced_profile = match super::load_profile(args.policy.profile.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let cwd = match args
        .cwd
        .clone()
        .map(Ok)
        .unwrap_or_else(std::env::current_dir)
    {
        Ok(c) => std::path::absolute(c).unwrap_or_default(),
        Err(e) => {
            eprintln!("capjail: error: cannot determine the working directory: {e}");
            return exit::INTERNAL;
        }
    };
    for dir in crate::policy::grants::dirs_outside_mounts(&args.command, &cwd, &policy) {
        tracing::warn!("{}", crate::policy::grants::warning(&dir, &policy));
    }
    let mut mode = Mode::from(args.mode);
    if mode.uses_kernel() && !crate::sandbox::KERNEL_LAYER_AVAILABLE {
        if args.require_kernel {
            eprintln!("capjail: error: --require-kernel: kernel confinement exists only on Linux");
            return exit::KERNEL_REQUIRED;
        }
        tracing::warn!("kernel confinement exists only on Linux: running proxy-only");
        mode = Mode::Proxy;
    }
    let (confine, kernel_label, egress) = match super::kernel::confinement(
        &policy,
        &args.command,
        &cwd,
        mode,
        args.require_kernel,
        args.dry_run,
    ) {
        Ok(Some(c)) => c,
        Ok(None) => return 0, // --dry-run printed the plan
        Err(code) => return code,
    };
    let audit = match crate::audit::resolve_location(args.audit.as_deref(), &policy) {
        Ok(Some(path)) => match crate::audit::AuditLog::open_for_policy(&path, &policy) {
            Ok(log) => Some(log),
            Err(e) => {
                eprintln!("capjail: error: {e}");
                return exit::AUDIT;
            }
        },
        Ok(None) => None,
        Err(e) => {
            eprintln!("capjail: error: {e}");
            return exit::AUDIT;
        }
    };
    let pins = match crate::trust::location::resolve(
        args.pins.as_deref(),
        args.pins_frozen,
        &policy.trust,
        &|k| std::env::var(k).ok(),
        &std::env::current_dir().unwrap_or_default(),
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("capjail: {e}");
            return exit::USAGE;
        }
    };
    // The same environment allowlist as the kernel layer, in every mode.
    let host_env: Vec<(String, String)> = std::env::vars().collect();
    let env = crate::sandbox::env::filter_env(&host_env, &policy.environment);
    let cfg = RunConfig {
        pins,
        env: Some(env.values),
        policy: Arc::new(policy),
        argv: args.command,
        forced_profile,
        cwd,
        filter: mode.uses_proxy(),
        confine,
        audit,
        mode_label: format!("{mode:?}").to_lowercase(),
        kernel_label,
        egress,
    };
    match run_proxy(cfg) {
        Ok(code) => code,
        Err(RunError::Spawn(e)) => {
            eprintln!("capjail: error: {e}");
            match e {
                SpawnError::NotFound(_) => exit::NOT_FOUND,
                SpawnError::CannotExecute(..) => exit::CANNOT_EXECUTE,
                SpawnError::Other(..) => exit::CANNOT_EXECUTE,
            }
        }
        Err(RunError::Audit(e)) => {
            eprintln!("capjail: error: audit log: {e}");
            exit::AUDIT
        }
        Err(e) => {
            eprintln!("capjail: error: {e}");
            exit::INTERNAL
        }
    }
}
