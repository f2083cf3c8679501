//! The server's world, PURE: which Linux namespaces the sandbox uses and what its fresh root
//! holds. Built from the same [`super::super::plan::SandboxPlan`] rules as Landlock, so the
//! two walls agree: a path the policy does not grant does not exist in the world, and Landlock
//! refuses it a second time.
//!
//! What the root holds (everything else does not exist):
//! - every filesystem rule of the plan as a bind mount, read-only unless the rule writes;
//! - the symlinks on the way to them (`/bin -> usr/bin`, `/usr/bin/npx -> ...`), so an
//!   invoked path resolves as on the host;
//! - parent directories of each mount as empty directories (a read-only tmpfs);
//! - `/dev` with null, zero, full, random, urandom and a private `/dev/shm`, nothing else;
//! - `/proc` of the sandbox's own PID namespace (only its processes);
//! - a private `/tmp` (tmpfs) unless a rule grants the real one;
//! - `$HOME` as an empty read-only directory unless a rule grants something under it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::super::plan::{FsAccess, FsRule, RuleOrigin};

/// One bind mount of the world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WorldBind {
    pub(crate) path: PathBuf,
    /// Read-write (else read-only).
    pub(crate) writable: bool,
    /// Copy-on-write over the host's directory: the server reads it, its writes go to a
    /// private per-session layer that nothing outside the sandbox ever uses (package caches).
    #[serde(default)]
    pub(crate) overlay: bool,
    pub(crate) reason: String,
}

/// Which namespaces the sandbox uses and what its root holds.
///
/// `enabled == false`: no namespace at all (policy `kernel.namespaces: false`, `filesystem`
/// not restricted, or the machine cannot create them; `prepare` then clears every flag):
/// the server runs with Landlock + seccomp only, in the host's world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct WorldPlan {
    pub(crate) enabled: bool,
    /// A mount namespace with a fresh root holding only `binds`.
    pub(crate) mount: bool,
    /// A PID namespace with capjail's init as PID 1 (reaps; its end kills every process).
    pub(crate) pid: bool,
    pub(crate) ipc: bool,
    pub(crate) uts: bool,
    /// A network namespace with loopback only (`network: none`).
    pub(crate) net: bool,
    /// A user namespace (capjail is not root).
    pub(crate) user: bool,
    pub(crate) binds: Vec<WorldBind>,
    /// `/tmp` is a private tmpfs (no rule grants the real `/tmp`).
    pub(crate) private_tmp: bool,
    /// An empty read-only `$HOME` is created (no rule grants anything under it).
    pub(crate) empty_home: Option<PathBuf>,
    pub(crate) notes: Vec<String>,
}

impl WorldPlan {
    /// No namespaces: the host's world with Landlock + seccomp on top.
    pub(crate) fn disabled(note: impl Into<String>) -> WorldPlan {
        WorldPlan {
            notes: vec![note.into()],
            ..Default::default()
        }
    }

    /// The namespaces in use, for messages (`mount,pid,ipc,uts,net,user`).
    pub(crate) fn namespaces(&self) -> String {
        let mut v = Vec::new();
        for (on, n) in [
            (self.mount, "mount"),
            (self.pid, "pid"),
            (self.ipc, "ipc"),
            (self.uts, "uts"),
            (self.net, "net"),
            (self.user, "user"),
        ] {
            if on {
                v.push(n);
            }
        }
        v.join(",")
    }
}

impl std::fmt::Display for WorldPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.enabled {
            writeln!(f, "  world: the host's (no namespaces)")?;
            for n in &self.notes {
                writeln!(f, "    - {n}")?;
            }
            return Ok(());
        }
        writeln!(
            f,
            "  world: namespaces {} (PID 1 is capjail's init: nothing outlives it); a fresh root holding only:",
            self.namespaces()
        )?;
        let w = self
            .binds
            .iter()
            .map(|b| b.path.as_os_str().len())
            .max()
            .unwrap_or(0)
            .min(60);
        for b in &self.binds {
            writeln!(
                f,
                "    {:<w$}  {:<4} {}",
                b.path.display(),
                if b.overlay {
                    "cow"
                } else if b.writable {
                    "rw"
                } else {
                    "ro"
                },
                b.reason,
                w = w
            )?;
        }
        writeln!(
            f,
            "    {:<w$}  {:<4} null zero full random urandom, private /dev/shm (no tty)",
            "/dev",
            "",
            w = w
        )?;
        writeln!(
            f,
            "    {:<w$}  {:<4} the sandbox's own processes only",
            "/proc",
            "",
            w = w
        )?;
        if self.private_tmp {
            writeln!(f, "    {:<w$}  {:<4} private tmpfs", "/tmp", "rw", w = w)?;
        }
        if let Some(h) = &self.empty_home {
            writeln!(
                f,
                "    {:<w$}  {:<4} empty (HOME)",
                h.display(),
                "ro",
                w = w
            )?;
        }
        writeln!(f, "    parent directories of these exist empty; nothing else exists (no sockets, caches, homes)")?;
        for n in &self.notes {
            writeln!(f, "    - {n}")?;
        }
        Ok(())
    }
}

/// The reason of the plan's package-cache rules (npx): they become private overlays.
pub(crate) const PACKAGE_CACHE_REASON: &str = "npx package cache";
/// Every package cache's reason prefix (npx, uv, pipx): each becomes a private overlay.
pub(crate) const PACKAGE_CACHE_REASONS: &[&str] = &[
    PACKAGE_CACHE_REASON,
    super::super::pylaunch::UV_CACHE_REASON,
    super::super::pylaunch::PIPX_CACHE_REASON,
];

/// Is this rule (by its reason) a package cache?
pub(crate) fn is_package_cache(reason: &str) -> bool {
    PACKAGE_CACHE_REASONS.iter().any(|p| reason.starts_with(p))
}

/// Inputs besides the rules (kept small so the function stays pure and testable).
#[derive(Debug, Clone, Default)]
pub(crate) struct WorldInputs<'a> {
    /// `kernel.namespaces` of the policy (default true).
    pub(crate) wanted: bool,
    pub(crate) uid: u32,
    pub(crate) network_none: bool,
    pub(crate) home: Option<&'a Path>,
    /// Paths that are invoked (argv[0] as found on PATH, shebang interpreters as written):
    /// their symlinks must exist in the world.
    pub(crate) invoked: Vec<PathBuf>,
}

/// Build the world from the plan's rules. `rules == None` (filesystem not restricted): no
/// world, the server needs the host's.
pub(crate) fn world_plan(rules: Option<&[FsRule]>, inp: &WorldInputs) -> WorldPlan {
    if !inp.wanted {
        return WorldPlan::disabled(
            "kernel.namespaces: false: no namespaces (Landlock and seccomp only, in the host's world)",
        );
    }
    let Some(rules) = rules else {
        return WorldPlan::disabled(
            "filesystem not restricted by the policy: the server keeps the host's world (no namespaces)",
        );
    };
    let mut binds: Vec<WorldBind> = Vec::new();
    for r in rules {
        if r.child_resolved || matches!(r.origin, RuleOrigin::Proc | RuleOrigin::Device) {
            continue; // /proc and /dev are the world's own
        }
        if r.path.starts_with("/proc") || r.path.starts_with("/dev") {
            continue;
        }
        let writable = r.access.contains(FsAccess::WRITE_FILE);
        add_bind(&mut binds, &r.path, writable, &r.reason);
        if is_package_cache(&r.reason) {
            if let Some(b) = binds.iter_mut().find(|b| b.path == r.path) {
                b.overlay = true;
                b.reason = format!(
                    "{} -- private copy-on-write layer: the server's writes never reach the host's cache",
                    r.reason
                );
            }
        }
    }
    for p in &inp.invoked {
        add_bind(&mut binds, p, false, "invoked path (its symlinks)");
    }
    // Parents before children: a child bind is mounted on top of its parent's.
    binds.sort_by(|a, b| {
        a.path
            .components()
            .count()
            .cmp(&b.path.components().count())
            .then(a.path.cmp(&b.path))
    });
    // A bind inside a bind of the same mode adds nothing.
    let mut kept: Vec<WorldBind> = Vec::new();
    for b in binds {
        let covered = kept
            .iter()
            .rev()
            .find(|k| b.path.starts_with(&k.path))
            .is_some_and(|k| k.writable == b.writable);
        if !covered {
            kept.push(b);
        }
    }
    let private_tmp = !kept.iter().any(|b| Path::new("/tmp").starts_with(&b.path));
    let empty_home = inp
        .home
        .filter(|h| *h != Path::new("/") && !kept.iter().any(|b| h.starts_with(&b.path)))
        .map(Path::to_path_buf);
    let mut notes = Vec::new();
    if !inp.network_none {
        notes.push("network is not `none`: the server shares the host's network namespace (Landlock port rules bound TCP; its own egress point comes later)".into());
    }
    WorldPlan {
        enabled: true,
        mount: true,
        pid: true,
        ipc: true,
        uts: true,
        net: inp.network_none,
        user: inp.uid != 0,
        binds: kept,
        private_tmp,
        empty_home,
        notes,
    }
}

fn add_bind(binds: &mut Vec<WorldBind>, path: &Path, writable: bool, reason: &str) {
    if !path.is_absolute() || path == Path::new("/") {
        return;
    }
    if let Some(b) = binds.iter_mut().find(|b| b.path == path) {
        b.writable |= writable;
        return;
    }
    binds.push(WorldBind {
        path: path.to_path_buf(),
        writable,
        overlay: false,
        reason: reason.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: &str, access: FsAccess, origin: RuleOrigin) -> FsRule {
        FsRule {
            path: p.into(),
            access,
            origin,
            reason: format!("r {p}"),
            child_resolved: false,
        }
    }

    fn inputs() -> WorldInputs<'static> {
        WorldInputs {
            wanted: true,
            uid: 1000,
            network_none: true,
            home: Some(Path::new("/home/u")),
            invoked: vec!["/usr/bin/npx".into()],
        }
    }

    #[test]
    fn binds_follow_rules_and_skip_proc_dev() {
        let rules = vec![
            r("/work/ws", FsAccess::all(), RuleOrigin::Mount),
            r("/work/ws/.git", FsAccess::read_exec(), RuleOrigin::Mount),
            r("/usr/lib", FsAccess::read_exec(), RuleOrigin::Runtime),
            r(
                "/usr/lib/x/y.so",
                FsAccess::read_exec(),
                RuleOrigin::Runtime,
            ),
            r("/dev/null", FsAccess::read(), RuleOrigin::Device),
            r("/proc/stat", FsAccess::read(), RuleOrigin::Runtime),
        ];
        let w = world_plan(Some(&rules), &inputs());
        assert!(w.enabled && w.mount && w.pid && w.ipc && w.uts && w.net && w.user);
        let paths: Vec<_> = w.binds.iter().map(|b| b.path.to_str().unwrap()).collect();
        assert_eq!(
            paths,
            vec!["/usr/lib", "/work/ws", "/usr/bin/npx", "/work/ws/.git"]
        );
        assert!(w.binds[1].writable && !w.binds[3].writable);
        assert!(w.private_tmp);
        assert_eq!(w.empty_home.as_deref(), Some(Path::new("/home/u")));
        assert_eq!(w.namespaces(), "mount,pid,ipc,uts,net,user");
    }

    #[test]
    fn tmp_and_home_granted_and_root_and_allowlist() {
        let rules = vec![
            r("/tmp", FsAccess::all(), RuleOrigin::Mount),
            r("/home/u/.npm", FsAccess::all(), RuleOrigin::Runtime),
        ];
        let mut i = inputs();
        i.uid = 0;
        i.network_none = false;
        let w = world_plan(Some(&rules), &i);
        assert!(!w.private_tmp && !w.user && !w.net);
        // HOME itself is not granted, something under it is: the parents are made as dirs.
        assert!(w.empty_home.is_some());
        assert!(w.notes.iter().any(|n| n.contains("host's network")));
    }

    #[test]
    fn disabled_by_policy_or_unrestricted_fs() {
        let mut i = inputs();
        i.wanted = false;
        assert!(!world_plan(Some(&[]), &i).enabled);
        assert!(!world_plan(None, &inputs()).enabled);
        assert_eq!(world_plan(None, &inputs()).namespaces(), "");
    }
}
