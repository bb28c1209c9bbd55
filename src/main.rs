//! picolet: a small kubelet. `main` only wires the parts together; the flow is
//! sources (pod/source) → pod manager (pod/manager) → pod workers (pod/worker)
//! → runtime (runc via the reaper) → status (pod/status, served by server/).

mod api;
mod image;
mod network;
mod runtime;
mod volume;

fn main() {}
