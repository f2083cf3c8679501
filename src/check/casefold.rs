//! Case-insensitive file systems: where a path lies below a directory whose lookups ignore case
//! (ext4/f2fs/tmpfs `casefold` directories, `chattr +F`; vfat, exfat), `/ws/SECRET` is the same
//! file as `/ws/secret`, so comparing components byte for byte would let a request around a
//! `deny` rule written in another case. Below that directory:
//!
//! - `deny` and `require_approval` prefixes match in ANY case ([`Fold::Loose`]: ASCII, and
//!   Unicode lower- and upper-case forms — matching too much only refuses more);
//! - mount containment and `allow` prefixes match ASCII case-insensitively only ([`Fold::Ascii`],
//!   what every case-insensitive file system equates), so `/ci/Work/x` is inside the mount
//!   `/ci/work`, and a mount more specific in another case (a read-only one) still wins.
//!
//! Components above the case-insensitive directory are compared exactly. The comparison is pure;
//! [`case_insensitive_from`] is the edge that asks the file system.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use crate::policy::Mount;

use super::path::MountRefusal;

/// How two components are compared below the case-insensitive point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// ASCII letters in any case (what admits).
    Ascii,
    /// ASCII, Unicode lower-case and upper-case forms (what refuses).
    Loose,
}

fn same(a: &OsStr, b: &OsStr, fold: Fold) -> bool {
    if a.as_bytes().eq_ignore_ascii_case(b.as_bytes()) {
        return true;
    }
    if fold == Fold::Ascii {
        return false;
    }
    match (a.to_str(), b.to_str()) {
        (Some(a), Some(b)) => {
            a.to_lowercase() == b.to_lowercase() || a.to_uppercase() == b.to_uppercase()
        }
        _ => false,
    }
}

/// Is `path` inside `root` (or equal), whole components, the components from index `from` on
/// (0 is the root directory `/`) compared case-insensitively?
pub(crate) fn within_folded(path: &Path, root: &Path, from: usize, fold: Fold) -> bool {
    let p: Vec<Component> = path.components().collect();
    let r: Vec<Component> = root.components().collect();
    if r.len() > p.len() {
        return false;
    }
    r.iter().zip(&p).enumerate().all(|(i, (rc, pc))| {
        if i < from {
            rc == pc
        } else {
            same(rc.as_os_str(), pc.as_os_str(), fold)
        }
    })
}

/// `path::mount_for` below a case-insensitive directory: containment by [`Fold::Ascii`], the
/// most specific mount wins.
pub(crate) fn mount_for_folded<'m>(
    resolved: &Path,
    mounts: &'m [Mount],
    write: bool,
    from: usize,
) -> Result<&'m Mount, MountRefusal> {
    let best = mounts
        .iter()
        .filter(|m| within_folded(resolved, &m.path, from, Fold::Ascii))
        .max_by_key(|m| m.path.components().count());
    match best {
        None => Err(MountRefusal::Outside),
        Some(m) if write && m.mode == crate::policy::MountMode::Ro => {
            Err(MountRefusal::ReadOnly(m.written.clone()))
        }
        Some(m) => Ok(m),
    }
}

/// The number of components of the outermost existing directory on `path` whose lookups ignore
/// case (its children are compared folded), or `None` when every existing ancestor is
/// case-sensitive. Only the existing ancestors are examined: a new name below a
/// case-insensitive directory inherits it.
pub(crate) fn case_insensitive_from(path: &Path) -> Option<usize> {
    let mut ancestors: Vec<&Path> = path.ancestors().collect();
    ancestors.reverse();
    for dir in ancestors {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            _ => break,
        }
        if dir_ignores_case(dir) {
            return Some(dir.components().count());
        }
    }
    None
}

#[cfg(target_os = "linux")]
#[allow(clippy::unnecessary_cast)] // the statfs type's width differs between architectures
fn dir_ignores_case(dir: &Path) -> bool {
    /// linux/fs.h: the directory's lookups fold case (`chattr +F`).
    const FS_CASEFOLD_FL: libc::c_long = 0x4000_0000;
    const EXFAT_SUPER_MAGIC: i64 = 0x2011_BAB0;
    if let Ok(st) = nix::sys::statfs::statfs(dir) {
        let t = st.filesystem_type().0 as i64;
        if t == libc::MSDOS_SUPER_MAGIC as i64 || t == EXFAT_SUPER_MAGIC {
            return true;
        }
    }
    let Ok(f) = std::fs::File::open(dir) else {
        return false;
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one c_long through the pointer, which lives for the call.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::FS_IOC_GETFLAGS,
            &mut flags as *mut libc::c_long,
        )
    };
    rc == 0 && flags & FS_CASEFOLD_FL != 0
}

#[cfg(not(target_os = "linux"))]
fn dir_ignores_case(_dir: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::MountMode;
    use std::path::PathBuf;

    fn w(p: &str, r: &str, from: usize, f: Fold) -> bool {
        within_folded(Path::new(p), Path::new(r), from, f)
    }

    #[test]
    fn folding_applies_below_the_case_insensitive_directory_only() {
        // `/ci` ignores case: its children (component 2 on) fold.
        assert!(w("/ci/SECRET/key", "/ci/secret", 2, Fold::Ascii));
        assert!(w("/ci/Secret", "/ci/secret", 2, Fold::Loose));
        assert!(!w("/CI/secret", "/ci/secret", 2, Fold::Loose));
        assert!(!w("/ci/secretx", "/ci/secret", 2, Fold::Loose));
        assert!(!w("/ci", "/ci/secret", 2, Fold::Loose));
        // Exact below a case-sensitive directory (no fold point: from past the end).
        assert!(!w("/ci/SECRET", "/ci/secret", usize::MAX, Fold::Loose));
        assert!(w("/ci/secret/a", "/ci/secret", usize::MAX, Fold::Loose));
    }

    #[test]
    fn loose_folding_refuses_more_than_ascii_admits() {
        // KELVIN SIGN lower-cases to `k`: a deny rule matches it, a mount does not admit it.
        assert!(w("/ci/\u{212A}eys", "/ci/keys", 2, Fold::Loose));
        assert!(!w("/ci/\u{212A}eys", "/ci/keys", 2, Fold::Ascii));
        assert!(w("/ci/ÉTÉ", "/ci/été", 2, Fold::Loose));
        assert!(!w("/ci/ÉTÉ", "/ci/été", 2, Fold::Ascii));
    }

    #[test]
    fn mounts_fold_and_the_most_specific_still_wins() {
        let m = |p: &str, mode| Mount {
            path: PathBuf::from(p),
            written: p.into(),
            mode,
        };
        let mounts = vec![
            m("/ci/ws", MountMode::Rw),
            m("/ci/WS/Private", MountMode::Ro),
        ];
        assert!(matches!(
            mount_for_folded(Path::new("/ci/ws/private/x"), &mounts, true, 2),
            Err(MountRefusal::ReadOnly(_))
        ));
        assert!(mount_for_folded(Path::new("/ci/Ws/notes"), &mounts, true, 2).is_ok());
        assert!(matches!(
            mount_for_folded(Path::new("/ci/other"), &mounts, false, 2),
            Err(MountRefusal::Outside)
        ));
    }

    #[test]
    fn ordinary_directories_are_case_sensitive() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(case_insensitive_from(&t.path().join("a/b")), None);
    }
}
