//! The Role in `rbac/state-role.yaml` is exactly what the lock, the ledger and the config sources need: with
//! its rules and nothing else (the fake enforces them per client token) everything works, and without any one
//! of its verbs something fails with a typed `PermissionDenied` naming that verb.
#![cfg(feature = "testing")]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use promote_core::config::{ConfigRequest, ConfigSource};
use promote_core::ledger::{Hold, HoldScope, Ledger, LedgerEvent, NewEntry};
use promote_core::lock::{EnvironmentLock, LockWait};
use promote_core::{Error, Result};
use promote_k8s::testing::{AccessRule, FakeApiServer};
use promote_k8s::{ConfigObjects, KubernetesConfigSource, KubernetesLedger, KubernetesLock};
use serde_json::{Value, json};

const TOKEN: &str = "promote-runner";

/// The Roles' rules, as (namespace, rule) pairs, read from the shipped manifest.
fn shipped_rules() -> Vec<(String, AccessRule)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/rbac/state-role.yaml")).unwrap();
    let mut rules = Vec::new();
    for document in text.split("\n---\n") {
        let object: Value = serde_saphyr::from_str(document).unwrap();
        if object["kind"] != "Role" {
            continue;
        }
        let namespace = object["metadata"]["namespace"].as_str().unwrap().to_owned();
        for rule in object["rules"].as_array().unwrap() {
            let list = |field: &str| -> Vec<String> {
                rule[field].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
            };
            let rule = AccessRule {
                verbs: list("verbs"),
                api_groups: list("apiGroups"),
                resources: list("resources"),
                namespaces: vec![namespace.clone()],
            };
            rules.push((namespace.clone(), rule));
        }
    }
    rules
}

async fn seeded_fake() -> FakeApiServer {
    let fake = FakeApiServer::builder().namespaces(&["default", "promote-system", "shop-dev"]).build();
    let admin = kube::Client::new(fake.service(), "default");
    let map: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"LEVEL": "info"}})).unwrap();
    Api::namespaced(admin.clone(), "shop-dev").create(&PostParams::default(), &map).await.unwrap();
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "db"}, "data": {"DB_PASSWORD": "cHc="}})).unwrap();
    Api::namespaced(admin, "shop-dev").create(&PostParams::default(), &secret).await.unwrap();
    fake
}

fn entry(n: u32) -> NewEntry {
    let at = chrono::Utc::now();
    let hold = Hold {
        id: format!("hold-{n}"),
        stage: "dev".into(),
        scope: HoldScope::Auto,
        reason: "rbac".into(),
        placed_by: "ci".into(),
        at,
    };
    NewEntry { at, actor: "ci".into(), fence: None, event: LedgerEvent::HoldPlaced { hold } }
}

/// Everything the state backends do: lock, wait, take a released lease, append across segments (with a
/// checkpoint), status, a full read, and both config sources.
async fn exercise(client: kube::Client) -> Result<()> {
    let lock = KubernetesLock::builder()
        .namespace("promote-system")
        .lease_duration(Duration::from_secs(1))
        .renew_every(Duration::from_millis(50))
        .poll_every(Duration::from_millis(20))
        .client(client.clone())
        .build()
        .await?;
    let lease = lock.acquire("dev", "ci", LockWait::Fail).await?;
    tokio::time::sleep(Duration::from_millis(120)).await; // a renewal or two
    drop(lease);
    let again = lock.acquire("dev", "ci", LockWait::Wait(Duration::from_secs(10))).await?;
    drop(again);

    let ledger = KubernetesLedger::builder()
        .namespace("promote-system")
        .segment_bytes(1200)
        .client(client.clone())
        .build()
        .await?;
    for n in 0..4 {
        ledger.append(vec![entry(n)]).await?;
    }
    ledger.summary().await?;
    assert_eq!(ledger.read_since(0).await?.len(), 4);
    let status = KubernetesLedger::builder().namespace("promote-system").client(client.clone()).build().await?;
    status.summary().await?;

    for (from, object) in [(ConfigObjects::ConfigMaps, "settings"), (ConfigObjects::Secrets, "db")] {
        let source = KubernetesConfigSource::builder(from)
            .namespace("shop-{stage}")
            .object(object)
            .client(client.clone())
            .build()
            .await?;
        assert_eq!(source.load(&ConfigRequest::new("dev")).await?.len(), 1);
    }
    Ok(())
}

#[tokio::test]
async fn the_shipped_role_is_enough() {
    let fake = seeded_fake().await;
    let rules = shipped_rules();
    assert_eq!(rules.len(), 3, "the manifest's rules");
    fake.restrict(TOKEN, "system:serviceaccount:ci:promote", rules.into_iter().map(|(_, rule)| rule).collect());
    exercise(kube::Client::new(fake.service_as(TOKEN), "default")).await.expect("the shipped Role is enough");
}

#[tokio::test]
async fn each_verb_of_the_role_is_needed() {
    let rules = shipped_rules();
    for (index, (namespace, rule)) in rules.iter().enumerate() {
        for verb in &rule.verbs {
            let fake = Arc::new(seeded_fake().await);
            let mut fewer: Vec<AccessRule> = rules.iter().map(|(_, rule)| rule.clone()).collect();
            fewer[index].verbs.retain(|v| v != verb);
            fake.restrict(TOKEN, "system:serviceaccount:ci:promote", fewer);
            let what = format!("{verb} {:?} in {namespace}", rule.resources);
            match exercise(kube::Client::new(fake.service_as(TOKEN), "default")).await {
                Err(error) => match error.root() {
                    Error::PermissionDenied { message, .. } => {
                        assert!(message.contains(&format!("cannot {verb}")), "{what}: {message}");
                    }
                    other => panic!("{what}: expected PermissionDenied, got {other:?}"),
                },
                Ok(()) => panic!("without {what} everything still worked: the Role asks for too much"),
            }
        }
    }
}
