//! TOOLS YOU CAN TRUST: every tool definition the server serves is pinned per server (trust
//! on first use, or from a committed pin file) and scanned for text that talks to the model;
//! a changed or poisoned tool is shown and called as the policy's `pins:` and `tool_scan:`
//! sections say.
//!
//! `scan` (the description scanner), `digest` (what is pinned), `identity` (which server),
//! `store` (the pin file), `assess` (pure decision per tool), `gate` (a call against it),
//! `approval` (the approval seam), `session` (one proxy session's state and side effects),
//! `settings` (the compiled policy sections).

pub(crate) mod approval;
pub(crate) mod assess;
pub(crate) mod digest;
pub(crate) mod gate;
pub(crate) mod hooks;
pub(crate) mod identity;
pub(crate) mod listing;
pub(crate) mod location;
pub(crate) mod scan;
pub(crate) mod session;
pub(crate) mod settings;
pub(crate) mod store;

pub(crate) use session::{PinsConfig, TrustSession};
