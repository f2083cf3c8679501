//! The server's own world: Linux namespaces and a fresh root built from the plan.
//!
//! - `plan` (pure): [`WorldPlan`], which namespaces and which binds.
//! - `launch`: capjail's side (can namespaces be made here; the setup process's command).
//! - `setup`: the re-executed capjail that unshares, runs PID 1 and starts the server.
//! - `root`: building the fresh root in the new mount namespace.

pub mod launch;
pub mod launchers;
pub mod plan;
mod root;
pub mod setup;

pub use plan::{world_plan, WorldBind, WorldInputs, WorldPlan};
pub use setup::{setup_main, SETUP_ARG};
