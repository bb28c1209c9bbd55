//! picolet: a small kubelet. This library holds every part of it, for the
//! unit tests and for fuzz targets (`picolet::api::decode`, ...); the binary
//! (main.rs) compiles the same modules into itself.
//!
//! The flow: sources (static pod manifests, the API server's pods) → the pod
//! manager's passes (pod::worker) → the runtime (runc through the reaper) →
//! statuses (pod::status) to the API server and the HTTP servers.
//!
//! Floors, from the ground up; a module imports only from floors below its
//! own (and from its own folder):
//!
//! 1. `hostfs` (atomic files, the mount table), `metrics` (the registry);
//!    `api` (types, decoding, defaults, validation, QoS, the API client).
//! 2. `cgroup`, `image`, `network`, `volume`, `probe`; `runtime` above the
//!    first four (a bundle needs them); `logging`.
//! 3. `stats`: usage of the node, pods and containers.
//! 4. `node`: this node's facts, status, eviction, systemd notify.
//! 5. `pod`: sources, the pod manager, statuses, the cluster side; `config`.
//! 6. `server`: the HTTP servers, rendering what the floors below record.
//! 7. `daemon` (`picolet run`: wiring and the sync loop), `cli`; main.rs.
//!
//! docs/architecture.md draws the same plan with the flow and threads.

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
