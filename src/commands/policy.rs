//! `capjail policy list | show | validate | schema | explain`.

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
            match super::load_named(&policy, workspace.as_deref()) {
                Ok(p) => {
                    print!("{}", crate::policy::effective_yaml(&p));
                    0
                }
                Err(code) => code,
            }
        }
        PolicyCommand::Explain {
            rule: Some(rule), ..
        } => explain_rule(&rule),
        PolicyCommand::Explain {
            policy,
            workspace,
            json,
            command,
            rule: None,
        } => super::kernel::explain(
            policy.as_deref().unwrap_or_default(),
            workspace.as_deref(),
            json,
            &command,
        ),
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

/// `capjail policy explain --rule ID`: the entry of docs/rules.md for one id.
fn explain_rule(id: &str) -> i32 {
    match crate::policy::RuleId::parse(id) {
        Some(r) => {
            print!("{}", r.explain());
            0
        }
        None => {
            eprintln!("capjail: error: no rule id `{id}` (the list: docs/rules.md)");
            exit::USAGE
        }
    }
}
