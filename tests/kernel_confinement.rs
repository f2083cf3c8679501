//! The kernel layer judged by effect, without the proxy: small programs are spawned through
//! `sandbox::apply_to` and each probe is also run WITHOUT the sandbox, to prove the probe can
//! succeed (so that a failure under the sandbox means something). A missing kernel feature
//! is a visible, counted skip (`support::skip_test`). Network probes use loopback only; every loop is bounded.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use capjail::policy::{load_str, PolicySource};
use capjail::sandbox::{self, HostFacts, KernelFeatures};

const PYTHON: &str = "/usr/bin/python3";

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    ws: PathBuf,
    secret: PathBuf,
}

fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let ws = root.join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("inside.txt"), "INSIDE-OK").unwrap();
    let secret = root.join("secret.txt");
    std::fs::write(&secret, "CANARY-SECRET-4242").unwrap();
    Env {
        _dir: dir,
        root,
        ws,
        secret,
    }
}

fn policy_yaml(ws: &Path, network: &str) -> String {
    // /usr/bin read+exec so that `sh -c 'cat ...'` can run cat.
    format!(
        "name: test\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\nnetwork:\n  mode: {network}\nkernel:\n  require: true\n  extra_read: [/usr/bin]\n",
        ws.display()
    )
}

/// Skip (visibly) unless the kernel has what the probes need.
fn features_or_skip(need_abi: u32) -> Option<KernelFeatures> {
    let f = KernelFeatures::detect();
    match &f.landlock {
        Err(e) => {
            crate::support::skip_test(module_path!(), &format!("Landlock unavailable: {e}"));
            return None;
        }
        Ok(a) if *a < need_abi => {
            crate::support::skip_test(
                module_path!(),
                &format!("needs Landlock ABI {need_abi}, kernel has {a}"),
            );
            return None;
        }
        Ok(_) => {}
    }
    if let Err(e) = &f.seccomp {
        crate::support::skip_test(module_path!(), &e.to_string());
        return None;
    }
    Some(f)
}

fn run_with_timeout(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("probe timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn sandboxed(yaml: &str, argv: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let policy = load_str(yaml, PolicySource::Inline).expect("policy");
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let mut host = HostFacts::gather(&argv);
    for (k, v) in extra_env {
        host.env.push((k.to_string(), v.to_string()));
    }
    let plan = sandbox::plan(&policy, &argv, &host);
    let prepared = sandbox::prepare(plan, true).expect("full enforcement");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    sandbox::apply_to(&prepared, &mut cmd);
    run_with_timeout(cmd)
}

fn plain(argv: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    run_with_timeout(cmd)
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn python_or_skip() -> bool {
    if !Path::new(PYTHON).exists() {
        crate::support::skip_test(module_path!(), &format!("{PYTHON} not installed"));
        return false;
    }
    true
}

#[test]
fn filesystem_read_and_write_only_inside_the_mounts() {
    let Some(_) = features_or_skip(1) else { return };
    let e = setup();
    let yaml = policy_yaml(&e.ws, "none");
    let script = format!(
        "cat {ws}/inside.txt; echo; cat {secret}; echo; echo x > {ws}/new.txt; echo x > {root}/outside.txt; true",
        ws = e.ws.display(),
        secret = e.secret.display(),
        root = e.root.display()
    );
    // Control: without the sandbox everything works.
    let o = plain(&["/bin/sh", "-c", &script], &[]);
    assert!(
        out(&o).contains("CANARY-SECRET-4242"),
        "control run could not read the canary: {}",
        out(&o)
    );
    assert!(e.root.join("outside.txt").exists());
    std::fs::remove_file(e.root.join("outside.txt")).unwrap();
    std::fs::remove_file(e.ws.join("new.txt")).unwrap();

    let o = sandboxed(&yaml, &["/bin/sh", "-c", &script], &[]);
    let text = out(&o);
    assert!(text.contains("INSIDE-OK"), "{text}");
    assert!(
        !text.contains("CANARY-SECRET-4242"),
        "canary leaked: {text}"
    );
    assert!(
        e.ws.join("new.txt").exists(),
        "write inside the mount failed: {text}"
    );
    assert!(
        !e.root.join("outside.txt").exists(),
        "write outside the mount succeeded: {text}"
    );
    // HOME and ~/.ssh-like places are unreachable too.
    let o = sandboxed(
        &yaml,
        &[
            "/bin/sh",
            "-c",
            "ls /root /etc/shadow /home 2>&1; cat /etc/hostname 2>&1",
        ],
        &[],
    );
    assert!(
        out(&o).matches("Permission denied").count() >= 3,
        "{}",
        out(&o)
    );
}

#[test]
fn network_none_refuses_inet_sockets_and_the_canary_listener_sees_nothing() {
    let Some(_) = features_or_skip(1) else { return };
    if !python_or_skip() {
        return;
    }
    let e = setup();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!(
        "import socket\ntry:\n  s=socket.create_connection(('127.0.0.1',{port}),timeout=3); s.send(b'hit'); print('CONNECTED')\nexcept OSError as e: print('REFUSED', e.errno)\n"
    );
    let accepted = |l: &TcpListener| -> usize {
        let mut n = 0;
        for _ in 0..50 {
            match l.accept() {
                Ok((mut s, _)) => {
                    let mut b = [0u8; 8];
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = s.read(&mut b);
                    n += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        n
    };
    let o = plain(&[PYTHON, "-c", &probe], &[]);
    assert!(
        out(&o).contains("CONNECTED"),
        "control probe could not connect: {}",
        out(&o)
    );
    assert_eq!(
        accepted(&listener),
        1,
        "control connection not seen by the listener"
    );

    let o = sandboxed(&policy_yaml(&e.ws, "none"), &[PYTHON, "-c", &probe], &[]);
    assert!(
        out(&o).contains(&format!("REFUSED {}", libc::EACCES)),
        "{}",
        out(&o)
    );
    assert_eq!(
        accepted(&listener),
        0,
        "the sandboxed probe reached the loopback listener"
    );
    // Netlink and packet sockets are refused too, and AF_UNIX (no network.unix_sockets).
    let o = sandboxed(
        &policy_yaml(&e.ws, "none"),
        &[PYTHON, "-c", "import socket\nfor f,t in [(socket.AF_NETLINK,socket.SOCK_RAW),(socket.AF_INET6,socket.SOCK_DGRAM),(socket.AF_UNIX,socket.SOCK_STREAM)]:\n  try: socket.socket(f,t); print('ok')\n  except OSError as e: print('err',e.errno)\n"],
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("err {0}\nerr {0}\nerr {0}\n", libc::EACCES),
        "{}",
        out(&o)
    );
}

#[test]
fn allowlist_limits_tcp_connect_to_the_allowed_ports() {
    let Some(_) = features_or_skip(4) else { return };
    if !python_or_skip() {
        return;
    }
    let e = setup();
    let allowed = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let (pa, po) = (
        allowed.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    let yaml = format!(
        "name: test\nfilesystem:\n  mode: explicit\n  mounts:\n    - path: {}\n      mode: rw\nnetwork:\n  mode: allowlist\n  allowed_hosts: [\"127.0.0.1:{pa}\"]\n  allow_loopback: true\nkernel:\n  extra_read: [/usr/bin]\n",
        e.ws.display()
    );
    let probe = format!(
        "import socket\nfor p in ({pa},{po}):\n  try: socket.create_connection(('127.0.0.1',p),timeout=3); print('ok')\n  except OSError as e: print('err',e.errno)\ntry:\n  s=socket.socket(); s.bind(('127.0.0.1',0)); print('bound')\nexcept OSError as e: print('bind err',e.errno)\n"
    );
    let o = plain(&[PYTHON, "-c", &probe], &[]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "ok\nok\nbound\n",
        "control: {}",
        out(&o)
    );
    let o = sandboxed(&yaml, &[PYTHON, "-c", &probe], &[]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("ok\nerr {0}\nbind err {0}\n", libc::EACCES),
        "{}",
        out(&o)
    );
}

#[test]
fn other_processes_are_out_of_reach() {
    let Some(_) = features_or_skip(6) else { return };
    if !python_or_skip() {
        return;
    }
    let e = setup();
    let mut victim = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let vpid = victim.id();
    let probe = format!(
        "import os\nfor path in ('/proc/1/environ','/proc/{vpid}/environ','/proc/{vpid}/cmdline'):\n  try: open(path,'rb').read(); print('read')\n  except OSError as e: print('err',e.errno)\ntry: os.kill({vpid},0); print('signal')\nexcept OSError as e: print('kill err',e.errno)\nprint(len(open('/proc/self/status').read())>0)\n"
    );
    // Control: the victim's /proc files and signals are reachable without the sandbox (pid 1
    // may already be out of reach on a container host, so it is not part of the control).
    let o = plain(&[PYTHON, "-c", &probe], &[]);
    let control = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        control.ends_with("read\nread\nsignal\nTrue\n"),
        "control: {}",
        out(&o)
    );
    let o = sandboxed(&policy_yaml(&e.ws, "none"), &[PYTHON, "-c", &probe], &[]);
    let _ = victim.kill();
    let _ = victim.wait();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "err {0}\nerr {0}\nerr {0}\nkill err {1}\nTrue\n",
            libc::EACCES,
            libc::EPERM
        ),
        "{}",
        out(&o)
    );
}

#[test]
fn seccomp_io_uring_x32_ptrace_and_namespaces() {
    let Some(_) = features_or_skip(1) else { return };
    if !python_or_skip() {
        return;
    }
    let e = setup();
    let probe = "import ctypes,os\nlibc=ctypes.CDLL(None,use_errno=True)\nbuf=ctypes.create_string_buffer(120)\nr=libc.syscall(425,1,buf)\nprint('io_uring', r if r>=0 else -ctypes.get_errno())\nr=libc.unshare(0x10000000)\nprint('unshare', r if r>=0 else -ctypes.get_errno())\nr=libc.ptrace(0,0,0,0)\nprint('ptrace', r if r>=0 else -ctypes.get_errno())\n";
    let o = plain(&[PYTHON, "-c", probe], &[]);
    let control = String::from_utf8_lossy(&o.stdout).to_string();
    let uring_works = control.lines().next().is_some_and(|l| !l.contains('-'));
    let o = sandboxed(&policy_yaml(&e.ws, "none"), &[PYTHON, "-c", probe], &[]);
    let got = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        got.contains(&format!("io_uring -{}", libc::ENOSYS)),
        "{got} {}",
        out(&o)
    );
    if !uring_works {
        crate::support::skip_test(
            module_path!(),
            &format!(
                "(part) io_uring is disabled on this host even without the sandbox: {control}"
            ),
        );
    }
    assert!(control.contains("unshare 0"), "control: {control}");
    assert!(got.contains(&format!("unshare -{}", libc::EPERM)), "{got}");
    assert!(control.contains("ptrace 0"), "control: {control}");
    assert!(got.contains(&format!("ptrace -{}", libc::EPERM)), "{got}");

    // x32: getpid with the x32 bit. Without the sandbox it returns ENOSYS or a pid (x32
    // support is a kernel option); with it the process is killed by SIGSYS.
    let x32 = "import ctypes\nlibc=ctypes.CDLL(None,use_errno=True)\nprint('alive', libc.syscall(0x40000000|39))\n";
    let o = plain(&[PYTHON, "-c", x32], &[]);
    assert!(out(&o).contains("alive"), "control: {}", out(&o));
    let o = sandboxed(&policy_yaml(&e.ws, "none"), &[PYTHON, "-c", x32], &[]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGSYS),
        "{:?} {}",
        o.status,
        out(&o)
    );
    assert!(!out(&o).contains("alive"));
}

#[test]
fn environment_is_scrubbed_and_privileges_are_gone() {
    let Some(_) = features_or_skip(1) else { return };
    let e = setup();
    let secret_env = [
        ("AWS_SECRET_ACCESS_KEY", "AKIA-CANARY"),
        ("FOO_TOKEN", "tok-canary"),
    ];
    let script = "echo AWS=${AWS_SECRET_ACCESS_KEY:-unset} TOK=${FOO_TOKEN:-unset}; grep -E '^(CapEff|CapPrm|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/$$/status";
    let o = plain(&["/bin/sh", "-c", script], &secret_env);
    assert!(
        out(&o).contains("AWS=AKIA-CANARY TOK=tok-canary"),
        "control: {}",
        out(&o)
    );
    let o = sandboxed(
        &policy_yaml(&e.ws, "none"),
        &["/bin/sh", "-c", script],
        &secret_env,
    );
    let text = out(&o);
    assert!(text.contains("AWS=unset TOK=unset"), "{text}");
    for l in [
        "CapEff:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(text.contains(l), "missing `{l}` in {text}");
    }
}

#[test]
fn inherited_descriptors_do_not_reach_the_server() {
    let Some(_) = features_or_skip(1) else { return };
    let e = setup();
    // An fd capjail holds without CLOEXEC (as a leaked descriptor would be).
    let f = std::fs::File::open(&e.secret).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: clearing FD_CLOEXEC on our own descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let script = format!("cat <&{fd} 2>&1 || echo closed");
    let o = plain(&["/bin/sh", "-c", &script], &[]);
    assert!(
        out(&o).contains("CANARY-SECRET-4242"),
        "control: {}",
        out(&o)
    );
    // Rewind for the sandboxed read (the control consumed the offset).
    // SAFETY: lseek on our fd.
    unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
    let o = sandboxed(
        &policy_yaml(&e.ws, "none"),
        &["/bin/sh", "-c", &script],
        &[],
    );
    assert!(!out(&o).contains("CANARY-SECRET-4242"), "{}", out(&o));
    assert!(out(&o).contains("closed"), "{}", out(&o));
}

#[test]
fn node_starts_and_writes_only_in_its_workspace() {
    let Some(_) = features_or_skip(1) else { return };
    if !Path::new("/usr/bin/node").exists() {
        crate::support::skip_test(module_path!(), "/usr/bin/node not installed");
        return;
    }
    let e = setup();
    let js = format!(
        "const fs=require('fs');fs.writeFileSync('{ws}/x','1');let r='none';try{{fs.readFileSync('{secret}')}}catch(err){{r=err.code}};try{{fs.writeFileSync('{root}/y','1')}}catch(err){{r+=' '+err.code}};console.log('node ok',r)",
        ws = e.ws.display(),
        secret = e.secret.display(),
        root = e.root.display()
    );
    let o = sandboxed(
        &policy_yaml(&e.ws, "none"),
        &["/usr/bin/node", "-e", &js],
        &[],
    );
    assert!(out(&o).contains("node ok EACCES EACCES"), "{}", out(&o));
    assert_eq!(std::fs::read_to_string(e.ws.join("x")).unwrap(), "1");
    assert!(!e.root.join("y").exists());
}

#[test]
fn require_fails_closed_before_spawning_on_a_weaker_kernel() {
    let policy = load_str(
        &policy_yaml(Path::new("/tmp"), "allowlist"),
        PolicySource::Inline,
    );
    // allowlist without hosts is fine for the schema; pretend the kernel has Landlock ABI 3.
    let policy = policy.expect("policy");
    let argv = vec!["/bin/true".to_string()];
    let plan = sandbox::plan(&policy, &argv, &HostFacts::gather(&argv));
    let mut f = KernelFeatures::detect();
    f.landlock = Ok(3);
    let err = sandbox::prepare_with(plan, false, &f)
        .expect_err("kernel.require must refuse partial enforcement");
    let msg = err.to_string();
    assert!(msg.contains("ABI 4") && msg.contains("ABI 6"), "{msg}");
}
