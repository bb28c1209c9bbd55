//! Pods: where they come from (source), what each needs next (plan, pure),
//! how that is carried out (worker, backoff) and its status (status, pure).
//! In a cluster, pods also come from the API server (apisource, a watch
//! thread), and statuses, deletions and mirror pods go back (cluster decides,
//! apiwriter writes).

pub mod apisource;
pub mod apiwriter;
pub mod backoff;
pub mod cluster;
pub mod events;
pub mod plan;
pub mod source;
pub mod status;
pub mod worker;
