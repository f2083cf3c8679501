//! capjail's own exit codes (kept clear of the usual server statuses; see `--help`).

pub(crate) const DENIED: i32 = 1;
/// `capjail compare`: full mode leaked, blocked something legitimate, or a case could not run.
pub(crate) const COMPARE_FAILED: i32 = 1;
pub(crate) const INTERNAL: i32 = 120;
pub(crate) const KERNEL_REQUIRED: i32 = 122;
pub(crate) const AUDIT: i32 = 123;
pub(crate) const POLICY: i32 = 124;
pub(crate) const USAGE: i32 = 125;
pub(crate) const CANNOT_EXECUTE: i32 = 126;
pub(crate) const NOT_FOUND: i32 = 127;
