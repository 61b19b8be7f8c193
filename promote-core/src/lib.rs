#![doc = include_str!("../README.md")]

#[macro_use]
mod forward;

pub mod attest;
pub mod backend;
pub mod build;
pub mod clock;
pub mod config;
pub mod deploy;
pub mod digest;
mod duration_serde;
pub mod engine;
pub mod error;
pub mod gate;
pub mod integrity;
pub mod ledger;
pub mod lock;
pub mod manifest;
pub mod progress;
pub mod reference;
pub mod render;
pub mod retry;
pub mod spec;
mod state_file;
pub mod store;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use build::{Build, BuildId, BuildRequest, RevisionPolicy};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ConfigEntry, ConfigRequest, ConfigSet, ConfigSource, ConfigValue, EnvConfigSource, FileConfigSource,
    MemoryConfigSource, Secret,
};
pub use deploy::{Bundle, Deployer, DirectoryDeployer, GitDeployer, MemoryDeployer};
pub use digest::Digest;
pub use engine::{
    ApprovalOptions, Blocked, Event, HoldRequest, OnFailure, Pipeline, PipelineBuilder, Placement, Plan, Stage, Status,
    Upstream,
};
pub use engine::{ReconcileOutcome, ReconcileReport, StageReconcile};
pub use error::{ApprovalRefusal, Error, ErrorClass, ErrorContext, Location, Resource, Result};
#[cfg(feature = "http-gate")]
pub use gate::HttpGate;
pub use gate::{ApprovalGate, ApprovalPolicy, Gate, Identity};
pub use gate::{CommandGate, Comparison, Composite, Freeze, MetricGate, SemverGate, SoakCount, SoakGate, WindowGate};
pub use integrity::IntegrityKey;
pub use ledger::{
    FileLedger, FileLedgerOptions, FinalState, GateEvidence, Ledger, LedgerExt, MemoryLedger, PromotionRecord,
    PromotionState, Verdict,
};
pub use lock::{EnvironmentLock, FileLock, LockWait, MemoryLock};
pub use reference::ArtifactRef;
pub use render::{RenderBudget, Templates};
/// The `semver` crate `promote` uses: [`BuildRequest::version`] takes its `Version`, and the semver gate its
/// `VersionReq`.
pub use semver;
pub use spec::SpecRegistry;
pub use store::{Artifact, ArtifactStore, ArtifactStoreExt, MemoryArtifactStore, StoreCapabilities};

/// The workspace README's examples run as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
