//! Building the fresh root inside the new mount namespace (runs in the sandbox's PID 1,
//! single-threaded, before the server exists).
//!
//! Steps (the shape bubblewrap uses, written anew):
//! 1. every mount becomes private (nothing propagates back to the host);
//! 2. a tmpfs on `/tmp` becomes a scaffold root by `pivot_root`: the host's root is then at
//!    `/oldroot` (with its own `/tmp` visible again), and the new root is built at `/newroot`;
//! 3. each bind of the plan: the symlinks on its way are recreated, the real path is bound
//!    (`MS_BIND|MS_REC`) and then made read-only (recursively, `mount_setattr`) unless it
//!    writes; every bind is `nosuid,nodev`;
//! 4. `/dev`, `/dev/shm`, `/tmp`, `/proc`, empty `$HOME`;
//! 5. the new root's tmpfs made read-only, `pivot_root` into `/newroot`; then
//!    ([`detach_old_root`]) the old root detached.
//!
//! Nothing is ever created on the host: directories and files are only made on the tmpfs
//! (a path inside a bound host directory already exists there, as it does on the host).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::plan::WorldPlan;

const OLD: &str = "/oldroot";
const NEW: &str = "/newroot";

/// A step failed: which, on what, why.
#[derive(Debug, thiserror::Error)]
#[error("{step} {path}: {err}")]
pub(crate) struct RootError {
    pub(crate) step: &'static str,
    pub(crate) path: String,
    pub(crate) err: io::Error,
}

fn ctx<T>(
    r: Result<T, impl Into<io::Error>>,
    step: &'static str,
    path: &Path,
) -> Result<T, RootError> {
    r.map_err(|e| RootError {
        step,
        path: path.display().to_string(),
        err: e.into(),
    })
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn mnt(
    src: Option<&Path>,
    dst: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    step: &'static str,
) -> Result<(), RootError> {
    ctx(
        mount(src, dst, fstype, flags, data).map_err(nix_io),
        step,
        dst,
    )
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Set attributes on the mount at `path` and every mount below it.
fn set_attr_recursive(path: &Path, set: u64) -> Result<(), RootError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| RootError {
        step: "mount_setattr",
        path: path.display().to_string(),
        err: io::ErrorKind::InvalidInput.into(),
    })?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) with a valid path and a correctly sized struct.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r != 0 {
        return Err(RootError {
            step: "mount_setattr",
            path: path.display().to_string(),
            err: io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn under(base: &str, p: &Path) -> PathBuf {
    let rel = p.strip_prefix("/").unwrap_or(p);
    Path::new(base).join(rel)
}

/// Build the root and pivot into it; notes about plan paths that do not exist here. The old
/// root is still stacked under `/` when this returns: [`detach_old_root`] finishes.
pub(crate) fn build(world: &WorldPlan) -> Result<Vec<String>, RootError> {
    let s = scaffold()?;
    build_on(s, world)
}

/// Steps 1 and 2 made ([`scaffold`]): the plan's part of the root can be built on it.
pub(crate) struct Scaffold(());

/// Steps 1 and 2 of [`build`] (nothing of the plan in them): every mount private, the
/// scaffold root pivoted into, the host's root at `/oldroot`, an empty tmpfs at `/newroot`.
pub(crate) fn scaffold() -> Result<Scaffold, RootError> {
    let root = Path::new("/");
    mnt(
        None,
        root,
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
        "make-private",
    )?;
    let base = Path::new("/tmp");
    mnt(
        Some(Path::new("tmpfs")),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
        "tmpfs scaffold",
    )?;
    ctx(
        fs::create_dir("/tmp/oldroot"),
        "mkdir",
        Path::new("/tmp/oldroot"),
    )?;
    ctx(
        fs::create_dir("/tmp/newroot"),
        "mkdir",
        Path::new("/tmp/newroot"),
    )?;
    mnt(
        Some(Path::new("tmpfs")),
        Path::new("/tmp/newroot"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
        "tmpfs root",
    )?;
    ctx(std::env::set_current_dir(base), "chdir", base)?;
    ctx(
        nix::unistd::pivot_root(".", "oldroot").map_err(nix_io),
        "pivot_root",
        base,
    )?;
    ctx(std::env::set_current_dir("/"), "chdir", root)?;
    Ok(Scaffold(()))
}

/// [`build`] from step 3, on the scaffold.
pub(crate) fn build_on(_: Scaffold, world: &WorldPlan) -> Result<Vec<String>, RootError> {
    let mut notes = Vec::new();
    if world.private_tmp {
        let t = Path::new("/newroot/tmp");
        mkdirs(t)?;
        mnt(
            Some(Path::new("tmpfs")),
            t,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
            "tmpfs /tmp",
        )?;
    }
    // A bind whose real path lies under (or is) the real path of a LATER bind would be
    // stacked over by that one and never seen (the invoked `/usr/bin/python3` and the
    // executable `/usr/bin/python3.11`; the loader under `/usr/lib`; `/etc/localtime`'s
    // target under `/usr/share/zoneinfo`): its symlinks are still recreated, its mount is
    // skipped (what the server sees is unchanged, the mounts are fewer).
    let real: Vec<Option<PathBuf>> = world.binds.iter().map(|b| resolve(&b.path)).collect();
    let hidden = |i: usize| -> bool {
        let Some(me) = &real[i] else { return false };
        real[i + 1..]
            .iter()
            .flatten()
            .any(|later| me.starts_with(later))
    };
    for (i, b) in world.binds.iter().enumerate() {
        // (`place` is idempotent: should it fail here, the bind below reports it as before.)
        if hidden(i) && place(&b.path, 0).is_ok() {
            continue;
        }
        match bind(&b.path, b.writable, b.overlay.then_some((i, world.user))) {
            Ok(()) => {}
            Err(e) if e.err.kind() == io::ErrorKind::NotFound && e.step == "lstat" && b.overlay => {
                // A package cache the user does not have yet: an empty private one (tmpfs),
                // discarded at the end like every overlay's layer.
                let t = under(NEW, &b.path);
                let made = mkdirs(&t).and_then(|()| {
                    mnt(
                        Some(Path::new("tmpfs")),
                        &t,
                        Some("tmpfs"),
                        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                        Some("mode=755"),
                        "tmpfs for a missing package cache",
                    )
                });
                notes.push(match made {
                    Ok(()) => format!(
                        "{} does not exist here: an empty private one for this session",
                        b.path.display()
                    ),
                    Err(_) => format!("{} does not exist here: not in the world", b.path.display()),
                });
            }
            Err(e) if e.err.kind() == io::ErrorKind::NotFound && e.step == "lstat" => {
                notes.push(format!(
                    "{} does not exist here: not in the world",
                    b.path.display()
                ));
            }
            Err(e) => return Err(e),
        }
    }
    devices()?;
    let proc_ = Path::new("/newroot/proc");
    mkdirs(proc_)?;
    mnt(
        Some(Path::new("proc")),
        proc_,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
        "mount /proc",
    )?;
    if let Some(h) = &world.empty_home {
        mkdirs(&under(NEW, h))?;
    }

    let nr = Path::new(NEW);
    // The new root's tmpfs is made read-only now, while this single-threaded process is the
    // only one in the namespace. Made after the server's process is forked (see
    // [`detach_old_root`]), the remount raced with that process and failed once in CI with
    // EBUSY (a write reference on the mount: most likely the atime update of a path walk
    // through the root's freshly recreated symlinks).
    mnt(
        None,
        nr,
        None,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None,
        "read-only root",
    )?;
    ctx(std::env::set_current_dir(nr), "chdir", nr)?;
    ctx(
        nix::unistd::pivot_root(".", ".").map_err(nix_io),
        "pivot_root",
        nr,
    )?;
    Ok(notes)
}

/// The last step of [`build`], split off so the server's process can be forked (and prepare
/// its Landlock ruleset and seccomp filter) while this waits: detach the old root, stacked on
/// the new one at `/` by `pivot_root(".", ".")` (its `umount2` waits for an RCU grace period,
/// 2-15 ms on a loaded VM); the new root is already read-only ([`build`] made it so before
/// the fork). The caller's working directory must still be the new root (as [`build`] leaves
/// it). Until this returns, nothing may run but capjail's own code: the old root is still in
/// the mount namespace.
pub(crate) fn detach_old_root() -> Result<(), RootError> {
    let root = Path::new("/");
    ctx(
        umount2(".", MntFlags::MNT_DETACH).map_err(nix_io),
        "detach old root",
        root,
    )?;
    ctx(std::env::set_current_dir("/"), "chdir", root)
}

/// `mkdir -p` on the new root's tmpfs.
fn mkdirs(p: &Path) -> Result<(), RootError> {
    ctx(fs::create_dir_all(p), "mkdir", p)
}

/// Bind the host's `path` at the same path in the new root (`overlay`: a copy-on-write view
/// whose changes go to a per-session layer, discarded at the end).
fn bind(path: &Path, writable: bool, overlay: Option<(usize, bool)>) -> Result<(), RootError> {
    let (src, dst) = place(path, 0)?;
    if let Some((n, userns)) = overlay {
        let layer = PathBuf::from(format!("/overlay{n}"));
        let (upper, work) = (layer.join("upper"), layer.join("work"));
        mkdirs(&upper)?;
        mkdirs(&work)?;
        let s = src.to_string_lossy();
        if s.contains([',', ':']) {
            return Err(RootError {
                step: "overlay",
                path: path.display().to_string(),
                err: io::ErrorKind::InvalidInput.into(),
            });
        }
        let opts = format!(
            "lowerdir={s},upperdir={},workdir={}{}",
            upper.display(),
            work.display(),
            if userns { ",userxattr" } else { "" }
        );
        return mnt(
            Some(Path::new("overlay")),
            &dst,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(&opts),
            "overlay",
        );
    }
    mnt(
        Some(&src),
        &dst,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
        "bind",
    )?;
    let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if !writable {
        attrs |= MOUNT_ATTR_RDONLY;
    }
    set_attr_recursive(&dst, attrs)
}

/// What the old root holds at a host path, as far as the walks of [`resolve`] and [`place`]
/// care: a symlink (its target), anything else, or the failed step and its errno.
#[derive(Clone)]
enum HostEntry {
    Link(PathBuf),
    NotLink,
    Failed(&'static str, i32),
}

thread_local! {
    /// Every host path looked at while building this root: the walks of every bind go
    /// through the same prefixes (`/usr`, `/usr/lib`, `/etc`, ...), twice (resolve, place);
    /// the old root is not changed by the build (everything is made under the new root).
    static HOST: std::cell::RefCell<std::collections::HashMap<PathBuf, HostEntry>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// `lstat` of the host's `path` (read through the old root), and `readlink` when it is a
/// symlink: `Some(target)` for a symlink, `None` for anything else. Looked up once.
fn host_entry(path: &Path) -> Result<Option<PathBuf>, RootError> {
    let known = HOST.with(|h| h.borrow().get(path).cloned());
    let entry = match known {
        Some(e) => e,
        None => {
            let host = under(OLD, path);
            let errno = |e: io::Error| e.raw_os_error().unwrap_or(libc::EIO);
            let e = match fs::symlink_metadata(&host) {
                Err(e) => HostEntry::Failed("lstat", errno(e)),
                Ok(m) if m.file_type().is_symlink() => match fs::read_link(&host) {
                    Ok(t) => HostEntry::Link(t),
                    Err(e) => HostEntry::Failed("readlink", errno(e)),
                },
                Ok(_) => HostEntry::NotLink,
            };
            HOST.with(|h| h.borrow_mut().insert(path.to_path_buf(), e.clone()));
            e
        }
    };
    match entry {
        HostEntry::Link(t) => Ok(Some(t)),
        HostEntry::NotLink => Ok(None),
        HostEntry::Failed(step, e) => Err(RootError {
            step,
            path: path.display().to_string(),
            err: io::Error::from_raw_os_error(e),
        }),
    }
}

/// Recreate the symlinks on the way to `path` in the new root and make its mount point;
/// returns (host source, target) of the real path.
fn place(path: &Path, depth: u32) -> Result<(PathBuf, PathBuf), RootError> {
    if depth > 40 {
        return Err(RootError {
            step: "resolve",
            path: path.display().to_string(),
            err: io::Error::from_raw_os_error(libc::ELOOP),
        });
    }
    // Walk the components; at the first symlink, recreate it and continue with its target.
    let mut cur = PathBuf::from("/");
    let comps: Vec<Component> = path.components().collect();
    for (i, c) in comps.iter().enumerate() {
        match c {
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir => {
                cur.pop();
                continue;
            }
            Component::Normal(name) => {
                let next = cur.join(name);
                if let Some(target) = host_entry(&next)? {
                    let link = under(NEW, &next);
                    if fs::symlink_metadata(&link).is_err() {
                        mkdirs(link.parent().unwrap_or(Path::new(NEW)))?;
                        ctx(symlink(&target, &link), "symlink", &next)?;
                    }
                    let mut resolved = if target.is_absolute() {
                        target
                    } else {
                        cur.join(target)
                    };
                    for rest in &comps[i + 1..] {
                        resolved.push(rest.as_os_str());
                    }
                    return place(&normalize_dots(&resolved), depth + 1);
                }
                cur = next;
            }
            Component::Prefix(_) => {}
        }
    }
    let src = under(OLD, &cur);
    let dst = under(NEW, &cur);
    let meta = ctx(fs::metadata(&src), "stat", &cur)?;
    if fs::symlink_metadata(&dst).is_err() {
        if meta.is_dir() {
            mkdirs(&dst)?;
        } else {
            mkdirs(dst.parent().unwrap_or(Path::new(NEW)))?;
            ctx(
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&dst),
                "create mount point",
                &cur,
            )?;
        }
    }
    Ok((src, dst))
}

/// The host's real path of `path` (its symlinks followed, read through the old root), or
/// `None` when it does not resolve (a missing path, a loop): such a bind is never counted as
/// covering another, nor skipped. Creates nothing.
fn resolve(path: &Path) -> Option<PathBuf> {
    // The same walk as `place`'s, without creating anything.
    let mut p = path.to_path_buf();
    for _ in 0..=40 {
        let mut cur = PathBuf::from("/");
        let comps: Vec<Component> = p.components().collect();
        let mut next = None;
        for (i, c) in comps.iter().enumerate() {
            let name = match c {
                Component::Normal(name) => name,
                Component::ParentDir => {
                    cur.pop();
                    continue;
                }
                _ => continue,
            };
            let step = cur.join(name);
            if let Some(target) = host_entry(&step).ok()? {
                let mut r = if target.is_absolute() {
                    target
                } else {
                    cur.join(target)
                };
                for rest in &comps[i + 1..] {
                    r.push(rest.as_os_str());
                }
                next = Some(normalize_dots(&r));
                break;
            }
            cur = step;
        }
        match next {
            Some(n) => p = n,
            None => return Some(cur),
        }
    }
    None
}

/// `a/b/../c` -> `a/c` (only after a real directory, which the walk guarantees).
fn normalize_dots(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// A minimal `/dev`: null, zero, full, random, urandom (bound from the host: a user namespace
/// cannot mknod), `/dev/shm`, and the fd symlinks. No tty, no pts.
fn devices() -> Result<(), RootError> {
    let dev = Path::new("/newroot/dev");
    mkdirs(dev)?;
    mnt(
        Some(Path::new("tmpfs")),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755"),
        "tmpfs /dev",
    )?;
    for name in ["null", "zero", "full", "random", "urandom"] {
        let src = Path::new(OLD).join("dev").join(name);
        if fs::metadata(&src).is_err() {
            continue;
        }
        let dst = dev.join(name);
        ctx(
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&dst),
            "create device node",
            &dst,
        )?;
        mnt(
            Some(&src),
            &dst,
            None,
            MsFlags::MS_BIND,
            None,
            "bind device",
        )?;
        set_attr_recursive(&dst, MOUNT_ATTR_NOSUID)?;
    }
    let shm = dev.join("shm");
    mkdirs(&shm)?;
    mnt(
        Some(Path::new("tmpfs")),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=1777"),
        "tmpfs /dev/shm",
    )?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let l = dev.join(name);
        ctx(symlink(OsStr::new(target), &l), "symlink", &l)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_and_under() {
        assert_eq!(
            normalize_dots(Path::new("/usr/bin/../lib/x")),
            PathBuf::from("/usr/lib/x")
        );
        assert_eq!(under(NEW, Path::new("/a/b")), PathBuf::from("/newroot/a/b"));
    }
}
