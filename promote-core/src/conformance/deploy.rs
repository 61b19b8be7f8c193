//! The [`Deployer`] conformance suite.

use std::sync::Arc;
use std::time::Duration;

use crate::deploy::{ApplyMode, Bundle, ChangeAction, Deployer, RenderedObject};

fn config_map(name: &str, value: &str) -> RenderedObject {
    let content = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n");
    RenderedObject::new(
        "v1".into(),
        "ConfigMap".into(),
        name.into(),
        None,
        "conformance.yaml".into(),
        content.clone(),
        content,
    )
}

fn actions(changes: &[crate::deploy::Change]) -> Vec<(String, ChangeAction)> {
    let mut actions: Vec<_> = changes.iter().map(|c| (c.object.clone(), c.action)).collect();
    actions.sort();
    actions
}

/// Runs every clause, in order, on `stage`, which must be empty. The clauses build on one another: each
/// expects the stage as the one before left it.
pub async fn deployer(deployer: Arc<dyn Deployer>, stage: &str) {
    let deployer = deployer.as_ref();
    a_fresh_stage_runs_nothing(deployer, stage).await;
    dry_run_changes_nothing(deployer, stage).await;
    apply_creates_and_current_returns_it(deployer, stage).await;
    re_applying_changes_nothing(deployer, stage).await;
    an_update_names_changed_and_pruned_objects(deployer, stage).await;
}

fn first_bundle(stage: &str) -> Bundle {
    Bundle::new(stage, vec![config_map("alpha", "1"), config_map("beta", "1")])
}

/// A stage nothing was applied to runs nothing.
pub async fn a_fresh_stage_runs_nothing(deployer: &dyn Deployer, stage: &str) {
    assert!(deployer.current(stage).await.expect("current must succeed").is_none(), "a fresh stage runs nothing");
}

/// Where the deployer can dry-run, a dry run reports every object's creation and changes nothing.
pub async fn dry_run_changes_nothing(deployer: &dyn Deployer, stage: &str) {
    if !deployer.capabilities().dry_run {
        return;
    }
    let planned = deployer.apply(&first_bundle(stage), ApplyMode::DryRun).await.expect("a dry run must succeed");
    assert_eq!(
        actions(&planned),
        [("ConfigMap/alpha".into(), ChangeAction::Create), ("ConfigMap/beta".into(), ChangeAction::Create)]
    );
    assert!(deployer.current(stage).await.unwrap().is_none(), "a dry run must change nothing");
}

/// The first apply creates every object, becomes healthy, and `current` and `status` return it byte for byte.
pub async fn apply_creates_and_current_returns_it(deployer: &dyn Deployer, stage: &str) {
    let first = first_bundle(stage);
    let applied = deployer.apply(&first, ApplyMode::Apply).await.expect("apply must succeed");
    assert!(applied.iter().all(|c| c.action == ChangeAction::Create), "first apply creates every object: {applied:?}");
    deployer
        .wait_healthy(&first, Duration::from_secs(30), &crate::progress::Progress::none())
        .await
        .expect("a plain bundle must become healthy");
    let current = deployer.current(stage).await.unwrap().expect("current must return what was applied");
    assert_eq!(current.hash(), first.hash(), "current must be the applied bundle, byte for byte");
    assert_eq!(deployer.status(stage).await.unwrap().bundle_hash.as_deref(), Some(first.hash()));
}

/// Applying the same bundle again reports every object unchanged.
pub async fn re_applying_changes_nothing(deployer: &dyn Deployer, stage: &str) {
    let again = deployer.apply(&first_bundle(stage), ApplyMode::Apply).await.unwrap();
    assert!(again.iter().all(|c| c.action == ChangeAction::Unchanged), "re-applying must change nothing: {again:?}");
}

/// A changed bundle reports the updated object, and (where the deployer prunes) the one that left it.
pub async fn an_update_names_changed_and_pruned_objects(deployer: &dyn Deployer, stage: &str) {
    let second = Bundle::new(stage, vec![config_map("alpha", "2")]);
    let changed = deployer.apply(&second, ApplyMode::Apply).await.unwrap();
    let mut expected = vec![("ConfigMap/alpha".to_owned(), ChangeAction::Update)];
    if deployer.capabilities().prune {
        expected.push(("ConfigMap/beta".into(), ChangeAction::Delete));
    }
    assert_eq!(actions(&changed), expected, "changes must name updated and pruned objects");
    let current = deployer.current(stage).await.unwrap().unwrap();
    assert_eq!(current.hash(), second.hash(), "current must follow the last apply");
}
