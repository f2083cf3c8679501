//! The kernel layer from the command line: the confinement hook for `run`, `capjail doctor`,
//! `capjail policy explain`.

use std::path::Path;

use crate::exit;
use crate::policy::Policy;
use crate::proxy::CommandHook;
use crate::sandbox::Mode;

/// The confinement hook, what the kernel enforces, and the egress point when it applies.
pub(crate) type Confinement = (
    Option<CommandHook>,
    String,
    Option<crate::egress::launch::EgressStart>,
);

/// The hook that confines the server, and what the kernel enforces (for the log and the audit).
/// `Ok(None)`: `--dry-run` printed the plan.
#[cfg(target_os = "linux")]
pub(crate) fn confinement(
    policy: &Policy,
    argv: &[String],
    cwd: &Path,
    mode: Mode,
    require: bool,
    dry_run: bool,
) -> Result<Option<Confinement>, i32> {
    use crate::sandbox::{apply_to, plan, prepare, HostFacts, Overall};
    if !mode.uses_kernel() {
        if dry_run {
            println!(
                "--mode proxy: no kernel confinement; the proxy checks every message against `{}`",
                policy.name
            );
            return Ok(None);
        }
        return Ok(Some((None, "not requested (--mode proxy)".into(), None)));
    }
    if let Some(why) = crate::sandbox::world::launchers::refused(argv) {
        eprintln!("capjail: {why}");
        return Err(exit::USAGE);
    }
    if !dry_run {
        start_world(policy, argv);
    }
    let mut plan = plan(policy, argv, &HostFacts::gather(argv));
    // network: allowlist -> the server's own network namespace behind the egress point.
    let egress = match crate::egress::launch::shape_plan(policy, &mut plan) {
        Ok(true) => Some(crate::egress::launch::EgressStart::new(policy)),
        Ok(false) => None,
        Err(why) => {
            if require {
                eprintln!(
                    "capjail: --require-kernel: no network namespace for the egress point: {why}"
                );
                return Err(exit::KERNEL_REQUIRED);
            }
            tracing::warn!(
                "no network namespace for the egress point ({why}); fallback: {}",
                crate::egress::launch::FALLBACK
            );
            None
        }
    };
    if dry_run {
        print!("{plan}");
        return Ok(None);
    }
    // The plan goes to an early setup process from `prepare` on (with this directory).
    crate::sandbox::world::launch::set_server_cwd(cwd);
    let prepared = prepare(plan, require).map_err(|e| {
        eprintln!("capjail: error: {e}");
        exit::KERNEL_REQUIRED
    })?;
    let world = &prepared.plan.world;
    if !world.enabled || egress.is_some() {
        // An early setup process has no use (no world, or one behind the egress point).
        crate::sandbox::world::launch::discard_early();
    }
    let summary = if world.enabled {
        format!(
            "{}; world: namespaces {} (fresh root of {} binds)",
            prepared.enforcement.summary(),
            world.namespaces(),
            world.binds.len()
        )
    } else {
        format!(
            "{}; world: NONE, host's filesystem/processes/IPC visible ({})",
            prepared.enforcement.summary(),
            world.notes.join("; ")
        )
    };
    match prepared.enforcement.overall() {
        Overall::Full => tracing::info!("kernel confinement: {summary}"),
        _ => {
            tracing::warn!("kernel confinement incomplete: {summary}");
            for g in prepared.enforcement.gaps() {
                tracing::warn!("  not enforced: {g}");
            }
        }
    }
    let in_world = prepared.plan.world.enabled;
    let hook_egress = egress.as_ref().map(|e| e.share());
    let hook: CommandHook = Box::new(move |cmd| {
        // Without the world's PID namespace, a watcher ends the server's tree if capjail dies:
        // its fork is the first step, everything below runs in the server.
        if !in_world {
            crate::sandbox::watcher::install(cmd)?;
        }
        // Without the world, the namespace step runs before the confinement drops privileges;
        // with it, the world's setup process (which `apply_to` puts in place) makes the listener.
        if let (Some(e), false) = (&hook_egress, in_world) {
            crate::egress::launch::install(cmd, false, e)?;
        }
        apply_to(&prepared, cmd);
        if let (Some(e), true) = (&hook_egress, in_world) {
            crate::egress::launch::install(cmd, true, e)?;
        }
        Ok(())
    });
    Ok(Some((Some(hook), summary, egress)))
}

/// Start what the server's world needs ahead of the plan, as soon as the policy is read (the
/// startup path: `capjail run` calls it before anything else, [`confinement`] again; a second
/// call does nothing). The namespace probe runs while the host is read and the plan is built.
/// With `network: none` (the whole world: mount, pid, ipc, uts, net), the setup process itself
/// starts now and makes the namespaces and the root's scaffold meanwhile (its answer is the
/// probe's); it gets the plan as soon as there is one.
#[cfg(target_os = "linux")]
pub(crate) fn start_world(policy: &Policy, argv: &[String]) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| start_world_now(policy, argv));
}

#[cfg(target_os = "linux")]
fn start_world_now(policy: &Policy, argv: &[String]) {
    use crate::sandbox::world::launch;
    let world_wanted = policy.filesystem.mounts.is_some() && policy.kernel.namespaces;
    if !world_wanted || crate::sandbox::world::launchers::refused(argv).is_some() {
        return;
    }
    let user = nix::unistd::getuid().as_raw() != 0;
    let early = policy.network.mode == crate::policy::schema::NetworkMode::None
        && launch::start_early(
            user,
            &crate::sandbox::env::filter_env(
                &std::env::vars().collect::<Vec<_>>(),
                &policy.environment,
            )
            .values,
        );
    if !early {
        launch::start_probe(user);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn confinement(
    policy: &Policy,
    _argv: &[String],
    _cwd: &Path,
    _mode: Mode,
    _require: bool,
    dry_run: bool,
) -> Result<Option<Confinement>, i32> {
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
        None,
    )))
}

pub(crate) fn doctor(policy: Option<&str>, workspace: Option<&Path>) -> i32 {
    let policy = match policy.map(|p| super::load_named(p, workspace)) {
        Some(Ok(p)) => Some(p),
        Some(Err(code)) => return code,
        None => None,
    };
    print!("{}", crate::sandbox::doctor_report(policy.as_ref()));
    #[cfg(target_os = "linux")]
    print!("{}", crate::egress::launch::doctor_text(policy.as_ref()));
    0
}

pub(crate) fn explain(policy: &str, workspace: Option<&Path>, json: bool, argv: &[String]) -> i32 {
    let policy = match super::load_named(policy, workspace) {
        Ok(p) => p,
        Err(code) => return code,
    };
    #[cfg(target_os = "linux")]
    {
        use crate::sandbox::{plan, HostFacts};
        let mut plan = plan(&policy, argv, &HostFacts::gather(argv));
        let _ = crate::egress::launch::shape_plan(&policy, &mut plan);
        if json {
            let v = serde_json::json!({
                "proxy": crate::policy::proxy_rules::json(&policy),
                "kernel": plan,
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&v).expect("a plan serialises")
            );
        } else {
            print!("{}", crate::policy::proxy_rules::text(&policy));
            println!();
            println!("KERNEL LAYER (--mode kernel / full):");
            print!("{plan}");
        }
        0
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (json, argv);
        print!("{}", crate::policy::proxy_rules::text(&policy));
        println!("no kernel layer on this system");
        0
    }
}
