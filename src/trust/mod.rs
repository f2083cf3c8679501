//! TOOLS YOU CAN TRUST: every tool definition the server serves is pinned per server (trust
//! on first use, or from a committed pin file) and scanned for text that talks to the model;
//! a changed or poisoned tool is shown and called as the policy's `pins:` and `tool_scan:`
//! sections say.
//!
//! `scan` (the description scanner), `digest` (what is pinned), `identity` (which server),
//! `store` (the pin file), `assess` (pure decision per tool), `gate` (a call against it),
//! `approval` (the approval seam), `session` (one proxy session's state and side effects),
//! `settings` (the compiled policy sections).

pub mod approval;
pub mod assess;
pub mod digest;
pub mod gate;
pub mod hooks;
pub mod identity;
pub mod listing;
pub mod location;
pub mod scan;
pub mod session;
pub mod settings;
pub mod store;

pub use session::{PinsConfig, TrustSession};
