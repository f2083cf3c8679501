//! The server's own network namespace with one way out (Linux).
//!
//! Between fork and exec, the server's process (still single-threaded) unshares a network
//! namespace (with a user namespace first when capjail is not root, mapping only its own uid
//! and gid), brings `lo` up, creates a TCP listener on `127.0.0.1:EGRESS_PORT` INSIDE the new
//! namespace, and passes that listener's descriptor to capjail over an inherited unix socket
//! (SCM_RIGHTS) before the rest of the confinement is applied. capjail, outside, accepts on it:
//! the server's connections to `127.0.0.1:EGRESS_PORT` arrive at the egress point, and there is
//! no other route (only `lo` exists inside; no resolver listens there). An unprivileged capjail
//! could not `setns` into the namespace; handing the listener out avoids needing to.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The egress point's port on the namespace's loopback.
pub(crate) const EGRESS_PORT: u16 = 3128;

/// The proxy URL the server is given.
pub(crate) fn proxy_url() -> String {
    format!("http://127.0.0.1:{EGRESS_PORT}")
}

/// capjail's end of the hand-over socket: yields the listener once the child made it.
pub(crate) struct Pending {
    parent: UnixStream,
}

/// What the child's pre-exec step needs, prepared before fork (no allocation after it).
struct ChildSide {
    sock: OwnedFd,
    /// `"deny"`, `"<uid> <uid> 1\n"`, `"<gid> <gid> 1\n"` when a user namespace is needed.
    userns: Option<(Vec<u8>, Vec<u8>)>,
}

/// Create the hand-over socket pair and install the namespace step as a `pre_exec` of `cmd`.
/// Install it BEFORE the rest of the confinement: it needs the privileges that step drops.
pub(crate) fn install(cmd: &mut Command) -> io::Result<Pending> {
    let (parent, child) = UnixStream::pair()?; // both close-on-exec
                                               // SAFETY: plain getters.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let side = Arc::new(ChildSide {
        sock: OwnedFd::from(child),
        userns: (uid != 0).then(|| {
            (
                format!("{uid} {uid} 1\n").into_bytes(),
                format!("{gid} {gid} 1\n").into_bytes(),
            )
        }),
    });
    // SAFETY: the closure makes raw syscalls on memory prepared before fork only.
    unsafe {
        cmd.pre_exec(move || child_step(&side).map_err(io::Error::from_raw_os_error));
    }
    Ok(Pending { parent })
}

impl Pending {
    /// Wait (bounded) for the listener the child made. Call after the spawn succeeded and the
    /// command (holding the child's end) was dropped.
    pub(crate) fn receive(self, limit: Duration) -> io::Result<std::net::TcpListener> {
        self.parent.set_read_timeout(Some(limit))?;
        let fd = recv_fd(self.parent.as_raw_fd())?;
        // SAFETY: a descriptor we just received and own.
        Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
    }
}

fn errno() -> i32 {
    // SAFETY: errno of this thread.
    unsafe { *libc::__errno_location() }
}

/// Runs in the child between fork and exec: async-signal-safe syscalls only.
fn child_step(c: &ChildSide) -> Result<(), i32> {
    // SAFETY (whole function): raw syscalls on stack memory or memory owned by `c`.
    unsafe {
        match &c.userns {
            None => {
                if libc::unshare(libc::CLONE_NEWNET) != 0 {
                    return Err(errno());
                }
            }
            Some((uid_map, gid_map)) => {
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
                    return Err(errno());
                }
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", uid_map)?;
                write_file(c"/proc/self/gid_map", gid_map)?;
            }
        }
        loopback_up()?;
        listen_and_send(c.sock.as_raw_fd())
    }
}

/// Create the egress listener on `127.0.0.1:EGRESS_PORT` in the current network namespace and
/// send it over `sock` (SCM_RIGHTS). Async-signal-safe.
fn listen_and_send(sock: RawFd) -> Result<(), i32> {
    // SAFETY: raw syscalls on stack memory.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(errno());
        }
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: EGRESS_PORT.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
            || libc::listen(fd, 128) != 0
        {
            let e = errno();
            libc::close(fd);
            return Err(e);
        }
        let sent = send_fd(sock, fd);
        libc::close(fd);
        sent
    }
}

/// The argument that hands the setup process of the server's world (`sandbox::world`) the
/// hand-over socket: `--egress-fd=N`.
pub(crate) const SETUP_EGRESS_ARG: &str = "--egress-fd=";

/// The world's path: `cmd` is already the setup process (after `apply_to`). Its init, in the
/// new network namespace with `lo` up, calls [`hand_over`] with the descriptor named by the
/// argument added here.
pub(crate) fn attach_to_setup(cmd: &mut Command) -> io::Result<Pending> {
    let (parent, child) = UnixStream::pair()?;
    let child = Arc::new(OwnedFd::from(child));
    cmd.arg(format!("{SETUP_EGRESS_ARG}{}", child.as_raw_fd()));
    // SAFETY: fcntl on a descriptor kept alive by the closure.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(child.as_raw_fd(), libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(Pending { parent })
}

/// In the world's init (inside the new network namespace, `lo` up): make the listener, send
/// it to capjail, close the hand-over socket.
pub(crate) fn hand_over(sock: RawFd) -> io::Result<()> {
    let r = listen_and_send(sock);
    // SAFETY: the descriptor was handed to us; closed once.
    unsafe { libc::close(sock) };
    r.map_err(io::Error::from_raw_os_error)
}

/// SAFETY: async-signal-safe; `path` and `data` are prepared before fork.
unsafe fn write_file(path: &std::ffi::CStr, data: &[u8]) -> Result<(), i32> {
    let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return Err(errno());
    }
    let n = libc::write(fd, data.as_ptr().cast(), data.len());
    let e = errno();
    libc::close(fd);
    if n != data.len() as isize {
        return Err(if n < 0 { e } else { libc::EIO });
    }
    Ok(())
}

/// SAFETY: async-signal-safe ioctls on a socket of our own.
unsafe fn loopback_up() -> Result<(), i32> {
    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if fd < 0 {
        return Err(errno());
    }
    let mut ifr: libc::ifreq = std::mem::zeroed();
    for (i, b) in b"lo\0".iter().enumerate() {
        ifr.ifr_name[i] = *b as libc::c_char;
    }
    let mut r = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr);
    if r == 0 {
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        r = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr);
    }
    let e = errno();
    libc::close(fd);
    if r != 0 {
        return Err(e);
    }
    Ok(())
}

const CMSG_SPACE: usize = 64;

/// SAFETY: async-signal-safe sendmsg with stack buffers.
unsafe fn send_fd(sock: RawFd, fd: RawFd) -> Result<(), i32> {
    let mut byte = [b'L'];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u8; CMSG_SPACE];
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
    let cmsg = libc::CMSG_FIRSTHDR(&msg);
    (*cmsg).cmsg_level = libc::SOL_SOCKET;
    (*cmsg).cmsg_type = libc::SCM_RIGHTS;
    (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
    std::ptr::copy_nonoverlapping(
        &fd as *const RawFd as *const u8,
        libc::CMSG_DATA(cmsg),
        std::mem::size_of::<RawFd>(),
    );
    if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) != 1 {
        return Err(errno());
    }
    Ok(())
}

fn recv_fd(sock: RawFd) -> io::Result<RawFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut cbuf = [0u8; CMSG_SPACE];
    // SAFETY: recvmsg into stack buffers; the control message is read only when present.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = CMSG_SPACE as _;
        let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if n == 0 || cmsg.is_null() {
            return Err(io::Error::other(
                "the server's namespace did not hand over the egress listener",
            ));
        }
        if (*cmsg).cmsg_level != libc::SOL_SOCKET || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::other("unexpected control message"));
        }
        let mut fd: RawFd = -1;
        std::ptr::copy_nonoverlapping(
            libc::CMSG_DATA(cmsg),
            &mut fd as *mut RawFd as *mut u8,
            std::mem::size_of::<RawFd>(),
        );
        Ok(fd)
    }
}

/// Can a process here get its own network namespace the way the server's will? Tried in a
/// forked child (a user namespace needs a single-threaded process). `Err`: why not.
pub(crate) fn available() -> Result<(), String> {
    // SAFETY: plain getter.
    let root = unsafe { libc::geteuid() } == 0;
    let flags = if root {
        libc::CLONE_NEWNET
    } else {
        libc::CLONE_NEWUSER | libc::CLONE_NEWNET
    };
    // SAFETY: the child only calls unshare and _exit (async-signal-safe).
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return Err(format!("fork: {}", io::Error::last_os_error()));
        }
        if pid == 0 {
            let code = if libc::unshare(flags) == 0 {
                0
            } else {
                errno().clamp(1, 255)
            };
            libc::_exit(code);
        }
        let mut status = 0;
        if libc::waitpid(pid, &mut status, 0) != pid {
            return Err(format!("waitpid: {}", io::Error::last_os_error()));
        }
        match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
            Some(0) => Ok(()),
            Some(e) => Err(format!(
                "unshare({}): {}",
                if root {
                    "CLONE_NEWNET"
                } else {
                    "CLONE_NEWUSER|CLONE_NEWNET"
                },
                io::Error::from_raw_os_error(e)
            )),
            None => Err("the namespace probe did not exit normally".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// The listener made inside a fresh namespace answers only there: a process in the
    /// namespace reaches capjail through it, and nothing else.
    #[test]
    fn listener_is_handed_out_of_a_fresh_namespace() {
        if let Err(e) = available() {
            eprintln!("SKIP: no network namespace here: {e}");
            return;
        }
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            "import socket,sys\ns=socket.create_connection(('127.0.0.1',3128),timeout=5)\ns.sendall(b'ping')\nprint(s.recv(4).decode())\n",
        ]);
        cmd.stdout(std::process::Stdio::piped());
        let pending = install(&mut cmd).unwrap();
        let child = cmd.spawn().unwrap();
        drop(cmd);
        let l = pending.receive(Duration::from_secs(10)).unwrap();
        let (mut c, _) = l.accept().unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        c.write_all(b"pong").unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "pong");
    }
}
