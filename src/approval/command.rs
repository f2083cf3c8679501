//! The approver command: one JSON document on stdin, the answer on stdout; its exit status
//! and the time limit are respected (a command still running at the limit is killed and the
//! call refused).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::config::ApprovalCommand;
use super::question::{read_command_answer, Verdict};

/// Most of the answer read (an answer is a word or a small JSON object).
const MAX_ANSWER: u64 = 64 * 1024;

/// Run the command; blocks the calling thread (an approval thread) up to its time limit.
pub(crate) fn ask(
    cmd: &ApprovalCommand,
    document: &serde_json::Value,
    remember_allowed: bool,
) -> (Verdict, String) {
    let mut child = match Command::new(&cmd.program)
        .args(&cmd.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(command = %cmd.program.display(), "cannot start the approver command: {e}");
            return (
                Verdict::Denied,
                format!("the approver command could not start: {e} (deny)"),
            );
        }
    };
    let pid = child.id();
    if let Some(mut stdin) = child.stdin.take() {
        let mut doc = serde_json::to_vec(document).expect("serialising a Value");
        doc.push(b'\n');
        // A command that does not read its input still answers.
        let _ = stdin.write_all(&doc);
    }
    // Read stdout on its own thread so a chatty command cannot fill the pipe and stall.
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(s) = stdout {
            let _ = s.take(MAX_ANSWER).read_to_end(&mut out);
        }
        out
    });
    let deadline = Instant::now() + cmd.timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    // Whatever happened, nothing of the command outlives the question.
    // SAFETY: kill(2) on the process group the command leads.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
    }
    let Some(status) = status else {
        let _ = child.wait();
        return (
            Verdict::TimedOut,
            "the approver command did not answer in time".into(),
        );
    };
    let out = reader.join().unwrap_or_default();
    read_command_answer(status.success(), &out, remember_allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sh(script: &str, timeout_ms: u64) -> ApprovalCommand {
        ApprovalCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[test]
    fn the_command_reads_the_question_and_its_answer_counts() {
        let doc = json!({"tool": "write_file"});
        // Approves only when it was asked about write_file.
        let c = sh("grep -q '\"tool\":\"write_file\"' && echo approve", 10_000);
        assert_eq!(ask(&c, &doc, true).0, Verdict::Approved { remember: false });
        assert_eq!(ask(&c, &json!({"tool": "x"}), true).0, Verdict::Denied);
        assert_eq!(
            ask(&sh("echo approve; exit 3", 10_000), &doc, true).0,
            Verdict::Denied
        );
        assert_eq!(
            ask(&sh("sleep 5; echo approve", 200), &doc, true).0,
            Verdict::TimedOut
        );
        let missing = ApprovalCommand {
            program: "/nonexistent/approver".into(),
            args: vec![],
            timeout: Duration::from_secs(1),
        };
        assert_eq!(ask(&missing, &doc, true).0, Verdict::Denied);
    }
}
