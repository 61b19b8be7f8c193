//! The [`EnvironmentLock`] conformance suite, clause by clause.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::lock::{EnvironmentLock, LockWait};

/// Takes a held lock away from its holder the way this backend can lose one (revoke it, remove its file,
/// let its lease expire and take it over).
pub type LoseLock = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What an [`EnvironmentLock`] test prepared for the suite.
#[derive(Clone)]
#[non_exhaustive]
pub struct LockFixture {
    /// The lock under test.
    pub lock: Arc<dyn EnvironmentLock>,
    /// A prefix for the stage names the suite locks, so that runs on a shared backend stay apart.
    pub stage_prefix: String,
    /// How to lose a lock ([`loss_is_observed`] needs it).
    pub lose: Option<LoseLock>,
}

impl fmt::Debug for LockFixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockFixture").field("lock", &self.lock).field("stage_prefix", &self.stage_prefix).finish()
    }
}

impl LockFixture {
    /// A fixture for `lock`.
    pub fn new(lock: Arc<dyn EnvironmentLock>, stage_prefix: impl Into<String>) -> Self {
        LockFixture { lock, stage_prefix: stage_prefix.into(), lose: None }
    }

    /// How this backend's locks are lost.
    pub fn losing_with<F, Fut>(mut self, lose: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.lose = Some(Arc::new(move |stage| Box::pin(lose(stage))));
        self
    }

    fn stage(&self, name: &str) -> String {
        format!("{}{name}", self.stage_prefix)
    }
}

/// Runs every clause.
pub async fn environment_lock(fixture: LockFixture) {
    held_stage_is_locked(&fixture).await;
    stages_lock_independently(&fixture).await;
    tokens_grow(&fixture).await;
    a_waiter_gets_a_released_lock(&fixture).await;
    a_bounded_wait_gives_up(&fixture).await;
    loss_is_observed(&fixture).await;
}

/// A held stage answers [`Error::Locked`] naming the holder.
pub async fn held_stage_is_locked(fixture: &LockFixture) {
    let stage = fixture.stage("held");
    let first = fixture.lock.acquire(&stage, "first", LockWait::Fail).await.expect("a free stage must lock");
    assert_eq!((first.stage(), first.holder()), (stage.as_str(), "first"));
    assert!(!first.is_lost(), "a fresh lease must not be lost");
    match fixture.lock.acquire(&stage, "second", LockWait::Fail).await {
        Err(Error::Locked { stage: locked, holder }) => {
            assert_eq!(locked, stage);
            assert_eq!(holder, "first", "Locked must name the holder");
        }
        other => panic!("a held stage must answer Locked, got {other:?}"),
    }
}

/// Locks on different stages are independent.
pub async fn stages_lock_independently(fixture: &LockFixture) {
    let (a, b) = (fixture.stage("indep-a"), fixture.stage("indep-b"));
    let _first = fixture.lock.acquire(&a, "first", LockWait::Fail).await.expect("a free stage must lock");
    let second = fixture.lock.acquire(&b, "second", LockWait::Fail).await;
    second.expect("stages lock independently");
}

/// Each lease's token is greater than every token issued before for its stage.
pub async fn tokens_grow(fixture: &LockFixture) {
    let stage = fixture.stage("tokens");
    let first = fixture.lock.acquire(&stage, "first", LockWait::Fail).await.expect("a free stage must lock");
    let token = first.token();
    drop(first);
    let again = fixture.lock.acquire(&stage, "again", LockWait::Fail).await.expect("a released stage must lock again");
    assert!(again.token() > token, "tokens must grow: {} after {token}", again.token());
}

/// A waiter gets the lock as soon as the holder lets go, with a newer token.
pub async fn a_waiter_gets_a_released_lock(fixture: &LockFixture) {
    let stage = fixture.stage("waiter");
    let held = fixture.lock.acquire(&stage, "holder", LockWait::Fail).await.expect("a free stage must lock");
    let waiter = {
        let (lock, stage) = (fixture.lock.clone(), stage.clone());
        tokio::spawn(async move { lock.acquire(&stage, "waiter", LockWait::Wait(Duration::from_secs(30))).await })
    };
    tokio::task::yield_now().await;
    let held_token = held.token();
    drop(held);
    let waited = waiter.await.expect("waiter task").expect("a waiter must get the lock once it is released");
    assert!(waited.token() > held_token, "a waiter's token must be newer");
}

/// A wait that runs out answers [`Error::Locked`].
pub async fn a_bounded_wait_gives_up(fixture: &LockFixture) {
    let stage = fixture.stage("bounded");
    let _held = fixture.lock.acquire(&stage, "holder", LockWait::Fail).await.expect("a free stage must lock");
    match fixture.lock.acquire(&stage, "impatient", LockWait::Wait(Duration::from_millis(60))).await {
        Err(Error::Locked { .. }) => {}
        other => panic!("a wait that runs out must answer Locked, got {other:?}"),
    }
}

/// A lease that was lost says so: `is_lost`, `ensure_held` is [`Error::LockLost`], `lost()` resolves, and
/// the stage can be locked again with a newer token.
pub async fn loss_is_observed(fixture: &LockFixture) {
    let lose = fixture.lose.as_ref().expect("the loss_is_observed clause needs fixture.lose");
    let stage = fixture.stage("lost");
    let lease = fixture.lock.acquire(&stage, "holder", LockWait::Fail).await.expect("a free stage must lock");
    lease.ensure_held().expect("a fresh lease must be held");
    lose(stage.clone()).await;
    tokio::time::timeout(Duration::from_secs(60), lease.lost())
        .await
        .expect("lost() must resolve once the lock is lost");
    assert!(lease.is_lost(), "a lost lease must say so");
    match lease.ensure_held() {
        Err(Error::LockLost { stage: lost, token, .. }) => assert_eq!((lost, token), (stage.clone(), lease.token())),
        other => panic!("ensure_held on a lost lease must be LockLost, got {other:?}"),
    }
    let next = fixture.lock.acquire(&stage, "next", LockWait::Wait(Duration::from_secs(60))).await;
    let next = next.expect("a lost lock can be taken by someone else");
    assert!(next.token() > lease.token(), "the next holder's token must be newer than the lost one");
}
