//! The server's own world: Linux namespaces and a fresh root built from the plan.
//!
//! - `plan` (pure): [`WorldPlan`], which namespaces and which binds.
//! - `launch`: capjail's side (can namespaces be made here; the setup process's command).
//! - `setup`: the re-executed capjail that unshares, runs PID 1 and starts the server.
//! - `root`: building the fresh root in the new mount namespace.

pub(crate) mod launch;
pub(crate) mod launchers;
pub(crate) mod plan;
mod root;
pub(crate) mod setup;

pub(crate) use plan::{world_plan, WorldInputs, WorldPlan};
pub(crate) use setup::{setup_main, SETUP_ARG};
