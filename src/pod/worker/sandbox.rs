//! Pod networks set up and torn down off the pod loop. CNI plugins are child
//! processes that may take seconds, or hang until their timeout (cni.rs): a
//! pod whose network is being wired waits on its own while the loop goes on
//! with every other pod, and a finished job wakes the loop.
//!
//! At most [`NETWORK_JOBS`] run at once; other pods wait their turn.
//!
//! Pods that run no plugin (hostNetwork, or no CNI at all) are set up and
//! torn down inline: pinning namespaces and writing etc files takes
//! milliseconds, and a thread would only add a pass of latency.

use super::{full_name, Manager};
use crate::api::Pod;
use crate::network::{self, NetworkError, Setup};
use crate::runtime::runc::Runtime;
use std::sync::mpsc::{self, Receiver, TryRecvError};

/// Network jobs running at once: each runs Go plugins (4 MB resident just
/// to answer VERSION, more during an ADD, plus the iptables runs of
/// portmap), so dozens at once would not fit a 512 MB board, and a few hung
/// ones still leave room for the others.
const NETWORK_JOBS: usize = 4;

/// One pod's network job in flight.
pub(super) enum NetJob {
    Setup(Receiver<Result<Setup, NetworkError>>),
    Teardown(Receiver<Result<(), NetworkError>>),
}

/// A job's result, or not yet.
pub(super) enum Progress<T> {
    Pending,
    Done(T),
}

/// Whether the pod's network runs CNI plugins (and so goes on a thread).
fn runs_plugins(pod: &Pod, net: &network::Network) -> bool {
    net.cni.is_some() && !pod.spec.host_network
}

/// The job's result if it is done; a job that died says so.
fn poll<T>(rx: &Receiver<Result<T, NetworkError>>, pod: &str) -> Progress<Result<T, NetworkError>> {
    match rx.try_recv() {
        Ok(r) => Progress::Done(r),
        Err(TryRecvError::Empty) => Progress::Pending,
        Err(TryRecvError::Disconnected) => Progress::Done(Err(NetworkError::Thread { pod: pod.to_string() })),
    }
}

impl<R: Runtime> Manager<R> {
    fn network_jobs(&self) -> usize {
        self.pods.values().filter(|p| p.net_job.is_some()).count()
    }

    /// Sets the pod's network up (or asks how the setup started earlier is
    /// doing).
    pub(super) fn network_setup(&mut self, uid: &str) -> Progress<Result<Setup, NetworkError>> {
        let pod_dir = self.pod_dir(uid);
        let st = self.pods.get_mut(uid).unwrap();
        let name = full_name(&st.pod);
        match &st.net_job {
            Some(NetJob::Setup(rx)) => {
                let p = poll(rx, &name);
                if matches!(p, Progress::Done(_)) {
                    st.net_job = None;
                }
                return p;
            }
            // Not while stopping: ensure_sandbox is not called then.
            Some(NetJob::Teardown(_)) => return Progress::Pending,
            None => {}
        }
        let net = self.cfg.network.clone();
        if !runs_plugins(&st.pod, &net) {
            return Progress::Done(network::setup(&st.pod, &pod_dir, &net));
        }
        if self.network_jobs() >= NETWORK_JOBS {
            return Progress::Pending;
        }
        let st = self.pods.get_mut(uid).unwrap();
        let pod = Pod::clone(&st.pod);
        let wake = self.cfg.wake.clone();
        match spawn(&name, move || network::setup(&pod, &pod_dir, &net), wake) {
            Ok(rx) => {
                st.net_job = Some(NetJob::Setup(rx));
                Progress::Pending
            }
            Err(e) => Progress::Done(Err(e)),
        }
    }

    /// Tears the pod's network down, once a setup still in flight ended
    /// (what its ADD made, the DEL undoes).
    pub(super) fn network_teardown(&mut self, uid: &str) -> Progress<Result<(), NetworkError>> {
        let pod_dir = self.pod_dir(uid);
        let st = self.pods.get_mut(uid).unwrap();
        let name = full_name(&st.pod);
        match &st.net_job {
            Some(NetJob::Setup(rx)) => {
                if let Progress::Pending = poll(rx, &name) {
                    return Progress::Pending;
                }
                st.net_job = None;
            }
            Some(NetJob::Teardown(rx)) => {
                let p = poll(rx, &name);
                if matches!(p, Progress::Done(_)) {
                    st.net_job = None;
                }
                return p;
            }
            None => {}
        }
        let net = self.cfg.network.clone();
        if !runs_plugins(&st.pod, &net) {
            return Progress::Done(network::teardown(&pod_dir, &name, &net));
        }
        if self.network_jobs() >= NETWORK_JOBS {
            return Progress::Pending;
        }
        let st = self.pods.get_mut(uid).unwrap();
        let wake = self.cfg.wake.clone();
        let who = name.clone();
        match spawn(&name, move || network::teardown(&pod_dir, &who, &net), wake) {
            Ok(rx) => {
                st.net_job = Some(NetJob::Teardown(rx));
                Progress::Pending
            }
            Err(e) => Progress::Done(Err(e)),
        }
    }
}

/// Runs `job` on a thread of its own; its result comes back on the receiver
/// and a send on `wake` tells the loop.
fn spawn<T: Send + 'static>(
    pod: &str,
    job: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
    wake: Option<smol::channel::Sender<()>>,
) -> Result<Receiver<Result<T, NetworkError>>, NetworkError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("network".into())
        .spawn(move || {
            let _ = tx.send(job());
            if let Some(w) = wake {
                let _ = w.try_send(());
            }
        })
        .map_err(|source| NetworkError::Spawn { pod: pod.to_string(), source })?;
    Ok(rx)
}
