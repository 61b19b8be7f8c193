//! Conformance suites: one per trait, which every backend runs against itself.
//!
//! **Not a stable API.** Enabled by the `conformance` feature. A backend's test creates whatever the suite
//! needs with its own means (a real registry, moto, a temp directory), describes it in a fixture, and calls
//! the suite. Differences between backends are read from their `capabilities()`, never skipped silently:
//! an operation a backend says it cannot do is checked to fail with [`Error::NotSupported`](crate::Error).
//!
//! Each suite is a set of named clauses (`retag_is_idempotent`, `missing_is_not_found`,
//! `a_stale_fence_is_refused_whole`…), public one by one so that a backend's tests call the clauses it is
//! subject to, plus a function that runs them all. Each clause panics with a message naming the broken
//! contract, like an `assert!`.

mod config;
mod deploy;
mod gate;
mod ledger;
mod lock;
mod store;

pub use config::{
    ConfigFixture, an_unknown_stage_is_empty, config_source, pins_load_older_versions,
    seeded_values_load_with_provenance,
};
pub use deploy::{
    a_fresh_stage_runs_nothing, an_update_names_changed_and_pruned_objects, apply_creates_and_current_returns_it,
    deployer, dry_run_changes_nothing, re_applying_changes_nothing,
};
pub use gate::{a_pure_gate_decides_the_same_twice, clock, decides_with_reasons_and_json_evidence, gate, names_itself};
pub use ledger::{
    a_new_ledger_is_empty, a_stale_fence_is_refused_whole, a_summary_is_the_fold,
    appends_are_numbered_chained_and_read_back, concurrent_appends_keep_one_chain, ledger,
};
pub use lock::{
    LockFixture, LoseLock, a_bounded_wait_gives_up, a_waiter_gets_a_released_lock, environment_lock,
    held_stage_is_locked, loss_is_observed, stages_lock_independently, tokens_grow,
};
pub use store::{
    StoreFixture, artifact_store, cross_repository, exists_never_fails_for_missing, immutable_tag_conflict,
    index_kept_whole, missing_is_not_found, moving_a_tag, promote_needs_a_digest, resolve_by_tag_and_digest,
    retag_is_idempotent, revision_is_read,
};
