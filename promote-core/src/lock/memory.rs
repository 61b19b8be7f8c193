//! An in-process lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{Notify, watch};

use super::{EnvironmentLock, Lease, LockWait};
use crate::error::{Error, Result};

/// Locks stages within one process.
#[derive(Debug, Clone, Default)]
pub struct MemoryLock {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<HashMap<String, Slot>>,
    released: Notify,
}

#[derive(Debug, Default)]
struct Slot {
    holder: Option<(String, u64)>,
    last_token: u64,
    /// Tells the holder's lease it was revoked.
    revoked: Option<watch::Sender<bool>>,
}

struct Release {
    shared: Arc<Shared>,
    stage: String,
    token: u64,
}

impl Drop for Release {
    fn drop(&mut self) {
        let mut state = self.shared.state.lock().expect("lock poisoned");
        if let Some(slot) = state.get_mut(&self.stage)
            && slot.holder.as_ref().is_some_and(|(_, token)| *token == self.token)
        {
            slot.holder = None;
        }
        drop(state);
        self.shared.released.notify_waiters();
    }
}

impl MemoryLock {
    /// A lock with nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    fn try_acquire(&self, stage: &str, holder: &str) -> std::result::Result<Lease, String> {
        let mut state = self.shared.state.lock().expect("lock poisoned");
        let slot = state.entry(stage.to_owned()).or_default();
        if let Some((current, _)) = &slot.holder {
            return Err(current.clone());
        }
        slot.last_token += 1;
        let token = slot.last_token;
        slot.holder = Some((holder.to_owned(), token));
        let (revoked, signal) = watch::channel(false);
        slot.revoked = Some(revoked);
        let release = Release { shared: self.shared.clone(), stage: stage.to_owned(), token };
        Ok(Lease::new(stage, holder, token, Box::new(release)).lost_when(signal))
    }

    /// Takes the lock on `stage` away from its holder, as an operator breaking a stuck lock would: the
    /// holder's lease reports it lost, and the stage is free. Returns whether anyone held it.
    pub fn revoke(&self, stage: &str) -> bool {
        let mut state = self.shared.state.lock().expect("lock poisoned");
        let Some(slot) = state.get_mut(stage).filter(|slot| slot.holder.is_some()) else {
            return false;
        };
        slot.holder = None;
        if let Some(revoked) = slot.revoked.take() {
            let _ = revoked.send(true);
        }
        drop(state);
        self.shared.released.notify_waiters();
        true
    }
}

#[async_trait]
impl EnvironmentLock for MemoryLock {
    async fn acquire(&self, stage: &str, holder: &str, wait: LockWait) -> Result<Lease> {
        let deadline = match wait {
            LockWait::Fail => None,
            LockWait::Wait(limit) => Some(tokio::time::Instant::now() + limit),
        };
        loop {
            // Register interest before trying, so a release between the try and the wait is not missed.
            let released = self.shared.released.notified();
            match self.try_acquire(stage, holder) {
                Ok(lease) => return Ok(lease),
                Err(current) => {
                    let locked = || Error::Locked { stage: stage.to_owned(), holder: current.clone() };
                    let Some(deadline) = deadline else {
                        return Err(locked());
                    };
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Err(locked());
                    }
                }
            }
        }
    }
}
