//! Giving up privileges in the child: no_new_privs and every capability.
//!
//! Root stays uid 0 (capjail does not change users), so what protects root-owned files is
//! Landlock, not DAC; what this module guarantees is that the server holds no capability
//! and can never get one back: the bounding set is emptied (exec of a setuid-root or
//! file-capability binary, or exec as uid 0, cannot grant anything outside it), ambient
//! capabilities are cleared, securebits are locked so that uid 0 is not special at exec,
//! and effective/permitted/inheritable are set to zero with capset(2).
//!
//! Everything here runs between fork and exec: raw prctl/capset only.

/// What the parent found out beforehand.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreparedPrivileges {
    /// `/proc/sys/kernel/cap_last_cap`.
    pub(crate) last_cap: u32,
    /// Do we hold CAP_SETPCAP (needed to drop the bounding set and lock securebits)?
    pub(crate) can_setpcap: bool,
    /// Do we hold any capability at all?
    pub(crate) has_caps: bool,
}

impl PreparedPrivileges {
    pub(crate) fn detect() -> PreparedPrivileges {
        let last_cap = last_cap();
        let can_setpcap =
            caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP)
                .unwrap_or(false);
        let has_caps = caps::read(None, caps::CapSet::Permitted)
            .map(|s| !s.is_empty())
            .unwrap_or(true)
            || caps::read(None, caps::CapSet::Ambient)
                .map(|s| !s.is_empty())
                .unwrap_or(true);
        PreparedPrivileges {
            last_cap,
            can_setpcap,
            has_caps,
        }
    }
}

/// The kernel's last capability number (`/proc/sys/kernel/cap_last_cap`): the highest one
/// `PR_CAPBSET_READ` accepts (past it, EINVAL: `cap_valid`), found in two `prctl`s on
/// today's kernels (40), else by bisection; opening the sysctl file costs more (in the
/// sandbox's fresh `/proc`, its first lookup). The file when `prctl` answers anything else.
fn last_cap() -> u32 {
    let valid = |c: u32| -> Option<bool> {
        // SAFETY: plain prctl, reads only.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAPBSET_READ,
                c as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
        match r {
            0 | 1 => Some(true),
            _ if r < 0 && errno() == libc::EINVAL => Some(false),
            _ => None,
        }
    };
    probe_last_cap(valid).unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

/// The highest `c` with `valid(c)` (valid up to some number in 0..64, invalid past it);
/// `None` when `valid` cannot tell.
fn probe_last_cap(valid: impl Fn(u32) -> Option<bool>) -> Option<u32> {
    if valid(40)? && !valid(41)? {
        return Some(40);
    }
    // Invariant: `lo` valid, `hi` not (capabilities are bits of a 64-bit set).
    let (mut lo, mut hi) = (0u32, 64u32);
    if !valid(lo)? || valid(hi)? {
        return None;
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if valid(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn errno() -> i32 {
    // SAFETY: errno of this thread.
    unsafe { *libc::__errno_location() }
}

/// prctl(PR_SET_NO_NEW_PRIVS, 1). Async-signal-safe.
pub(crate) fn set_no_new_privs() -> Result<(), i32> {
    // SAFETY: plain prctl.
    if unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } != 0
    {
        return Err(errno());
    }
    Ok(())
}

/// Drop every capability. Async-signal-safe.
pub(crate) fn drop_all(p: &PreparedPrivileges) -> Result<(), i32> {
    // SAFETY (all blocks below): plain prctl / capset with stack memory.
    unsafe {
        if p.can_setpcap {
            let bits = libc::SECBIT_NOROOT
                | libc::SECBIT_NOROOT_LOCKED
                | libc::SECBIT_NO_SETUID_FIXUP
                | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
                | libc::SECBIT_KEEP_CAPS_LOCKED
                | libc::SECBIT_NO_CAP_AMBIENT_RAISE
                | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
            if libc::prctl(
                libc::PR_SET_SECUREBITS,
                bits as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) != 0
            {
                return Err(errno());
            }
            for cap in 0..=p.last_cap {
                if libc::prctl(
                    libc::PR_CAPBSET_DROP,
                    cap as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                    0 as libc::c_ulong,
                ) != 0
                {
                    return Err(errno());
                }
            }
        }
        // Ambient first (capset would clear them anyway when permitted goes, but be explicit).
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        ) != 0
            && errno() != libc::EINVAL
        {
            return Err(errno());
        }
        let mut hdr = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The probe answers what the sysctl file says (the way it was read before).
    #[test]
    fn last_cap_matches_the_sysctl_file() {
        let file: Option<u32> = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let Some(f) = file {
            assert_eq!(super::last_cap(), f);
        }
    }

    /// Every kernel's last capability is found, whatever it is; an unclear answer is `None`.
    #[test]
    fn the_probe_finds_any_last_cap() {
        for last in 0..64u32 {
            assert_eq!(
                super::probe_last_cap(|c| Some(c <= last)),
                Some(last),
                "{last}"
            );
        }
        assert_eq!(super::probe_last_cap(|_| None), None);
        assert_eq!(
            super::probe_last_cap(|c| (c != 32).then_some(c <= 30)),
            None
        );
    }
}
