//! The [`EnvironmentLock`] conformance suite.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::lock::{EnvironmentLock, LockWait};

/// Runs the [`EnvironmentLock`] conformance suite. `stage_prefix` keeps runs apart on shared backends.
pub async fn environment_lock(lock: Arc<dyn EnvironmentLock>, stage_prefix: &str) {
    let (a, b) = (format!("{stage_prefix}a"), format!("{stage_prefix}b"));
    let first = lock.acquire(&a, "first", LockWait::Fail).await.expect("a free stage must lock");
    assert_eq!((first.stage(), first.holder()), (a.as_str(), "first"));
    match lock.acquire(&a, "second", LockWait::Fail).await {
        Err(Error::Locked { stage, holder }) => {
            assert_eq!(stage, a);
            assert_eq!(holder, "first", "Locked must name the holder");
        }
        other => panic!("a held stage must answer Locked, got {other:?}"),
    }
    let other_stage = lock.acquire(&b, "second", LockWait::Fail).await.expect("stages lock independently");
    drop(other_stage);

    let token = first.token();
    drop(first);
    let again = lock.acquire(&a, "third", LockWait::Fail).await.expect("a released stage must lock again");
    assert!(again.token() > token, "tokens must grow: {} after {token}", again.token());

    // a waiter gets the lock when the holder lets go
    let waiter = {
        let lock = lock.clone();
        let a = a.clone();
        tokio::spawn(async move { lock.acquire(&a, "waiter", LockWait::Wait(Duration::from_secs(30))).await })
    };
    tokio::task::yield_now().await;
    let held_token = again.token();
    drop(again);
    let waited = waiter.await.expect("waiter task").expect("a waiter must get the lock once it is released");
    assert!(waited.token() > held_token, "a waiter's token must be newer");

    // a bounded wait gives up
    match lock.acquire(&a, "impatient", LockWait::Wait(Duration::from_millis(60))).await {
        Err(Error::Locked { .. }) => {}
        other => panic!("a wait that runs out must answer Locked, got {other:?}"),
    }
    drop(waited);
}
