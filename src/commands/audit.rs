//! `capjail audit verify | show` and `capjail replay`.

use std::io::Write;
use std::path::Path;

use capjail::audit::{self, ShowFilter};
use capjail::exit;

use crate::cli::{AuditCommand, PolicyArgs};

pub fn audit(cmd: AuditCommand) -> i32 {
    match cmd {
        AuditCommand::Verify { files } => {
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
                    eprintln!("capjail: {e}");
                    exit::AUDIT
                }
            }
        }
    }
}

pub fn replay(file: &Path, policy: &PolicyArgs) -> i32 {
    let policy = match super::load_policy(policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match audit::replay(file, &policy) {
        Ok(report) => {
            print!("{}", report.render());
            report.exit_code()
        }
        Err(e) => {
            eprintln!("capjail: {e}");
            exit::AUDIT
        }
    }
}
