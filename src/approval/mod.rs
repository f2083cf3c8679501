//! Approvals that reach a person: a call matching `require_approval` is held while someone
//! is asked, and forwarded unchanged (after its audit record) only on an explicit approval.
//!
//! Who is asked, in the policy's order (`approval.approvers`):
//! - `client`: the person at the MCP client, through elicitation. Handshake generation:
//!   capjail's own `elicitation/create` request, through the proxy's outbox (ids in
//!   capjail's own space; the answer is routed back here, never relayed).
//!   2026-07-28 generation: the call is answered with an `input_required` result carrying
//!   the elicitation and a single-use token bound to the call (`gate`); the client's retry
//!   (a new id) is matched by that token.
//! - `command`: an approver program (`command`): one JSON document on stdin, the answer on stdout.
//! - `terminal`: capjail's controlling terminal, when there is one (`terminal`).
//!
//! The entry point other stages use is [`Approvals::request`]: a question in, the answer
//! delivered later to a callback on an approval thread; nothing waits on the pumps.

pub(crate) mod command;
pub(crate) mod config;
pub(crate) mod gate;
pub(crate) mod memory;
pub(crate) mod question;
pub(crate) mod terminal;

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) use self::config::ApprovalPolicy;
use self::memory::{SessionMemory, TokenStore};
pub(crate) use self::question::{ApprovalQuestion, Verdict};
use crate::policy::schema::ApproverKind;
use crate::proxy::outbox::{self, Outbox};

/// Who or what answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answerer {
    /// The person at the client, through elicitation.
    Client,
    Command,
    Terminal,
    /// An earlier "for the rest of this session" approval.
    SessionMemory,
    /// Nobody could be asked.
    Nobody,
}

impl Answerer {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Answerer::Client => "client elicitation",
            Answerer::Command => "command",
            Answerer::Terminal => "terminal",
            Answerer::SessionMemory => "session memory",
            Answerer::Nobody => "nobody",
        }
    }
}

/// The answer to one question.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
    pub(crate) verdict: Verdict,
    /// The answer in words (`approve`, `decline`, `no answer in time`, ...).
    pub(crate) words: String,
    pub(crate) by: Answerer,
    pub(crate) elapsed: Duration,
}

/// Called once with the answer, on an approval thread.
pub(crate) type OnAnswer = Box<dyn FnOnce(Answer) + Send>;

/// One session's approvals.
pub(crate) struct Approvals {
    pub(crate) policy: ApprovalPolicy,
    outbox: Arc<Outbox>,
    state: Mutex<State>,
}

struct State {
    /// Did the client declare elicitation in `initialize`?
    client_elicits: bool,
    memory: SessionMemory,
    tokens: TokenStore,
    /// Id keys of requests held while their question waits.
    held: HashSet<String>,
}

impl Approvals {
    pub(crate) fn new(policy: ApprovalPolicy, outbox: Arc<Outbox>) -> Arc<Approvals> {
        let tokens = TokenStore::new(policy.timeout);
        Arc::new(Approvals {
            policy,
            outbox,
            state: Mutex::new(State {
                client_elicits: false,
                memory: SessionMemory::default(),
                tokens,
                held: HashSet::new(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The client's `initialize` params: does it take elicitation requests?
    pub(crate) fn note_initialize(&self, params: Option<&Value>) {
        let elicits = params
            .and_then(|p| p.get("capabilities"))
            .and_then(|c| c.get("elicitation"))
            .is_some_and(Value::is_object);
        self.state().client_elicits = elicits;
    }

    pub(crate) fn client_elicits(&self) -> bool {
        self.state().client_elicits
    }

    pub(crate) fn remembered(&self, tool: &str, rule: &str) -> bool {
        self.policy.remember && self.state().memory.covers(tool, rule)
    }

    pub(crate) fn remember(&self, tool: &str, rule: &str) {
        if self.policy.remember {
            self.state().memory.remember(tool, rule);
        }
    }

    /// Ask about one call. `client_elicits`: may the client be asked with capjail's own
    /// `elicitation/create` request? The answer goes to `done`, on its own thread, after at
    /// most the policy's time limits; the caller returns at once.
    pub(crate) fn request(
        self: &Arc<Self>,
        q: ApprovalQuestion,
        client_elicits: bool,
        done: OnAnswer,
    ) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("approval".into())
            .spawn(move || {
                // Started by a pump: not with its scheduling (nor the approver command).
                crate::proxy::latency::as_main_thread();
                let answer = me.ask(&q, client_elicits);
                done(answer)
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start an approval thread: {e}");
        }
    }

    /// The first approver, in the policy's order, that can ask now.
    pub(crate) fn first_usable(&self, client_elicits: bool) -> Option<ApproverKind> {
        self.policy.approvers.iter().copied().find(|a| match a {
            ApproverKind::Client => client_elicits,
            ApproverKind::Command => self.policy.command.is_some(),
            ApproverKind::Terminal => terminal::available(),
        })
    }

    /// Ask the approvers in order (blocking: runs on an approval thread).
    fn ask(&self, q: &ApprovalQuestion, client_elicits: bool) -> Answer {
        let started = Instant::now();
        let remember = self.policy.remember;
        let done = |(verdict, words): (Verdict, String), by| Answer {
            verdict,
            words,
            by,
            elapsed: started.elapsed(),
        };
        for approver in &self.policy.approvers {
            match approver {
                ApproverKind::Client if client_elicits => {
                    match self.ask_client(q) {
                        Some(a) => return done(a, Answerer::Client),
                        None => continue, // the client refused the question itself: next approver
                    }
                }
                ApproverKind::Command => {
                    if let Some(c) = &self.policy.command {
                        let doc = q.command_document(remember, c.timeout.as_secs_f64());
                        return done(command::ask(c, &doc, remember), Answerer::Command);
                    }
                }
                ApproverKind::Terminal if terminal::available() => {
                    if let Some(a) = terminal::ask(&q.message(), remember, self.policy.timeout) {
                        return done(a, Answerer::Terminal);
                    }
                }
                _ => {}
            }
        }
        done((Verdict::Unavailable, how_to_enable()), Answerer::Nobody)
    }

    /// Send capjail's own `elicitation/create` and wait for its answer. `None`: the client
    /// answered with an error (it cannot ask).
    fn ask_client(&self, q: &ApprovalQuestion) -> Option<(Verdict, String)> {
        let (tx, rx) = mpsc::channel::<outbox::Answer>();
        let params = q.elicitation_params(self.policy.remember);
        let id = match self.outbox.request_client(
            "elicitation/create",
            Some(params),
            Box::new(move |a| {
                let _ = tx.send(a);
            }),
        ) {
            Ok(id) => id,
            Err(e) => {
                return Some((
                    Verdict::Denied,
                    format!("the question could not be sent: {e} (deny)"),
                ))
            }
        };
        match rx.recv_timeout(self.policy.timeout) {
            Ok(outbox::Answer::Result(r)) => {
                Some(question::read_elicitation(&r, self.policy.remember))
            }
            Ok(outbox::Answer::Error(error)) => {
                tracing::info!(%error, "the client refused capjail's elicitation request");
                None
            }
            Ok(outbox::Answer::Closed) => {
                Some((Verdict::Denied, "the session ended before an answer".into()))
            }
            Err(_) => {
                self.outbox.cancel(&id);
                // Tell the client the question is withdrawn.
                let _ = self.outbox.send_to_client(
                    &serde_json::to_vec(&serde_json::json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId": id, "reason": "capjail: no answer in time"}}))
                        .expect("a Value"),
                );
                Some((Verdict::TimedOut, "no answer in time".into()))
            }
        }
    }

    /// A request is held (its id key) until [`Approvals::unhold`].
    pub(crate) fn hold(&self, key: String) {
        self.state().held.insert(key);
    }

    /// Is a request waiting for a person's answer?
    pub(crate) fn pending(&self) -> bool {
        !self.state().held.is_empty()
    }

    /// Release a held request; false when it was not held (already released or cancelled).
    pub(crate) fn unhold(&self, key: &str) -> bool {
        self.state().held.remove(key)
    }

    pub(crate) fn tokens<R>(&self, f: impl FnOnce(&mut TokenStore) -> R) -> R {
        f(&mut self.state().tokens)
    }
}

/// The reason given when nobody can be asked.
pub(crate) fn how_to_enable() -> String {
    "nobody could be asked: the client did not declare the elicitation capability and no other approver is configured; \
     use a client that supports elicitation, or add to the policy `approval: {approvers: [client, command], command: {argv: [/path/to/approver]}}` \
     (or `terminal` when capjail has a controlling terminal)"
        .into()
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("policy", &self.policy)
            .finish()
    }
}

/// The session's approvals. Every session has them: besides `require_approval` rules, the
/// content checks and flows (`action: approval`) and the tool pins (`pins.on_change: approve`)
/// ask through them. A call is asked about only when its denial says an approval would allow
/// it, so a policy that asks nothing pays nothing.
pub(crate) fn for_policy(
    policy: &crate::policy::Policy,
    outbox: &Arc<Outbox>,
) -> Option<Arc<Approvals>> {
    Some(Approvals::new(policy.approval.clone(), outbox.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An approval asked while a pump judged a line (here the server pump in a burst, running
    /// as `SCHED_BATCH`) runs with capjail's main thread's scheduling, and so does the approver
    /// command it would start: a pump's scheduling is not handed on.
    #[test]
    fn an_approval_thread_does_not_keep_a_pumps_scheduling() {
        let approvals = Approvals::new(ApprovalPolicy::default(), Outbox::discarding());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pace = crate::proxy::latency::ServerPace::start();
            pace.woke(2);
            // SAFETY: the calling thread.
            assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_BATCH);
            let q = ApprovalQuestion {
                method: "tools/call".into(),
                tool: Some("write_file".into()),
                capability: Some("filesystem.write".into()),
                resource: Some("/ws/a.txt".into()),
                rule: crate::policy::RuleId::Policy("require_approval[0]".into()),
                rule_label: "require_approval[0]".into(),
                reason: "writes need a person".into(),
            };
            let done = move |a: Answer| {
                // SAFETY: the calling thread (the approval's).
                let policy = unsafe { libc::sched_getscheduler(0) };
                tx.send((a.by, policy)).unwrap();
            };
            approvals.request(q, false, Box::new(done));
        })
        .join()
        .unwrap();
        let (by, policy) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(by, Answerer::Nobody);
        assert_eq!(policy, libc::SCHED_OTHER);
    }
}
