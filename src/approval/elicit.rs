//! capjail's own `elicitation/create` requests to the client (handshake generation): ids in
//! capjail's own space (`capjail-approval-<random>-<n>`, which the server cannot predict),
//! and the channels their answers go to.

use std::collections::HashMap;
use std::sync::mpsc::Sender;

use serde_json::{json, Value};

use super::memory::random_hex;
use super::question::ApprovalQuestion;
use crate::proxy::session::id_key;

pub struct Outstanding {
    prefix: String,
    next: u64,
    asked: HashMap<String, Sender<Value>>,
}

impl Outstanding {
    pub fn new() -> std::io::Result<Outstanding> {
        Ok(Outstanding {
            prefix: format!("capjail-approval-{}", &random_hex()?[..12]),
            next: 0,
            asked: HashMap::new(),
        })
    }

    /// A new request: its id and its line.
    pub fn open(&mut self, q: &ApprovalQuestion, offer_remember: bool, tx: Sender<Value>) -> (Value, Vec<u8>) {
        self.next += 1;
        let id = Value::String(format!("{}-{}", self.prefix, self.next));
        self.asked.insert(id_key(&id), tx);
        let req = json!({"jsonrpc":"2.0","id":id,"method":"elicitation/create","params":q.elicitation_params(offer_remember)});
        (id, serde_json::to_vec(&req).expect("a Value"))
    }

    pub fn take(&mut self, id: &Value) -> Option<Sender<Value>> {
        self.asked.remove(&id_key(id))
    }

    pub fn forget(&mut self, id: &Value) {
        self.asked.remove(&id_key(id));
    }
}
