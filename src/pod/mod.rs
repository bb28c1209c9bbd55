//! Pods: where they come from (source), what each needs next (plan, pure),
//! how that is carried out (worker, backoff) and its status (status, pure).
//! In a cluster, pods also come from the API server (apisource, a watch
//! thread), and statuses, deletions, mirror pods and events go back (cluster
//! decides, apiwriter writes); events.rs has upstream's reasons and messages.
//!
//! Above node, runtime and the other mechanisms, which the worker drives.
//! Not here: properties of a pod spec alone (api: QoS, is_static, downward
//! values), the loop that drives the manager (daemon::sync), serving
//! statuses (server/).

pub mod apisource;
pub mod apiwriter;
pub mod backoff;
pub mod cluster;
pub mod events;
pub mod plan;
pub mod source;
pub mod status;
pub mod worker;
