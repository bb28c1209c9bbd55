//! The container runtime seam: the runc command line (or crun/youki, which
//! accept the same verbs). `create` goes through the reaper so the container's
//! init outlives picolet and its exit code is recorded even while picolet is
//! down; every other verb is a short-lived runc invocation. Each call is
//! counted and timed in `kubelet_runtime_operations_*` under upstream's CRI
//! operation names (kill is `stop_container`, delete `remove_container`).

use super::reaper::ReaperClient;
use super::RuntimeError;
use crate::metrics::Metrics;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// What picolet needs from a runtime. A test double implements this to drive
/// the pod worker without root.
pub trait Runtime {
    /// Creates the container (process waiting to start); returns its init pid.
    fn create(&self, id: &str, bundle: &Path, stdout: &Path, stderr: &Path) -> Result<u32, RuntimeError>;
    fn start(&self, id: &str) -> Result<(), RuntimeError>;
    fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError>;
    /// Removes a stopped (or never started) container's runtime state.
    fn delete(&self, id: &str) -> Result<(), RuntimeError>;
    /// Lets the reaper drop what it holds for a container (its log pipes).
    fn release(&self, id: &str);
    /// `runc://1.1.5` style version for node info and logs.
    fn version(&self) -> String;
    /// The binary and `--root` for `exec`, which probes and hooks run as
    /// tasks of their own (probe::run) rather than through this seam.
    fn exec_paths(&self) -> (PathBuf, PathBuf);
}

/// The runc CLI with picolet's own state root.
pub struct Runc {
    binary: PathBuf,
    root: PathBuf,
    reaper: ReaperClient,
    metrics: Arc<Metrics>,
}

impl Runc {
    pub fn new(binary: PathBuf, root: PathBuf, reaper: ReaperClient, metrics: Arc<Metrics>) -> Runc {
        Runc { binary, root, reaper, metrics }
    }

    /// Runs one runtime operation, counting and timing it as `op`.
    fn counted<T>(&self, op: &str, f: impl FnOnce() -> Result<T, RuntimeError>) -> Result<T, RuntimeError> {
        let began = Instant::now();
        let r = f();
        self.metrics.runtime_operation(op, began.elapsed(), r.is_ok());
        r
    }

    fn run(&self, verb: &str, args: &[&str]) -> Result<Vec<u8>, RuntimeError> {
        let out = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .arg(verb)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RuntimeError::Spawn(self.binary.display().to_string(), e))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(RuntimeError::Failed {
                verb: verb.to_string(),
                id: args.last().unwrap_or(&"").to_string(),
                stderr: clean_stderr(&out.stderr),
            })
        }
    }
}

/// runc prints logrus lines (`time="..." level=error msg="..."`); keep the message.
pub fn clean_stderr(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut msgs = Vec::new();
    for line in text.lines() {
        match line.find("msg=") {
            Some(i) => msgs.push(line[i + 4..].trim_matches('"').replace("\\\"", "\"")),
            None if !line.trim().is_empty() => msgs.push(line.trim().to_string()),
            None => {}
        }
    }
    msgs.join("; ")
}

impl Runtime for Runc {
    fn create(&self, id: &str, bundle: &Path, stdout: &Path, stderr: &Path) -> Result<u32, RuntimeError> {
        self.counted("create_container", || self.reaper.create(&self.binary, &self.root, id, bundle, stdout, stderr))
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.counted("start_container", || self.run("start", &[id]).map(drop))
    }

    fn kill(&self, id: &str, signal: &str) -> Result<(), RuntimeError> {
        self.counted("stop_container", || self.run("kill", &[id, signal]).map(drop))
    }

    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        self.counted("remove_container", || match self.run("delete", &[id]) {
            Ok(_) => Ok(()),
            Err(RuntimeError::Failed { stderr, .. }) if stderr.contains("does not exist") => Ok(()),
            Err(e) => Err(e),
        })
    }


    fn release(&self, id: &str) {
        self.reaper.release(id);
    }

    fn exec_paths(&self) -> (PathBuf, PathBuf) {
        (self.binary.clone(), self.root.clone())
    }

    fn version(&self) -> String {
        let name = self.binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let began = Instant::now();
        let out = Command::new(&self.binary).arg("--version").stdin(Stdio::null()).output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        self.metrics.runtime_operation("version", began.elapsed(), ok);
        let first = out.ok().map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string());
        // "runc version 1.1.5+ds1" -> "runc://1.1.5"
        let ver = first
            .as_deref()
            .and_then(|l| l.split_whitespace().nth(2))
            .map(|v| v.split(['+', '-']).next().unwrap_or(v).to_string())
            .unwrap_or_else(|| "unknown".into());
        format!("{name}://{ver}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_runc_messages() {
        let raw = b"time=\"2024\" level=error msg=\"container \\\"x\\\" does not exist\"\n";
        assert_eq!(clean_stderr(raw), "container \"x\" does not exist");
        assert_eq!(clean_stderr(b"plain failure\n"), "plain failure");
    }
}
