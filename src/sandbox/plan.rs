//! Policy + command + host facts -> what the kernel layer will do. PURE: no I/O, so it can be
//! unit-tested with made-up [`HostFacts`] and printed (`capjail policy explain`, `doctor`).
//!
//! Every filesystem rule carries the reason it exists. Outside of them nothing is reachable:
//! not `~/.ssh`, not `~/.aws`, not other users' files, not other processes' `/proc/<pid>`.
//!
//! ## /proc
//! A Landlock path rule is bound to the inode the path resolves to WHEN THE RULE IS ADDED.
//! `/proc/self` opened in capjail resolves to capjail's own pid directory, which is useless
//! (and wrong). The plan therefore marks `/proc/self` as [`FsRule::child_resolved`]: the child
//! opens `/proc/self` itself, between fork and exec, so the rule covers exactly the server's
//! `/proc/<pid>` (exec keeps the pid). Node (libuv reads `/proc/self/stat`, `maps`) and
//! Python (`/proc/self/fd`) need it; their own environment and memory are theirs to read.
//! Consequences, accepted: `/proc/<any other pid>` is unreachable (also `/proc/1/environ`;
//! Landlock's ptrace restriction denies it a second time), and a process the server spawns
//! cannot read ITS `/proc/self` (a different pid directory); programs treat that like a
//! hardened /proc. A few system-wide read-only files (`/proc/stat`, `/proc/cpuinfo`,
//! `/proc/meminfo`) are granted for CPU and memory queries; nothing else under /proc or /sys.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::env::{filter_env, EnvPlan};
use super::facts::{ExecKind, HostFacts};
use crate::policy::schema::{MountMode, NetworkMode};
use crate::policy::Policy;

/// Landlock filesystem access rights (the kernel's bit values; which of them a kernel knows
/// depends on its ABI, see [`super::landlock`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct FsAccess(pub u64);

impl FsAccess {
    pub(crate) const EXECUTE: u64 = 1 << 0;
    pub(crate) const WRITE_FILE: u64 = 1 << 1;
    pub(crate) const READ_FILE: u64 = 1 << 2;
    pub(crate) const READ_DIR: u64 = 1 << 3;
    pub(crate) const REMOVE_DIR: u64 = 1 << 4;
    pub(crate) const REMOVE_FILE: u64 = 1 << 5;
    pub(crate) const MAKE_CHAR: u64 = 1 << 6;
    pub(crate) const MAKE_DIR: u64 = 1 << 7;
    pub(crate) const MAKE_REG: u64 = 1 << 8;
    pub(crate) const MAKE_SOCK: u64 = 1 << 9;
    pub(crate) const MAKE_FIFO: u64 = 1 << 10;
    pub(crate) const MAKE_BLOCK: u64 = 1 << 11;
    pub(crate) const MAKE_SYM: u64 = 1 << 12;
    /// ABI 2
    pub(crate) const REFER: u64 = 1 << 13;
    /// ABI 3
    pub(crate) const TRUNCATE: u64 = 1 << 14;
    /// ABI 5
    pub(crate) const IOCTL_DEV: u64 = 1 << 15;

    pub(crate) const NAMES: &'static [(u64, &'static str)] = &[
        (Self::EXECUTE, "execute"),
        (Self::WRITE_FILE, "write_file"),
        (Self::READ_FILE, "read_file"),
        (Self::READ_DIR, "read_dir"),
        (Self::REMOVE_DIR, "remove_dir"),
        (Self::REMOVE_FILE, "remove_file"),
        (Self::MAKE_CHAR, "make_char"),
        (Self::MAKE_DIR, "make_dir"),
        (Self::MAKE_REG, "make_reg"),
        (Self::MAKE_SOCK, "make_sock"),
        (Self::MAKE_FIFO, "make_fifo"),
        (Self::MAKE_BLOCK, "make_block"),
        (Self::MAKE_SYM, "make_sym"),
        (Self::REFER, "refer"),
        (Self::TRUNCATE, "truncate"),
        (Self::IOCTL_DEV, "ioctl_dev"),
    ];

    /// Data: read files and list directories.
    pub(crate) const fn read() -> FsAccess {
        FsAccess(Self::READ_FILE | Self::READ_DIR)
    }
    /// Programs, libraries, `ro` mounts: read and execute.
    pub(crate) const fn read_exec() -> FsAccess {
        FsAccess(Self::READ_FILE | Self::READ_DIR | Self::EXECUTE)
    }
    /// `rw` mounts: everything. Block and character device creation is in the set because a
    /// handled-but-ungranted right only removes function; mknod of devices needs
    /// CAP_MKNOD, which the server does not have.
    pub(crate) const fn all() -> FsAccess {
        FsAccess((1 << 16) - 1)
    }
    /// `rw` mount without execute (`extra_write` caches that are not code).
    pub(crate) const fn read_write() -> FsAccess {
        FsAccess(Self::all().0 & !Self::EXECUTE)
    }
    /// The rights that make sense on a non-directory (the kernel refuses the others there).
    pub(crate) const FILE_RIGHTS: u64 =
        Self::EXECUTE | Self::WRITE_FILE | Self::READ_FILE | Self::TRUNCATE | Self::IOCTL_DEV;

    pub(crate) fn contains(self, bits: u64) -> bool {
        self.0 & bits == bits
    }
    pub(crate) fn names(self) -> Vec<&'static str> {
        Self::NAMES
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| *n)
            .collect()
    }
    /// `rw+x`, `rw`, `r+x`, `r`, or the list.
    pub(crate) fn short(self) -> String {
        if self == Self::all() {
            "rw+exec".into()
        } else if self == Self::read_write() {
            "rw".into()
        } else if self == Self::read_exec() {
            "read+exec".into()
        } else if self == Self::read() {
            "read".into()
        } else {
            self.names().join(",")
        }
    }
}

impl<'de> Deserialize<'de> for FsAccess {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut bits = 0;
        for n in names {
            match Self::NAMES.iter().find(|(_, name)| *name == n) {
                Some((b, _)) => bits |= b,
                None => return Err(serde::de::Error::custom(format!("unknown access {n}"))),
            }
        }
        Ok(FsAccess(bits))
    }
}

impl Serialize for FsAccess {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RuleOrigin {
    /// `filesystem.mounts`
    Mount,
    /// `kernel.extra_read` / `kernel.extra_write`
    Extra,
    /// What the program needs to start (executables, loader, libraries, runtime data).
    Runtime,
    Device,
    Proc,
}

/// One Landlock path-beneath rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FsRule {
    pub(crate) path: PathBuf,
    pub(crate) access: FsAccess,
    pub(crate) origin: RuleOrigin,
    pub(crate) reason: String,
    /// Opened by the child itself (`/proc/self`): see the module comment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) child_resolved: bool,
}

/// Which socket families the seccomp filter lets `socket()` create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SocketFilter {
    /// `AF_*` numbers allowed.
    pub(crate) families: Vec<i32>,
    /// `AF_NETLINK` with protocol `NETLINK_ROUTE` only (glibc `getaddrinfo(AI_ADDRCONFIG)`, `getifaddrs`).
    pub(crate) netlink_route: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NetPlan {
    pub(crate) mode: NetworkMode,
    /// Landlock handles TCP connect and bind (ABI 4). Ports below are the only ones connect() may reach.
    pub(crate) landlock_tcp: bool,
    pub(crate) tcp_connect_ports: Vec<u16>,
    /// `None`: socket() is not filtered (but for AF_UNIX, see `unix_sockets`).
    pub(crate) socket_filter: Option<SocketFilter>,
    /// `network.unix_sockets`, expanded. Empty: seccomp refuses `socket(AF_UNIX)` (pathname
    /// sockets are outside Landlock's rights); otherwise AF_UNIX is allowed and these paths
    /// are granted (read/write rules, so a private mount tree holds them too).
    pub(crate) unix_sockets: Vec<PathBuf>,
    pub(crate) notes: Vec<String>,
}

/// Landlock scopes (ABI 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Scopes {
    /// Connecting to abstract unix sockets created outside the sandbox.
    pub(crate) abstract_unix_socket: bool,
    /// Sending signals to processes outside the sandbox.
    pub(crate) signal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RlimitKind {
    Core,
    Nofile,
    Nproc,
    As,
    Fsize,
    Cpu,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rlimit {
    pub(crate) kind: RlimitKind,
    pub(crate) value: u64,
}

/// Everything the kernel layer will do for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxPlan {
    pub(crate) policy: String,
    pub(crate) argv: Vec<String>,
    /// `None`: the policy does not restrict the filesystem (no Landlock filesystem rules).
    pub(crate) fs_rules: Option<Vec<FsRule>>,
    pub(crate) net: NetPlan,
    pub(crate) scopes: Scopes,
    pub(crate) rlimits: Vec<Rlimit>,
    pub(crate) env: EnvPlan,
    /// `kernel.require` of the policy.
    pub(crate) require: bool,
    /// The namespaces and the fresh root (see [`super::world`]). `prepare` clears it when the
    /// machine cannot create namespaces: read it from the PREPARED plan.
    pub(crate) world: super::world::WorldPlan,
    pub(crate) notes: Vec<String>,
}

const SHARED_LIB_REASON: &str = "shared libraries";

/// Build the plan. Pure.
pub fn plan(policy: &Policy, argv: &[String], host: &HostFacts) -> SandboxPlan {
    let kernel = &policy.kernel;
    let mut notes: Vec<String> = host.problems.clone();
    let mut env = filter_env(&host.env, &policy.environment);
    if host.npm
        && policy.network.mode == NetworkMode::None
        && env.get("npm_config_offline").is_none()
    {
        // Without it npm retries the registry for minutes before using its cache.
        env.values
            .push(("npm_config_offline".into(), "true".into()));
        env.values.sort();
        env.passed = env.values.iter().map(|(n, _)| n.clone()).collect();
        notes.push("npm with network `none`: npm_config_offline=true set (run from the npm cache without trying the registry)".into());
    }

    if host.py_launchers.uv.is_some()
        && policy.network.mode == NetworkMode::None
        && env.get("UV_OFFLINE").is_none()
    {
        env.values.push(("UV_OFFLINE".into(), "1".into()));
        env.values.sort();
        env.passed = env.values.iter().map(|(n, _)| n.clone()).collect();
        notes.push("uv with network `none`: UV_OFFLINE=1 set (run from the uv cache without trying the index)".into());
    }
    let unix_sockets: Vec<PathBuf> = kernel.unix_sockets.iter().map(|u| u.path.clone()).collect();
    let fs_rules = policy.filesystem.mounts.as_ref().map(|mounts| {
        let mut rules = Rules::default();
        for u in &unix_sockets {
            rules.add(
                u,
                FsAccess(FsAccess::READ_FILE | FsAccess::WRITE_FILE),
                RuleOrigin::Extra,
                "network.unix_sockets".into(),
            );
        }
        for m in mounts {
            let (access, what) = match m.mode {
                MountMode::Ro => (FsAccess::read_exec(), "ro"),
                MountMode::Rw => (FsAccess::all(), "rw"),
            };
            rules.add(
                &m.path,
                access,
                RuleOrigin::Mount,
                format!("mount {} {what}", m.written),
            );
        }
        for (list, access, what) in [
            (
                &kernel.extra_read,
                FsAccess::read_exec(),
                "kernel.extra_read",
            ),
            (
                &kernel.extra_write,
                FsAccess::read_write(),
                "kernel.extra_write",
            ),
        ] {
            for extra in list {
                rules.add(
                    &extra.path,
                    access,
                    RuleOrigin::Extra,
                    format!("{what} {}", extra.written),
                );
            }
        }
        runtime_rules(host, &env, policy.network.mode, &mut rules, &mut notes);
        rules.0
    });
    if fs_rules.is_none() {
        notes.push("filesystem not restricted by the policy (no mounts): Landlock filesystem rules are not used".into());
    }

    let mut net = net_plan(policy);
    net.unix_sockets = unix_sockets;

    let mut rlimits = vec![Rlimit {
        kind: RlimitKind::Core,
        value: 0,
    }];
    let r = &kernel.rlimits;
    for (kind, v) in [
        (RlimitKind::Nofile, r.nofile),
        (RlimitKind::Nproc, r.nproc),
        (RlimitKind::As, r.as_bytes),
        (RlimitKind::Fsize, r.fsize_bytes),
        (RlimitKind::Cpu, r.cpu_seconds),
    ] {
        let Some(v) = v else { continue };
        if kind == RlimitKind::Nproc && host.uid == 0 {
            notes.push("rlimit nproc counts ALL processes of the real uid; running as root it counts every root process on the machine".into());
        }
        if kind == RlimitKind::As && host.node.is_some() && v < (8 << 30) {
            notes.push("rlimit as_bytes below 8 GiB: Node/V8 reserves large address ranges and may fail to start".into());
        }
        rlimits.push(Rlimit { kind, value: v });
    }

    if let Some(tmp) = env
        .get("TMPDIR")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from("/tmp")))
    {
        if let Some(rules) = &fs_rules {
            if !rules
                .iter()
                .any(|r| tmp.starts_with(&r.path) && r.access.contains(FsAccess::MAKE_REG))
            {
                notes.push(format!(
                    "temporary directory {} is not writable under this policy",
                    tmp.display()
                ));
            }
        }
    }

    let invoked = host
        .chain
        .iter()
        .map(|s| s.invoked.clone())
        .chain(host.helpers.iter().map(|h| h.step.invoked.clone()))
        .collect();
    let world = super::world::world_plan(
        fs_rules.as_deref(),
        &super::world::WorldInputs {
            wanted: kernel.namespaces,
            uid: host.uid,
            network_none: policy.network.mode == NetworkMode::None,
            home: host.home.as_deref(),
            invoked,
        },
    );
    let mut plan = SandboxPlan {
        policy: policy.name.clone(),
        argv: argv.to_vec(),
        fs_rules,
        net,
        scopes: Scopes {
            abstract_unix_socket: true,
            signal: true,
        },
        rlimits,
        env,
        require: kernel.require,
        world: super::world::WorldPlan::default(),
        notes,
    };
    plan.set_world(world);
    plan
}

impl SandboxPlan {
    /// Set the world; without one, package caches are no longer private, so they become
    /// read-only (the server cannot plant code that a later unconfined run would execute).
    pub(crate) fn set_world(&mut self, world: super::world::WorldPlan) {
        if !world.enabled {
            let mut downgraded = false;
            for r in self.fs_rules.iter_mut().flatten() {
                if super::world::plan::is_package_cache(&r.reason)
                    && r.access.contains(FsAccess::WRITE_FILE)
                {
                    let what = super::world::plan::PACKAGE_CACHE_REASONS
                        .iter()
                        .find(|p| r.reason.starts_with(*p))
                        .copied()
                        .unwrap_or_default();
                    r.access = FsAccess::read_exec();
                    r.reason = format!(
                        "{what} {} read-only (no private layer without a mount namespace)",
                        r.path.display()
                    );
                    downgraded = true;
                }
            }
            if downgraded {
                self.notes.push("without the world the package caches (npx, uv, pipx) are read-only: only packages already installed there can run, and the launcher may fail where it writes its cache".into());
            }
        }
        self.world = world;
    }
}

#[derive(Default)]
struct Rules(Vec<FsRule>);

impl Rules {
    fn add(&mut self, path: &Path, access: FsAccess, origin: RuleOrigin, reason: String) {
        self.push(FsRule {
            path: path.to_path_buf(),
            access,
            origin,
            reason,
            child_resolved: false,
        });
    }
    fn push(&mut self, r: FsRule) {
        // The same path twice: merge the rights, keep the first reason (the kernel would OR them too).
        if let Some(existing) = self
            .0
            .iter_mut()
            .find(|e| e.path == r.path && e.child_resolved == r.child_resolved)
        {
            existing.access.0 |= r.access.0;
            return;
        }
        self.0.push(r);
    }
}

/// A shell script in the exec chain (a pyenv shim, a wrapper around node or python) runs
/// ordinary system programs (`readlink`, `basename`, `dirname`) before it execs the real
/// interpreter: they get read+exec. They run inside the same sandbox, so this grants no data.
/// A pyenv shim also runs pyenv's own scripts and the interpreter under the pyenv root.
fn shell_wrapper_rules(host: &HostFacts, rules: &mut Rules) {
    const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh"];
    let shell_script = host.chain.iter().find(|s| match &s.kind {
        ExecKind::Script { interpreter, arg } => {
            let name = |p: &str| {
                Path::new(p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            SHELLS.contains(&name(&interpreter.to_string_lossy()).as_str())
                || (name(&interpreter.to_string_lossy()) == "env"
                    && arg.as_deref().is_some_and(|a| {
                        SHELLS.contains(
                            &name(
                                a.trim_start_matches("-S ")
                                    .split_whitespace()
                                    .next()
                                    .unwrap_or(""),
                            )
                            .as_str(),
                        )
                    }))
        }
        _ => false,
    });
    let Some(script) = shell_script else { return };
    for d in ["/usr/bin", "/bin", "/usr/local/bin"] {
        if host.existing.iter().any(|e| e == Path::new(d)) {
            rules.add(
                Path::new(d),
                FsAccess::read_exec(),
                RuleOrigin::Runtime,
                format!(
                    "system programs run by the shell script {}",
                    script.invoked.display()
                ),
            );
        }
    }
    let pyenv_root = host.chain.iter().find_map(|s| {
        s.canonical
            .ancestors()
            .find(|a| a.file_name().is_some_and(|n| n == ".pyenv"))
            .map(Path::to_path_buf)
    });
    if let Some(root) = pyenv_root {
        rules.add(
            &root,
            FsAccess::read_exec(),
            RuleOrigin::Runtime,
            format!(
                "pyenv (the shim {} runs pyenv and its interpreters)",
                script.invoked.display()
            ),
        );
    }
}

fn runtime_rules(
    host: &HostFacts,
    env: &EnvPlan,
    net: NetworkMode,
    rules: &mut Rules,
    notes: &mut Vec<String>,
) {
    let exists = |p: &str| host.existing.iter().any(|e| e == Path::new(p));
    let mut loaders = Vec::new();
    for (i, step) in host.chain.iter().enumerate() {
        let reason = if i == 0 {
            format!("executable {}", step.invoked.display())
        } else {
            format!("shebang interpreter {}", step.invoked.display())
        };
        rules.add(
            &step.canonical,
            FsAccess::read_exec(),
            RuleOrigin::Runtime,
            reason,
        );
        if let ExecKind::Elf {
            interpreter: Some(l),
        } = &step.kind
        {
            if !loaders.contains(l) {
                loaders.push(l.clone());
            }
        }
    }
    shell_wrapper_rules(host, rules);
    for h in &host.helpers {
        rules.add(
            &h.step.canonical,
            FsAccess::read_exec(),
            RuleOrigin::Runtime,
            format!("helper program {} ({})", h.step.invoked.display(), h.why),
        );
        if let ExecKind::Elf {
            interpreter: Some(l),
        } = &h.step.kind
        {
            if !loaders.contains(l) {
                loaders.push(l.clone());
            }
        }
        for d in &h.dirs {
            rules.add(
                d,
                FsAccess::read_exec(),
                RuleOrigin::Runtime,
                format!("{} support files", h.name),
            );
        }
        for p in &h.home_files {
            rules.add(
                p,
                FsAccess::read(),
                RuleOrigin::Runtime,
                format!("{} configuration (unreadable is fatal for it)", h.name),
            );
        }
    }
    for l in &loaders {
        rules.add(
            l,
            FsAccess::read_exec(),
            RuleOrigin::Runtime,
            format!("dynamic loader {}", l.display()),
        );
    }
    if exists("/etc/ld.so.cache") {
        rules.add(
            Path::new("/etc/ld.so.cache"),
            FsAccess::read(),
            RuleOrigin::Runtime,
            "dynamic loader cache".into(),
        );
    }
    if exists("/etc/ld.so.preload") {
        rules.add(
            Path::new("/etc/ld.so.preload"),
            FsAccess::read(),
            RuleOrigin::Runtime,
            "dynamic loader preload list (the loader reads it at every start)".into(),
        );
    }
    let lib_list = host
        .lib_dirs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    for d in &host.lib_dirs {
        rules.add(
            d,
            FsAccess::read_exec(),
            RuleOrigin::Runtime,
            format!("{SHARED_LIB_REASON} {lib_list}"),
        );
    }

    let data = |rules: &mut Rules, paths: &[&str], reason: &str| {
        for p in paths {
            if exists(p) {
                rules.add(
                    Path::new(p),
                    FsAccess::read(),
                    RuleOrigin::Runtime,
                    reason.to_string(),
                );
            }
        }
    };
    data(
        rules,
        &[
            "/etc/localtime",
            "/etc/timezone",
            "/usr/share/zoneinfo",
            "/usr/share/locale",
            "/etc/locale.alias",
        ],
        "locale and time zone data",
    );
    data(
        rules,
        &["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"],
        "user database (node os.userInfo(), python getpwuid, git, ssh-less tools)",
    );
    // OpenSSL's configuration is read at start by Node even without network.
    data(rules, &["/etc/ssl"], "TLS configuration and certificates");
    if net != NetworkMode::None {
        data(
            rules,
            &[
                "/etc/resolv.conf",
                "/etc/hosts",
                "/etc/host.conf",
                "/etc/gai.conf",
            ],
            "name resolution (network mode is not `none`)",
        );
        data(
            rules,
            &[
                "/usr/share/ca-certificates",
                "/etc/ca-certificates",
                "/etc/pki",
            ],
            "TLS certificate store",
        );
    }

    // Devices: exactly these. No /dev/tty or /dev/pts: the server runs in its own session with
    // no controlling terminal, and a terminal fd would let it inject input (TIOCSTI).
    for (p, access) in [
        (
            "/dev/null",
            FsAccess(
                FsAccess::READ_FILE
                    | FsAccess::WRITE_FILE
                    | FsAccess::TRUNCATE
                    | FsAccess::IOCTL_DEV,
            ),
        ),
        (
            "/dev/zero",
            FsAccess(FsAccess::READ_FILE | FsAccess::WRITE_FILE | FsAccess::IOCTL_DEV),
        ),
        (
            "/dev/urandom",
            FsAccess(FsAccess::READ_FILE | FsAccess::IOCTL_DEV),
        ),
        (
            "/dev/random",
            FsAccess(FsAccess::READ_FILE | FsAccess::IOCTL_DEV),
        ),
    ] {
        if exists(p) {
            rules.add(
                Path::new(p),
                access,
                RuleOrigin::Device,
                "/dev/null /dev/zero /dev/urandom /dev/random (with their harmless ioctls)".into(),
            );
        }
    }

    rules.push(FsRule {
        path: PathBuf::from("/proc/self"),
        access: FsAccess::read(),
        origin: RuleOrigin::Proc,
        reason:
            "the server's own /proc/<pid>, opened in the child (other processes stay unreachable)"
                .into(),
        child_resolved: true,
    });
    data(
        rules,
        &["/proc/stat", "/proc/cpuinfo", "/proc/meminfo"],
        "system-wide CPU and memory counters (os.cpus(), os.totalmem())",
    );
    data(
        rules,
        &["/sys/devices/system/cpu"],
        "CPU topology (sysconf(_SC_NPROCESSORS_ONLN))",
    );

    if let Some(node) = &host.node {
        match &node.global_modules {
            Some(gm) => rules.add(
                gm,
                FsAccess::read_exec(),
                RuleOrigin::Runtime,
                "node global modules".into(),
            ),
            None => notes.push(format!(
                "node prefix {} has no lib/node_modules",
                node.prefix.display()
            )),
        }
    }
    if host.npm {
        let cache = env
            .get("npm_config_cache")
            .map(PathBuf::from)
            .or_else(|| host.home.as_ref().map(|h| h.join(".npm")));
        match cache {
            Some(c) => rules.add(
                &c,
                FsAccess::all(),
                RuleOrigin::Runtime,
                format!(
                    "{} {} rw+exec (npx installs and runs packages from it)",
                    super::world::plan::PACKAGE_CACHE_REASON,
                    c.display()
                ),
            ),
            None => notes.push("npm cache: neither npm_config_cache nor HOME is set".into()),
        }
        if let Some(h) = &host.home {
            rules.add(
                &h.join(".npmrc"),
                FsAccess::read(),
                RuleOrigin::Runtime,
                "npm user configuration".into(),
            );
        }
        if let Some(node) = &host.node {
            rules.add(
                &node.prefix.join("etc/npmrc"),
                FsAccess::read(),
                RuleOrigin::Runtime,
                "npm global configuration".into(),
            );
        }
        for p in ["/bin/sh", "/usr/bin/env"] {
            if exists(p) {
                rules.add(
                    Path::new(p),
                    FsAccess::read_exec(),
                    RuleOrigin::Runtime,
                    format!("npm exec runs package bins through {p}"),
                );
            }
        }
        if net == NetworkMode::None {
            notes.push(
                "npx with network `none`: only packages already in the npm cache can run".into(),
            );
        }
    }
    for g in super::pylaunch::rules(
        &host.py_launchers,
        &|k| env.get(k).map(String::from),
        host.home.as_deref(),
        &|p| p.exists(),
        &|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()),
        notes,
    ) {
        rules.add(&g.path, g.access, RuleOrigin::Runtime, g.reason);
    }
    if let Some(py) = &host.python {
        // A system interpreter (/usr/bin/python3) has its stdlib under the library directories
        // already; granting the whole prefix (/usr) would be far wider than needed.
        let system = ["/", "/usr", "/usr/local"]
            .iter()
            .any(|s| py.base_prefix == Path::new(s));
        if !system {
            rules.add(
                &py.base_prefix,
                FsAccess::read_exec(),
                RuleOrigin::Runtime,
                format!("python installation {}", py.base_prefix.display()),
            );
        }
        if let Some(v) = &py.venv {
            rules.add(
                v,
                FsAccess::read_exec(),
                RuleOrigin::Runtime,
                format!("python venv prefix {}", v.display()),
            );
        }
    }
    if let Some(script) = &host.script {
        // A script inside node_modules needs its package tree; a script elsewhere its directory,
        // unless that directory is HOME or / (then only the file).
        let nm_root = script
            .ancestors()
            .filter(|a| a.file_name().is_some_and(|n| n == "node_modules"))
            .last();
        match nm_root {
            Some(root) => rules.add(
                root,
                FsAccess::read_exec(),
                RuleOrigin::Runtime,
                format!("node_modules tree of the script {}", script.display()),
            ),
            None => {
                let dir = script.parent().unwrap_or(Path::new("/"));
                if dir == Path::new("/") || host.home.as_deref() == Some(dir) {
                    rules.add(
                        script,
                        FsAccess::read_exec(),
                        RuleOrigin::Runtime,
                        "script".into(),
                    );
                } else {
                    rules.add(
                        dir,
                        FsAccess::read_exec(),
                        RuleOrigin::Runtime,
                        format!("directory of the script {}", script.display()),
                    );
                }
            }
        }
    }
}

fn net_plan(policy: &Policy) -> NetPlan {
    let n = &policy.network;
    match n.mode {
        NetworkMode::All => NetPlan {
            mode: NetworkMode::All,
            landlock_tcp: false,
            tcp_connect_ports: vec![],
            socket_filter: None,
            unix_sockets: vec![],
            notes: vec!["network `all`: the kernel layer does not restrict the network".into()],
        },
        NetworkMode::None => NetPlan {
            mode: NetworkMode::None,
            // Defence in depth on top of the socket() filter: no TCP connect or bind at all.
            landlock_tcp: true,
            tcp_connect_ports: vec![],
            socket_filter: Some(SocketFilter { families: vec![libc::AF_UNIX], netlink_route: false }),
            unix_sockets: vec![],
            notes: vec!["socket() refused (EACCES) for every family except AF_UNIX (itself only with network.unix_sockets): no IP, packet, netlink, vsock, bluetooth sockets".into()],
        },
        NetworkMode::Allowlist => {
            let mut ports: Vec<u16> = Vec::new();
            let mut notes = vec![
                "Landlock restricts TCP by PORT, not by host: the proxy checks hosts; the kernel only bounds ports".into(),
                "UDP (DNS) is not restricted by Landlock; TCP bind() is refused".into(),
            ];
            let mut any_port = Vec::new();
            for h in &n.allowed_hosts {
                match h.port {
                    Some(p) => ports.push(p),
                    None => {
                        any_port.push(h.written.clone());
                        ports.extend([80, 443]);
                    }
                }
            }
            if !any_port.is_empty() {
                notes.push(format!("{} without a port: the kernel allows TCP connect to ports 80 and 443", any_port.join(", ")));
            }
            if !n.allow_loopback || !n.allow_private {
                notes.push("loopback and private addresses on those ports are reachable as far as the kernel is concerned".into());
            }
            ports.sort_unstable();
            ports.dedup();
            NetPlan {
                mode: NetworkMode::Allowlist,
                landlock_tcp: true,
                tcp_connect_ports: ports,
                socket_filter: Some(SocketFilter {
                    families: vec![libc::AF_UNIX, libc::AF_INET, libc::AF_INET6],
                    netlink_route: true,
                }),
                unix_sockets: vec![],
                notes,
            }
        }
    }
}

impl fmt::Display for SandboxPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kernel sandbox plan for `{}` (policy {})",
            self.argv.join(" "),
            self.policy
        )?;
        match &self.fs_rules {
            None => writeln!(f, "  filesystem: not restricted")?,
            Some(rules) => {
                writeln!(
                    f,
                    "  filesystem (Landlock; everything not listed is unreachable):"
                )?;
                let w = rules
                    .iter()
                    .map(|r| r.path.as_os_str().len())
                    .max()
                    .unwrap_or(0)
                    .min(60);
                for r in rules {
                    writeln!(
                        f,
                        "    {:<w$}  {:<10} {}",
                        r.path.display(),
                        r.access.short(),
                        r.reason,
                        w = w
                    )?;
                }
            }
        }
        write!(f, "{}", self.world)?;
        let ports = self
            .net
            .tcp_connect_ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        writeln!(
            f,
            "  network: {:?}{}",
            self.net.mode,
            if self.net.landlock_tcp {
                format!(" (TCP connect ports: [{ports}], bind: none)")
            } else {
                String::new()
            }
        )?;
        if self.net.unix_sockets.is_empty() {
            writeln!(
                f,
                "    socket(AF_UNIX) refused (no network.unix_sockets); socketpair allowed"
            )?;
        } else {
            for u in &self.net.unix_sockets {
                writeln!(
                    f,
                    "    unix socket allowed: {} (network.unix_sockets)",
                    u.display()
                )?;
            }
        }
        for n in &self.net.notes {
            writeln!(f, "    - {n}")?;
        }
        writeln!(
            f,
            "  scopes: abstract unix sockets and signals confined to the sandbox"
        )?;
        writeln!(f, "  seccomp: x86_64 only (x32 and i386 syscalls kill), hardening deny list, clone namespaces refused")?;
        writeln!(f, "  privileges: no_new_privs, all capabilities dropped (bounding, ambient, effective, permitted, inheritable)")?;
        writeln!(
            f,
            "  process: new session, PDEATHSIG=SIGKILL, fds >= 3 close on exec"
        )?;
        let rl = self
            .rlimits
            .iter()
            .map(|r| format!("{:?}={}", r.kind, r.value))
            .collect::<Vec<_>>()
            .join(" ");
        writeln!(f, "  rlimits: {rl}")?;
        writeln!(
            f,
            "  environment: {} passed ({})",
            self.env.passed.len(),
            self.env.passed.join(" ")
        )?;
        if !self.env.dropped.is_empty() {
            let d = self
                .env
                .dropped
                .iter()
                .map(|(n, r)| {
                    format!(
                        "{n}({})",
                        match r {
                            super::env::DropReason::NotAllowed => "not allowed",
                            super::env::DropReason::Secret => "secret",
                            super::env::DropReason::Injection => "injection",
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            writeln!(f, "    dropped: {d}")?;
        }
        if self.require {
            writeln!(
                f,
                "  kernel.require: anything less than full enforcement is an error"
            )?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};
    use crate::sandbox::facts::{ExecStep, NodeFacts, PythonFacts};

    fn policy(yaml: &str) -> Policy {
        load_str(yaml, PolicySource::Inline).expect("policy")
    }

    fn facts() -> HostFacts {
        HostFacts {
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("HOME".into(), "/home/u".into()),
                ("AWS_SECRET_ACCESS_KEY".into(), "s3cr3t".into()),
                ("FOO_TOKEN".into(), "t".into()),
                ("EXTRA_SETTING".into(), "1".into()),
            ],
            home: Some("/home/u".into()),
            cwd: "/home/u/proj".into(),
            uid: 1000,
            chain: vec![
                ExecStep {
                    invoked: "/usr/bin/npx".into(),
                    canonical: "/usr/lib/node_modules/npm/bin/npx-cli.js".into(),
                    kind: ExecKind::Script {
                        interpreter: "/usr/bin/env".into(),
                        arg: Some("node".into()),
                    },
                },
                ExecStep {
                    invoked: "/usr/bin/env".into(),
                    canonical: "/usr/bin/env".into(),
                    kind: ExecKind::Elf {
                        interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
                    },
                },
                ExecStep {
                    invoked: "/usr/bin/node".into(),
                    canonical: "/usr/bin/node".into(),
                    kind: ExecKind::Elf {
                        interpreter: Some("/lib64/ld-linux-x86-64.so.2".into()),
                    },
                },
            ],
            node: Some(NodeFacts {
                prefix: "/usr".into(),
                global_modules: Some("/usr/lib/node_modules".into()),
            }),
            npm: true,
            lib_dirs: vec!["/usr/lib".into(), "/usr/lib64".into()],
            existing: [
                "/etc/ld.so.cache",
                "/etc/passwd",
                "/etc/ssl",
                "/etc/resolv.conf",
                "/dev/null",
                "/bin/sh",
                "/usr/bin/env",
                "/proc/stat",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
            ..Default::default()
        }
    }

    fn rule<'a>(p: &'a SandboxPlan, path: &str) -> Option<&'a FsRule> {
        p.fs_rules
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.path == Path::new(path))
    }

    const WS: &str = "name: t\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: /work/ws\n      mode: rw\n    - path: /data\n      mode: ro\nnetwork:\n  mode: none\n";

    #[test]
    fn mounts_and_runtime_rules_with_reasons() {
        let p = plan(
            &policy(WS),
            &["npx".into(), "-y".into(), "pkg".into()],
            &facts(),
        );
        let ws = rule(&p, "/work/ws").unwrap();
        assert_eq!(ws.access, FsAccess::all());
        assert_eq!(ws.reason, "mount /work/ws rw");
        assert_eq!(rule(&p, "/data").unwrap().access, FsAccess::read_exec());
        assert_eq!(
            rule(&p, "/usr/lib/node_modules/npm/bin/npx-cli.js")
                .unwrap()
                .reason,
            "executable /usr/bin/npx"
        );
        assert_eq!(
            rule(&p, "/usr/bin/env").unwrap().reason,
            "shebang interpreter /usr/bin/env"
        );
        assert!(rule(&p, "/lib64/ld-linux-x86-64.so.2")
            .unwrap()
            .reason
            .starts_with("dynamic loader"));
        assert!(rule(&p, "/usr/lib")
            .unwrap()
            .reason
            .starts_with("shared libraries"));
        assert_eq!(rule(&p, "/usr/lib").unwrap().access, FsAccess::read_exec());
        assert_eq!(rule(&p, "/etc/passwd").unwrap().access, FsAccess::read());
        let npm = rule(&p, "/home/u/.npm").unwrap();
        assert_eq!(npm.access, FsAccess::all());
        assert!(npm.reason.starts_with("npx package cache"));
        assert_eq!(
            rule(&p, "/usr/lib/node_modules").unwrap().reason,
            "node global modules"
        );
        assert_eq!(p.env.get("npm_config_offline"), Some("true"));
        let proc_self = rule(&p, "/proc/self").unwrap();
        assert!(proc_self.child_resolved);
        assert!(!proc_self.access.contains(FsAccess::WRITE_FILE));
        // Network data only with network: resolv.conf not granted under `none`.
        assert!(rule(&p, "/etc/resolv.conf").is_none());
        // Nothing under HOME except the npm cache and .npmrc; no /proc beyond self and counters.
        for r in p.fs_rules.as_ref().unwrap() {
            if r.path.starts_with("/home/u") {
                assert!(
                    r.path.starts_with("/home/u/.npm") || r.path == Path::new("/home/u/.npmrc"),
                    "{r:?}"
                );
            }
            if r.path.starts_with("/proc") {
                assert!(
                    r.path == Path::new("/proc/self") || r.path == Path::new("/proc/stat"),
                    "{r:?}"
                );
            }
            // Non-mount rules never grant write.
            if r.origin == RuleOrigin::Runtime && !r.reason.starts_with("npx package cache") {
                assert!(!r.access.contains(FsAccess::WRITE_FILE), "{r:?}");
            }
        }
    }

    #[test]
    fn no_mounts_section_reaches_nothing_but_runtime() {
        let p = plan(
            &policy("name: t\nnetwork:\n  mode: none\n"),
            &["node".into()],
            &facts(),
        );
        assert!(p
            .fs_rules
            .as_ref()
            .unwrap()
            .iter()
            .all(|r| r.origin != RuleOrigin::Mount));
    }

    #[test]
    fn filesystem_any_means_no_landlock_fs() {
        let p = plan(
            &policy("name: t\nfilesystem:\n  mode: any\n"),
            &["node".into()],
            &facts(),
        );
        assert!(p.fs_rules.is_none());
    }

    #[test]
    fn network_none_filters_socket_families() {
        let p = plan(&policy(WS), &["node".into()], &facts());
        let sf = p.net.socket_filter.unwrap();
        assert_eq!(sf.families, vec![libc::AF_UNIX]);
        assert!(!sf.netlink_route);
        assert!(p.net.landlock_tcp);
        assert!(p.net.tcp_connect_ports.is_empty());
    }

    #[test]
    fn allowlist_becomes_ports_with_notes() {
        let y = "name: t\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"api.example.com:8443\", \"*.github.com\"]\n";
        let p = plan(&policy(y), &["node".into()], &facts());
        assert_eq!(p.net.tcp_connect_ports, vec![80, 443, 8443]);
        assert!(p
            .net
            .notes
            .iter()
            .any(|n| n.contains("*.github.com without a port")));
        assert!(p.net.notes.iter().any(|n| n.contains("not by host")));
        let sf = p.net.socket_filter.clone().unwrap();
        assert!(sf.families.contains(&libc::AF_INET6) && sf.netlink_route);
        assert!(rule(&p, "/etc/resolv.conf").is_some());
    }

    #[test]
    fn network_all_is_unrestricted() {
        let p = plan(
            &policy("name: t\nnetwork:\n  mode: all\n"),
            &["node".into()],
            &facts(),
        );
        assert!(p.net.socket_filter.is_none() && !p.net.landlock_tcp);
    }

    #[test]
    fn env_is_filtered() {
        let y = format!("{WS}environment:\n  allow: [EXTRA_SETTING]\n");
        let p = plan(&policy(&y), &["node".into()], &facts());
        assert!(p.env.get("PATH").is_some());
        assert!(p.env.get("EXTRA_SETTING").is_some());
        assert!(p.env.get("AWS_SECRET_ACCESS_KEY").is_none());
        assert!(p.env.get("FOO_TOKEN").is_none());
        // The serialized plan never carries values.
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("s3cr3t"));
    }

    #[test]
    fn python_venv_and_base_prefix() {
        let mut f = facts();
        f.npm = false;
        f.node = None;
        f.chain = vec![ExecStep {
            invoked: "/v/bin/python3".into(),
            canonical: "/opt/py/3.11/bin/python3.11".into(),
            kind: ExecKind::Elf { interpreter: None },
        }];
        f.python = Some(PythonFacts {
            base_prefix: "/opt/py/3.11".into(),
            venv: Some("/v".into()),
        });
        let p = plan(&policy(WS), &["/v/bin/python3".into()], &f);
        assert_eq!(rule(&p, "/v").unwrap().reason, "python venv prefix /v");
        assert_eq!(
            rule(&p, "/opt/py/3.11").unwrap().access,
            FsAccess::read_exec()
        );
        assert!(rule(&p, "/home/u/.npm").is_none());
        // A system python never grants its whole prefix.
        f.python = Some(PythonFacts {
            base_prefix: "/usr".into(),
            venv: None,
        });
        let p = plan(&policy(WS), &["/usr/bin/python3".into()], &f);
        assert!(rule(&p, "/usr").is_none());
    }

    #[test]
    fn extras_and_rlimits() {
        let y = format!(
            "{WS}kernel:\n  require: true\n  extra_read: [\"~/tools\"]\n  extra_write: [\"$HOME/.cache/x\"]\n  rlimits:\n    nofile: 256\n"
        );
        // The policy is compiled with the environment the host facts describe.
        let env = |k: &str| (k == "HOME").then(|| "/home/u".to_string());
        let compiled = crate::policy::compile::compile_with(
            serde_yaml::from_str(&y).unwrap(),
            y.clone(),
            PolicySource::Inline,
            &env,
        )
        .unwrap();
        let p = plan(&compiled, &["node".into()], &facts());
        assert!(p.require);
        assert_eq!(
            rule(&p, "/home/u/tools").unwrap().access,
            FsAccess::read_exec()
        );
        let w = rule(&p, "/home/u/.cache/x").unwrap();
        assert!(w.access.contains(FsAccess::WRITE_FILE) && !w.access.contains(FsAccess::EXECUTE));
        assert!(p.rlimits.contains(&Rlimit {
            kind: RlimitKind::Core,
            value: 0
        }));
        assert!(p.rlimits.contains(&Rlimit {
            kind: RlimitKind::Nofile,
            value: 256
        }));
        // An unknown limit is a policy error (policy::sections tests), not a note.
    }

    #[test]
    fn script_in_node_modules_grants_the_tree() {
        let mut f = facts();
        f.npm = false;
        f.chain.drain(..2);
        f.script = Some("/p/node_modules/@s/fs/dist/index.js".into());
        let p = plan(
            &policy(WS),
            &["node".into(), "/p/node_modules/@s/fs/dist/index.js".into()],
            &f,
        );
        assert!(rule(&p, "/p/node_modules").is_some());
        assert!(rule(&p, "/bin/sh").is_none());
    }
}
