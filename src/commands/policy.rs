//! `capjail policy list | show | validate`.

use capjail::exit;
use capjail::policy::builtin;

use crate::cli::PolicyCommand;

pub fn policy(cmd: PolicyCommand) -> i32 {
    match cmd {
        PolicyCommand::List => {
            for (name, summary) in builtin::summaries() {
                let default = if name == builtin::DEFAULT {
                    " (default)"
                } else {
                    ""
                };
                println!("{name:<10} {summary}{default}");
            }
            0
        }
        PolicyCommand::Show { policy, workspace } => {
            match super::load_named(&policy, workspace.as_deref()) {
                Ok(p) => {
                    print!("{}", capjail::policy::effective_yaml(&p));
                    0
                }
                Err(code) => code,
            }
        }
        PolicyCommand::Explain {
            policy,
            workspace,
            json,
            command,
        } => super::kernel::explain(&policy, workspace.as_deref(), json, &command),
        PolicyCommand::Schema => {
            let schema = schemars::schema_for!(capjail::policy::PolicyFile);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("a schema serialises")
            );
            0
        }
        PolicyCommand::Validate { file } => match capjail::policy::load_file(&file) {
            Ok(p) => {
                println!("{}: valid policy `{}`", file.display(), p.name);
                0
            }
            Err(e) => {
                eprintln!("capjail: error: {e}");
                exit::POLICY
            }
        },
    }
}
