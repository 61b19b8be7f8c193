#![doc = include_str!("../README.md")]

mod config;
mod connection;
mod deployer;
mod error;
pub mod kinds;
mod label;
mod ledger;
mod lock;
mod retry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{ConfigObjects, KubernetesConfigSource, KubernetesConfigSourceBuilder};
pub use deployer::{KubernetesDeployer, KubernetesDeployerBuilder, PlannedChange};
pub use ledger::{DEFAULT_SEGMENT_BYTES, KubernetesLedger, KubernetesLedgerBuilder};
pub use lock::{KubernetesLock, KubernetesLockBuilder};
