//! `capjail policy list | show | validate`.

use crate::exit;
use crate::policy::builtin;

use crate::cli::PolicyCommand;

pub(crate) fn policy(cmd: PolicyCommand) -> i32 {
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
            if let Err(code) = super::set_workspace(workspace.as_deref()) {
                return code;
            }
            match crate::policy::load(&policy) {
                Ok(p) => {
                    print!("{}", crate::policy::effective_yaml(&p));
                    0
                }
                Err(e) => super::report_policy_error(&e),
            }
        }
        PolicyCommand::Explain {
            policy,
            workspace,
            json,
            command,
        } => super::kernel::explain(&policy, workspace.as_deref(), json, &command),
        PolicyCommand::Schema => {
            let schema = schemars::schema_for!(crate::policy::PolicyFile);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).expect("a schema serialises")
            );
            0
        }
        PolicyCommand::Validate { file } => match crate::policy::load_file(&file) {
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
