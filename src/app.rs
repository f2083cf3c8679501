//! The process entry of the `capjail` binary (src/main.rs only calls [`main`]): parse the
//! command line, set up logging, dispatch, map the result to an exit code.

use clap::Parser;

use crate::cli::{Cli, LogFormat};
use crate::{commands, exit};

/// The whole `capjail` process: never returns.
pub fn main() -> ! {
    // The sandbox's setup process (capjail re-executed by itself; see sandbox::world).
    #[cfg(target_os = "linux")]
    {
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some(crate::sandbox::world::SETUP_ARG) {
            crate::sandbox::world::setup_main(&args[2..]);
        }
        crate::sandbox::world::launch::set_setup_executable("/proc/self/exe");
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => exit::USAGE,
            };
            // clap prints help to stdout and errors to stderr.
            let _ = e.print();
            std::process::exit(code);
        }
    };
    init_logging(&cli.log);
    let code = commands::dispatch(cli.command);
    std::process::exit(code);
}

fn init_logging(args: &crate::cli::LogArgs) {
    use tracing_subscriber::EnvFilter;
    let level = if args.quiet {
        "error"
    } else {
        match args.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_env("CAPJAIL_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("capjail={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
