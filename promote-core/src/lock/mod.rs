//! Per-stage locks: one promotion per environment at a time, with a fencing token for its writes.

mod file;
mod memory;

use std::any::Any;
use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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
pub struct Lease {
    stage: String,
    holder: String,
    token: u64,
    _release: Box<dyn Any + Send + Sync>,
}

impl Lease {
    /// A lease on `stage` for `holder` with fencing `token`; `release` is dropped when the lease is.
    pub fn new(stage: &str, holder: &str, token: u64, release: Box<dyn Any + Send + Sync>) -> Self {
        Lease { stage: stage.to_owned(), holder: holder.to_owned(), token, _release: release }
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
#[async_trait]
pub trait EnvironmentLock: Debug + Send + Sync + 'static {
    /// Takes the lock on `stage` for `holder`.
    async fn acquire(&self, stage: &str, holder: &str, wait: LockWait) -> Result<Lease>;
}

#[async_trait]
impl<T: EnvironmentLock + ?Sized> EnvironmentLock for Arc<T> {
    async fn acquire(&self, stage: &str, holder: &str, wait: LockWait) -> Result<Lease> {
        (**self).acquire(stage, holder, wait).await
    }
}
