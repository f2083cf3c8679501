//! The seccomp filter, assembled by hand into classic BPF in the parent; the child only
//! hands the finished `sock_filter` array to `seccomp(SECCOMP_SET_MODE_FILTER)`.
//!
//! Why not `seccompiler` (in Cargo.toml): it cannot refuse the x32 ABI (x86_64 syscall
//! numbers with bit 30 set share AUDIT_ARCH_X86_64, so an arch check alone lets
//! `0x40000000|nr` through and bypasses a deny list written for the plain numbers), and it
//! gives one errno per filter where we want EPERM for hardening, EACCES for sockets and
//! ENOSYS for io_uring/clone3. The program is short and straight-line:
//!
//! 1. arch != x86_64 -> KILL_PROCESS (no i386 `int 0x80` detour).
//! 2. nr >= 0x40000000 (x32) -> KILL_PROCESS.
//! 3. The deny list -> ERRNO. io_uring_* and clone3 get ENOSYS: libuv (Node) and glibc treat
//!    ENOSYS as "kernel too old" and fall back to epoll / clone; everything else EPERM.
//! 4. Argument checks, each a self-contained block that always returns:
//!    - socket(domain): only the plan's families (EACCES otherwise);
//!    - clone(flags): any CLONE_NEW* flag -> EPERM (a user namespace would give the server
//!      a fresh set of capabilities inside it);
//!    - ioctl(fd, TIOCSTI | TIOCLINUX) -> EPERM (terminal input injection through an
//!      inherited tty fd, which Landlock's ioctl right does not cover);
//!    - personality(p): only the query (0xffffffff) and PER_LINUX (0) -> anything else
//!      (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC...) EPERM.
//! 5. Otherwise ALLOW. execve/execveat are never touched: the filter is installed last, just
//!    before exec, and must let exec through.
//!
//! Argument values are compared on their low 32 bits: these arguments are C `int`s the
//! kernel truncates, so the high half cannot change the meaning.

use serde::Serialize;

use super::plan::SocketFilter;

pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i // low 32 bits on little-endian
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Denied {
    pub name: &'static str,
    pub nr: i64,
    pub errno: i32,
}

macro_rules! deny {
    ($errno:expr; $($name:ident),* $(,)?) => {
        &[$(Denied { name: stringify!($name), nr: paste_sys!($name), errno: $errno }),*]
    };
}
macro_rules! paste_sys {
    (ptrace) => {
        libc::SYS_ptrace
    };
    (process_vm_readv) => {
        libc::SYS_process_vm_readv
    };
    (process_vm_writev) => {
        libc::SYS_process_vm_writev
    };
    (mount) => {
        libc::SYS_mount
    };
    (umount2) => {
        libc::SYS_umount2
    };
    (pivot_root) => {
        libc::SYS_pivot_root
    };
    (move_mount) => {
        libc::SYS_move_mount
    };
    (open_tree) => {
        libc::SYS_open_tree
    };
    (fsopen) => {
        libc::SYS_fsopen
    };
    (fsmount) => {
        libc::SYS_fsmount
    };
    (fsconfig) => {
        libc::SYS_fsconfig
    };
    (fspick) => {
        libc::SYS_fspick
    };
    (mount_setattr) => {
        libc::SYS_mount_setattr
    };
    (bpf) => {
        libc::SYS_bpf
    };
    (kexec_load) => {
        libc::SYS_kexec_load
    };
    (kexec_file_load) => {
        libc::SYS_kexec_file_load
    };
    (init_module) => {
        libc::SYS_init_module
    };
    (finit_module) => {
        libc::SYS_finit_module
    };
    (delete_module) => {
        libc::SYS_delete_module
    };
    (keyctl) => {
        libc::SYS_keyctl
    };
    (add_key) => {
        libc::SYS_add_key
    };
    (request_key) => {
        libc::SYS_request_key
    };
    (userfaultfd) => {
        libc::SYS_userfaultfd
    };
    (perf_event_open) => {
        libc::SYS_perf_event_open
    };
    (unshare) => {
        libc::SYS_unshare
    };
    (setns) => {
        libc::SYS_setns
    };
    (chroot) => {
        libc::SYS_chroot
    };
    (swapon) => {
        libc::SYS_swapon
    };
    (swapoff) => {
        libc::SYS_swapoff
    };
    (reboot) => {
        libc::SYS_reboot
    };
    (acct) => {
        libc::SYS_acct
    };
    (quotactl) => {
        libc::SYS_quotactl
    };
    (quotactl_fd) => {
        libc::SYS_quotactl_fd
    };
    (lookup_dcookie) => {
        libc::SYS_lookup_dcookie
    };
    (open_by_handle_at) => {
        libc::SYS_open_by_handle_at
    };
    (name_to_handle_at) => {
        libc::SYS_name_to_handle_at
    };
    (clock_settime) => {
        libc::SYS_clock_settime
    };
    (settimeofday) => {
        libc::SYS_settimeofday
    };
    (adjtimex) => {
        libc::SYS_adjtimex
    };
    (clock_adjtime) => {
        libc::SYS_clock_adjtime
    };
    (pidfd_getfd) => {
        libc::SYS_pidfd_getfd
    };
    (uselib) => {
        libc::SYS_uselib
    };
    (modify_ldt) => {
        libc::SYS_modify_ldt
    };
    (iopl) => {
        libc::SYS_iopl
    };
    (ioperm) => {
        libc::SYS_ioperm
    };
    (vhangup) => {
        libc::SYS_vhangup
    };
    (io_uring_setup) => {
        libc::SYS_io_uring_setup
    };
    (io_uring_enter) => {
        libc::SYS_io_uring_enter
    };
    (io_uring_register) => {
        libc::SYS_io_uring_register
    };
    (clone3) => {
        libc::SYS_clone3
    };
}

/// Refused with EPERM.
pub const DENY_EPERM: &[Denied] = deny!(libc::EPERM;
    ptrace, process_vm_readv, process_vm_writev, pidfd_getfd,
    mount, umount2, pivot_root, move_mount, open_tree, fsopen, fsmount, fsconfig, fspick, mount_setattr, chroot,
    unshare, setns,
    bpf, perf_event_open, userfaultfd,
    kexec_load, kexec_file_load, init_module, finit_module, delete_module,
    keyctl, add_key, request_key,
    swapon, swapoff, reboot, acct, quotactl, quotactl_fd, lookup_dcookie, vhangup,
    open_by_handle_at, name_to_handle_at,
    clock_settime, settimeofday, adjtimex, clock_adjtime,
    uselib, modify_ldt, iopl, ioperm,
);

/// Refused with ENOSYS ("not implemented": callers fall back).
pub const DENY_ENOSYS: &[Denied] =
    deny!(libc::ENOSYS; io_uring_setup, io_uring_enter, io_uring_register, clone3);

const CLONE_NEW_MASK: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

struct Asm(Vec<libc::sock_filter>);

impl Asm {
    fn stmt(&mut self, code: u32, k: u32) {
        self.0.push(libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        });
    }
    fn jump(&mut self, code: u32, k: u32, jt: u8, jf: u8) {
        self.0.push(libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        });
    }
    fn load(&mut self, off: u32) {
        self.stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, off);
    }
    fn ret(&mut self, action: u32) {
        self.stmt(libc::BPF_RET | libc::BPF_K, action);
    }
    /// `if A == k { return action }`
    fn if_eq_ret(&mut self, k: u32, action: u32) {
        self.jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, k, 0, 1);
        self.ret(action);
    }
    /// `if A == nr { <block> }` where the block always returns. Returns nothing; the block is
    /// built by `f` into a separate assembler so its length is known for the skip.
    fn if_nr_block(&mut self, nr: i64, f: impl FnOnce(&mut Asm)) {
        let mut block = Asm(Vec::new());
        f(&mut block);
        let len = block.0.len();
        assert!(len < 256, "seccomp block too long for a BPF short jump");
        self.jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            nr as u32,
            0,
            len as u8,
        );
        self.0.extend(block.0);
    }
}

pub const fn errno_action(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// Compile the filter. `sockets: None` leaves socket() alone (network `all`).
pub fn compile(sockets: Option<&SocketFilter>) -> Vec<libc::sock_filter> {
    let mut a = Asm(Vec::with_capacity(160));
    a.load(OFF_ARCH);
    a.jump(
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        AUDIT_ARCH_X86_64,
        1,
        0,
    );
    a.ret(libc::SECCOMP_RET_KILL_PROCESS);
    a.load(OFF_NR);
    a.jump(
        libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
        X32_SYSCALL_BIT,
        0,
        1,
    );
    a.ret(libc::SECCOMP_RET_KILL_PROCESS);
    for d in DENY_EPERM.iter().chain(DENY_ENOSYS) {
        a.if_eq_ret(d.nr as u32, errno_action(d.errno));
    }
    if let Some(sf) = sockets {
        a.if_nr_block(libc::SYS_socket, |b| {
            b.load(off_arg(0));
            for &fam in &sf.families {
                b.if_eq_ret(fam as u32, libc::SECCOMP_RET_ALLOW);
            }
            if sf.netlink_route {
                // if domain == AF_NETLINK && protocol == NETLINK_ROUTE: allow
                b.jump(
                    libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                    libc::AF_NETLINK as u32,
                    0,
                    3,
                );
                b.load(off_arg(2));
                b.if_eq_ret(libc::NETLINK_ROUTE as u32, libc::SECCOMP_RET_ALLOW);
            }
            b.ret(errno_action(libc::EACCES));
        });
    }
    a.if_nr_block(libc::SYS_clone, |b| {
        b.load(off_arg(0));
        b.jump(
            libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            CLONE_NEW_MASK,
            0,
            1,
        );
        b.ret(errno_action(libc::EPERM));
        b.ret(libc::SECCOMP_RET_ALLOW);
    });
    a.if_nr_block(libc::SYS_ioctl, |b| {
        b.load(off_arg(1));
        b.if_eq_ret(libc::TIOCSTI as u32, errno_action(libc::EPERM));
        b.if_eq_ret(libc::TIOCLINUX as u32, errno_action(libc::EPERM));
        b.ret(libc::SECCOMP_RET_ALLOW);
    });
    a.if_nr_block(libc::SYS_personality, |b| {
        b.load(off_arg(0));
        b.if_eq_ret(0xffff_ffff, libc::SECCOMP_RET_ALLOW);
        b.if_eq_ret(0, libc::SECCOMP_RET_ALLOW);
        b.ret(errno_action(libc::EPERM));
    });
    a.ret(libc::SECCOMP_RET_ALLOW);
    a.0
}

/// Is seccomp filtering available? (`seccomp(SECCOMP_GET_ACTION_AVAIL, KILL_PROCESS)`)
pub fn available() -> Result<(), String> {
    let action: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    // SAFETY: documented query with a pointer to a u32.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0u32,
            &action as *const u32,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "seccomp filters unavailable: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// In the child (no_new_privs already set): install the filter. Async-signal-safe.
pub fn install(prog: &[libc::sock_filter]) -> Result<(), i32> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points to a live program of `len` instructions.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0u32,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        // SAFETY: errno of this thread.
        Err(unsafe { *libc::__errno_location() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the instructions we emit, to test the program
    /// without loading it.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = prog[pc];
            let code = i.code as u32;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                    pc += 1;
                }
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c if c & 0x07 == libc::BPF_JMP => {
                    let t = match c & 0xf0 {
                        x if x == libc::BPF_JEQ => acc == i.k,
                        x if x == libc::BPF_JGE => acc >= i.k,
                        x if x == libc::BPF_JSET => acc & i.k != 0,
                        _ => panic!("op"),
                    };
                    pc += 1 + if t { i.jt as usize } else { i.jf as usize };
                }
                _ => panic!("unknown instruction {code:#x}"),
            }
        }
        panic!("no return");
    }

    const X: u32 = AUDIT_ARCH_X86_64;

    fn none_net() -> SocketFilter {
        SocketFilter {
            families: vec![libc::AF_UNIX],
            netlink_route: false,
        }
    }

    #[test]
    fn arch_and_x32() {
        let p = compile(Some(&none_net()));
        assert_eq!(
            run(&p, 0x4000_0003 /* i386 */, 1, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(
            run(&p, X, X32_SYSCALL_BIT | libc::SYS_getpid as u32, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(
            run(&p, X, libc::SYS_getpid as u32, [0; 6]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(&p, X, libc::SYS_execve as u32, [0; 6]),
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn deny_lists() {
        let p = compile(None);
        assert_eq!(
            run(&p, X, libc::SYS_ptrace as u32, [0; 6]),
            errno_action(libc::EPERM)
        );
        assert_eq!(
            run(&p, X, libc::SYS_mount as u32, [0; 6]),
            errno_action(libc::EPERM)
        );
        assert_eq!(
            run(&p, X, libc::SYS_io_uring_setup as u32, [0; 6]),
            errno_action(libc::ENOSYS)
        );
        assert_eq!(
            run(&p, X, libc::SYS_clone3 as u32, [0; 6]),
            errno_action(libc::ENOSYS)
        );
        // network `all`: socket untouched
        assert_eq!(
            run(
                &p,
                X,
                libc::SYS_socket as u32,
                [libc::AF_INET as u64, 1, 0, 0, 0, 0]
            ),
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn sockets() {
        let p = compile(Some(&none_net()));
        let s = |fam: i32, proto: u64| {
            run(
                &p,
                X,
                libc::SYS_socket as u32,
                [fam as u64, 1, proto, 0, 0, 0],
            )
        };
        assert_eq!(s(libc::AF_UNIX, 0), libc::SECCOMP_RET_ALLOW);
        for fam in [
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_PACKET,
            libc::AF_NETLINK,
            libc::AF_VSOCK,
        ] {
            assert_eq!(s(fam, 0), errno_action(libc::EACCES), "family {fam}");
        }
        // High bits do not smuggle AF_INET past the check (the kernel truncates to int).
        assert_eq!(
            run(
                &p,
                X,
                libc::SYS_socket as u32,
                [(1u64 << 32) | libc::AF_INET as u64, 1, 0, 0, 0, 0]
            ),
            errno_action(libc::EACCES)
        );
        let allow = SocketFilter {
            families: vec![libc::AF_UNIX, libc::AF_INET, libc::AF_INET6],
            netlink_route: true,
        };
        let p = compile(Some(&allow));
        let s = |fam: i32, proto: u64| {
            run(
                &p,
                X,
                libc::SYS_socket as u32,
                [fam as u64, 1, proto, 0, 0, 0],
            )
        };
        assert_eq!(s(libc::AF_INET6, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            s(libc::AF_NETLINK, libc::NETLINK_ROUTE as u64),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            s(libc::AF_NETLINK, 4 /* NETLINK_SOCK_DIAG */),
            errno_action(libc::EACCES)
        );
        assert_eq!(s(libc::AF_PACKET, 0), errno_action(libc::EACCES));
    }

    #[test]
    fn argument_blocks() {
        let p = compile(Some(&none_net()));
        let thread_flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD) as u64;
        assert_eq!(
            run(&p, X, libc::SYS_clone as u32, [thread_flags, 0, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(
                &p,
                X,
                libc::SYS_clone as u32,
                [libc::CLONE_NEWUSER as u64 | 17, 0, 0, 0, 0, 0]
            ),
            errno_action(libc::EPERM)
        );
        assert_eq!(
            run(
                &p,
                X,
                libc::SYS_ioctl as u32,
                [0, libc::TIOCSTI as u64, 0, 0, 0, 0]
            ),
            errno_action(libc::EPERM)
        );
        assert_eq!(
            run(
                &p,
                X,
                libc::SYS_ioctl as u32,
                [0, libc::TCGETS as u64, 0, 0, 0, 0]
            ),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(
                &p,
                X,
                libc::SYS_personality as u32,
                [0xffff_ffff, 0, 0, 0, 0, 0]
            ),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            run(
                &p,
                X,
                libc::SYS_personality as u32,
                [0x0040000 /* ADDR_NO_RANDOMIZE */, 0, 0, 0, 0, 0]
            ),
            errno_action(libc::EPERM)
        );
    }
}
