//! Runs one case in one mode: a fresh lab, a fresh `capjail run --mode M` (this executable) or,
//! for the unconfined baseline, the server alone; a minimal MCP client over its stdio; every wait
//! bounded by the case deadline. Then the effects are observed and handed to the judge.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::egress_lab::{self, EgressLab};
use super::judge::{self, contains_any, reply_text, tool_ok, Observed, Outcome};
use super::lab::{CaseLab, Outside};
use super::netns::{self, Canary};
use super::suite::{render, Case, Effect, Step, Target, Vars, WallsVars};
use super::walls_lab::{self, WallsLab};
use super::Mode;

/// What every case run needs to know.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// This executable (`capjail`).
    pub(crate) exe: PathBuf,
    /// The server under test; `{lab}` and `{ws}` are substituted per case.
    pub(crate) server: Vec<String>,
    /// `--policy` as given (name or absolute file), else the generated per-lab policy.
    pub(crate) policy: Option<String>,
    /// Bound on one case (start, handshake, requests, exit).
    pub(crate) timeout: Duration,
}

/// Run `case` in `mode` (in the calling thread; network cases move the thread into a private
/// network namespace, so call this from a thread of its own).
pub(crate) fn run_case(setup: &Setup, case: &Case, mode: Mode) -> Outcome {
    let deadline = Instant::now() + setup.timeout;
    let canary = if case.network {
        if let Err(e) = netns::enter_private_netns() {
            return Outcome::Skipped(e);
        }
        match Canary::start() {
            Ok(c) => Some(c),
            Err(e) => return Outcome::Error(format!("canary: {e}")),
        }
    } else {
        None
    };
    let lab = match CaseLab::new() {
        Ok(l) => l,
        Err(e) => return Outcome::Error(format!("lab: {e}")),
    };
    let egress = if case.egress() {
        match EgressLab::start(&lab.root) {
            Ok(e) => Some(e),
            Err(e) => return Outcome::Error(format!("egress lab: {e}")),
        }
    } else {
        None
    };
    let outside = if case.target == Target::Probe {
        match Outside::start(&lab.root) {
            Ok(o) => Some(o),
            Err(e) => return Outcome::Error(format!("outside process: {e}")),
        }
    } else {
        None
    };
    let walls = if case.target == Target::Probe {
        match WallsLab::new(&lab.root, &lab.tokens.secret) {
            Ok(w) => Some(w),
            Err(e) => return Outcome::Error(format!("walls lab: {e}")),
        }
    } else {
        None
    };
    let vars = Vars {
        root: lab.root.display().to_string(),
        ws: lab.ws.display().to_string(),
        port: canary.as_ref().map_or(0, |c| c.port),
        origin_port: egress.as_ref().map_or(0, |e| e.origin_port),
        marker: format!("mk{}", &lab.tokens.legit[..12]),
        walls: match (&walls, &outside) {
            (Some(w), Some(o)) => WallsVars {
                agent: w.agent.display().to_string(),
                daemon: w.daemon.display().to_string(),
                target: w.target.display().to_string(),
                cache: w.cache.display().to_string(),
                shm: w.shm,
                outside_pid: o.pid(),
                limit: 7000 + u64::from_str_radix(&lab.tokens.legit[..4], 16).unwrap_or(0) % 1000,
            },
            _ => WallsVars::default(),
        },
    };
    let server = match case.target {
        Target::Server => substitute(&setup.server, &lab),
        Target::Probe => {
            let mut v = vec![
                setup.exe.display().to_string(),
                "probe-server".into(),
                "--root".into(),
                vars.root.clone(),
            ];
            if let Some(c) = &canary {
                v.extend(["--canary-port".into(), c.port.to_string()]);
            }
            if let Some(o) = &outside {
                v.extend(["--outside-pid".into(), o.pid().to_string()]);
            }
            v
        }
    };
    let argv = match mode.run_flag() {
        None => server,
        Some(m) => {
            let policy = match &egress {
                // The egress family's policy names the lab's ports: always its own.
                Some(e) => {
                    let p = lab.root.join("egress-policy.yaml");
                    if let Err(err) = std::fs::write(&p, e.policy(&lab.ws, vars.port)) {
                        return Outcome::Error(format!("egress policy: {err}"));
                    }
                    p.display().to_string()
                }
                None => setup
                    .policy
                    .clone()
                    .unwrap_or_else(|| lab.policy.display().to_string()),
            };
            let mut v = vec![
                setup.exe.display().to_string(),
                "run".into(),
                "--quiet".into(),
                "--mode".into(),
                m.into(),
                "--policy".into(),
                policy,
                "--workspace".into(),
                vars.ws.clone(),
                "--cwd".into(),
                vars.root.clone(),
                "--audit".into(),
                "off".into(),
                // A throwaway lab: its tools are scanned but not pinned in the user's file.
                "--pins".into(),
                "off".into(),
                "--".into(),
            ];
            v.extend(server);
            v
        }
    };
    let names = egress
        .as_ref()
        .map(|e| (e.hosts.as_path(), e.resolv.as_path()));
    let mut s = match Session::spawn(&argv, &lab, names) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let mut obs = Observed::default();
    if let Err(e) = s.handshake(deadline) {
        return Outcome::Error(format!("{e}; stderr: {}", s.stderr_tail()));
    }
    if !case.needs_tool.is_empty() {
        match s.tools(deadline) {
            Some(names) if !names.iter().any(|n| n == case.needs_tool) => {
                return Outcome::Skipped(format!("the server has no tool {}", case.needs_tool))
            }
            Some(_) => {}
            None => {
                return Outcome::Error(format!("no tools/list reply; stderr: {}", s.stderr_tail()))
            }
        }
    }
    for (i, step) in case.steps.iter().enumerate() {
        match *step {
            Step::Call { tool, args } => {
                let args: Value = match serde_json::from_slice(&render(args, &vars)) {
                    Ok(a) => a,
                    Err(e) => return Outcome::Error(format!("bad template: {e}")),
                };
                let id = json!(format!("call-{i}"));
                s.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}}).to_string().into_bytes());
                if let Some(r) = s.wait_for(deadline, |v| v.get("id") == Some(&id) && is_reply(v)) {
                    obs.replies.push(r);
                }
            }
            Step::Raw(t) => {
                s.send(&render(t, &vars));
                let sync = json!(format!("sync-{i}"));
                s.send(
                    &json!({"jsonrpc":"2.0","id":sync,"method":"ping"})
                        .to_string()
                        .into_bytes(),
                );
                // Everything that answers the raw line arrives before the ping's reply.
                let mut got = Vec::new();
                s.wait_for(deadline, |v| {
                    if v.get("id") == Some(&sync) {
                        return true;
                    }
                    if v.is_array() || is_reply(v) {
                        got.push(v.clone());
                    }
                    false
                });
                obs.replies.extend(got);
            }
        }
    }
    if case.effects.contains(&Effect::OutsideSignalled) {
        thread::sleep(Duration::from_millis(300));
    }
    s.close(deadline);
    let received = s.received();
    let last = obs.replies.last().cloned().unwrap_or(Value::Null);
    let secrets = lab.tokens.secrets();
    for e in case.effects {
        let happened = match *e {
            Effect::SecretToClient => contains_any(&received, &secrets),
            Effect::FileAppears(rel) => lab.exists(rel),
            Effect::FileGone(rel) => !lab.exists(rel),
            Effect::CanaryHit => canary
                .as_ref()
                .is_some_and(|c| c.hits_with(&vars.marker) > 0),
            Effect::OriginHit => egress
                .as_ref()
                .is_some_and(|e| e.origin_hits_with(&vars.marker) > 0),
            Effect::DatagramHit => egress
                .as_ref()
                .is_some_and(|e| e.dns_hits_with(&vars.marker) > 0),
            Effect::OutsideSignalled => outside.as_ref().is_some_and(Outside::got_signal),
            Effect::OutsideEnvToClient => outside
                .as_ref()
                .is_some_and(|o| contains_any(&received, &[&o.token])),
            Effect::LauncherEnvToClient => contains_any(&received, &[&lab.launcher_secret]),
            Effect::ToolSucceeded => tool_ok(&last),
            Effect::OutsideFileChanged => walls.as_ref().is_some_and(WallsLab::target_changed),
            Effect::OutsideLimited => {
                walls_lab::cpu_limit_is(vars.walls.outside_pid, vars.walls.limit)
            }
            Effect::OutsideRescheduled => walls_lab::sched_changed(vars.walls.outside_pid),
            Effect::LegitToClient => {
                tool_ok(&last) && reply_text(&last).contains(&lab.tokens.legit)
            }
            Effect::ResultContains(t) => tool_ok(&last) && reply_text(&last).contains(t),
            Effect::Exists(rel) => lab.exists(rel),
        };
        obs.happened.push((effect_name(e), happened));
    }
    let layers = mode.layers();
    judge::judge(case.kind, layers, &obs)
}

fn is_reply(v: &Value) -> bool {
    v.get("result").is_some() || v.get("error").is_some()
}

/// `{lab}` -> the lab root, `{ws}` -> its workspace, in every argument of the server command.
pub(crate) fn substitute(server: &[String], lab: &CaseLab) -> Vec<String> {
    let root = lab.root.display().to_string();
    let ws = lab.ws.display().to_string();
    server
        .iter()
        .map(|a| a.replace("{lab}", &root).replace("{ws}", &ws))
        .collect()
}

pub(crate) fn effect_name(e: &Effect) -> String {
    match e {
        Effect::SecretToClient => "a secret token reached the client".into(),
        Effect::FileAppears(r) => format!("{r} was written"),
        Effect::FileGone(r) => format!("{r} was moved away"),
        Effect::CanaryHit => "the loopback canary was hit".into(),
        Effect::OriginHit => "the allowed origin got the request".into(),
        Effect::DatagramHit => "the DNS/UDP canary on 127.0.0.1:53 got the datagram".into(),
        Effect::OutsideSignalled => "the outside process got SIGUSR1".into(),
        Effect::OutsideEnvToClient => "the outside process's environment reached the client".into(),
        Effect::LauncherEnvToClient => "capjail's own secret environment reached the client".into(),
        Effect::ToolSucceeded => "the tool succeeded".into(),
        Effect::OutsideFileChanged => {
            "a file outside the mounts changed mode, time or xattr".into()
        }
        Effect::OutsideLimited => "the outside process's RLIMIT_CPU was set".into(),
        Effect::OutsideRescheduled => "the outside process's priority or affinity changed".into(),
        Effect::LegitToClient => "the workspace file's content reached the client".into(),
        Effect::ResultContains(t) => format!("the result lists {t}"),
        Effect::Exists(r) => format!("{r} exists"),
    }
}

/// A minimal MCP client over a child's stdio.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Vec<u8>>,
    received: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

const MAX_RECORD: usize = 8 * 1024 * 1024;

impl Session {
    fn spawn(
        argv: &[String],
        lab: &CaseLab,
        names: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Session, String> {
        let mut cmd = Command::new(&argv[0]);
        if let Some((hosts, resolv)) = names {
            egress_lab::private_names(&mut cmd, hosts, resolv)
                .map_err(|e| format!("private names: {e}"))?;
        }
        cmd.args(&argv[1..])
            .current_dir(&lab.root)
            .env("AWS_SECRET_ACCESS_KEY", &lab.launcher_secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let (tx, rx) = channel();
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let mut all = rec.lock().unwrap_or_else(|e| e.into_inner());
                        if all.len() < MAX_RECORD {
                            all.extend_from_slice(&line);
                        }
                        drop(all);
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let err_buf = Arc::new(Mutex::new(Vec::new()));
        let eb = err_buf.clone();
        thread::spawn(move || {
            let mut r = stderr;
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut e = eb.lock().unwrap_or_else(|e| e.into_inner());
                e.extend_from_slice(&buf[..n]);
                let len = e.len();
                if len > 16 * 1024 {
                    e.drain(..len - 8 * 1024);
                }
            }
        });
        Ok(Session {
            child,
            stdin,
            rx,
            received,
            stderr: err_buf,
        })
    }

    fn send(&mut self, line: &[u8]) {
        if let Some(w) = self.stdin.as_mut() {
            let mut v = line.to_vec();
            v.push(b'\n');
            if w.write_all(&v).and_then(|()| w.flush()).is_err() {
                self.stdin = None;
            }
        }
    }

    /// Wait until a line satisfies `pred` (answering server->client requests with an error on
    /// the way); `None` at the deadline or when the stream ends.
    fn wait_for(
        &mut self,
        deadline: Instant,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.rx.recv_timeout(left).ok()?;
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if pred(&v) {
                return Some(v);
            }
            if v.get("method").is_some() && v.get("id").is_some() && !is_reply(&v) {
                let id = v["id"].clone();
                self.send(json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"not supported by capjail compare"}}).to_string().as_bytes());
            }
        }
    }

    fn handshake(&mut self, deadline: Instant) -> Result<(), String> {
        self.send(json!({"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"capjail-compare","version":env!("CARGO_PKG_VERSION")}}}).to_string().as_bytes());
        let r = self
            .wait_for(deadline, |v| {
                v.get("id") == Some(&json!("init")) && is_reply(v)
            })
            .ok_or("no reply to initialize")?;
        if r.get("result").is_none() {
            return Err(format!("initialize failed: {r}"));
        }
        self.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        Ok(())
    }

    fn tools(&mut self, deadline: Instant) -> Option<Vec<String>> {
        self.send(br#"{"jsonrpc":"2.0","id":"tools","method":"tools/list","params":{}}"#);
        let r = self.wait_for(deadline, |v| {
            v.get("id") == Some(&json!("tools")) && is_reply(v)
        })?;
        Some(
            r.pointer("/result/tools")?
                .as_array()?
                .iter()
                .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from))
                .collect(),
        )
    }

    /// Close stdin, wait for the exit (bounded by the deadline, at least 2 s), then kill.
    fn close(&mut self, deadline: Instant) {
        self.stdin = None;
        let until = deadline.max(Instant::now() + Duration::from_secs(2));
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            if Instant::now() >= until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        // Let the reader thread take the last lines.
        thread::sleep(Duration::from_millis(20));
    }

    fn received(&self) -> Vec<u8> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn stderr_tail(&self) -> String {
        let e = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let s = String::from_utf8_lossy(&e);
        let t: String = s
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        t.replace('\n', " | ")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stdin = None;
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(2) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The server's tool names: the server alone (no capjail) in a throwaway lab.
pub(crate) fn list_tools(setup: &Setup, limit: Duration) -> Option<Vec<String>> {
    let deadline = Instant::now() + limit;
    let lab = CaseLab::new().ok()?;
    let mut s = Session::spawn(&substitute(&setup.server, &lab), &lab, None).ok()?;
    s.handshake(deadline).ok()?;
    let tools = s.tools(deadline);
    s.close(Instant::now());
    tools
}
