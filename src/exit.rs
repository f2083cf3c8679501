//! capjail's own exit codes (kept clear of the usual server statuses; see `--help`).

pub const DENIED: i32 = 1;
/// `capjail compare`: full mode leaked, blocked something legitimate, or a case could not run.
pub const COMPARE_FAILED: i32 = 1;
pub const INTERNAL: i32 = 120;
pub const KERNEL_REQUIRED: i32 = 122;
pub const AUDIT: i32 = 123;
pub const POLICY: i32 = 124;
pub const USAGE: i32 = 125;
pub const CANNOT_EXECUTE: i32 = 126;
pub const NOT_FOUND: i32 = 127;
