//! Per-stage locks: one promotion per environment at a time, with a fencing token for its writes.

mod file;
mod memory;

use std::any::Any;
use std::fmt::{self, Debug};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use file::FileLock;
pub use memory::MemoryLock;

use crate::error::Result;

/// What to do when a stage's lock is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockWait {
    /// Fail at once with [`Error::Locked`](crate::Error::Locked). The default.
    #[default]
    Fail,
    /// Wait up to this long, then fail with [`Error::Locked`](crate::Error::Locked).
    #[serde(with = "crate::duration_serde")]
    Wait(Duration),
}

/// A held lock. Dropping it releases the lock.
///
/// A lock held across machines (a Kubernetes Lease) can be lost while its holder still runs: renewals
/// stopped, another runner took it over. The lease says so ([`Lease::is_lost`], [`Lease::lost`]), and the
/// engine checks it before every side effect, so a holder that lost its lock stops touching registries,
/// clusters and the ledger ([`Error::LockLost`](crate::Error::LockLost)).
pub struct Lease {
    stage: String,
    holder: String,
    token: u64,
    loss: Loss,
    _release: Box<dyn Any + Send + Sync>,
}

/// How a lease learns that it was lost.
#[derive(Default)]
struct Loss {
    /// Flipped to `true` by whoever keeps the lease (a renewal task); a dropped sender means lost too.
    signal: Option<watch::Receiver<bool>>,
    /// Asked each time (a lock file still being the one locked).
    probe: Option<Box<dyn Fn() -> bool + Send + Sync>>,
}

/// How often [`Lease::lost`] asks a probe when the lease has no signal.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

impl Lease {
    /// A lease on `stage` for `holder` with fencing `token`; `release` is dropped when the lease is. It is
    /// never lost unless [`Lease::lost_when`] or [`Lease::lost_if`] says how it can be.
    pub fn new(stage: &str, holder: &str, token: u64, release: Box<dyn Any + Send + Sync>) -> Self {
        Lease { stage: stage.to_owned(), holder: holder.to_owned(), token, loss: Loss::default(), _release: release }
    }

    /// The same lease, lost once `signal` holds `true` or its sender is dropped (the renewal task ended).
    pub fn lost_when(mut self, signal: watch::Receiver<bool>) -> Self {
        self.loss.signal = Some(signal);
        self
    }

    /// The same lease, lost whenever `probe` answers `true` (asked at each check).
    pub fn lost_if(mut self, probe: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.loss.probe = Some(Box::new(probe));
        self
    }

    /// Whether the lock was lost: someone else may hold it now.
    pub fn is_lost(&self) -> bool {
        let signalled =
            self.loss.signal.as_ref().is_some_and(|signal| *signal.borrow() || signal.has_changed().is_err());
        signalled || self.loss.probe.as_ref().is_some_and(|probe| probe())
    }

    /// `Ok` while the lock is held; [`Error::LockLost`](crate::Error::LockLost) once it was lost. Call it
    /// before each side effect.
    pub fn ensure_held(&self) -> crate::Result<()> {
        if self.is_lost() {
            return Err(crate::Error::LockLost {
                stage: self.stage.clone(),
                holder: self.holder.clone(),
                token: self.token,
            });
        }
        Ok(())
    }

    /// Resolves once the lock is lost (never, for a lease that cannot be).
    pub async fn lost(&self) {
        let mut signal = self.loss.signal.clone();
        loop {
            if self.is_lost() {
                return;
            }
            match (&mut signal, &self.loss.probe) {
                (Some(signal), None) => {
                    if signal.changed().await.is_err() {
                        return;
                    }
                }
                (Some(signal), Some(_)) => {
                    let _ = tokio::time::timeout(PROBE_INTERVAL, signal.changed()).await;
                }
                (None, Some(_)) => tokio::time::sleep(PROBE_INTERVAL).await,
                (None, None) => std::future::pending().await,
            }
        }
    }

    /// The stage.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// Who holds it.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The fencing token: strictly greater than every token issued before for this stage.
    pub fn token(&self) -> u64 {
        self.token
    }
}

impl Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("stage", &self.stage)
            .field("holder", &self.holder)
            .field("token", &self.token)
            .finish()
    }
}

/// A lock per stage.
///
/// # Contract
/// - At most one [`Lease`] per stage exists at a time; leases on different stages are independent.
/// - Each lease's token is strictly greater than every token issued before for the same stage, even
///   across process restarts for durable locks.
/// - When the stage is held, `acquire` fails with [`Error::Locked`](crate::Error::Locked) naming the
///   holder, at once for [`LockWait::Fail`] or after the wait for [`LockWait::Wait`]; it succeeds as soon
///   as the holder releases within the wait.
/// - Dropping the lease releases the stage (a crashed process releases it too, or its lease expires).
/// - A lease that can be lost while its holder runs (an expired lease another runner took over, a lock file
///   removed or replaced) reports it: [`Lease::is_lost`] turns true and [`Lease::lost`] resolves.
#[async_trait]
pub trait EnvironmentLock: Debug + Send + Sync + 'static {
    /// Takes the lock on `stage` for `holder`.
    async fn acquire(&self, stage: &str, holder: &str, wait: LockWait) -> Result<Lease>;
}

forward_to_inner!(EnvironmentLock {
    async fn acquire(&self, stage: &str, holder: &str, wait: LockWait) -> Result<Lease> {
        (**self).acquire(stage, holder, wait).await
    }
});
