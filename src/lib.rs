//! capjail: a sandbox for MCP servers.
//!
//! One policy, enforced twice: by a fail-closed proxy on the server's stdio JSON-RPC stream
//! (`proxy`, deciding with the pure functions in `check`), and on Linux by confining the server
//! process in the kernel (`sandbox`). `policy` says what is allowed, `profile` what each tool
//! of a server does.

pub mod app;
mod approval;
pub mod audit;
pub mod check;
mod cli;
mod commands;
pub mod compare;
pub mod content;
mod egress;
mod exit;
mod inline_text;
mod jsonrpc;
pub mod policy;
mod probe;
pub mod profile;
mod proxy;
pub mod sandbox;
mod simd;
#[cfg(test)]
mod test_rng;
mod trust;
mod wrap;
