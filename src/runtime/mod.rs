//! Running containers: OCI bundles (spec, env) handed to runc through the
//! reaper, the on-disk records that make picolet restart-safe, and container
//! logs (the CRI files the pumps write).
//!
//! Uses the mechanisms beside it (cgroup, image, network, volume) to build a
//! bundle. Not here: deciding what runs (pod::worker), probes (probe/),
//! serving logs (server::logs).

pub mod env;
pub mod logs;
pub mod reaper;
pub mod record;
pub mod runc;
pub mod spec;

use std::path::PathBuf;

/// Errors from the runtime seam; each names the verb and container.
#[derive(Debug)]
pub enum RuntimeError {
    Spawn(String, std::io::Error),
    Failed { verb: String, id: String, stderr: String },
    Reaper(String),
    Io(PathBuf, std::io::Error),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            RuntimeError::Spawn(what, e) => write!(f, "cannot run {what}: {e}"),
            RuntimeError::Failed { verb, id, stderr } => write!(f, "runtime {verb} {id}: {stderr}"),
            RuntimeError::Reaper(s) => write!(f, "reaper: {s}"),
            RuntimeError::Io(p, e) => write!(f, "{}: {e}", p.display()),
        }
    }
}

impl std::error::Error for RuntimeError {}
