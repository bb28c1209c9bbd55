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

use super::{full_name, wake, Manager};
use crate::network::{self, NetworkError, Setup};
use crate::runtime::runc::Runtime;
use crate::volume::Volumes;
use std::sync::mpsc::{self, Receiver, TryRecvError};

/// Network jobs running at once: each runs Go plugins (4 MB resident just
/// to answer VERSION, more during an ADD, plus the iptables runs of
/// portmap), so dozens at once would not fit a 512 MB board, and a few hung
/// ones still leave room for the others.
const NETWORK_JOBS: usize = 4;

/// One pod's network job in flight.
pub(super) enum NetJob {
    /// With the pod's volumes, set up before the network: they join the
    /// sandbox once it is ready.
    Setup(Receiver<Result<Setup, NetworkError>>, Volumes),
    /// Gives the pod IP released, if any.
    Teardown(Receiver<Result<Option<String>, NetworkError>>),
}

/// A job's result, or not yet.
pub(super) enum Progress<T> {
    Pending,
    Done(T),
}

/// What a network setup gives: its result and the volumes made before it.
pub(super) type SetupDone = (Result<Setup, NetworkError>, Volumes);

/// The job's result if it is done; a job that died says so.
fn poll<T>(rx: &Receiver<Result<T, NetworkError>>, pod: &str) -> Progress<Result<T, NetworkError>> {
    match rx.try_recv() {
        Ok(r) => Progress::Done(r),
        Err(TryRecvError::Empty) => Progress::Pending,
        Err(TryRecvError::Disconnected) => Progress::Done(Err(NetworkError::Thread { pod: pod.to_string() })),
    }
}

impl<R: Runtime> Manager<R> {
    /// The pod's network setup in flight, if any: Pending, or its outcome
    /// (the job is then over).
    pub(super) fn network_setup_in_flight(&mut self, uid: &str) -> Option<Progress<SetupDone>> {
        let st = self.pods.get_mut(uid).unwrap();
        match st.net_job.take() {
            Some(NetJob::Setup(rx, volumes)) => match poll(&rx, &full_name(&st.pod)) {
                Progress::Done(result) => Some(Progress::Done((result, volumes))),
                Progress::Pending => {
                    st.net_job = Some(NetJob::Setup(rx, volumes));
                    Some(Progress::Pending)
                }
            },
            other => {
                st.net_job = other;
                None
            }
        }
    }

    /// Sets the pod's network up: at once when no plugin runs, else on a
    /// thread (Pending; `network_setup_in_flight` gives the outcome, with
    /// `volumes` back).
    pub(super) fn start_network_setup(&mut self, uid: &str, volumes: Volumes) -> Progress<SetupDone> {
        let pod_dir = self.pod_dir(uid);
        let net = self.cfg.network.clone();
        let pod = &self.pods[uid].pod;
        if !runs_plugins(pod, &net) {
            return Progress::Done((network::setup(pod, &pod_dir, &net), volumes));
        }
        if self.network_jobs() >= NETWORK_JOBS {
            return Progress::Pending;
        }
        let pod = crate::api::Pod::clone(pod);
        match self.spawn(uid, move || network::setup(&pod, &pod_dir, &net)) {
            Ok(rx) => {
                self.pods.get_mut(uid).unwrap().net_job = Some(NetJob::Setup(rx, volumes));
                Progress::Pending
            }
            Err(e) => Progress::Done((Err(e), volumes)),
        }
    }

    /// Tears the pod's network down, once a setup still in flight ended
    /// (what its ADD made, the DEL undoes); gives the pod IP released.
    pub(super) fn network_teardown(&mut self, uid: &str) -> Progress<Result<Option<String>, NetworkError>> {
        if let Some(Progress::Pending) = self.network_setup_in_flight(uid) {
            return Progress::Pending;
        }
        let st = self.pods.get_mut(uid).unwrap();
        let name = full_name(&st.pod);
        if let Some(NetJob::Teardown(rx)) = st.net_job.take() {
            let p = poll(&rx, &name);
            if let Progress::Pending = p {
                st.net_job = Some(NetJob::Teardown(rx));
            }
            return p;
        }
        let (pod_dir, net) = (self.pod_dir(uid), self.cfg.network.clone());
        if !runs_plugins(&self.pods[uid].pod, &net) {
            return Progress::Done(network::teardown(&pod_dir, &name, &net));
        }
        if self.network_jobs() >= NETWORK_JOBS {
            return Progress::Pending;
        }
        let who = name.clone();
        match self.spawn(uid, move || network::teardown(&pod_dir, &who, &net)) {
            Ok(rx) => {
                self.pods.get_mut(uid).unwrap().net_job = Some(NetJob::Teardown(rx));
                Progress::Pending
            }
            Err(e) => Progress::Done(Err(e)),
        }
    }

    fn network_jobs(&self) -> usize {
        self.pods.values().filter(|p| p.net_job.is_some()).count()
    }

    /// Runs `job` on a thread of its own; its result comes back on the
    /// receiver, and the loop is woken.
    fn spawn<T: Send + 'static>(
        &self,
        uid: &str,
        job: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
    ) -> Result<Receiver<Result<T, NetworkError>>, NetworkError> {
        let (tx, rx) = mpsc::channel();
        let waker = self.cfg.wake.clone();
        std::thread::Builder::new()
            .name("network".into())
            .spawn(move || {
                let _ = tx.send(job());
                wake(&waker);
            })
            .map_err(|source| NetworkError::Spawn { pod: full_name(&self.pods[uid].pod), source })?;
        Ok(rx)
    }
}

/// Whether the pod's network runs CNI plugins (and so goes on a thread).
fn runs_plugins(pod: &crate::api::Pod, net: &network::Network) -> bool {
    net.cni.is_some() && !pod.spec.host_network
}
