//! An in-process fake Kubernetes API server for tests (feature `testing`; not a stable API).
//!
//! [`FakeApiServer`] speaks the real API's HTTP protocol, honestly enough for `kube` 5 and `kubectl` 1.32:
//! discovery (aggregated v2/v2beta1 and legacy), `/version`, the `/openapi/v3` documents `kubectl apply`
//! validation reads, a store with resourceVersion/uid/generation, namespaces, CRDs, label and field selectors,
//! POST/PUT/PATCH (merge, JSON, server-side apply with per-manager field ownership)/DELETE with preconditions and
//! propagation, WATCH with replay, bookmarks and 410 Gone, `Status` error bodies, Table output, and a simulated
//! Deployment → ReplicaSet → Pod controller whose pods follow outcomes scripted per image.
//!
//! Use it in-process, with no sockets:
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use promote_k8s::testing::FakeApiServer;
//! let fake = FakeApiServer::new();
//! let client = kube::Client::new(fake.service(), "default");
//! let version = client.apiserver_version().await?;
//! assert_eq!(version.minor, "32");
//! # Ok(()) }
//! ```
//!
//! or serve it on loopback for `kubectl` and other tools with [`FakeApiServer::serve`] and
//! [`ServedApiServer::write_kubeconfig`].
//!
//! # What it does not emulate
//! - No authentication or TLS: plain HTTP; bearer tokens only select an optional [`AccessRule`] set.
//! - No admission, defaulting or schema validation beyond top-level field names (`fieldValidation=Strict`) and
//!   the few defaults listed here; a CRD's `openAPIV3Schema` is stored but not enforced.
//! - Strategic merge patch is applied as a JSON merge patch (lists are replaced, not merged by key).
//! - Deletion is immediate: no finalizers run and no graceful termination; `Foreground` deletes dependents
//!   before the owner within the same request.
//! - The controllers are simplified: a Deployment's new ReplicaSet gets all its replicas at once (no surge
//!   arithmetic) and old ReplicaSets are scaled to zero when it is available; StatefulSet pods are created
//!   together; a DaemonSet runs on one simulated node; a Job completes with one pod; a PVC is bound at once;
//!   a LoadBalancer Service gets an ingress IP at once.
//! - Protobuf request bodies are decoded only for Namespace, ConfigMap and Secret (`kubectl create namespace|
//!   configmap|secret`); other generators (`kubectl create deployment ...`) get 415. Answers are always JSON.
//! - Defaults are set on create only (Namespaces, Services, Deployments); BOOKMARKs come every
//!   `bookmark_interval` or on [`FakeApiServer::send_bookmarks`], not on the real server's schedule.
//! - No `limit`/`continue` paging (lists are complete), no `resourceVersionMatch`, no `sendInitialEvents`.

mod access;
mod controller;
mod discovery;
mod faults;
mod openapi;
mod outcomes;
mod protobuf;
mod resources;
mod rest;
mod selectors;
mod serve;
#[allow(dead_code)] // Parts of the SSA module are only used by its own tests.
mod ssa;
mod status;
mod store;
mod table;
mod watch;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use chrono::{DateTime, Utc};
use promote_core::clock::{Clock, ManualClock, SystemClock};
use tokio::sync::broadcast;

pub use access::AccessRule;
pub use faults::{FaultResponse, RecordedRequest};
pub use outcomes::PodOutcome;
pub use serve::ServedApiServer;

use faults::Faults;
use outcomes::OutcomeScript;
use store::Store;

/// A signal to every open watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchSignal {
    /// End the stream now (a dropped connection).
    Drop,
    /// Send a BOOKMARK now (to watches that allowed bookmarks).
    Bookmark,
}

/// The state behind every handle and every request.
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) clock: Arc<dyn Clock>,
    manual_clock: Option<ManualClock>,
    pub(crate) outcomes: Mutex<OutcomeScript>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) access: Mutex<access::AccessControl>,
    pub(crate) watch_signals: broadcast::Sender<WatchSignal>,
    pub(crate) bookmark_interval: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge every other request.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Runs the simulated controllers until nothing changes.
    pub(crate) fn reconcile(&self) {
        let outcomes = lock(&self.outcomes).clone();
        let now = self.now();
        controller::reconcile(&mut self.store(), &outcomes, now);
    }
}

/// How the simulated controllers see time.
enum ControllerClock {
    /// The system clock, with a background tick at this interval (for kubectl tests and the example).
    RealTime(Duration),
    /// A manual clock: time moves only through [`FakeApiServer::advance`].
    Manual(ManualClock),
}

/// Configures a [`FakeApiServer`].
pub struct FakeApiServerBuilder {
    clock: ControllerClock,
    history_limit: usize,
    bookmark_interval: Duration,
    outcomes: OutcomeScript,
    namespaces: Vec<String>,
}

impl std::fmt::Debug for FakeApiServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServerBuilder")
            .field("history_limit", &self.history_limit)
            .field("bookmark_interval", &self.bookmark_interval)
            .field("namespaces", &self.namespaces)
            .finish_non_exhaustive()
    }
}

impl Default for FakeApiServerBuilder {
    fn default() -> Self {
        FakeApiServerBuilder {
            clock: ControllerClock::RealTime(Duration::from_millis(100)),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(60),
            outcomes: OutcomeScript::default(),
            namespaces: vec!["default".into(), "kube-system".into(), "kube-public".into(), "kube-node-lease".into()],
        }
    }
}

impl FakeApiServerBuilder {
    /// Drives the controllers with `clock`: time moves only when the test calls [`FakeApiServer::advance`].
    /// Without this, the controllers follow the system clock and tick every 100 ms.
    pub fn manual_clock(mut self, clock: ManualClock) -> Self {
        self.clock = ControllerClock::Manual(clock);
        self
    }

    /// Follows the system clock, ticking the controllers at `interval` (the default is 100 ms).
    pub fn real_time(mut self, interval: Duration) -> Self {
        self.clock = ControllerClock::RealTime(interval);
        self
    }

    /// How many events the watch history keeps (default 10,000). A watch from a resourceVersion older than the
    /// window gets 410 Gone, as after an etcd compaction.
    pub fn history_limit(mut self, events: usize) -> Self {
        self.history_limit = events;
        self
    }

    /// How often an idle watch that allowed bookmarks gets a BOOKMARK (default 60 s, like the real server).
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// Scripts what happens to pods running an image matching `pattern` (exact, or with `*` wildcards).
    /// The first matching script wins; images nothing matches become ready at once.
    pub fn pod_outcome(mut self, pattern: &str, outcome: PodOutcome) -> Self {
        self.outcomes.push(pattern.to_string(), outcome);
        self
    }

    /// Namespaces that exist from the start (default: `default`, `kube-system`, `kube-public`, `kube-node-lease`).
    pub fn namespaces(mut self, namespaces: &[&str]) -> Self {
        self.namespaces = namespaces.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Builds the server. In real-time mode this must run inside a Tokio runtime, which hosts the controller tick.
    pub fn build(self) -> FakeApiServer {
        let (clock, manual_clock, tick): (Arc<dyn Clock>, _, _) = match self.clock {
            ControllerClock::RealTime(interval) => (Arc::new(SystemClock), None, Some(interval)),
            ControllerClock::Manual(clock) => (Arc::new(clock.clone()), Some(clock), None),
        };
        let (watch_signals, _) = broadcast::channel(64);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(self.history_limit)),
            clock,
            manual_clock,
            outcomes: Mutex::new(self.outcomes),
            faults: Mutex::new(Faults::default()),
            access: Mutex::new(access::AccessControl::default()),
            watch_signals,
            bookmark_interval: self.bookmark_interval,
        });
        {
            let now = shared.now();
            let mut store = shared.store();
            for ns in &self.namespaces {
                controller::bootstrap_namespace(&mut store, ns, now);
            }
        }
        if let (Some(interval), Ok(runtime)) = (tick, tokio::runtime::Handle::try_current()) {
            let weak = Arc::downgrade(&shared);
            runtime.spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    // Ends with the last handle.
                    let Some(shared) = weak.upgrade() else { break };
                    shared.reconcile();
                }
            });
        }
        FakeApiServer { shared }
    }
}

/// The fake API server. Clones are handles to the same server.
#[derive(Clone)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer").field("resource_version", &self.shared.store().resource_version()).finish()
    }
}

impl FakeApiServer {
    /// A server with the defaults (real time, standard namespaces, every image ready at once). Call it inside
    /// a Tokio runtime.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to script outcomes, choose the clock and size the watch history.
    pub fn builder() -> FakeApiServerBuilder {
        FakeApiServerBuilder::default()
    }

    /// The server as a tower service, for `kube::Client::new(fake.service(), "ns")`.
    pub fn service(&self) -> Router {
        rest::router(self.shared.clone())
    }

    /// The service, sending `Authorization: Bearer <token>` on every request, as a client configured with that
    /// token would (for [`FakeApiServer::restrict`]).
    pub fn service_as(&self, token: &str) -> Router {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is a valid header value");
        self.service().layer(axum::middleware::map_request(move |mut request: axum::extract::Request| {
            let value = value.clone();
            async move {
                request.headers_mut().insert(header::AUTHORIZATION, value);
                request
            }
        }))
    }

    /// Serves on `addr` (use `127.0.0.1:0` for a free port) until the returned handle is dropped.
    pub async fn serve(&self, addr: std::net::SocketAddr) -> promote_core::Result<ServedApiServer> {
        serve::serve(self.service(), addr, self.shared.watch_signals.clone()).await
    }

    /// The time the controllers see.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    /// Moves the manual clock forward and runs the controllers once (they react to the new time).
    ///
    /// # Panics
    /// When the server was not built with [`FakeApiServerBuilder::manual_clock`].
    pub fn advance(&self, by: Duration) {
        let clock = self.shared.manual_clock.as_ref().expect("advance() needs FakeApiServerBuilder::manual_clock");
        clock.advance(chrono::Duration::from_std(by).expect("a duration that fits chrono"));
        self.shared.reconcile();
    }

    /// Runs the controllers once at the current time (after moving a shared manual clock yourself).
    pub fn tick(&self) {
        self.shared.reconcile();
    }

    /// Scripts the outcome of pods running images that match `pattern`, in addition to the builder's scripts
    /// (earlier scripts win).
    pub fn script_pod_outcome(&self, pattern: &str, outcome: PodOutcome) {
        lock(&self.shared.outcomes).push(pattern.to_string(), outcome);
    }

    /// The next `count` requests with `method` (any method when `None`) whose path starts with `path_prefix`
    /// are answered with `response` instead of being served.
    pub fn fail_next(&self, count: usize, method: Option<Method>, path_prefix: &str, response: FaultResponse) {
        lock(&self.shared.faults).arm(count, method, path_prefix, response);
    }

    /// Ends every open watch stream now, as a dropped connection would.
    pub fn drop_watches(&self) {
        let _ = self.shared.watch_signals.send(WatchSignal::Drop);
    }

    /// Sends a BOOKMARK now on every open watch that allowed bookmarks.
    pub fn send_bookmarks(&self) {
        let _ = self.shared.watch_signals.send(WatchSignal::Bookmark);
    }

    /// The next watch request gets a 410 `Expired` ERROR event and ends, as after an etcd compaction.
    pub fn expire_next_watch(&self) {
        lock(&self.shared.faults).expire_next_watch = true;
    }

    /// Delays every request by `latency` before it is served.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.faults).latency = latency;
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.faults).requests.clone()
    }

    /// Forgets the recorded requests (to count the requests of one step).
    pub fn clear_requests(&self) {
        lock(&self.shared.faults).requests.clear();
    }

    /// Restricts requests carrying `Authorization: Bearer <token>` to `rules`, answering anything else with
    /// 403 Forbidden for `user`. Requests with other tokens, or none, are not restricted.
    pub fn restrict(&self, token: &str, user: &str, rules: Vec<AccessRule>) {
        lock(&self.shared.access).restrict(token, user, rules);
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}
