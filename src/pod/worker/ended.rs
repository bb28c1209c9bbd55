//! A pod that has ended (its app containers done for good under its
//! restartPolicy, an init container failed under Never, or evicted) is
//! wound down as upstream's kubelet does with a terminal pod: containers
//! still running (sidecars) are stopped within the pod's grace period, the
//! last declared first (`stop_in_order`), then
//! its network is torn down, so its IP goes back to the pool while the pod
//! object, its logs and its status (with the IP it had) stay until it is
//! deleted. Its subPath staging mounts go with its containers; an evicted
//! pod also loses its writable layers and volumes.

use super::{full_name, sandbox::Progress, Manager};
use crate::api::time;
use crate::runtime::runc::Runtime;
use std::time::Instant;

impl<R: Runtime> Manager<R> {
    /// Each pass over an ended pod, until its network is gone.
    pub(super) fn wind_down(&mut self, uid: &str, now: Instant) {
        let grace = self.pods[uid].pod.spec.termination_grace_period_seconds.unwrap_or(30).max(0);
        let running = self.unexited_attempts(uid);
        if !running.is_empty() {
            let st = self.pods.get_mut(uid).unwrap();
            let deadline = match st.ending {
                Some(d) => d,
                None => {
                    log::info!("pod {} has ended; stopping {} container(s), grace period {grace}s", full_name(&st.pod), running.len());
                    *st.ending.insert(time::deadline(now, time::seconds(grace)))
                }
            };
            self.stop_in_order(uid, &running, deadline, now);
        }
        self.drive_kills(uid, now);
        if !running.is_empty() {
            return;
        }
        self.free_evicted_disk(uid);
        // Its subPath mounts would pin what they show (a hostPath's
        // filesystem) until it is deleted, as upstream's do not.
        if let Err(e) = crate::volume::subpath::release(&self.pod_dir(uid)) {
            log::warn!("pod {}: {e}", full_name(&self.pods[uid].pod));
        }
        if self.pods[uid].released_ip.is_some() {
            return;
        }
        match self.network_teardown(uid) {
            Progress::Pending => {}
            // Tried again next pass, as a deleted pod's teardown is.
            Progress::Done(Err(e)) => log::warn!("{e}"),
            Progress::Done(Ok(released)) => {
                let st = self.pods.get_mut(uid).unwrap();
                // No sandbox when the pod ended while picolet was down: the
                // IP comes from the CNI record the teardown read.
                let ip = st.sandbox.take().map(|(s, _)| s.pod_ip).or(released).unwrap_or_default();
                if !ip.is_empty() {
                    log::info!("pod {} has ended; released its network (IP {ip})", full_name(&st.pod));
                }
                st.released_ip = Some(ip);
                self.changed = true;
                self.checkpoint(&self.pods[uid]);
            }
        }
    }
}
