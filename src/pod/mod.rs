//! Pods: where they come from (source), how each is driven (worker, backoff)
//! and how its status is computed (status).

pub mod backoff;
pub mod source;
pub mod status;
pub mod worker;
