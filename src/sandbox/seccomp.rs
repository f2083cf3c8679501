//! The seccomp filter: built with `seccompiler` in the parent, installed in the child with
//! one raw `seccomp(SECCOMP_SET_MODE_FILTER)` call on the finished program.
//!
//! `seccompiler` expresses everything in the filter except two things, which a small
//! hand-written supplement does:
//!
//! 1. **x32.** On x86_64, syscall numbers with bit 30 set (the x32 ABI) share
//!    `AUDIT_ARCH_X86_64`, so seccompiler's arch check lets `0x40000000|nr` through, and a
//!    deny list written for the plain numbers would not match them. The supplement is the
//!    program's first four instructions: arch != x86_64 -> KILL_PROCESS (no i386 `int 0x80`
//!    detour); nr >= 0x40000000 -> KILL_PROCESS.
//! 2. **More than one errno.** A `SeccompFilter` has one match action. capjail wants EPERM
//!    for hardening, EACCES for sockets and ENOSYS for io_uring/clone3 (libuv and glibc treat
//!    ENOSYS as "kernel too old" and fall back to epoll / clone). So one `SeccompFilter` is
//!    compiled per errno (mismatch action ALLOW) and the programs are LINKED: each one's
//!    leading arch check is dropped (the supplement did it) and every `RET ALLOW` in it
//!    becomes a `JA` to the next program (same length, so seccompiler's own jump offsets stay
//!    valid); the last instruction is `RET ALLOW`. The result is one straight program with
//!    forward jumps only, installed with one syscall, so the child keeps a single
//!    async-signal-safe `install` call.
//!
//! What is refused (see the tables below; each group has a unit test):
//! - always EPERM: ptrace and cross-process memory, mounts, namespaces (`unshare`, `setns`,
//!   `clone` with any `CLONE_NEW*` flag: a nested user namespace would hand the server every
//!   capability inside it), bpf, perf, modules, keyrings, clocks, ...;
//!   `ioctl(TIOCSTI|TIOCLINUX)`; `personality` other than the query and `PER_LINUX`;
//! - acting on other processes: `prlimit64`, `sched_setaffinity`, `sched_setscheduler`,
//!   `sched_setparam`, `sched_setattr` only with pid 0 (the caller); `setpriority` only
//!   `(PRIO_PROCESS, 0)`; `ioprio_set` only `(IOPRIO_WHO_PROCESS, 0)`. EPERM otherwise: an
//!   `RLIMIT_CPU` of 1 s on a process of the same uid kills it, `RLIMIT_FSIZE` on capjail
//!   crashes it before its audit record is written;
//! - [`DENY_PATH_METADATA`] (chmod, chown, xattr by path; not timestamps, see there) without
//!   a mount namespace; [`DENY_SYSV_IPC`] without an IPC namespace ([`Walls`]);
//! - ENOSYS: io_uring_*, clone3;
//! - EACCES: `socket()` of a family the plan does not allow, and `socket(AF_UNIX)` unless the
//!   policy names unix sockets (`network.unix_sockets`): Landlock does not govern `connect()`
//!   on a pathname socket, so without this an ssh-agent or a root daemon's socket is one
//!   connect away. `socketpair(AF_UNIX)` is not touched (Node and Python need it, and its
//!   two ends are connected to each other only).
//!
//! execve/execveat are never touched: the filter is installed last, just before exec.
//! Argument values are compared on their low 32 bits where the kernel reads a C `int`
//! (`Dword`), on all 64 bits for pointers (`Qword`).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use serde::Serialize;

use super::plan::{SandboxPlan, SocketFilter};

pub(crate) const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Denied {
    pub(crate) name: &'static str,
    pub(crate) nr: i64,
    pub(crate) errno: i32,
}

/// Refused with EPERM, always.
pub(crate) const DENY_EPERM: &[Denied] = &[
    Denied {
        name: "ptrace",
        nr: libc::SYS_ptrace,
        errno: libc::EPERM,
    },
    Denied {
        name: "process_vm_readv",
        nr: libc::SYS_process_vm_readv,
        errno: libc::EPERM,
    },
    Denied {
        name: "process_vm_writev",
        nr: libc::SYS_process_vm_writev,
        errno: libc::EPERM,
    },
    Denied {
        name: "pidfd_getfd",
        nr: libc::SYS_pidfd_getfd,
        errno: libc::EPERM,
    },
    Denied {
        name: "mount",
        nr: libc::SYS_mount,
        errno: libc::EPERM,
    },
    Denied {
        name: "umount2",
        nr: libc::SYS_umount2,
        errno: libc::EPERM,
    },
    Denied {
        name: "pivot_root",
        nr: libc::SYS_pivot_root,
        errno: libc::EPERM,
    },
    Denied {
        name: "move_mount",
        nr: libc::SYS_move_mount,
        errno: libc::EPERM,
    },
    Denied {
        name: "open_tree",
        nr: libc::SYS_open_tree,
        errno: libc::EPERM,
    },
    Denied {
        name: "fsopen",
        nr: libc::SYS_fsopen,
        errno: libc::EPERM,
    },
    Denied {
        name: "fsmount",
        nr: libc::SYS_fsmount,
        errno: libc::EPERM,
    },
    Denied {
        name: "fsconfig",
        nr: libc::SYS_fsconfig,
        errno: libc::EPERM,
    },
    Denied {
        name: "fspick",
        nr: libc::SYS_fspick,
        errno: libc::EPERM,
    },
    Denied {
        name: "mount_setattr",
        nr: libc::SYS_mount_setattr,
        errno: libc::EPERM,
    },
    Denied {
        name: "chroot",
        nr: libc::SYS_chroot,
        errno: libc::EPERM,
    },
    Denied {
        name: "unshare",
        nr: libc::SYS_unshare,
        errno: libc::EPERM,
    },
    Denied {
        name: "setns",
        nr: libc::SYS_setns,
        errno: libc::EPERM,
    },
    Denied {
        name: "bpf",
        nr: libc::SYS_bpf,
        errno: libc::EPERM,
    },
    Denied {
        name: "perf_event_open",
        nr: libc::SYS_perf_event_open,
        errno: libc::EPERM,
    },
    Denied {
        name: "userfaultfd",
        nr: libc::SYS_userfaultfd,
        errno: libc::EPERM,
    },
    Denied {
        name: "kexec_load",
        nr: libc::SYS_kexec_load,
        errno: libc::EPERM,
    },
    Denied {
        name: "kexec_file_load",
        nr: libc::SYS_kexec_file_load,
        errno: libc::EPERM,
    },
    Denied {
        name: "init_module",
        nr: libc::SYS_init_module,
        errno: libc::EPERM,
    },
    Denied {
        name: "finit_module",
        nr: libc::SYS_finit_module,
        errno: libc::EPERM,
    },
    Denied {
        name: "delete_module",
        nr: libc::SYS_delete_module,
        errno: libc::EPERM,
    },
    Denied {
        name: "keyctl",
        nr: libc::SYS_keyctl,
        errno: libc::EPERM,
    },
    Denied {
        name: "add_key",
        nr: libc::SYS_add_key,
        errno: libc::EPERM,
    },
    Denied {
        name: "request_key",
        nr: libc::SYS_request_key,
        errno: libc::EPERM,
    },
    Denied {
        name: "swapon",
        nr: libc::SYS_swapon,
        errno: libc::EPERM,
    },
    Denied {
        name: "swapoff",
        nr: libc::SYS_swapoff,
        errno: libc::EPERM,
    },
    Denied {
        name: "reboot",
        nr: libc::SYS_reboot,
        errno: libc::EPERM,
    },
    Denied {
        name: "acct",
        nr: libc::SYS_acct,
        errno: libc::EPERM,
    },
    Denied {
        name: "quotactl",
        nr: libc::SYS_quotactl,
        errno: libc::EPERM,
    },
    Denied {
        name: "quotactl_fd",
        nr: libc::SYS_quotactl_fd,
        errno: libc::EPERM,
    },
    Denied {
        name: "lookup_dcookie",
        nr: libc::SYS_lookup_dcookie,
        errno: libc::EPERM,
    },
    Denied {
        name: "vhangup",
        nr: libc::SYS_vhangup,
        errno: libc::EPERM,
    },
    Denied {
        name: "open_by_handle_at",
        nr: libc::SYS_open_by_handle_at,
        errno: libc::EPERM,
    },
    Denied {
        name: "name_to_handle_at",
        nr: libc::SYS_name_to_handle_at,
        errno: libc::EPERM,
    },
    Denied {
        name: "clock_settime",
        nr: libc::SYS_clock_settime,
        errno: libc::EPERM,
    },
    Denied {
        name: "settimeofday",
        nr: libc::SYS_settimeofday,
        errno: libc::EPERM,
    },
    Denied {
        name: "adjtimex",
        nr: libc::SYS_adjtimex,
        errno: libc::EPERM,
    },
    Denied {
        name: "clock_adjtime",
        nr: libc::SYS_clock_adjtime,
        errno: libc::EPERM,
    },
    Denied {
        name: "uselib",
        nr: libc::SYS_uselib,
        errno: libc::EPERM,
    },
    Denied {
        name: "modify_ldt",
        nr: libc::SYS_modify_ldt,
        errno: libc::EPERM,
    },
    Denied {
        name: "iopl",
        nr: libc::SYS_iopl,
        errno: libc::EPERM,
    },
    Denied {
        name: "ioperm",
        nr: libc::SYS_ioperm,
        errno: libc::EPERM,
    },
];
/// Refused with ENOSYS ("not implemented": libuv falls back to epoll, glibc from clone3 to clone).
pub(crate) const DENY_ENOSYS: &[Denied] = &[
    Denied {
        name: "io_uring_setup",
        nr: libc::SYS_io_uring_setup,
        errno: libc::ENOSYS,
    },
    Denied {
        name: "io_uring_enter",
        nr: libc::SYS_io_uring_enter,
        errno: libc::ENOSYS,
    },
    Denied {
        name: "io_uring_register",
        nr: libc::SYS_io_uring_register,
        errno: libc::ENOSYS,
    },
    Denied {
        name: "clone3",
        nr: libc::SYS_clone3,
        errno: libc::ENOSYS,
    },
];
/// Path-based metadata changes, refused with EPERM when the server has no mount namespace:
/// Landlock does not govern them, so without a private mount tree they would reach any file
/// the uid owns. The fd-based forms stay (fchmod, fchown, fsetxattr; Landlock decided when
/// the fd was opened).
///
/// Timestamps (`utime`, `utimes`, `futimesat`, `utimensat` with a path) are NOT refused:
/// npm's cache lock (proper-lockfile) refreshes its lock file's mtime by path every few
/// seconds, and an EPERM there makes `npx` abort with ECOMPROMISED on a busy machine (seen in
/// tests/kernel_servers.rs). A timestamp change outside the mounts stays possible until the
/// server has its own mount tree.
pub(crate) const DENY_PATH_METADATA: &[Denied] = &[
    Denied {
        name: "chmod",
        nr: libc::SYS_chmod,
        errno: libc::EPERM,
    },
    Denied {
        name: "fchmodat",
        nr: libc::SYS_fchmodat,
        errno: libc::EPERM,
    },
    Denied {
        name: "fchmodat2",
        nr: 452,
        errno: libc::EPERM,
    },
    Denied {
        name: "chown",
        nr: libc::SYS_chown,
        errno: libc::EPERM,
    },
    Denied {
        name: "lchown",
        nr: libc::SYS_lchown,
        errno: libc::EPERM,
    },
    Denied {
        name: "fchownat",
        nr: libc::SYS_fchownat,
        errno: libc::EPERM,
    },
    Denied {
        name: "setxattr",
        nr: libc::SYS_setxattr,
        errno: libc::EPERM,
    },
    Denied {
        name: "lsetxattr",
        nr: libc::SYS_lsetxattr,
        errno: libc::EPERM,
    },
    Denied {
        name: "removexattr",
        nr: libc::SYS_removexattr,
        errno: libc::EPERM,
    },
    Denied {
        name: "lremovexattr",
        nr: libc::SYS_lremovexattr,
        errno: libc::EPERM,
    },
];
/// System V IPC, refused with EPERM when the server has no IPC namespace (its keys and ids
/// are host-wide: another process's shared memory, queues and semaphores).
pub(crate) const DENY_SYSV_IPC: &[Denied] = &[
    Denied {
        name: "shmget",
        nr: libc::SYS_shmget,
        errno: libc::EPERM,
    },
    Denied {
        name: "shmat",
        nr: libc::SYS_shmat,
        errno: libc::EPERM,
    },
    Denied {
        name: "shmdt",
        nr: libc::SYS_shmdt,
        errno: libc::EPERM,
    },
    Denied {
        name: "shmctl",
        nr: libc::SYS_shmctl,
        errno: libc::EPERM,
    },
    Denied {
        name: "msgget",
        nr: libc::SYS_msgget,
        errno: libc::EPERM,
    },
    Denied {
        name: "msgsnd",
        nr: libc::SYS_msgsnd,
        errno: libc::EPERM,
    },
    Denied {
        name: "msgrcv",
        nr: libc::SYS_msgrcv,
        errno: libc::EPERM,
    },
    Denied {
        name: "msgctl",
        nr: libc::SYS_msgctl,
        errno: libc::EPERM,
    },
    Denied {
        name: "semget",
        nr: libc::SYS_semget,
        errno: libc::EPERM,
    },
    Denied {
        name: "semop",
        nr: libc::SYS_semop,
        errno: libc::EPERM,
    },
    Denied {
        name: "semtimedop",
        nr: libc::SYS_semtimedop,
        errno: libc::EPERM,
    },
    Denied {
        name: "semctl",
        nr: libc::SYS_semctl,
        errno: libc::EPERM,
    },
];

/// What the filter may leave to the other walls. The strictest value ([`Walls::STRICT`]:
/// no namespaces, no unix sockets) is what [`compile`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub(crate) struct Walls {
    /// The server has its own mount tree (path-based metadata calls reach only what it holds).
    pub(crate) mount_namespace: bool,
    /// The server has its own IPC namespace (SysV keys and ids are its own).
    pub(crate) ipc_namespace: bool,
    /// The policy names unix sockets (`network.unix_sockets`): `socket(AF_UNIX)` is allowed.
    pub(crate) unix_sockets: bool,
}

impl Walls {
    #[cfg(test)]
    pub(crate) const STRICT: Walls = Walls {
        mount_namespace: false,
        ipc_namespace: false,
        unix_sockets: false,
    };

    /// From the plan: its world's namespaces (`plan.world` is set to disabled when capjail
    /// falls back to the host's world, so a namespace counts only when it is in force).
    pub(crate) fn for_plan(plan: &SandboxPlan) -> Walls {
        Walls {
            mount_namespace: plan.world.enabled && plan.world.mount,
            ipc_namespace: plan.world.enabled && plan.world.ipc,
            unix_sockets: !plan.net.unix_sockets.is_empty(),
        }
    }
}

const CLONE_NEW_FLAGS: [i32; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];
const PRIO_PROCESS: u64 = 0;
const IOPRIO_WHO_PROCESS: u64 = 1;

fn cond(arg: u8, len: Len, op: Op, v: u64) -> SeccompCondition {
    SeccompCondition::new(arg, len, op, v).expect("argument index < 6")
}
fn rule(conds: Vec<SeccompCondition>) -> SeccompRule {
    SeccompRule::new(conds).expect("non-empty rule")
}
/// `arg` (a C int) != 0.
fn nonzero(arg: u8) -> SeccompRule {
    rule(vec![cond(arg, Len::Dword, Op::Ne, 0)])
}

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

fn eperm_rules(walls: &Walls) -> Rules {
    let mut r: Rules = BTreeMap::new();
    let mut always = |t: &[Denied]| {
        for d in t {
            r.insert(d.nr, vec![]);
        }
    };
    always(DENY_EPERM);
    if !walls.mount_namespace {
        always(DENY_PATH_METADATA);
    }
    if !walls.ipc_namespace {
        always(DENY_SYSV_IPC);
    }
    r.insert(
        libc::SYS_clone,
        CLONE_NEW_FLAGS
            .iter()
            .map(|&f| rule(vec![cond(0, Len::Dword, Op::MaskedEq(f as u64), f as u64)]))
            .collect(),
    );
    r.insert(
        libc::SYS_ioctl,
        vec![
            rule(vec![cond(1, Len::Dword, Op::Eq, libc::TIOCSTI)]),
            rule(vec![cond(1, Len::Dword, Op::Eq, libc::TIOCLINUX)]),
        ],
    );
    r.insert(
        libc::SYS_personality,
        vec![rule(vec![
            cond(0, Len::Dword, Op::Ne, 0xffff_ffff),
            cond(0, Len::Dword, Op::Ne, 0),
        ])],
    );
    for nr in [
        libc::SYS_prlimit64,
        libc::SYS_sched_setaffinity,
        libc::SYS_sched_setscheduler,
        libc::SYS_sched_setparam,
        libc::SYS_sched_setattr,
    ] {
        r.insert(nr, vec![nonzero(0)]);
    }
    r.insert(
        libc::SYS_setpriority,
        vec![
            rule(vec![cond(0, Len::Dword, Op::Ne, PRIO_PROCESS)]),
            nonzero(1),
        ],
    );
    r.insert(
        libc::SYS_ioprio_set,
        vec![
            rule(vec![cond(0, Len::Dword, Op::Ne, IOPRIO_WHO_PROCESS)]),
            nonzero(1),
        ],
    );
    r
}

/// socket(domain, type, protocol): refused unless the domain is allowed.
fn eacces_rules(sockets: Option<&SocketFilter>, walls: &Walls) -> Rules {
    let mut r: Rules = BTreeMap::new();
    let unix_ok = |f: &i32| *f != libc::AF_UNIX || walls.unix_sockets;
    match sockets {
        None if walls.unix_sockets => {}
        None => {
            r.insert(
                libc::SYS_socket,
                vec![rule(vec![cond(
                    0,
                    Len::Dword,
                    Op::Eq,
                    libc::AF_UNIX as u64,
                )])],
            );
        }
        Some(sf) => {
            let others: Vec<SeccompCondition> = sf
                .families
                .iter()
                .filter(|f| unix_ok(f))
                .map(|&f| cond(0, Len::Dword, Op::Ne, f as u64))
                .collect();
            let chain = if sf.netlink_route {
                // refuse if domain not allowed AND NOT (domain == NETLINK && proto == ROUTE)
                let mut a = others.clone();
                a.push(cond(0, Len::Dword, Op::Ne, libc::AF_NETLINK as u64));
                let mut b = others;
                b.push(cond(2, Len::Dword, Op::Ne, libc::NETLINK_ROUTE as u64));
                vec![rule(a), rule(b)]
            } else if others.is_empty() {
                vec![] // every family refused
            } else {
                vec![rule(others)]
            };
            r.insert(libc::SYS_socket, chain);
        }
    }
    r
}

fn enosys_rules() -> Rules {
    DENY_ENOSYS.iter().map(|d| (d.nr, vec![])).collect()
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}
fn stmt(code: u32, k: u32) -> libc::sock_filter {
    jump(code, k, 0, 0)
}

#[cfg(test)]
pub(crate) const fn errno_action(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// Append the seccompiler program for `rules` (match -> `errno`), linked: its arch check
/// dropped, every `RET ALLOW` turned into a jump past its end.
fn link(out: &mut Vec<libc::sock_filter>, rules: Rules, errno: i32) {
    if rules.is_empty() {
        return;
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        TargetArch::x86_64,
    )
    .expect("distinct actions");
    let prog: BpfProgram = filter.try_into().expect("filter within BPF_MAXINSNS");
    // seccompiler's program starts with its 3-instruction arch check (LD arch; JEQ; RET KILL).
    assert_eq!(
        prog[2].k,
        libc::SECCOMP_RET_KILL_PROCESS,
        "seccompiler layout"
    );
    let body = &prog[3..];
    let n = body.len();
    for (i, ins) in body.iter().enumerate() {
        if u32::from(ins.code) == libc::BPF_RET | libc::BPF_K && ins.k == libc::SECCOMP_RET_ALLOW {
            out.push(stmt(libc::BPF_JMP | libc::BPF_JA, (n - i - 1) as u32));
        } else {
            out.push(jump(u32::from(ins.code), ins.k, ins.jt, ins.jf));
        }
    }
}

#[cfg(test)]
/// The strictest filter ([`Walls::STRICT`]). `sockets: None`: every family but AF_UNIX is
/// left alone (network `all`).
pub(crate) fn compile(sockets: Option<&SocketFilter>) -> Vec<libc::sock_filter> {
    compile_with(sockets, &Walls::STRICT)
}

/// The filter for a plan.
pub(crate) fn compile_for(plan: &SandboxPlan) -> Vec<libc::sock_filter> {
    compile_with(plan.net.socket_filter.as_ref(), &Walls::for_plan(plan))
}

pub(crate) fn compile_with(
    sockets: Option<&SocketFilter>,
    walls: &Walls,
) -> Vec<libc::sock_filter> {
    compile_program(sockets, walls, true)
}

/// The program; `fast_path`: with [`fast_allow`] (always, but for the test that compares
/// both).
fn compile_program(
    sockets: Option<&SocketFilter>,
    walls: &Walls,
    fast_path: bool,
) -> Vec<libc::sock_filter> {
    let mut p = Vec::with_capacity(400);
    // The supplement: arch and x32.
    p.push(stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4));
    p.push(jump(
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        AUDIT_ARCH_X86_64,
        1,
        0,
    ));
    p.push(stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_KILL_PROCESS,
    ));
    p.push(stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0));
    p.push(jump(
        libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
        X32_SYSCALL_BIT,
        0,
        1,
    ));
    p.push(stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_KILL_PROCESS,
    ));
    let chains = [
        (enosys_rules(), libc::ENOSYS),
        (eacces_rules(sockets, walls), libc::EACCES),
        (eperm_rules(walls), libc::EPERM),
    ];
    if fast_path {
        let ruled = chains
            .iter()
            .flat_map(|(rules, _)| rules.keys())
            .filter_map(|&nr| u32::try_from(nr).ok())
            .collect();
        fast_allow(&mut p, &ruled);
    }
    for (rules, errno) in chains {
        link(&mut p, rules, errno);
    }
    p.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    assert!(p.len() < 4096, "seccomp program too long");
    p
}

/// Syscall numbers below this are sorted by [`fast_allow`]'s bitmap.
const FAST_LIMIT: u32 = 512;

/// A syscall no rule names is allowed at once (the accumulator holds its number): a bitmap
/// test of the number ahead of the rule chains, which would otherwise compare it with every
/// number they name, one after the other (~500 instructions). The kernel runs the filter for
/// every syscall number when it is installed (to cache the answers that do not depend on the
/// arguments): that was ~0.3 ms of each server's start, on the world's critical path. Numbers
/// from [`FAST_LIMIT`] on, and every named one, go on to the chains, which then decide
/// exactly as before.
fn fast_allow(p: &mut Vec<libc::sock_filter>, ruled: &std::collections::BTreeSet<u32>) {
    const WORDS: usize = (FAST_LIMIT / 32) as usize;
    let mut masks = [0u32; WORDS];
    for &nr in ruled.iter().filter(|&&nr| nr < FAST_LIMIT) {
        masks[(nr / 32) as usize] |= 1 << (nr % 32);
    }
    // Per word: JEQ index, then LD mask, RSH X, AND 1, JEQ 0 (allow) / else (the chains).
    const BLOCK: usize = 5;
    let start = p.len();
    let allow = start + 5 + WORDS * BLOCK;
    let chains = allow + 1;
    let to = |from: usize, target: usize| -> u8 {
        u8::try_from(target - from - 1).expect("fast path within a jump's reach")
    };
    p.push(jump(
        libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
        FAST_LIMIT,
        to(start, chains),
        0,
    ));
    p.push(stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 31));
    p.push(stmt(libc::BPF_MISC | libc::BPF_TAX, 0));
    p.push(stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0));
    p.push(stmt(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 5));
    for (w, mask) in masks.iter().enumerate() {
        p.push(jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            w as u32,
            0,
            (BLOCK - 1) as u8,
        ));
        p.push(stmt(libc::BPF_LD | libc::BPF_IMM, *mask));
        p.push(stmt(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_X, 0));
        p.push(stmt(libc::BPF_ALU | libc::BPF_AND | libc::BPF_K, 1));
        let at = p.len();
        p.push(jump(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            to(at, allow),
            to(at, chains),
        ));
    }
    debug_assert_eq!(p.len(), allow);
    p.push(stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW));
    // The chains start with the number in the accumulator.
    p.push(stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0));
}

/// What the filter refuses, one line each (stderr, `doctor`, `policy explain`).
pub(crate) fn describe(sockets: Option<&SocketFilter>, walls: &Walls) -> Vec<String> {
    let names = |t: &[Denied]| t.iter().map(|d| d.name).collect::<Vec<_>>().join(",");
    let mut v = vec![
        format!("EPERM: {}", names(DENY_EPERM)),
        "EPERM: clone with CLONE_NEW*, ioctl TIOCSTI/TIOCLINUX, personality other than query/PER_LINUX".into(),
        "EPERM: prlimit64, sched_set{affinity,scheduler,param,attr} on pid != 0; setpriority/ioprio_set other than (process, 0)".into(),
        format!("ENOSYS: {}", names(DENY_ENOSYS)),
    ];
    v.push(if walls.mount_namespace {
        "path-based chmod/chown/xattr: allowed (mount namespace)".into()
    } else {
        format!(
            "EPERM (no mount namespace): {} (timestamps by path stay allowed: npm's lock needs them)",
            names(DENY_PATH_METADATA)
        )
    });
    v.push(if walls.ipc_namespace {
        "System V IPC: allowed (IPC namespace)".into()
    } else {
        format!("EPERM (no IPC namespace): {}", names(DENY_SYSV_IPC))
    });
    let unix = if walls.unix_sockets {
        "AF_UNIX allowed (network.unix_sockets)"
    } else {
        "AF_UNIX refused (socketpair allowed)"
    };
    v.push(match sockets {
        None => format!("socket(): {unix}; other families not filtered"),
        Some(sf) => format!(
            "socket(): EACCES except families {:?}{}; {unix}",
            sf.families
                .iter()
                .filter(|f| **f != libc::AF_UNIX)
                .collect::<Vec<_>>(),
            if sf.netlink_route {
                " and NETLINK_ROUTE"
            } else {
                ""
            }
        ),
    });
    v
}

/// Is seccomp filtering available? (`seccomp(SECCOMP_GET_ACTION_AVAIL, KILL_PROCESS)`)
pub(crate) fn available() -> Result<(), String> {
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

/// In the child (no_new_privs already set): install the filter. Async-signal-safe (one
/// syscall on memory prepared before fork; `seccompiler::apply_filter` would also do, but it
/// sets no_new_privs itself and wraps errors in an allocating type).
pub(crate) fn install(prog: &[libc::sock_filter]) -> Result<(), i32> {
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

    /// A tiny classic-BPF interpreter for the instructions the program contains, to test it
    /// without loading it.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let mut acc = 0u32;
        let mut x = 0u32;
        let mut pc = 0usize;
        for _ in 0..100_000 {
            let i = prog[pc];
            let code = i.code as u32;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                    pc += 1;
                }
                c if c == libc::BPF_LD | libc::BPF_IMM => {
                    acc = i.k;
                    pc += 1;
                }
                c if c == libc::BPF_MISC | libc::BPF_TAX => {
                    x = acc;
                    pc += 1;
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => {
                    acc &= i.k;
                    pc += 1;
                }
                c if c == libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K => {
                    acc >>= i.k;
                    pc += 1;
                }
                c if c == libc::BPF_ALU | libc::BPF_RSH | libc::BPF_X => {
                    acc = acc.checked_shr(x).unwrap_or(0);
                    pc += 1;
                }
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => pc += 1 + i.k as usize,
                c if c & 0x07 == libc::BPF_JMP => {
                    let t = match c & 0xf0 {
                        x if x == libc::BPF_JEQ => acc == i.k,
                        x if x == libc::BPF_JGE => acc >= i.k,
                        x if x == libc::BPF_JGT => acc > i.k,
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
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = errno_action(libc::EPERM);
    const EACCES: u32 = errno_action(libc::EACCES);

    fn none_net() -> SocketFilter {
        SocketFilter {
            families: vec![libc::AF_UNIX],
            netlink_route: false,
        }
    }
    fn call(p: &[libc::sock_filter], nr: i64, args: [u64; 6]) -> u32 {
        run(p, X, nr as u32, args)
    }
    fn a(x: &[u64]) -> [u64; 6] {
        let mut r = [0; 6];
        r[..x.len()].copy_from_slice(x);
        r
    }

    /// The fast path changes no answer: every syscall number (and past the table), with
    /// arguments that hit and miss the rules' conditions, every kind of wall and socket
    /// filter, against the chains alone.
    #[test]
    fn the_fast_path_answers_as_the_chains_do() {
        let args: Vec<[u64; 6]> = vec![
            [0; 6],
            [u64::MAX; 6],
            a(&[libc::AF_INET as u64, libc::SOCK_STREAM as u64]),
            a(&[libc::AF_UNIX as u64]),
            a(&[libc::AF_NETLINK as u64, 0, 0]),
            a(&[libc::CLONE_NEWUSER as u64]),
            a(&[0, libc::TIOCSTI]),
            a(&[1, 0, 0]),
            a(&[0x0fff_ffff, 0x0fff_ffff, 0x0fff_ffff, 0x0fff_ffff]),
        ];
        let nets = [None, Some(none_net())];
        let walls = [
            Walls::STRICT,
            Walls {
                mount_namespace: true,
                ipc_namespace: true,
                unix_sockets: true,
            },
        ];
        let mut fast_answers = 0;
        for net in &nets {
            for w in &walls {
                let fast = compile_program(net.as_ref(), w, true);
                let chains = compile_program(net.as_ref(), w, false);
                assert!(fast.len() > chains.len());
                // The fast path's way into the chains (arch 3, x32 3, the path's 5 + 16 x 5,
                // its RET ALLOW) made a return of its own: who gets there left the path.
                let mut probe = fast.clone();
                probe[6 + 5 + 16 * 5 + 1] = stmt(libc::BPF_RET | libc::BPF_K, 0xdead);
                for nr in 0..FAST_LIMIT + 64 {
                    for args in &args {
                        assert_eq!(
                            run(&fast, X, nr, *args),
                            run(&chains, X, nr, *args),
                            "syscall {nr} {args:?}"
                        );
                    }
                    // A number no rule names is answered within the fast path.
                    if run(&probe, X, nr, [0; 6]) == ALLOW {
                        fast_answers += 1;
                    }
                }
            }
        }
        assert!(
            fast_answers > 4 * 300,
            "the fast path answered {fast_answers}"
        );
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
        assert_eq!(call(&p, libc::SYS_getpid, [0; 6]), ALLOW);
        assert_eq!(call(&p, libc::SYS_execve, [0; 6]), ALLOW);
        assert_eq!(call(&p, libc::SYS_socketpair, a(&[1])), ALLOW);
    }

    #[test]
    fn deny_lists() {
        for w in [
            Walls::STRICT,
            Walls {
                mount_namespace: true,
                ipc_namespace: true,
                unix_sockets: true,
            },
        ] {
            let p = compile_with(None, &w);
            for d in DENY_EPERM.iter().chain(DENY_ENOSYS) {
                assert_eq!(call(&p, d.nr, [0; 6]), errno_action(d.errno), "{}", d.name);
            }
            // network `all`: socket untouched but for AF_UNIX
            assert_eq!(
                call(&p, libc::SYS_socket, a(&[libc::AF_INET as u64, 1])),
                ALLOW
            );
        }
    }

    #[test]
    fn sockets() {
        let p = compile(Some(&none_net()));
        let s = |p: &[libc::sock_filter], fam: i32, proto: u64| {
            call(p, libc::SYS_socket, a(&[fam as u64, 1, proto]))
        };
        for fam in [
            libc::AF_UNIX,
            libc::AF_INET,
            libc::AF_INET6,
            libc::AF_PACKET,
            libc::AF_NETLINK,
            libc::AF_VSOCK,
        ] {
            assert_eq!(s(&p, fam, 0), EACCES, "family {fam}");
        }
        // High bits do not smuggle AF_INET past the check (the kernel truncates to int).
        assert_eq!(
            call(
                &p,
                libc::SYS_socket,
                a(&[(1u64 << 32) | libc::AF_INET as u64, 1])
            ),
            EACCES
        );
        let unix = Walls {
            unix_sockets: true,
            ..Walls::STRICT
        };
        let p = compile_with(Some(&none_net()), &unix);
        assert_eq!(s(&p, libc::AF_UNIX, 0), ALLOW);
        assert_eq!(s(&p, libc::AF_INET, 0), EACCES);
        // network all
        assert_eq!(s(&compile(None), libc::AF_UNIX, 0), EACCES);
        assert_eq!(s(&compile_with(None, &unix), libc::AF_UNIX, 0), ALLOW);

        let allow = SocketFilter {
            families: vec![libc::AF_UNIX, libc::AF_INET, libc::AF_INET6],
            netlink_route: true,
        };
        let p = compile(Some(&allow));
        assert_eq!(s(&p, libc::AF_INET6, 0), ALLOW);
        assert_eq!(s(&p, libc::AF_INET, 0), ALLOW);
        assert_eq!(s(&p, libc::AF_UNIX, 0), EACCES);
        assert_eq!(s(&p, libc::AF_NETLINK, libc::NETLINK_ROUTE as u64), ALLOW);
        assert_eq!(s(&p, libc::AF_NETLINK, 4 /* NETLINK_SOCK_DIAG */), EACCES);
        assert_eq!(s(&p, libc::AF_PACKET, 0), EACCES);
    }

    #[test]
    fn argument_blocks() {
        let p = compile(Some(&none_net()));
        let thread_flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD) as u64;
        assert_eq!(call(&p, libc::SYS_clone, a(&[thread_flags])), ALLOW);
        for f in CLONE_NEW_FLAGS {
            assert_eq!(
                call(&p, libc::SYS_clone, a(&[f as u64 | 17])),
                EPERM,
                "{f:#x}"
            );
        }
        assert_eq!(call(&p, libc::SYS_ioctl, a(&[0, libc::TIOCSTI])), EPERM);
        assert_eq!(call(&p, libc::SYS_ioctl, a(&[0, libc::TCGETS])), ALLOW);
        assert_eq!(call(&p, libc::SYS_personality, a(&[0xffff_ffff])), ALLOW);
        assert_eq!(call(&p, libc::SYS_personality, a(&[0])), ALLOW);
        assert_eq!(call(&p, libc::SYS_personality, a(&[0x0040000])), EPERM);
    }

    #[test]
    fn other_processes() {
        let p = compile(Some(&none_net()));
        for nr in [
            libc::SYS_prlimit64,
            libc::SYS_sched_setaffinity,
            libc::SYS_sched_setscheduler,
            libc::SYS_sched_setparam,
            libc::SYS_sched_setattr,
        ] {
            assert_eq!(call(&p, nr, a(&[0, 7])), ALLOW, "{nr}");
            assert_eq!(call(&p, nr, a(&[1234, 7])), EPERM, "{nr}");
            assert_eq!(
                call(&p, nr, a(&[1 << 32, 7])),
                ALLOW,
                "{nr}: the kernel reads an int"
            );
        }
        assert_eq!(call(&p, libc::SYS_setpriority, a(&[0, 0, 10])), ALLOW);
        assert_eq!(call(&p, libc::SYS_setpriority, a(&[0, 99, 10])), EPERM);
        assert_eq!(
            call(&p, libc::SYS_setpriority, a(&[2 /* PRIO_USER */, 0, 10])),
            EPERM
        );
        assert_eq!(call(&p, libc::SYS_ioprio_set, a(&[1, 0, 0])), ALLOW);
        assert_eq!(call(&p, libc::SYS_ioprio_set, a(&[1, 42, 0])), EPERM);
        assert_eq!(call(&p, libc::SYS_ioprio_set, a(&[3, 0, 0])), EPERM);
        assert_eq!(call(&p, libc::SYS_getpriority, a(&[0, 99])), ALLOW);
    }

    #[test]
    fn metadata_and_ipc_depend_on_namespaces() {
        let strict = compile(Some(&none_net()));
        let ns = compile_with(
            Some(&none_net()),
            &Walls {
                mount_namespace: true,
                ipc_namespace: true,
                unix_sockets: false,
            },
        );
        for d in DENY_PATH_METADATA.iter().chain(DENY_SYSV_IPC) {
            assert_eq!(call(&strict, d.nr, a(&[1, 2])), EPERM, "{}", d.name);
            assert_eq!(call(&ns, d.nr, a(&[1, 2])), ALLOW, "{}", d.name);
        }
        // Timestamps stay (npm's lock refreshes its mtime by path).
        assert_eq!(
            call(&strict, libc::SYS_utimensat, a(&[3, 0x7fff_0000_1000])),
            ALLOW
        );
        for nr in [libc::SYS_fchmod, libc::SYS_fchown, libc::SYS_fsetxattr] {
            assert_eq!(call(&strict, nr, a(&[3, 0o4755])), ALLOW);
        }
    }
}
