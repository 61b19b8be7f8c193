//! `KubernetesLock`: a stage lock on a `coordination.k8s.io/v1` Lease, one Lease per stage.
//!
//! - **Acquire** by creating the Lease (a 409 means someone holds it), or by a resourceVersion-conditioned
//!   update of a released or expired one (a 409 means another runner won).
//! - **Expiry** is judged on the waiter's own clock: a Lease whose resourceVersion (every renewal writes
//!   `renewTime`, which changes it) stayed the same for `leaseDurationSeconds` of the waiter's own watching
//!   has expired. No two clocks are compared, so clock skew between runners does not matter.
//! - **Renewal** runs in the background every third of the duration, each write conditioned on the
//!   resourceVersion the holder last wrote. A renewal answered 409 or 404 means the Lease was taken over or
//!   deleted; a holder that could not renew for the whole duration assumes it was. Either way the core
//!   [`Lease`] reports itself lost, and the engine stops before its next side effect.
//! - **Release** (dropping the core `Lease`) clears the holder with the same precondition and keeps
//!   `leaseTransitions`, so the Lease object is never deleted and tokens keep growing.
//! - **A write whose answer is lost** (acquire or renewal; the server may have applied it) is settled by
//!   reading the Lease back: holder, acquire time and transition count as written mean it was applied.
//! - **The fencing token** is `leaseTransitions` after the holder's own write: every acquisition adds one
//!   through a conditioned write, so tokens are unique and strictly increasing.

mod lease_object;
mod renewal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kube::api::{Api, DynamicObject, PostParams};
use promote_core::clock::Clock;
use promote_core::error::{Error, Result};
use promote_core::lock::{EnvironmentLock, Lease, LockWait};
use serde::Deserialize;
use tokio::sync::{oneshot, watch};

use crate::connection::{Connection, connection_setters};
use crate::error::from_kube;
use crate::label::check_label;
use crate::retry::retrying;
use lease_object::{ObservedLease, leases, new_lease};
use renewal::{Renewal, Tenure};

/// The placeholder the namespace and the Lease name may hold.
const STAGE_PLACEHOLDER: &str = "{stage}";
/// How many conditioned writes one attempt makes before it reports the stage as held.
const WRITE_RACES: usize = 5;

fn default_lease_name() -> String {
    "promote-lock-{stage}".to_owned()
}

fn default_duration_seconds() -> u32 {
    15
}

/// The lock's settings, as the spec kind reads them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LockSettings {
    /// The namespace the Leases live in (`{stage}` allowed).
    pub(crate) namespace: String,
    /// The Lease of each stage (`{stage}` is replaced).
    #[serde(default = "default_lease_name")]
    pub(crate) name: String,
    /// How long a lease lasts without a renewal.
    #[serde(default = "default_duration_seconds")]
    pub(crate) lease_duration_seconds: u32,
    /// A kubeconfig context instead of the current one.
    #[serde(default)]
    pub(crate) context: Option<String>,
    /// A kubeconfig file instead of the default.
    #[serde(default)]
    pub(crate) kubeconfig: Option<PathBuf>,
}

impl LockSettings {
    pub(crate) fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.lease_duration_seconds == 0 || self.lease_duration_seconds > 3600 {
            return Err(("lease_duration_seconds", "must be 1 to 3600 seconds".into()));
        }
        for (setting, pattern) in [("namespace", &self.namespace), ("name", &self.name)] {
            if let Err(why) = check_label(&pattern.replace(STAGE_PLACEHOLDER, "x")) {
                return Err((setting, format!("`{pattern}` is not a valid name: {why}")));
            }
        }
        Ok(())
    }
}

/// Locks stages with Kubernetes Leases, for runners on many machines. How it works: the crate docs, "Shared state for runners on many machines".
///
/// ```rust,no_run
/// # async fn demo() -> promote_core::Result<()> {
/// use promote_k8s::KubernetesLock;
/// let lock = KubernetesLock::builder()
///     .namespace("promote-system")
///     .lease_duration(std::time::Duration::from_secs(15))
///     .build()
///     .await?;
/// # let _ = lock; Ok(()) }
/// ```
#[derive(Clone)]
pub struct KubernetesLock {
    client: kube::Client,
    namespace: String,
    name: String,
    duration: Duration,
    renew_every: Duration,
    poll_every: Duration,
    clock: Arc<dyn Clock>,
    /// What this lock saw of each Lease it waited on: its resourceVersion and since when (on `clock`).
    observed: Arc<Mutex<HashMap<String, Sighting>>>,
    suspended: Arc<AtomicBool>,
}

impl std::fmt::Debug for KubernetesLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesLock")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

/// Builds a [`KubernetesLock`].
#[derive(Debug)]
pub struct KubernetesLockBuilder {
    settings: LockSettings,
    /// A client or a spec's connection; `None`: the settings' kubeconfig and context.
    connection: Option<Connection>,
    renew_every: Option<Duration>,
    poll_every: Duration,
    clock: Option<Arc<dyn Clock>>,
}

impl KubernetesLock {
    /// A builder: namespace `default`, Leases named `promote-lock-<stage>`, 15 s leases.
    pub fn builder() -> KubernetesLockBuilder {
        KubernetesLockBuilder {
            settings: LockSettings {
                namespace: "default".into(),
                name: default_lease_name(),
                lease_duration_seconds: default_duration_seconds(),
                context: None,
                kubeconfig: None,
            },
            connection: None,
            renew_every: None,
            poll_every: Duration::from_secs(1),
            clock: None,
        }
    }

    /// Freezes (or thaws) every lease this lock handed out: no renewal is sent while frozen, as if the
    /// holder's process were stopped. For tests of lock loss.
    #[cfg(feature = "testing")]
    pub fn suspend_renewals(&self, suspended: bool) {
        self.suspended.store(suspended, std::sync::atomic::Ordering::SeqCst);
    }

    fn api(&self, stage: &str) -> (Api<DynamicObject>, String) {
        let namespace = self.namespace.replace(STAGE_PLACEHOLDER, stage);
        (leases(&self.client, &namespace), self.name.replace(STAGE_PLACEHOLDER, stage))
    }

    /// One attempt: the lease, or who holds the stage (for the error).
    async fn try_acquire(&self, stage: &str, holder: &str) -> Result<std::result::Result<Lease, HeldBy>> {
        let (api, name) = self.api(stage);
        let duration_seconds = i64::try_from(self.duration.as_secs()).unwrap_or(i64::MAX);
        let doing = |what: &str| format!("{what} Lease {name} in namespace {}", api_namespace(&self.namespace, stage));
        for _ in 0..WRITE_RACES {
            let found = retrying(|| api.get_opt(&name)).await.map_err(|e| from_kube(e, &doing("read")))?;
            let Some(found) = found.map(ObservedLease::new) else {
                let created = new_lease(&name, holder, duration_seconds, self.clock.now());
                match api.create(&PostParams::default(), &created).await {
                    Ok(object) => return Ok(Ok(self.hold(api, name, stage, holder, ObservedLease::new(object)))),
                    Err(kube::Error::Api(status)) if status.code == 409 => continue,
                    Err(error) => match self.settle(&api, &name, &created, error).await {
                        Ok(object) => return Ok(Ok(self.hold(api, name, stage, holder, object))),
                        Err(error) => return Err(from_kube(error, &doing("create"))),
                    },
                }
            };
            let free = match found.holder() {
                None => true,
                Some(_) => self.expired(stage, &found),
            };
            if !free {
                return Ok(Err(HeldBy::from(&found)));
            }
            let Some(taken) = found.taken_by(holder, duration_seconds, self.clock.now()) else {
                return Err(crate::error::persistent(format!(
                    "Lease {name} has changed hands {} times, the most a fencing token can count",
                    found.transitions()
                )));
            };
            match api.replace(&name, &PostParams::default(), &taken).await {
                Ok(object) => return Ok(Ok(self.hold(api, name, stage, holder, ObservedLease::new(object)))),
                // Another runner wrote it first: look again.
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => match self.settle(&api, &name, &taken, error).await {
                    Ok(object) => return Ok(Ok(self.hold(api, name, stage, holder, object))),
                    Err(error) => return Err(from_kube(error, &doing("update"))),
                },
            }
        }
        let found = retrying(|| api.get_opt(&name)).await.map_err(|e| from_kube(e, &doing("read")))?;
        Ok(Err(found.map(|f| HeldBy::from(&ObservedLease::new(f))).unwrap_or_default()))
    }

    /// After a write of `written` that failed with `error`: the Lease as that write left it, if the server
    /// applied it and only its answer was lost (a reset, a body cut short, a gateway timeout). The Lease is
    /// read back: holder, acquire time (to the microsecond, on this lock's clock) and transition count all as
    /// written can only be this write. Otherwise `error` back, and a Lease this write may have taken but
    /// nobody renews runs out after its duration.
    async fn settle(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        written: &DynamicObject,
        error: kube::Error,
    ) -> std::result::Result<ObservedLease, kube::Error> {
        if !crate::error::is_temporary(&error) {
            return Err(error);
        }
        let Ok(Some(found)) = retrying(|| api.get_opt(name)).await else { return Err(error) };
        let found = ObservedLease::new(found);
        let ours = ObservedLease::new(written.clone());
        let same = found.holder().is_some()
            && found.holder() == ours.holder()
            && found.acquire_time() == ours.acquire_time()
            && found.transitions() == ours.transitions();
        if same { Ok(found) } else { Err(error) }
    }

    /// Whether `lease` stayed unchanged for its whole duration while this lock watched it.
    fn expired(&self, stage: &str, lease: &ObservedLease) -> bool {
        let now = self.clock.now();
        let mut observed = self.observed.lock().expect("observations poisoned");
        let key = format!("{}/{stage}", self.namespace);
        match observed.get(&key) {
            Some((version, since)) if version == lease.resource_version() => {
                now - *since >= chrono::Duration::seconds(lease.duration_seconds())
            }
            _ => {
                observed.insert(key, (lease.resource_version().to_owned(), now));
                false
            }
        }
    }

    /// Starts renewing a lease this lock just took, and wraps it for the core.
    fn hold(&self, api: Api<DynamicObject>, name: String, stage: &str, holder: &str, lease: ObservedLease) -> Lease {
        let token = lease.transitions();
        let tenure = Arc::new(Tenure {
            renewed_at: Mutex::new(self.clock.now()),
            duration: chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::MAX),
            clock: self.clock.clone(),
        });
        let (lost, lost_signal) = watch::channel(false);
        let (release, released) = oneshot::channel();
        let renewal = Renewal {
            api,
            name,
            lease,
            every: self.renew_every,
            tenure: tenure.clone(),
            lost,
            released,
            suspended: self.suspended.clone(),
        };
        tokio::spawn(renewal.run());
        Lease::new(stage, holder, token, Box::new(release)).lost_when(lost_signal).lost_if(move || tenure.expired())
    }
}

fn api_namespace(pattern: &str, stage: &str) -> String {
    pattern.replace(STAGE_PLACEHOLDER, stage)
}

/// A Lease's resourceVersion as first seen, and when (on the lock's clock).
type Sighting = (String, DateTime<Utc>);

/// Who holds a stage, for [`Error::Locked`].
#[derive(Debug, Default)]
struct HeldBy {
    holder: String,
    acquired: Option<String>,
    renewed: Option<String>,
}

impl From<&ObservedLease> for HeldBy {
    fn from(lease: &ObservedLease) -> Self {
        HeldBy {
            holder: lease.holder().unwrap_or("another runner").to_owned(),
            acquired: lease.acquire_time().map(str::to_owned),
            renewed: lease.renew_time().map(str::to_owned),
        }
    }
}

impl HeldBy {
    /// The holder, and since when: what a wait that ran out reports.
    fn described(&self) -> String {
        let mut text = self.holder.clone();
        match (&self.acquired, &self.renewed) {
            (Some(acquired), Some(renewed)) => text.push_str(&format!(" (since {acquired}, last renewed {renewed})")),
            (Some(acquired), None) => text.push_str(&format!(" (since {acquired})")),
            (None, Some(renewed)) => text.push_str(&format!(" (last renewed {renewed})")),
            (None, None) => {}
        }
        text
    }
}

#[async_trait]
impl EnvironmentLock for KubernetesLock {
    async fn acquire(&self, stage: &str, holder: &str, wait: LockWait) -> Result<Lease> {
        let deadline = match wait {
            LockWait::Fail => None,
            LockWait::Wait(limit) => Some(tokio::time::Instant::now() + limit),
        };
        loop {
            let held_by = match self.try_acquire(stage, holder).await? {
                Ok(lease) => return Ok(lease),
                Err(held_by) => held_by,
            };
            let Some(deadline) = deadline else {
                return Err(Error::Locked { stage: stage.to_owned(), holder: held_by.holder });
            };
            if tokio::time::Instant::now() + self.poll_every > deadline {
                return Err(Error::Locked { stage: stage.to_owned(), holder: held_by.described() });
            }
            tokio::time::sleep(self.poll_every).await;
        }
    }
}

connection_setters!(KubernetesLockBuilder);

impl KubernetesLockBuilder {
    /// The namespace of the Leases (`{stage}` is replaced by the stage's name).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.settings.namespace = namespace.into();
        self
    }

    /// The Lease of each stage (default `promote-lock-{stage}`).
    pub fn lease_name(mut self, name: impl Into<String>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// How long a lease lasts without renewal (whole seconds, at least 1; default 15 s). Renewals go out
    /// every third of it.
    pub fn lease_duration(mut self, duration: Duration) -> Self {
        self.settings.lease_duration_seconds = u32::try_from(duration.as_secs()).unwrap_or(u32::MAX);
        self
    }

    /// How often renewals go out (default: a third of the lease duration).
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renew_every = Some(every);
        self
    }

    /// How often a waiting acquire looks at the Lease again (default 1 s).
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// The clock leases expire by (default: a monotonic clock, which wall-clock steps do not move). A test
    /// passes a [`ManualClock`](promote_core::ManualClock) to expire leases without sleeping.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub(crate) fn settings(mut self, settings: LockSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The lock. Reads configuration files; sends no request.
    pub async fn build(mut self) -> Result<KubernetesLock> {
        if let Err((setting, message)) = self.settings.check() {
            return Err(Error::invalid("Kubernetes lock setting", setting, message));
        }
        let connection = self.take_connection();
        let duration = Duration::from_secs(u64::from(self.settings.lease_duration_seconds));
        Ok(KubernetesLock {
            client: connection.connect().await?,
            namespace: self.settings.namespace,
            name: self.settings.name,
            duration,
            renew_every: self.renew_every.unwrap_or(duration / 3),
            poll_every: self.poll_every,
            clock: self.clock.unwrap_or_else(|| Arc::new(MonotonicClock::new())),
            observed: Arc::default(),
            suspended: Arc::default(),
        })
    }
}

/// Wall time at creation plus monotonic time since: it never jumps when the system clock is set.
#[derive(Debug)]
struct MonotonicClock {
    wall: DateTime<Utc>,
    start: std::time::Instant,
}

impl MonotonicClock {
    fn new() -> Self {
        MonotonicClock { wall: Utc::now(), start: std::time::Instant::now() }
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> DateTime<Utc> {
        self.wall + chrono::Duration::from_std(self.start.elapsed()).unwrap_or(chrono::Duration::MAX)
    }
}
