//! What the running kernel can enforce of a plan, said exactly.

use std::fmt;

use serde::Serialize;

use super::landlock::{abi_of_fs_right, fs_rights_for_abi, net_rights_for_abi, scopes_for_abi};
use super::plan::{FsAccess, SandboxPlan};
use super::privileges::PreparedPrivileges;
use super::seccomp::{self, Walls};
use crate::policy::schema::NetworkMode;

/// What the kernel offers here (looked up once; pure functions decide from it).
#[derive(Debug, Clone, Serialize)]
pub struct KernelFeatures {
    pub release: String,
    /// Landlock ABI version, or why Landlock is unusable.
    pub landlock: Result<u32, String>,
    pub seccomp: Result<(), String>,
    pub uid: u32,
    pub can_setpcap: bool,
    pub has_caps: bool,
}

impl KernelFeatures {
    pub fn detect() -> KernelFeatures {
        let p = PreparedPrivileges::detect();
        KernelFeatures {
            release: kernel_release(),
            landlock: super::landlock::abi_version(),
            seccomp: super::seccomp::available(),
            uid: nix::unistd::getuid().as_raw(),
            can_setpcap: p.can_setpcap,
            has_caps: p.has_caps,
        }
    }
}

pub(crate) fn kernel_release() -> String {
    // SAFETY: uname into a zeroed struct; fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        let s = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        format!("{} {} {}", s(&u.sysname), s(&u.release), s(&u.machine))
    }
}

/// How much of one part of the plan is enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "level")]
pub(crate) enum Level {
    Full,
    /// Enforced, except these (each names the ABI or feature that would be needed).
    Partial {
        missing: Vec<String>,
    },
    /// Not enforced at all.
    None {
        reason: String,
    },
    /// The policy does not ask for it.
    NotRequested,
}

impl Level {
    fn is_full(&self) -> bool {
        matches!(self, Level::Full | Level::NotRequested)
    }
    fn is_none(&self) -> bool {
        matches!(self, Level::None { .. })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Full => write!(f, "full"),
            Level::Partial { missing } => write!(f, "partial (missing: {})", missing.join("; ")),
            Level::None { reason } => write!(f, "none ({reason})"),
            Level::NotRequested => write!(f, "not requested"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Overall {
    Full,
    Partial,
    None,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Enforcement {
    pub(crate) landlock_abi: Option<u32>,
    pub(crate) landlock_fs: Level,
    pub(crate) landlock_net: Level,
    pub(crate) scopes: Level,
    pub(crate) seccomp: Level,
    pub(crate) no_new_privs: Level,
    pub(crate) caps_dropped: Level,
    /// Plan rules whose path does not exist here (nothing to grant; not a weakening).
    pub(crate) skipped_rules: Vec<String>,
    /// What the seccomp filter refuses for this plan (empty without seccomp).
    pub(crate) seccomp_walls: Vec<String>,
}

impl Enforcement {
    /// Pure: what `features` can enforce of `plan`.
    pub(crate) fn compute(plan: &SandboxPlan, features: &KernelFeatures) -> Enforcement {
        let abi = features.landlock.as_ref().ok().copied();
        let no_landlock = |what: &str| Level::None {
            reason: format!(
                "{what}: {}",
                features
                    .landlock
                    .as_ref()
                    .err()
                    .cloned()
                    .unwrap_or_default()
            ),
        };
        let landlock_fs = match (&plan.fs_rules, abi) {
            (None, _) => Level::NotRequested,
            (Some(_), None) => no_landlock("Landlock unavailable"),
            (Some(_), Some(abi)) => {
                // A right the kernel cannot handle is a right nobody restricts.
                let unknown = FsAccess::all().0 & !fs_rights_for_abi(abi);
                let missing: Vec<String> = FsAccess::NAMES
                    .iter()
                    .filter(|(b, _)| unknown & b != 0)
                    .map(|(b, n)| {
                        format!(
                            "{n} (Landlock ABI {}; this kernel has {abi})",
                            abi_of_fs_right(*b)
                        )
                    })
                    .collect();
                if missing.is_empty() {
                    Level::Full
                } else {
                    Level::Partial { missing }
                }
            }
        };
        let landlock_net = match (plan.net.mode, abi) {
            (NetworkMode::All, _) => Level::NotRequested,
            (NetworkMode::None, Some(a)) if net_rights_for_abi(a) != 0 => Level::Full,
            // `none` is carried by the socket() filter; Landlock TCP rules are only a second wall.
            (NetworkMode::None, _) => Level::NotRequested,
            (NetworkMode::Allowlist, Some(a)) if net_rights_for_abi(a) != 0 => Level::Full,
            (NetworkMode::Allowlist, Some(a)) => Level::None {
                reason: format!("TCP port rules need Landlock ABI 4; this kernel has {a}"),
            },
            (NetworkMode::Allowlist, None) => no_landlock("TCP port rules"),
        };
        let scopes = match abi {
            Some(a) if scopes_for_abi(a) != 0 => Level::Full,
            Some(a) => Level::None { reason: format!("abstract unix socket and signal scoping need Landlock ABI 6; this kernel has {a}") },
            None => no_landlock("scopes"),
        };
        let seccomp = match &features.seccomp {
            Ok(()) => Level::Full,
            Err(e) => Level::None { reason: e.clone() },
        };
        let caps_dropped = if features.can_setpcap || !features.has_caps {
            Level::Full
        } else {
            Level::Partial {
                missing: vec![
                    "bounding set (capjail holds capabilities but not CAP_SETPCAP)".into(),
                ],
            }
        };
        Enforcement {
            landlock_abi: abi,
            landlock_fs,
            landlock_net,
            scopes,
            seccomp,
            no_new_privs: Level::Full,
            caps_dropped,
            skipped_rules: Vec::new(),
            seccomp_walls: if features.seccomp.is_ok() {
                seccomp::describe(plan.net.socket_filter.as_ref(), &Walls::for_plan(plan))
            } else {
                Vec::new()
            },
        }
    }

    fn parts(&self) -> [(&'static str, &Level); 6] {
        [
            ("landlock-fs", &self.landlock_fs),
            ("landlock-net", &self.landlock_net),
            ("scopes", &self.scopes),
            ("seccomp", &self.seccomp),
            ("no_new_privs", &self.no_new_privs),
            ("caps", &self.caps_dropped),
        ]
    }

    pub(crate) fn overall(&self) -> Overall {
        let parts = self.parts();
        if parts.iter().all(|(_, l)| l.is_full()) {
            Overall::Full
        } else if parts
            .iter()
            .filter(|(_, l)| !matches!(l, Level::NotRequested))
            .all(|(_, l)| l.is_none())
        {
            Overall::None
        } else {
            Overall::Partial
        }
    }

    /// One line for stderr.
    pub(crate) fn summary(&self) -> String {
        let abi = self
            .landlock_abi
            .map(|a| format!("ABI {a}"))
            .unwrap_or_else(|| "unavailable".into());
        let parts = self
            .parts()
            .iter()
            .map(|(n, l)| {
                let s = match l {
                    Level::Full => "full",
                    Level::Partial { .. } => "partial",
                    Level::None { .. } => "NONE",
                    Level::NotRequested => "n/a",
                };
                format!("{n}={s}")
            })
            .collect::<Vec<_>>()
            .join(" ");
        format!(
            "kernel confinement {:?} (Landlock {abi}): {parts}",
            self.overall()
        )
        .replace("Full", "full")
        .replace("Partial", "PARTIAL")
        .replace("None (", "NONE (")
    }

    /// Everything that is not fully enforced, one item per line.
    pub(crate) fn gaps(&self) -> Vec<String> {
        self.parts()
            .iter()
            .filter(|(_, l)| !l.is_full())
            .map(|(n, l)| format!("{n}: {l}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};
    use crate::sandbox::facts::HostFacts;
    use crate::sandbox::plan::plan;

    fn features(abi: Result<u32, String>) -> KernelFeatures {
        KernelFeatures {
            release: "test".into(),
            landlock: abi,
            seccomp: Ok(()),
            uid: 0,
            can_setpcap: true,
            has_caps: true,
        }
    }

    fn p(net: &str) -> SandboxPlan {
        let y = format!("name: t\nfilesystem:\n  mounts:\n    - path: /tmp\n      mode: rw\nnetwork:\n  mode: {net}\n  {}\n", if net == "allowlist" { "allowed_hosts: [example.com]" } else { "" });
        plan(
            &load_str(&y, PolicySource::Inline).unwrap(),
            &["x".into()],
            &HostFacts::default(),
        )
    }

    #[test]
    fn abi7_is_full() {
        let e = Enforcement::compute(&p("allowlist"), &features(Ok(7)));
        assert_eq!(e.overall(), Overall::Full, "{e:?}");
    }

    #[test]
    fn abi3_is_partial_and_names_what_is_missing() {
        let e = Enforcement::compute(&p("allowlist"), &features(Ok(3)));
        assert_eq!(e.overall(), Overall::Partial);
        let Level::Partial { missing } = &e.landlock_fs else {
            panic!("{e:?}")
        };
        assert!(missing
            .iter()
            .any(|m| m.starts_with("ioctl_dev (Landlock ABI 5")));
        assert!(matches!(e.landlock_net, Level::None { .. }));
        assert!(matches!(e.scopes, Level::None { .. }));
        // network none on ABI 3: carried by seccomp
        let e = Enforcement::compute(&p("none"), &features(Ok(3)));
        assert_eq!(e.landlock_net, Level::NotRequested);
    }

    #[test]
    fn no_landlock_no_seccomp_is_none() {
        let mut f = features(Err("ENOSYS".into()));
        f.seccomp = Err("no".into());
        let e = Enforcement::compute(&p("none"), &f);
        // no_new_privs and caps still happen: partial, not none.
        assert_eq!(e.overall(), Overall::Partial);
        assert!(e.summary().contains("landlock-fs=NONE"));
    }
}
