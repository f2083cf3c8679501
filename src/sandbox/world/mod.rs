//! The server's own world: Linux namespaces and a fresh root built from the plan.
//!
//! - `plan` (pure): [`WorldPlan`], which namespaces and which binds.
//! - `launch`: capjail's side (can namespaces be made here; the setup process's command).
//! - `setup`: the setup process (capjail re-executed, or forked when started early) that
//!   unshares, runs PID 1 and starts the server.
//! - `fork`: what a forked setup process does to take an executed one's place.
//! - `root`: building the fresh root in the new mount namespace.

mod fork;
pub(crate) mod launch;
pub(crate) mod launchers;
pub(crate) mod plan;
mod root;
pub(crate) mod setup;

pub(crate) use plan::{world_plan, WorldInputs, WorldPlan};
pub(crate) use setup::{setup_main, SETUP_ARG};
