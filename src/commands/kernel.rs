//! The kernel layer from the command line: the confinement hook for `run`, `capjail doctor`,
//! `capjail policy explain`.

use std::path::Path;

use capjail::exit;
use capjail::policy::Policy;
use capjail::proxy::CommandHook;
use capjail::sandbox::Mode;

/// The hook that confines the server, and what the kernel enforces (for the log and the audit).
/// `Ok(None)`: `--dry-run` printed the plan.
#[cfg(target_os = "linux")]
pub fn confinement(
    policy: &Policy,
    argv: &[String],
    mode: Mode,
    require: bool,
    dry_run: bool,
) -> Result<Option<(Option<CommandHook>, String)>, i32> {
    use capjail::sandbox::{apply_to, plan, prepare, HostFacts};
    if !mode.uses_kernel() {
        if dry_run {
            println!(
                "--mode proxy: no kernel confinement; the proxy checks every message against `{}`",
                policy.name
            );
            return Ok(None);
        }
        return Ok(Some((None, "not requested (--mode proxy)".into())));
    }
    let plan = plan(policy, argv, &HostFacts::gather(argv));
    if dry_run {
        print!("{plan}");
        return Ok(None);
    }
    let prepared = prepare(plan, require).map_err(|e| {
        eprintln!("capjail: error: {e}");
        exit::KERNEL_REQUIRED
    })?;
    // `prepare` has logged the confinement line (once); the summary goes to the audit log.
    let summary = prepared.enforcement.summary();
    let hook: CommandHook = Box::new(move |cmd| {
        apply_to(&prepared, cmd);
        Ok(())
    });
    Ok(Some((Some(hook), summary)))
}

#[cfg(not(target_os = "linux"))]
pub fn confinement(
    policy: &Policy,
    _argv: &[String],
    _mode: Mode,
    _require: bool,
    dry_run: bool,
) -> Result<Option<(Option<CommandHook>, String)>, i32> {
    if dry_run {
        println!(
            "no kernel layer on this system; the proxy checks every message against `{}`",
            policy.name
        );
        return Ok(None);
    }
    Ok(Some((
        None,
        "unavailable on this system (proxy only)".into(),
    )))
}

pub fn doctor(policy: Option<&str>, workspace: Option<&Path>) -> i32 {
    if let Err(code) = super::set_workspace(workspace) {
        return code;
    }
    let policy = match policy.map(capjail::policy::load) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => return super::report_policy_error(&e),
        None => None,
    };
    print!("{}", capjail::sandbox::doctor_report(policy.as_ref()));
    0
}

pub fn explain(policy: &str, workspace: Option<&Path>, json: bool, argv: &[String]) -> i32 {
    if let Err(code) = super::set_workspace(workspace) {
        return code;
    }
    let policy = match capjail::policy::load(policy) {
        Ok(p) => p,
        Err(e) => return super::report_policy_error(&e),
    };
    #[cfg(target_os = "linux")]
    {
        use capjail::sandbox::{plan, HostFacts};
        let plan = plan(&policy, argv, &HostFacts::gather(argv));
        if json {
            let v = serde_json::json!({
                "proxy": capjail::policy::proxy_rules::json(&policy),
                "kernel": plan,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&v).expect("a plan serialises")
            );
        } else {
            print!("{}", capjail::policy::proxy_rules::text(&policy));
            println!();
            println!("KERNEL LAYER (--mode kernel / full):");
            print!("{plan}");
        }
        0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (json, argv);
        print!("{}", capjail::policy::proxy_rules::text(&policy));
        println!("no kernel layer on this system");
        0
    }
}
