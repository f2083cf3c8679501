//! Putting the egress point in front of a server (Linux): which route the server gets, the
//! plan changes that go with it, and starting the egress point once the server's namespace
//! handed out its listener.
//!
//! Route under `network: allowlist` in kernel/full mode, when this machine can make a network
//! namespace: the server's own network namespace (the world's, or a bare one when the world is
//! off), whose only way out is `127.0.0.1:EGRESS_PORT` = the egress point; Landlock lets TCP
//! connect reach that one port only; `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` point at it.
//! Otherwise (the fallback, weaker): the host's network with Landlock's TCP port rules — any
//! host on an allowed port, and UDP, are not checked by the kernel.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::netns::{self, Pending, EGRESS_PORT};
use super::{Egress, Listener};
use crate::policy::{NetworkMode, NetworkPolicy, Policy};
use crate::proxy::recorder::SharedRecorder;
use crate::sandbox::SandboxPlan;

/// What `doctor` and `policy explain` say about the fallback.
pub(crate) const FALLBACK: &str = "Landlock TCP connect rules by PORT only (any host on an allowed port is reachable, UDP is not governed, names are resolved by the server): weaker than the egress point";

/// Whether the egress route applies to this policy here: `Ok(true)` yes, `Ok(false)` not
/// needed (network is not `allowlist`), `Err(why)` wanted but unavailable (fallback).
pub(crate) fn route(policy: &Policy) -> Result<bool, String> {
    if policy.network.mode != NetworkMode::Allowlist {
        return Ok(false);
    }
    netns::available().map(|()| true)
}

/// The plan for the egress route: the server's network namespace (the world's when it has
/// one), TCP connect to the egress port only, the proxy variables. Pure.
pub(crate) fn adjust_plan(plan: &mut SandboxPlan) {
    plan.net.tcp_connect_ports = vec![EGRESS_PORT];
    plan.net
        .notes
        .retain(|n| !n.contains("reachable as far as the kernel"));
    plan.net.notes.push(format!(
        "egress point: the server has its own network namespace (loopback only, no resolver); its only way out is 127.0.0.1:{EGRESS_PORT}, capjail's HTTP/CONNECT egress point, which checks every connection's host against network.allowed_hosts, resolves it itself and checks every address (TLS is not inspected); Landlock allows TCP connect to port {EGRESS_PORT} only"
    ));
    if plan.world.enabled {
        plan.world.net = true;
        plan.world
            .notes
            .retain(|n| !n.contains("shares the host's network namespace"));
        plan.world.notes.push(format!(
            "network: its own namespace (loopback only); the way out is the egress point on 127.0.0.1:{EGRESS_PORT}"
        ));
    }
    let url = netns::proxy_url();
    for (k, v) in super::proxy_env(&url) {
        plan.env.values.retain(|(n, _)| *n != k);
        plan.env.values.push((k.clone(), v));
        if !plan.env.passed.contains(&k) {
            plan.env.passed.push(k);
        }
    }
    plan.env.passed.sort();
}

/// The egress point waiting for its listener.
pub(crate) struct EgressStart {
    slot: Arc<Mutex<Option<Pending>>>,
    policy: NetworkPolicy,
    content: Option<Arc<super::content::OutgoingCheck>>,
}

/// Install the hand-over on the server's command. `world` says whether `cmd` was replaced by
/// the world's setup process (call AFTER `apply_to` then) or not (call BEFORE `apply_to`: the
/// namespace step needs the privileges the confinement drops).
pub(crate) fn install(cmd: &mut Command, world: bool, start: &EgressStart) -> std::io::Result<()> {
    let pending = if world {
        netns::attach_to_setup(cmd)?
    } else {
        netns::install(cmd)?
    };
    *start.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(pending);
    Ok(())
}

impl EgressStart {
    pub(crate) fn new(policy: &Policy) -> EgressStart {
        EgressStart {
            slot: Arc::new(Mutex::new(None)),
            policy: policy.network.clone(),
            content: super::content::OutgoingCheck::new(policy).map(Arc::new),
        }
    }

    /// A second handle on the same slot (one for the hook, one for `run`).
    pub(crate) fn share(&self) -> EgressStart {
        EgressStart {
            slot: self.slot.clone(),
            policy: self.policy.clone(),
            content: self.content.clone(),
        }
    }

    /// After the server was spawned (and its command dropped): receive the listener and serve.
    pub(crate) fn start(self, recorder: SharedRecorder) -> std::io::Result<()> {
        let pending = self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| std::io::Error::other("the egress hand-over was not installed"))?;
        let listener = pending.receive(Duration::from_secs(30))?;
        let egress = Egress {
            content: self.content,
            ..Egress::new(self.policy, Some(recorder))
        };
        super::spawn(Listener::Tcp(listener), egress)?;
        tracing::info!(
            "egress point serving the server's namespace on 127.0.0.1:{EGRESS_PORT} (its only way out)"
        );
        Ok(())
    }
}

/// The plan as it will run: the egress route when it applies here, else the fallback stated in
/// the plan's network notes. Returns the route's answer (see [`route`]).
pub(crate) fn shape_plan(policy: &Policy, plan: &mut SandboxPlan) -> Result<bool, String> {
    let r = route(policy);
    match &r {
        Ok(true) => adjust_plan(plan),
        Ok(false) => {}
        Err(why) => plan
            .net
            .notes
            .push(format!("no egress point ({why}); fallback: {FALLBACK}")),
    }
    r
}

/// `capjail doctor`'s egress section.
pub(crate) fn doctor_text(policy: Option<&Policy>) -> String {
    let mut out = String::from("egress point (network: allowlist in kernel/full mode):\n");
    match netns::available() {
        Ok(()) => out.push_str(&format!(
            "  available: the server gets its own network namespace; its only way out is capjail's HTTP/CONNECT egress point on 127.0.0.1:{EGRESS_PORT} inside it (hosts and every resolved address checked; TLS not inspected)\n"
        )),
        Err(why) => out.push_str(&format!(
            "  NOT available here: {why}\n  fallback: {FALLBACK}\n"
        )),
    }
    if let Some(p) = policy {
        let line = match route(p) {
            Ok(true) => format!("policy `{}`: egress point in force", p.name),
            Ok(false) => format!(
                "policy `{}`: network `{:?}`: no egress point needed",
                p.name, p.network.mode
            )
            .to_lowercase(),
            Err(_) => format!("policy `{}`: fallback (weaker)", p.name),
        };
        out.push_str(&format!("  {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};
    use crate::sandbox::{plan, HostFacts};

    #[test]
    fn the_egress_plan_allows_one_port_and_points_the_server_at_it() {
        let policy = load_str(
            "name: t\nfilesystem:\n  mode: explicit\n  mounts: []\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"api.example.com:8443\", \"*.github.com\"]\n",
            PolicySource::Inline,
        )
        .unwrap();
        let argv = vec!["python3".to_string()];
        let mut p = plan(&policy, &argv, &HostFacts::gather(&argv));
        let world_before = p.world.enabled;
        adjust_plan(&mut p);
        assert_eq!(p.net.tcp_connect_ports, vec![EGRESS_PORT]);
        assert_eq!(
            p.world.net, world_before,
            "the world gets a network namespace"
        );
        let env: std::collections::HashMap<_, _> = p.env.values.iter().cloned().collect();
        for k in ["HTTP_PROXY", "https_proxy", "ALL_PROXY"] {
            assert_eq!(env[k], "http://127.0.0.1:3128", "{k}");
        }
        assert_eq!(env["NO_PROXY"], "");
        assert!(p.net.notes.iter().any(|n| n.contains("egress point")));
    }
}
