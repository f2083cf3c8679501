//! A fresh lab per case: the probe lab tree (`probe::lab`, fresh random tokens), a generated
//! policy that mounts the lab's workspace read-write, and for in-server cases an "outside"
//! process that holds a secret in its environment and records SIGUSR1. Removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::probe::lab::{fresh_token, make_lab, LabTokens};

pub(crate) struct CaseLab {
    pub(crate) root: PathBuf,
    pub(crate) ws: PathBuf,
    pub(crate) tokens: LabTokens,
    /// Set as `AWS_SECRET_ACCESS_KEY` in capjail's environment: must never reach the client.
    pub(crate) launcher_secret: String,
    /// The generated policy (outside the workspace).
    pub(crate) policy: PathBuf,
}

/// The policy `capjail compare` uses when `--policy` is not given: the lab's workspace
/// read-write, nothing else on disk, no network, shell-like tools blocked.
pub fn workspace_policy(ws: &Path) -> String {
    let ws = serde_json::to_string(&ws.display().to_string()).unwrap_or_default();
    format!(
        "name: compare-lab\n\
         description: \"capjail compare: the lab workspace read-write, nothing else\"\n\
         network:\n  mode: none\n\
         filesystem:\n  mode: explicit\n  mounts:\n    - path: {ws}\n      mode: rw\n\
         tools:\n  mode: blocklist\n  blocked: [execute_command, run_command, run_shell, exec, shell, bash, sh, cmd, powershell, terminal, run_in_terminal]\n"
    )
}

impl CaseLab {
    pub(crate) fn new() -> std::io::Result<CaseLab> {
        let base = std::env::temp_dir().join(format!(
            "capjail-compare-{}-{}",
            std::process::id(),
            &fresh_token()?[..12]
        ));
        std::fs::create_dir(&base)?;
        // Canonical: the server and capjail must agree on paths even with a symlinked TMPDIR.
        let root = base.canonicalize()?;
        let lab = CaseLab {
            ws: root.join("ws"),
            policy: root.join("compare-policy.yaml"),
            tokens: make_lab(&root)?,
            launcher_secret: fresh_token()?,
            root,
        };
        std::fs::write(&lab.policy, workspace_policy(&lab.ws))?;
        Ok(lab)
    }

    pub(crate) fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.root.join(rel)).is_ok()
    }
}

impl Drop for CaseLab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A process outside the sandbox: a shell with a secret in its environment that appends
/// `USR1` to a file when signalled. Lives at most 60 s; killed on drop.
pub(crate) struct Outside {
    child: Child,
    signals: PathBuf,
    pub(crate) token: String,
}

impl Outside {
    pub(crate) fn start(dir: &Path) -> std::io::Result<Outside> {
        let signals = dir.join("outside-signals");
        let ready = dir.join("outside-ready");
        let token = fresh_token()?;
        let script = r#"trap 'echo USR1 >> "$1"' USR1
: > "$2"
i=0
while [ "$i" -lt 600 ]; do sleep 0.1; i=$((i+1)); done"#;
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("capjail-compare-outside")
            .arg(&signals)
            .arg(&ready)
            .env("OUTSIDE_SECRET", &token)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut o = Outside {
            child,
            signals,
            token,
        };
        let t = Instant::now();
        while !ready.exists() {
            if t.elapsed() > Duration::from_secs(5) {
                let _ = o.child.kill();
                return Err(std::io::Error::other("the outside process did not start"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(o)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn got_signal(&self) -> bool {
        std::fs::read_to_string(&self.signals).is_ok_and(|s| s.contains("USR1"))
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_lab_is_fresh_and_removed() {
        let a = CaseLab::new().unwrap();
        let b = CaseLab::new().unwrap();
        assert_ne!(a.root, b.root);
        assert_ne!(a.tokens.secret, b.tokens.secret);
        assert!(a.exists("secret/id_rsa") && a.exists("ws/new_link"));
        let pol = std::fs::read_to_string(&a.policy).unwrap();
        assert!(pol.contains(&a.ws.display().to_string()), "{pol}");
        let root = a.root.clone();
        drop(a);
        assert!(!root.exists());
    }

    #[test]
    fn compare_policy_is_valid() {
        let dir = std::env::temp_dir().join(format!("capjail-compare-pol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("p.yaml");
        std::fs::write(&f, workspace_policy(Path::new("/tmp/some ws"))).unwrap();
        let p = crate::policy::load(f.to_str().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
        p.unwrap();
    }

    #[test]
    fn compare_outside_process_records_signals() {
        let lab = CaseLab::new().unwrap();
        let o = Outside::start(&lab.root).unwrap();
        assert!(!o.got_signal());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(o.pid() as i32),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        let t = Instant::now();
        while !o.got_signal() && t.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(o.got_signal());
    }
}
