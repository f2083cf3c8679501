//! Hand-testing helper: `sandbox_run POLICY [--plan] -- CMD ARGS...` prints the plan and the
//! enforcement summary to stderr, then runs CMD confined by the kernel layer only (no proxy),
//! with stdin/stdout/stderr inherited, and exits with its status.

#[cfg(target_os = "linux")]
fn main() {
    use capjail::sandbox::{self, HostFacts};
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(sep) = args.iter().position(|a| a == "--") else {
        eprintln!("usage: sandbox_run POLICY [--plan] [--require] -- CMD ARGS...");
        std::process::exit(2);
    };
    let policy = capjail::policy::load(&args[0]).unwrap_or_else(|e| {
        eprintln!("policy: {e}");
        std::process::exit(2)
    });
    let argv = args[sep + 1..].to_vec();
    let host = HostFacts::gather(&argv);
    let plan = sandbox::plan(&policy, &argv, &host);
    if args[..sep].iter().any(|a| a == "--plan") {
        eprint!("{plan}");
    }
    let require = args[..sep].iter().any(|a| a == "--require");
    let prepared = sandbox::prepare(plan, require).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(3)
    });
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    sandbox::apply_to(&prepared, &mut cmd);
    let status = cmd.status().unwrap_or_else(|e| {
        eprintln!("spawn: {e}");
        std::process::exit(4)
    });
    std::process::exit(
        status
            .code()
            .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)),
    );
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the kernel layer exists only on Linux");
}
