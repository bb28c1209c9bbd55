//! picolet: a small kubelet, as a library: every part of it, for the unit
//! tests and for fuzz targets (`picolet::api::decode`, ...). The binary
//! (main.rs) compiles the same modules into itself. The flow is sources
//! (pod/source) → pod manager and workers (pod/worker) → runtime (runc through
//! the reaper) → status (pod/status, served by server/).

pub mod api;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod hostfs;
pub mod image;
pub mod logging;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod volume;
