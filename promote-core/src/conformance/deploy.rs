//! The [`Deployer`] conformance suite.

use std::sync::Arc;
use std::time::Duration;

use crate::deploy::{ApplyMode, Bundle, ChangeAction, Deployer, Manifest};

fn config_map(name: &str, value: &str) -> Manifest {
    let content = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n");
    Manifest::new(
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

/// Runs the [`Deployer`] conformance suite on `stage`, which must be empty.
pub async fn deployer(deployer: Arc<dyn Deployer>, stage: &str) {
    let capabilities = deployer.capabilities();
    assert!(deployer.current(stage).await.expect("current must succeed").is_none(), "a fresh stage runs nothing");

    let first = Bundle::new(stage, vec![config_map("alpha", "1"), config_map("beta", "1")]);
    if capabilities.dry_run {
        let planned = deployer.apply(&first, ApplyMode::DryRun).await.expect("a dry run must succeed");
        assert_eq!(
            actions(&planned),
            [("ConfigMap/alpha".into(), ChangeAction::Create), ("ConfigMap/beta".into(), ChangeAction::Create)]
        );
        assert!(deployer.current(stage).await.unwrap().is_none(), "a dry run must change nothing");
    }
    let applied = deployer.apply(&first, ApplyMode::Apply).await.expect("apply must succeed");
    assert!(applied.iter().all(|c| c.action == ChangeAction::Create), "first apply creates every object: {applied:?}");
    deployer
        .wait_healthy(&first, Duration::from_secs(30), &crate::progress::Progress::none())
        .await
        .expect("a plain bundle must become healthy");
    let current = deployer.current(stage).await.unwrap().expect("current must return what was applied");
    assert_eq!(current.hash(), first.hash(), "current must be the applied bundle, byte for byte");
    assert_eq!(deployer.status(stage).await.unwrap().bundle_hash.as_deref(), Some(first.hash()));

    let again = deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    assert!(again.iter().all(|c| c.action == ChangeAction::Unchanged), "re-applying must change nothing: {again:?}");

    let second = Bundle::new(stage, vec![config_map("alpha", "2")]);
    let changed = deployer.apply(&second, ApplyMode::Apply).await.unwrap();
    let mut expected = vec![("ConfigMap/alpha".to_owned(), ChangeAction::Update)];
    if capabilities.prune {
        expected.push(("ConfigMap/beta".into(), ChangeAction::Delete));
    }
    assert_eq!(actions(&changed), expected, "changes must name updated and pruned objects");
    let current = deployer.current(stage).await.unwrap().unwrap();
    assert_eq!(current.hash(), second.hash(), "current must follow the last apply");
}
