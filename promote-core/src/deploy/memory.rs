//! An in-memory deployer with scripted health, for tests and examples.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{ApplyMode, Bundle, Change, DeployStatus, Deployer, DeployerCapabilities, diff_objects};
use crate::error::{Error, Result};
use crate::progress::{Progress, ProgressUpdate};

/// How the next deploy to a stage turns out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthScript {
    /// It becomes healthy.
    Healthy,
    /// It fails with this reason (`ImagePullBackOff`, `CrashLoopBackOff`).
    Fails(String),
    /// It never becomes healthy: `wait_healthy` times out.
    NeverReady,
}

/// Keeps what each stage runs in memory. Health is healthy unless a test scripts otherwise.
#[derive(Debug, Clone, Default)]
pub struct MemoryDeployer {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    deployed: HashMap<String, Bundle>,
    scripts: HashMap<String, VecDeque<HealthScript>>,
    healthy: HashMap<String, bool>,
    applies: usize,
}

impl MemoryDeployer {
    /// A deployer with nothing deployed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scripts how the next deploys to `stage` turn out, in order. Unscripted deploys are healthy.
    pub fn script(&self, stage: &str, outcomes: impl IntoIterator<Item = HealthScript>) {
        let mut state = self.state.lock().expect("deployer poisoned");
        state.scripts.entry(stage.to_owned()).or_default().extend(outcomes);
    }

    /// How many real applies have happened, over all stages.
    pub fn applies(&self) -> usize {
        self.state.lock().expect("deployer poisoned").applies
    }
}

#[async_trait]
impl Deployer for MemoryDeployer {
    fn capabilities(&self) -> DeployerCapabilities {
        DeployerCapabilities { dry_run: true, health: true, prune: true }
    }

    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        let mut state = self.state.lock().expect("deployer poisoned");
        let changes = diff_objects(state.deployed.get(bundle.stage()), bundle);
        if mode == ApplyMode::Apply {
            state.applies += 1;
            state.deployed.insert(bundle.stage().to_owned(), bundle.clone());
            state.healthy.remove(bundle.stage());
        }
        Ok(changes)
    }

    async fn wait_healthy(&self, bundle: &Bundle, timeout: Duration, progress: &Progress) -> Result<String> {
        let mut state = self.state.lock().expect("deployer poisoned");
        let stage = bundle.stage().to_owned();
        if state.deployed.get(&stage).map(Bundle::hash) != Some(bundle.hash()) {
            return Err(Error::DeployFailed { stage, reason: "the bundle is not the one applied".into() });
        }
        let script = state.scripts.get_mut(&stage).and_then(VecDeque::pop_front).unwrap_or(HealthScript::Healthy);
        let outcome = match script {
            HealthScript::Healthy => {
                for manifest in bundle.objects() {
                    progress.report(ProgressUpdate::message(manifest.object_key(), "ready"));
                }
                Ok(format!("{} objects ready", bundle.objects().len()))
            }
            HealthScript::Fails(reason) => Err(Error::DeployFailed { stage: stage.clone(), reason }),
            HealthScript::NeverReady => {
                Err(Error::Timeout { what: format!("rollout of stage {stage}"), after: timeout })
            }
        };
        state.healthy.insert(stage, outcome.is_ok());
        outcome
    }

    async fn current(&self, stage: &str) -> Result<Option<Bundle>> {
        Ok(self.state.lock().expect("deployer poisoned").deployed.get(stage).cloned())
    }

    async fn status(&self, stage: &str) -> Result<DeployStatus> {
        let state = self.state.lock().expect("deployer poisoned");
        let bundle = state.deployed.get(stage);
        Ok(DeployStatus {
            bundle_hash: bundle.map(|b| b.hash().to_owned()),
            objects: bundle.map(|b| b.objects().iter().map(|m| m.object_key()).collect()).unwrap_or_default(),
            healthy: state.healthy.get(stage).copied(),
        })
    }
}
