//! The server's own world: Linux namespaces and a fresh root built from the plan.
//!
//! - `plan` (pure): [`WorldPlan`], which namespaces and which binds.

pub mod plan;

pub use plan::{world_plan, WorldBind, WorldInputs, WorldPlan};
