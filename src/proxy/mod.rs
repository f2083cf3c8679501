//! The stdio relay.
