//! capjail: a sandbox for MCP servers.
//!
//! One policy, enforced twice: by a fail-closed proxy on the server's stdio JSON-RPC stream
//! (`proxy`, deciding with the pure functions in `check`), and on Linux by confining the server
//! process in the kernel (`sandbox`). `policy` says what is allowed, `profile` what each tool
//! of a server does.

pub mod app;
pub mod approval;
pub mod audit;
pub mod check;
mod cli;
mod commands;
pub mod compare;
pub mod content;
pub mod egress;
pub mod exit;
pub mod jsonrpc;
pub mod policy;
pub mod probe;
pub mod profile;
pub mod proxy;
pub mod sandbox;
pub mod trust;
pub mod wrap;
