//! The holder's side of a Lease: renew it in the background, notice when it is lost, release it when the
//! core `Lease` is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, DynamicObject, PostParams};
use promote_core::clock::Clock;
use tokio::sync::{oneshot, watch};

use super::lease_object::ObservedLease;

/// How many times a release is attempted when the API server cannot be reached.
const RELEASE_ATTEMPTS: usize = 3;

/// What the renewal task and the holder's loss probe share.
#[derive(Debug)]
pub(super) struct Tenure {
    /// When the last renewal that succeeded was sent, on the lock's clock: the holder may count on the
    /// lease until then plus its duration, and no longer.
    pub(super) renewed_at: Mutex<DateTime<Utc>>,
    /// How long the lease lasts without a renewal.
    pub(super) duration: chrono::Duration,
    pub(super) clock: Arc<dyn Clock>,
}

impl Tenure {
    /// Whether the lease ran out on the holder's own clock: others may have taken it over since.
    pub(super) fn expired(&self) -> bool {
        let renewed_at = *self.renewed_at.lock().expect("tenure poisoned");
        self.clock.now() - renewed_at >= self.duration
    }
}

/// Everything the renewal task needs.
pub(super) struct Renewal {
    pub(super) api: Api<DynamicObject>,
    pub(super) name: String,
    pub(super) lease: ObservedLease,
    pub(super) every: Duration,
    pub(super) tenure: Arc<Tenure>,
    pub(super) lost: watch::Sender<bool>,
    /// Resolves (with an error) when the core `Lease` is dropped.
    pub(super) released: oneshot::Receiver<()>,
    /// Set by tests to freeze the holder: no renewal is sent while it is.
    pub(super) suspended: Arc<AtomicBool>,
}

impl Renewal {
    /// Renews every interval until the lease is released (then releases it on the server) or lost (then says
    /// so through `lost`).
    pub(super) async fn run(mut self) {
        loop {
            tokio::select! {
                _ = &mut self.released => {
                    self.release().await;
                    return;
                }
                () = tokio::time::sleep(self.every) => {}
            }
            if self.suspended.load(Ordering::SeqCst) {
                continue;
            }
            if !self.renew().await {
                let _ = self.lost.send(true);
                tracing::warn!(lease = %self.name, "the stage's lock was lost: its lease was taken over or ran out");
                return;
            }
        }
    }

    /// One renewal; `false` once the lease is lost.
    async fn renew(&mut self) -> bool {
        let sent_at = self.tenure.clock.now();
        let renewed = self.lease.renewed(sent_at);
        match self.api.replace(&self.name, &PostParams::default(), &renewed).await {
            Ok(object) => {
                self.lease = ObservedLease::new(object);
                *self.tenure.renewed_at.lock().expect("tenure poisoned") = sent_at;
                true
            }
            // 409: someone else wrote the Lease, or an earlier renewal of ours was applied and its answer lost.
            Err(kube::Error::Api(status)) if status.code == 409 => self.still_ours().await,
            // 404: it was deleted.
            Err(kube::Error::Api(status)) if status.code == 404 => false,
            Err(error) => {
                tracing::debug!(lease = %self.name, %error, "a lease renewal failed; trying again");
                !self.tenure.expired()
            }
        }
    }

    /// After a renewal or release answered 409: whether the Lease is still this holder's, unchanged but for its renewal
    /// time (an earlier renewal was applied and its answer lost). Every takeover adds a transition, so the
    /// same holder and transition count mean nobody took it. Then the Lease as read is the one to renew.
    async fn still_ours(&mut self) -> bool {
        let Ok(Some(found)) = self.api.get_opt(&self.name).await else { return false };
        let found = ObservedLease::new(found);
        let ours = found.holder().is_some()
            && found.holder() == self.lease.holder()
            && found.acquire_time() == self.lease.acquire_time()
            && found.transitions() == self.lease.transitions();
        if ours {
            tracing::debug!(lease = %self.name, "a write's answer was lost; the lease is still ours");
            self.lease = found;
        }
        ours
    }

    /// Gives the lease up, if it is still ours (the precondition on its resourceVersion says so).
    async fn release(&mut self) {
        for _ in 0..RELEASE_ATTEMPTS {
            let released = self.lease.released();
            match self.api.replace(&self.name, &PostParams::default(), &released).await {
                Ok(_) => return,
                // 409: taken over (nothing to release), or a renewal of ours was applied and its answer lost.
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    if !self.still_ours().await {
                        return;
                    }
                }
                Err(kube::Error::Api(status)) if status.code == 404 => return,
                Err(error) => {
                    tracing::debug!(lease = %self.name, %error, "releasing a lease failed; trying again");
                    tokio::time::sleep(self.every.min(Duration::from_millis(200))).await;
                }
            }
        }
        tracing::warn!(lease = %self.name, "could not release the lease; it runs out after its duration");
    }
}
