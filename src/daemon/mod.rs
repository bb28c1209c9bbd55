//! `picolet run`: the kubelet, running until it is stopped.
//!
//! - `wiring.rs`: what is built once at start-up, in one place: checks,
//!   cgroup tree, image store, reaper, metrics registry, the pod worker's
//!   settings, the cluster threads, the read-only port, the kubelet server
//!   and healthz.
//! - `sync.rs`: the sync loop on the main thread (sources → pod manager →
//!   statuses) and the tasks it spawns (log pumps, probes and hooks).
//!
//! Not here: what a pass does (pod::worker), parsing the configuration
//! (config.rs), the other subcommands (cli.rs).

mod sync;
mod wiring;

pub use wiring::run;
