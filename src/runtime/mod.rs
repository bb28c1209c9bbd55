//! Turning a pod's container into something runc can run.

pub mod env;
pub mod spec;
