//! Conformance suites: one per trait, which every backend runs against itself.
//!
//! **Not a stable API.** Enabled by the `conformance` feature. A backend's test creates whatever the suite
//! needs with its own means (a real registry, moto, a temp directory), describes it in a fixture, and calls
//! the suite. Differences between backends are read from their `capabilities()`, never skipped silently:
//! an operation a backend says it cannot do is checked to fail with [`Error::NotSupported`](crate::Error).
//!
//! Each suite panics with a message naming the broken contract clause, like an `assert!`.

mod config;
mod deploy;
mod gate;
mod ledger;
mod lock;
mod store;

pub use config::{ConfigFixture, config_source};
pub use deploy::deployer;
pub use gate::{clock, gate};
pub use ledger::ledger;
pub use lock::environment_lock;
pub use store::{StoreFixture, artifact_store};
