//! The policy's `approval:` section, compiled (pure).

use std::path::PathBuf;
use std::time::Duration;

use crate::policy::schema::{ApprovalSection, ApproverKind, RememberMode};

/// Who answers a `require_approval` question, in order, and within what limits.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApprovalPolicy {
    /// Tried in order; an approver that cannot ask (a client without elicitation, no
    /// command configured, no terminal) is skipped.
    pub(crate) approvers: Vec<ApproverKind>,
    /// How long one question waits (elicitation and terminal).
    pub(crate) timeout: Duration,
    /// May an answer cover the rest of the session (same tool, same rule)?
    pub(crate) remember: bool,
    pub(crate) command: Option<ApprovalCommand>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApprovalCommand {
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) timeout: Duration,
}

impl Default for ApprovalPolicy {
    /// Without a section: ask through the client only, two minutes, remembering allowed.
    fn default() -> Self {
        ApprovalPolicy {
            approvers: vec![ApproverKind::Client],
            timeout: Duration::from_secs(120),
            remember: true,
            command: None,
        }
    }
}

fn seconds(key: &str, v: f64) -> Result<Duration, (String, String)> {
    if !(0.05..=86_400.0).contains(&v) {
        return Err((
            key.to_string(),
            "must be between 0.05 and 86400 seconds".into(),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Compile the section; errors are (key, message).
pub(crate) fn compile(
    section: Option<&ApprovalSection>,
) -> Result<ApprovalPolicy, (String, String)> {
    let mut p = ApprovalPolicy::default();
    let Some(s) = section else { return Ok(p) };
    if let Some(t) = s.timeout_seconds {
        p.timeout = seconds("approval.timeout_seconds", t)?;
    }
    p.remember = s.remember.unwrap_or_default() == RememberMode::Session;
    if let Some(c) = &s.command {
        let Some((program, args)) = c.argv.split_first() else {
            return Err((
                "approval.command.argv".into(),
                "names no program: give the approver command and its arguments".into(),
            ));
        };
        let program = PathBuf::from(program);
        if !program.is_absolute() {
            return Err((
                "approval.command.argv".into(),
                "the approver command must be an absolute path".into(),
            ));
        }
        p.command = Some(ApprovalCommand {
            program,
            args: args.to_vec(),
            timeout: seconds(
                "approval.command.timeout_seconds",
                c.timeout_seconds.unwrap_or(60.0),
            )?,
        });
    }
    if let Some(order) = &s.approvers {
        if order.is_empty() {
            return Err((
                "approval.approvers".into(),
                "is empty: name at least one of client, command, terminal (or remove the require_approval rules)".into(),
            ));
        }
        for (i, a) in order.iter().enumerate() {
            if order[..i].contains(a) {
                return Err((
                    format!("approval.approvers[{i}]"),
                    "names an approver twice".into(),
                ));
            }
        }
        if order.contains(&ApproverKind::Command) && p.command.is_none() {
            return Err((
                "approval.approvers".into(),
                "names `command` but `approval.command.argv` is not set".into(),
            ));
        }
        p.approvers = order.clone();
    } else if p.command.is_some() {
        p.approvers = vec![ApproverKind::Client, ApproverKind::Command];
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_str, PolicySource};

    fn load(text: &str) -> Result<ApprovalPolicy, String> {
        load_str(text, PolicySource::Builtin("t".into()))
            .map(|p| p.approval)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_full_section() {
        assert_eq!(load("name: t\n").unwrap(), ApprovalPolicy::default());
        let p = load("name: t\napproval:\n  approvers: [command, terminal, client]\n  timeout_seconds: 5\n  remember: never\n  command:\n    argv: [/bin/approve, --x]\n    timeout_seconds: 2\n").unwrap();
        assert_eq!(
            p.approvers,
            vec![
                ApproverKind::Command,
                ApproverKind::Terminal,
                ApproverKind::Client
            ]
        );
        assert_eq!(p.timeout, Duration::from_secs(5));
        assert!(!p.remember);
        let c = p.command.unwrap();
        assert_eq!(
            (c.program, c.args, c.timeout),
            (
                PathBuf::from("/bin/approve"),
                vec!["--x".to_string()],
                Duration::from_secs(2)
            )
        );
        // A command without an order: the client first, then the command.
        let p = load("name: t\napproval:\n  command: {argv: [/bin/a]}\n").unwrap();
        assert_eq!(
            p.approvers,
            vec![ApproverKind::Client, ApproverKind::Command]
        );
    }

    #[test]
    fn bad_sections_are_errors() {
        for bad in [
            "approval:\n  approver: [client]\n",
            "approval:\n  approvers: [email]\n",
            "approval:\n  approvers: []\n",
            "approval:\n  approvers: [client, client]\n",
            "approval:\n  approvers: [command]\n",
            "approval:\n  remember: forever\n",
            "approval:\n  timeout_seconds: 0\n",
            "approval:\n  command: {argv: []}\n",
            "approval:\n  command: {argv: [approve]}\n",
            "approval:\n  command: {argv: [/bin/a], shell: true}\n",
            "approval:\n  store: /tmp/x\n",
        ] {
            assert!(load(&format!("name: t\n{bad}")).is_err(), "{bad}");
        }
    }
}
