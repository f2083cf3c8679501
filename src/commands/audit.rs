//! `capjail audit verify | show` and `capjail replay`.

use std::io::Write;
use std::path::Path;

use crate::audit::{self, ShowFilter};
use crate::exit;

use crate::cli::{AuditCommand, PolicyArgs};

pub(crate) fn audit(cmd: AuditCommand) -> i32 {
    match cmd {
        AuditCommand::Verify { files } => {
            let files = if files.is_empty() {
                match default_log() {
                    Ok(p) => vec![p],
                    Err(code) => return code,
                }
            } else {
                files
            };
            let report = audit::verify(&files);
            print!("{}", report.render());
            report.exit_code()
        }
        AuditCommand::Show {
            file,
            verdict,
            tool,
            since,
            json,
        } => {
            let file = match file.map(Ok).unwrap_or_else(default_log) {
                Ok(f) => f,
                Err(code) => return code,
            };
            name_set(&file);
            match audit::show(
                &file,
                &ShowFilter {
                    verdict,
                    tool,
                    since,
                },
                json,
            ) {
                Ok(text) => {
                    let _ = std::io::stdout().write_all(text.as_bytes());
                    0
                }
                Err(e) => {
                    eprintln!("capjail: error: {e}");
                    exit::AUDIT
                }
            }
        }
    }
}

/// The log `capjail run` writes to with the same environment ($CAPJAIL_AUDIT, the policy's
/// `audit.path` with $CAPJAIL_POLICY or the default policy, else the XDG state file); named
/// on stderr so nobody wonders which file was read.
fn default_log() -> Result<std::path::PathBuf, i32> {
    let policy = super::load_policy(&PolicyArgs {
        policy: std::env::var("CAPJAIL_POLICY").ok(),
        workspace: None,
        profile: None,
    })?;
    let cli = std::env::var("CAPJAIL_AUDIT").ok();
    match audit::resolve_location(cli.as_deref(), &policy) {
        Ok(Some(p)) => {
            eprintln!("capjail: reading the default audit log {}", p.display());
            Ok(p)
        }
        Ok(None) => {
            eprintln!("capjail: error: CAPJAIL_AUDIT=off: no default audit log; name a FILE");
            Err(exit::USAGE)
        }
        Err(e) => {
            eprintln!("capjail: error: {e}");
            Err(exit::AUDIT)
        }
    }
}

pub(crate) fn replay(file: &Path, policy: &PolicyArgs) -> i32 {
    let policy = match super::load_policy(policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    name_set(file);
    match audit::replay(file, &policy) {
        Ok(report) => {
            print!("{}", report.render());
            report.exit_code()
        }
        Err(e) => {
            eprintln!("capjail: error: {e}");
            exit::AUDIT
        }
    }
}

/// Say on stderr when a log is read as a rotated set of several files.
fn name_set(live: &Path) {
    let files = audit::rotated_read::set_files(live);
    if files.len() > 1 {
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "capjail: reading the rotated set of {} files, oldest first: {}",
            files.len(),
            names.join(" ")
        );
    }
}
