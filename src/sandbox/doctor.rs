//! `capjail doctor`: what this machine's kernel offers, and what a policy would get here.

use std::fmt::Write;

use super::enforcement::{Enforcement, KernelFeatures};
use super::facts::HostFacts;
use super::plan::plan;
use crate::policy::Policy;

/// What each Landlock ABI adds.
pub(crate) const LANDLOCK_ABIS: &[(u32, &str)] = &[
    (
        1,
        "filesystem access control (read, write, execute, create, remove)",
    ),
    (2, "refer: renaming and linking across directories"),
    (3, "truncate: truncate(2) and O_TRUNC"),
    (4, "TCP bind and connect by port"),
    (5, "ioctl_dev: ioctl on character and block devices"),
    (
        6,
        "scopes: abstract unix sockets and signals confined to the sandbox",
    ),
    (7, "audit: logging flags for restrict_self"),
];

pub fn doctor_report(policy: Option<&Policy>) -> String {
    let f = KernelFeatures::detect();
    let mut out = String::new();
    let _ = writeln!(out, "kernel: {}", f.release);
    match &f.landlock {
        Ok(abi) => {
            let _ = writeln!(out, "landlock: ABI {abi}");
            for (v, what) in LANDLOCK_ABIS {
                let mark = if v <= abi { "yes" } else { "NO " };
                let _ = writeln!(out, "  [{mark}] ABI {v}: {what}");
            }
        }
        Err(e) => {
            let _ = writeln!(out, "landlock: unavailable ({e})");
        }
    }
    match &f.seccomp {
        Ok(()) => {
            let _ = writeln!(
                out,
                "seccomp: filter mode available (x86_64: {})",
                cfg!(target_arch = "x86_64")
            );
        }
        Err(e) => {
            let _ = writeln!(out, "seccomp: {e}");
        }
    }
    let _ = writeln!(
        out,
        "walls without namespaces (seccomp): path-based chmod/chown/xattr and SysV IPC refused; \
         prlimit/priority/affinity only on the server itself; socket(AF_UNIX) only with network.unix_sockets. \
         Still open without a mount/PID namespace: stat and timestamps of outside paths, grandchildren that setsid()"
    );
    let _ = writeln!(
        out,
        "user: uid {}{}; capabilities: {}; CAP_SETPCAP: {}",
        f.uid,
        if f.uid == 0 {
            " (root: Landlock, not file permissions, is what keeps root-owned files from the server)"
        } else {
            ""
        },
        if f.has_caps { "some" } else { "none" },
        if f.can_setpcap {
            "yes (bounding set can be emptied)"
        } else {
            "no"
        }
    );
    let _ = writeln!(out, "{}", super::world::launch::doctor_line(f.uid));
    if let Some(p) = policy {
        let argv = vec!["node".to_string()];
        let host = HostFacts::gather(&argv);
        let sp = plan(p, &argv, &host);
        let e = Enforcement::compute(&sp, &f);
        let _ = writeln!(out, "policy `{}` here (for a `node` server):", p.name);
        let _ = writeln!(out, "  {}", e.summary());
        for g in e.gaps() {
            let _ = writeln!(out, "  not enforced: {g}");
        }
        let _ = writeln!(out, "  seccomp walls:");
        for w in &e.seccomp_walls {
            let _ = writeln!(out, "    {w}");
        }
        for line in sp.to_string().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}
