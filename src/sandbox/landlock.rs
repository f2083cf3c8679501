//! Landlock: rules built and checked with the `landlock` crate in the parent, replayed with
//! raw syscalls in the child.
//!
//! - **The crate is the reference** for what a kernel ABI knows: [`fs_rights_for_abi`],
//!   [`net_rights_for_abi`] and [`scopes_for_abi`] are `AccessFs/AccessNet/Scope::from_all`,
//!   and [`PreparedLandlock::prepare`] (parent, may allocate) builds the whole ruleset with
//!   the crate under `CompatLevel::HardRequirement`: every right already masked to the
//!   running ABI, so anything the kernel would not enforce exactly fails there, with its
//!   path, before any process exists (the report in `enforcement.rs` names what the ABI
//!   lacks: Refer < 2, Truncate < 3, TCP ports < 4, IoctlDev < 5, scopes < 6).
//! - **The child does not use the crate.** Between fork and exec of a multi-threaded parent
//!   only async-signal-safe work is allowed. The crate's `restrict_self` itself is a prctl and
//!   one syscall, but building the child's ruleset with it is not: `/proc/self` must be
//!   opened BY THE CHILD (see `plan.rs`), `PathFd::new` allocates a `CString`, `add_rule`
//!   moves the ruleset and builds its compatibility state. And the rule cannot be added to a
//!   ruleset created in the parent: that would mutate a kernel object shared with the parent
//!   and every later child. So [`PreparedLandlock::restrict_child`] creates the ruleset in
//!   the child with the three raw syscalls, on the fds and masks the parent prepared and the
//!   crate validated, adds `/proc/self`, and restricts.
//! - A single-threaded setup process (where allocation is fine, e.g. a re-exec'd sandbox init)
//!   can use [`PreparedLandlock::restrict_self_with_crate`] instead: the same rules through
//!   the crate end to end, with its `RestrictionStatus`.
//!
//! [`abi_version`] asks the kernel directly (the crate has no public probe; it is one
//! documented syscall).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::plan::{FsAccess, SandboxPlan};

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: libc::c_int = 1;
const RULE_NET_PORT: libc::c_int = 2;
pub(crate) const ACCESS_NET_BIND_TCP: u64 = 1 << 0;
pub(crate) const ACCESS_NET_CONNECT_TCP: u64 = 1 << 1;
pub(crate) const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
pub(crate) const SCOPE_SIGNAL: u64 = 1 << 1;
/// ABI 7: log denials of the program after exec (the server), not only of capjail's child.
pub(crate) const RESTRICT_SELF_LOG_NEW_EXEC_ON: u32 = 1 << 1;

/// The kernel's `struct landlock_ruleset_attr` (what the child hands to the raw syscall).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RulesetAttr {
    pub(crate) handled_access_fs: u64,
    pub(crate) handled_access_net: u64,
    pub(crate) scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

/// The Landlock ABI of the running kernel: `Ok(n)`, or why Landlock is unusable.
pub(crate) fn abi_version() -> Result<u32, String> {
    // SAFETY: the documented version query: NULL attr, size 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if r >= 1 {
        return Ok(r as u32);
    }
    let e = std::io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel was built without Landlock (ENOSYS)".into(),
        Some(libc::EOPNOTSUPP) => {
            "Landlock is built in but not enabled (add `landlock` to the lsm= boot parameter)"
                .into()
        }
        _ => format!("landlock_create_ruleset: {e}"),
    })
}

fn crate_abi(abi: u32) -> landlock::ABI {
    landlock::ABI::from(abi.min(i32::MAX as u32) as i32)
}

/// The filesystem rights a kernel with this ABI knows (the crate's table), limited to the
/// rights capjail's plans use.
pub(crate) fn fs_rights_for_abi(abi: u32) -> u64 {
    use landlock::Access;
    landlock::AccessFs::from_all(crate_abi(abi)).bits() & FsAccess::all().0
}

/// The network rights (TCP bind/connect, ABI 4) a kernel with this ABI knows.
pub(crate) fn net_rights_for_abi(abi: u32) -> u64 {
    use landlock::Access;
    landlock::AccessNet::from_all(crate_abi(abi)).bits()
}

/// The scopes (abstract unix sockets, signals: ABI 6) a kernel with this ABI knows.
pub(crate) fn scopes_for_abi(abi: u32) -> u64 {
    use landlock::Access;
    landlock::Scope::from_all(crate_abi(abi)).bits()
}

/// The ABI that introduced a filesystem right.
pub(crate) fn abi_of_fs_right(bit: u64) -> u32 {
    match bit {
        FsAccess::REFER => 2,
        FsAccess::TRUNCATE => 3,
        FsAccess::IOCTL_DEV => 5,
        _ => 1,
    }
}

/// One opened path and the rights granted beneath it (already masked to the ABI and to the
/// file type).
#[derive(Debug)]
struct PathRule {
    fd: OwnedFd,
    access: u64,
}

/// Everything the child needs, prepared in the parent.
#[derive(Debug)]
pub(crate) struct PreparedLandlock {
    pub(crate) attr: RulesetAttr,
    paths: Vec<PathRule>,
    ports: Vec<u64>,
    /// `/proc/self` rights (opened by the child), 0 if none.
    proc_self_access: u64,
    pub(crate) restrict_flags: u32,
    /// Rules that could not be added (missing paths...), with the reason: reported, not fatal.
    pub(crate) skipped: Vec<(PathBuf, String)>,
}

impl PreparedLandlock {
    /// `None` if nothing would be handled (filesystem and network unrestricted, no ABI 6).
    pub(crate) fn prepare(plan: &SandboxPlan, abi: u32) -> Result<PreparedLandlock, String> {
        Self::prepare_checked(plan, abi, true)
    }

    /// [`Self::prepare`] without the two trial rulesets (the crate's check and the dry run):
    /// for the sandbox's setup process, which applies the ruleset itself right after (a rule
    /// the kernel refuses then fails there, with the same errno). capjail already checked
    /// the plan's rules before starting it.
    pub(crate) fn prepare_unchecked(
        plan: &SandboxPlan,
        abi: u32,
    ) -> Result<PreparedLandlock, String> {
        Self::prepare_checked(plan, abi, false)
    }

    fn prepare_checked(
        plan: &SandboxPlan,
        abi: u32,
        check: bool,
    ) -> Result<PreparedLandlock, String> {
        let known = fs_rights_for_abi(abi);
        let mut attr = RulesetAttr::default();
        if plan.fs_rules.is_some() {
            attr.handled_access_fs = known;
        }
        if plan.net.landlock_tcp {
            attr.handled_access_net =
                (ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP) & net_rights_for_abi(abi);
        }
        if plan.scopes.abstract_unix_socket {
            attr.scoped |= SCOPE_ABSTRACT_UNIX_SOCKET;
        }
        if plan.scopes.signal {
            attr.scoped |= SCOPE_SIGNAL;
        }
        attr.scoped &= scopes_for_abi(abi);
        let mut prepared = PreparedLandlock {
            attr,
            paths: Vec::new(),
            ports: Vec::new(),
            proc_self_access: 0,
            restrict_flags: if abi >= 7 {
                RESTRICT_SELF_LOG_NEW_EXEC_ON
            } else {
                0
            },
            skipped: Vec::new(),
        };
        for rule in plan.fs_rules.iter().flatten() {
            let access = rule.access.0 & known;
            if rule.child_resolved {
                prepared.proc_self_access |= access & !FsAccess::EXECUTE;
                continue;
            }
            let c = CString::new(rule.path.as_os_str().as_bytes())
                .map_err(|_| format!("{}: NUL in path", rule.path.display()))?;
            // SAFETY: plain open(2) with a valid C string.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                prepared
                    .skipped
                    .push((rule.path.clone(), format!("{} ({})", e, rule.reason)));
                continue;
            }
            // SAFETY: fd was just returned by open and is owned by nobody else.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // SAFETY: fstat into a zeroed struct.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
                prepared.skipped.push((
                    rule.path.clone(),
                    format!("fstat: {}", std::io::Error::last_os_error()),
                ));
                continue;
            }
            let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
            let access = if is_dir {
                access
            } else {
                access & FsAccess::FILE_RIGHTS
            };
            if access != 0 {
                prepared.paths.push(PathRule { fd, access });
            }
        }
        if attr.handled_access_net != 0 {
            prepared.ports = plan
                .net
                .tcp_connect_ports
                .iter()
                .map(|&p| p as u64)
                .collect();
        }
        // Check with the crate (hard requirement: nothing silently dropped), then dry-run the
        // child's own code, so that a rule the kernel refuses fails here.
        if check && prepared.handles_anything() {
            prepared
                .with_crate(false)
                .map_err(|e| format!("Landlock (crate check): {e}"))?;
            let fd = prepared.build().map_err(|(what, errno)| {
                format!(
                    "Landlock refused {what}: {}",
                    std::io::Error::from_raw_os_error(errno)
                )
            })?;
            // SAFETY: build returned a fresh fd that nothing else owns.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Ok(prepared)
    }

    /// The ruleset built by the `landlock` crate from the prepared rules, every right a hard
    /// requirement; with `proc_self`, plus this process's `/proc/self`.
    fn with_crate(&self, proc_self: bool) -> Result<landlock::RulesetCreated, String> {
        use landlock::{
            AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
            Ruleset, RulesetAttr as _, RulesetCreatedAttr as _, Scope,
        };
        use std::os::fd::AsFd;
        let e = |x: landlock::RulesetError| x.to_string();
        let fs = BitFlags::<AccessFs>::from_bits_truncate(self.attr.handled_access_fs);
        let net = BitFlags::<AccessNet>::from_bits_truncate(self.attr.handled_access_net);
        let scopes = BitFlags::<Scope>::from_bits_truncate(self.attr.scoped);
        let mut rs = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
        if !fs.is_empty() {
            rs = rs.handle_access(fs).map_err(e)?;
        }
        if !net.is_empty() {
            rs = rs.handle_access(net).map_err(e)?;
        }
        if !scopes.is_empty() {
            rs = rs.scope(scopes).map_err(e)?;
        }
        let mut c = rs.create().map_err(e)?;
        if !fs.is_empty() {
            for p in &self.paths {
                let access = BitFlags::<AccessFs>::from_bits_truncate(p.access);
                c = c
                    .add_rule(PathBeneath::new(p.fd.as_fd(), access))
                    .map_err(e)?;
            }
            if proc_self && self.proc_self_access != 0 {
                let fd = PathFd::new("/proc/self").map_err(|x| x.to_string())?;
                let access = BitFlags::<AccessFs>::from_bits_truncate(self.proc_self_access);
                c = c.add_rule(PathBeneath::new(fd, access)).map_err(e)?;
            }
        }
        if !net.is_empty() {
            for &port in &self.ports {
                c = c
                    .add_rule(NetPort::new(port as u16, AccessNet::ConnectTcp))
                    .map_err(e)?;
            }
        }
        Ok(c)
    }

    pub(crate) fn handles_anything(&self) -> bool {
        self.attr.handled_access_fs != 0
            || self.attr.handled_access_net != 0
            || self.attr.scoped != 0
    }

    /// Create the ruleset and add every rule. Async-signal-safe: syscalls only, on memory
    /// prepared before fork. Returns the ruleset fd (CLOEXEC) or (what failed, errno).
    fn build(&self) -> Result<libc::c_int, (&'static str, i32)> {
        let attr_size = std::mem::size_of::<RulesetAttr>();
        // SAFETY: attr points to a live RulesetAttr of attr_size bytes. A kernel with an older,
        // smaller struct accepts the larger size as long as the unknown fields are zero, and
        // `prepare` only set fields this ABI knows.
        let ruleset = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &self.attr as *const RulesetAttr,
                attr_size,
                0u32,
            )
        };
        if ruleset < 0 {
            return Err(("the ruleset", errno()));
        }
        let ruleset = ruleset as libc::c_int;
        let fail = |what: &'static str| {
            let e = errno();
            // SAFETY: closing our own fd.
            unsafe { libc::close(ruleset) };
            Err((what, e))
        };
        if self.attr.handled_access_fs != 0 {
            for p in &self.paths {
                let a = PathBeneathAttr {
                    allowed_access: p.access,
                    parent_fd: p.fd.as_raw_fd(),
                };
                // SAFETY: a is a live, packed landlock_path_beneath_attr.
                if unsafe {
                    libc::syscall(
                        libc::SYS_landlock_add_rule,
                        ruleset,
                        RULE_PATH_BENEATH,
                        &a as *const PathBeneathAttr,
                        0u32,
                    )
                } != 0
                {
                    return fail("a filesystem rule");
                }
            }
        }
        for &port in &self.ports {
            let a = NetPortAttr {
                allowed_access: ACCESS_NET_CONNECT_TCP,
                port,
            };
            // SAFETY: a is a live landlock_net_port_attr.
            if unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    ruleset,
                    RULE_NET_PORT,
                    &a as *const NetPortAttr,
                    0u32,
                )
            } != 0
            {
                return fail("a TCP port rule");
            }
        }
        Ok(ruleset)
    }

    /// In the child, after no_new_privs: build the ruleset, add `/proc/self`, restrict.
    /// Async-signal-safe (syscalls only, no allocation).
    pub(crate) fn restrict_child(&self) -> Result<(), i32> {
        if !self.handles_anything() {
            return Ok(());
        }
        let ruleset = self.build().map_err(|(_, e)| e)?;
        let result = (|| {
            if self.proc_self_access != 0 && self.attr.handled_access_fs != 0 {
                // SAFETY: open with a static C string.
                let fd = unsafe {
                    libc::open(
                        c"/proc/self".as_ptr(),
                        libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                    )
                };
                if fd < 0 {
                    return Err(errno());
                }
                let a = PathBeneathAttr {
                    allowed_access: self.proc_self_access,
                    parent_fd: fd,
                };
                // SAFETY: as in build.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_landlock_add_rule,
                        ruleset,
                        RULE_PATH_BENEATH,
                        &a as *const PathBeneathAttr,
                        0u32,
                    )
                };
                let e = errno();
                // SAFETY: closing our own fd.
                unsafe { libc::close(fd) };
                if r != 0 {
                    return Err(e);
                }
            }
            // SAFETY: restrict_self on our ruleset fd with flags valid for this ABI.
            if unsafe {
                libc::syscall(
                    libc::SYS_landlock_restrict_self,
                    ruleset,
                    self.restrict_flags,
                )
            } != 0
            {
                return Err(errno());
            }
            Ok(())
        })();
        // SAFETY: closing our own fd.
        unsafe { libc::close(ruleset) };
        result
    }
}

fn errno() -> i32 {
    // SAFETY: reading errno of this thread.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_per_abi_follow_the_crate() {
        assert_eq!(fs_rights_for_abi(1), (1 << 13) - 1);
        assert_eq!(fs_rights_for_abi(2) & FsAccess::REFER, FsAccess::REFER);
        assert_eq!(fs_rights_for_abi(2) & FsAccess::TRUNCATE, 0);
        assert_eq!(
            fs_rights_for_abi(3) & FsAccess::TRUNCATE,
            FsAccess::TRUNCATE
        );
        assert_eq!(fs_rights_for_abi(4) & FsAccess::IOCTL_DEV, 0);
        assert_eq!(fs_rights_for_abi(5), FsAccess::all().0);
        assert_eq!(net_rights_for_abi(3), 0);
        assert_eq!(
            net_rights_for_abi(4),
            ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP
        );
        assert_eq!(scopes_for_abi(5), 0);
        assert_eq!(scopes_for_abi(6), SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL);
        for abi in 1..=7 {
            for &(bit, _) in FsAccess::NAMES {
                assert_eq!(
                    fs_rights_for_abi(abi) & bit != 0,
                    abi >= abi_of_fs_right(bit),
                    "abi {abi} bit {bit:#x}"
                );
            }
        }
    }
}
