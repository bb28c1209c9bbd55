//! Pods: where they come from (source), what each needs next (plan, pure),
//! how that is carried out (worker, backoff) and its status (status, pure).

pub mod backoff;
pub mod events;
pub mod plan;
pub mod qos;
pub mod source;
pub mod status;
pub mod worker;
