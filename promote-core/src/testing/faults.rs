//! Backends that fail on demand: wrap any store, config source, deployer or ledger, then make one call fail
//! with a temporary error, refuse for good, or hang (as a process killed mid-call would look), and check
//! that your code converges.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use promote_core::testing::faults::{FaultMode, FaultPoint, Faults, FaultyStore};
//! use promote_core::{ArtifactStore, MemoryArtifactStore};
//! let faults = Arc::new(Faults::default());
//! let store = FaultyStore::new(MemoryArtifactStore::new(), faults.clone());
//! faults.set(FaultPoint::StorePromote, FaultMode::Error);
//! let source = "memory.local/web@sha256:0000000000000000000000000000000000000000000000000000000000000000".parse()?;
//! let error = store.promote(&source, &"memory.local/web:prd".parse()?).await.unwrap_err();
//! assert!(error.is_retryable());
//! # Ok::<(), promote_core::Error>(()) }).unwrap();
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::build::BuildId;
use crate::config::{ConfigRequest, ConfigSet, ConfigSource, SourceCapabilities};
use crate::deploy::{ApplyMode, Bundle, Change, DeployStatus, Deployer, DeployerCapabilities};
use crate::error::{Error, ErrorClass, Result};
use crate::gate::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GateReport};
use crate::ledger::{Ledger, LedgerCapabilities, LedgerEntry, LedgerSummary, NewEntry, Verdict};
use crate::progress::Progress;
use crate::reference::ArtifactRef;
use crate::store::{Artifact, ArtifactStore, StoreCapabilities};

/// Where a fault strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultPoint {
    /// A [`FaultyGate`] in the entry phase.
    EntryGate,
    /// [`ArtifactStore::promote`].
    StorePromote,
    /// [`ConfigSource::load`].
    ConfigLoad,
    /// [`Deployer::apply`] (not its dry run).
    DeployApply,
    /// [`Deployer::wait_healthy`].
    DeployWait,
    /// A [`FaultyGate`] in the verification phase.
    VerifyGate,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultMode {
    /// Returns a temporary backend error (`is_retryable`).
    Error,
    /// Never returns: the caller is "killed" by dropping the future.
    Hang,
    /// Returns an error that no re-run can get past (a persistent backend error).
    Refuse,
}

/// The faults armed for a set of wrappers. Share one between the wrappers of a test.
#[derive(Debug, Default)]
pub struct Faults {
    point: Mutex<Option<(FaultPoint, FaultMode)>>,
    /// Fail (or hang) the ledger append with this 1-based number, counted from when it was set.
    append: Mutex<Option<(usize, FaultMode)>>,
    appends: AtomicUsize,
}

impl Faults {
    /// Arms `mode` at `point`, until [`Faults::clear`].
    pub fn set(&self, point: FaultPoint, mode: FaultMode) {
        *self.point.lock().unwrap_or_else(PoisonError::into_inner) = Some((point, mode));
    }

    /// Arms `mode` for the `nth` ledger append from now (1-based); `usize::MAX` only counts appends.
    pub fn fail_append(&self, nth: usize, mode: FaultMode) {
        self.appends.store(0, Ordering::SeqCst);
        *self.append.lock().unwrap_or_else(PoisonError::into_inner) = Some((nth, mode));
    }

    /// Ledger appends since [`Faults::fail_append`] was last called.
    pub fn appends(&self) -> usize {
        self.appends.load(Ordering::SeqCst)
    }

    /// Disarms every fault.
    pub fn clear(&self) {
        *self.point.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *self.append.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    async fn hit(&self, point: FaultPoint) -> Result<()> {
        let fault = *self.point.lock().unwrap_or_else(PoisonError::into_inner);
        match fault {
            Some((armed, mode)) if armed == point => strike(mode, &format!("injected fault at {point:?}")).await,
            _ => Ok(()),
        }
    }

    async fn hit_append(&self) -> Result<()> {
        let fault = *self.append.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((nth, mode)) = fault {
            let count = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
            if count == nth {
                return strike(mode, "injected ledger fault").await;
            }
        }
        Ok(())
    }
}

async fn strike(mode: FaultMode, message: &str) -> Result<()> {
    match mode {
        FaultMode::Error => Err(Error::backend("faulty", ErrorClass::Temporary, message)),
        FaultMode::Refuse => Err(Error::backend("faulty", ErrorClass::Persistent, message)),
        FaultMode::Hang => std::future::pending().await,
    }
}

/// An [`ArtifactStore`] that fails at [`FaultPoint::StorePromote`], and can run a hook after each
/// promote (to move a tag: a registry changing under the engine).
pub struct FaultyStore<S = crate::store::MemoryArtifactStore> {
    /// The wrapped store.
    pub inner: S,
    /// The faults it obeys.
    pub faults: Arc<Faults>,
    after_promote: Mutex<Option<AfterPromote>>,
}

type AfterPromote = Box<dyn Fn(&ArtifactRef) + Send + Sync>;

impl<S: std::fmt::Debug> std::fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore").field("inner", &self.inner).field("faults", &self.faults).finish()
    }
}

impl<S> FaultyStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, faults: Arc<Faults>) -> Self {
        FaultyStore { inner, faults, after_promote: Mutex::new(None) }
    }

    /// Runs `hook` with the target after every successful promote (`None` removes it).
    pub fn after_promote(&self, hook: Option<AfterPromote>) {
        *self.after_promote.lock().unwrap_or_else(PoisonError::into_inner) = hook;
    }
}

#[async_trait]
impl<S: ArtifactStore> ArtifactStore for FaultyStore<S> {
    fn capabilities(&self) -> StoreCapabilities {
        self.inner.capabilities()
    }
    async fn resolve(&self, reference: &ArtifactRef) -> Result<Artifact> {
        self.inner.resolve(reference).await
    }
    async fn promote(&self, source: &ArtifactRef, target: &ArtifactRef) -> Result<Artifact> {
        self.faults.hit(FaultPoint::StorePromote).await?;
        let artifact = self.inner.promote(source, target).await?;
        if let Some(hook) = self.after_promote.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            hook(target);
        }
        Ok(artifact)
    }
    async fn exists(&self, reference: &ArtifactRef) -> Result<bool> {
        self.inner.exists(reference).await
    }
}

/// A [`ConfigSource`] that fails at [`FaultPoint::ConfigLoad`].
#[derive(Debug)]
pub struct FaultyConfig<C = crate::config::MemoryConfigSource> {
    /// The wrapped source.
    pub inner: C,
    /// The faults it obeys.
    pub faults: Arc<Faults>,
}

#[async_trait]
impl<C: ConfigSource> ConfigSource for FaultyConfig<C> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> SourceCapabilities {
        self.inner.capabilities()
    }
    async fn load(&self, request: &ConfigRequest) -> Result<ConfigSet> {
        self.faults.hit(FaultPoint::ConfigLoad).await?;
        self.inner.load(request).await
    }
}

/// A [`Deployer`] that fails at [`FaultPoint::DeployApply`] and [`FaultPoint::DeployWait`].
#[derive(Debug)]
pub struct FaultyDeployer<D = crate::deploy::MemoryDeployer> {
    /// The wrapped deployer.
    pub inner: D,
    /// The faults it obeys.
    pub faults: Arc<Faults>,
}

#[async_trait]
impl<D: Deployer> Deployer for FaultyDeployer<D> {
    fn capabilities(&self) -> DeployerCapabilities {
        self.inner.capabilities()
    }
    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        if mode == ApplyMode::Apply {
            self.faults.hit(FaultPoint::DeployApply).await?;
        }
        self.inner.apply(bundle, mode).await
    }
    async fn wait_healthy(&self, bundle: &Bundle, timeout: Duration, progress: &Progress) -> Result<String> {
        self.faults.hit(FaultPoint::DeployWait).await?;
        self.inner.wait_healthy(bundle, timeout, progress).await
    }
    async fn current(&self, stage: &str) -> Result<Option<Bundle>> {
        self.inner.current(stage).await
    }
    async fn status(&self, stage: &str) -> Result<DeployStatus> {
        self.inner.status(stage).await
    }
}

/// A [`Ledger`] whose appends fail on demand ([`Faults::fail_append`]). Every other call is forwarded,
/// [`Ledger::summary`] included.
#[derive(Debug)]
pub struct FaultyLedger<L = crate::ledger::MemoryLedger> {
    /// The wrapped ledger.
    pub inner: L,
    /// The faults it obeys.
    pub faults: Arc<Faults>,
}

#[async_trait]
impl<L: Ledger> Ledger for FaultyLedger<L> {
    fn capabilities(&self) -> LedgerCapabilities {
        self.inner.capabilities()
    }
    async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<LedgerEntry>> {
        self.faults.hit_append().await?;
        self.inner.append(entries).await
    }
    async fn read_since(&self, after: u64) -> Result<Vec<LedgerEntry>> {
        self.inner.read_since(after).await
    }
    async fn summary(&self) -> Result<Option<Arc<LedgerSummary>>> {
        self.inner.summary().await
    }
}

/// A gate with a scripted verdict that fails when its point's fault strikes.
#[derive(Debug)]
pub struct FaultyGate {
    /// [`FaultPoint::EntryGate`] or [`FaultPoint::VerifyGate`]: which fault strikes it, and its name
    /// (`checks` or `smoke`).
    pub point: FaultPoint,
    /// The faults it obeys.
    pub faults: Arc<Faults>,
    /// The verdict it gives.
    pub verdict: Mutex<Verdict>,
    /// When set, only this build gets `verdict`; every other build passes.
    pub only_for: Mutex<Option<BuildId>>,
}

impl FaultyGate {
    /// A gate at `point` that passes until told otherwise.
    pub fn new(point: FaultPoint, faults: Arc<Faults>) -> Self {
        FaultyGate { point, faults, verdict: Mutex::new(Verdict::Pass), only_for: Mutex::new(None) }
    }
}

#[async_trait]
impl Gate for FaultyGate {
    fn name(&self) -> &str {
        match self.point {
            FaultPoint::VerifyGate => "smoke",
            _ => "checks",
        }
    }
    fn kind(&self) -> &str {
        "test"
    }
    fn capabilities(&self) -> GateCapabilities {
        GateCapabilities::pure()
    }
    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }
    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        self.faults.hit(self.point).await?;
        let only_for = self.only_for.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let applies = only_for.is_none_or(|build| build == context.build.id);
        let verdict =
            if applies { self.verdict.lock().unwrap_or_else(PoisonError::into_inner).clone() } else { Verdict::Pass };
        Ok(GateReport::new(verdict).with("checked", true))
    }
}
