//! ConfigMap and Secret config sources against the fake API server: the core config conformance suite,
//! layering of several objects, versions (resourceVersion) and drift of a pin, and errors naming the stage,
//! the namespace, the object and the key, never a secret value.
#![cfg(feature = "testing")]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use promote_core::config::{ConfigRequest, ConfigSource, ConfigValue};
use promote_core::conformance::{ConfigFixture, config_source};
use promote_core::{Error, ErrorClass};
use promote_k8s::testing::FakeApiServer;
use promote_k8s::{ConfigObjects, KubernetesConfigSource};
use serde_json::json;

const PASSWORD: &str = "hunter2-not-for-logs";

async fn seeded() -> (FakeApiServer, kube::Client) {
    let fake = FakeApiServer::builder().namespaces(&["default", "shop-dev"]).build();
    let client = kube::Client::new(fake.service(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop-dev");
    for (name, data) in
        [("settings", json!({"LEVEL": "info", "REPLICAS": "2"})), ("overrides", json!({"LEVEL": "debug"}))]
    {
        let map = serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap();
        maps.create(&PostParams::default(), &map).await.unwrap();
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "shop-dev");
    let secret = serde_json::from_value(json!({"metadata": {"name": "db"}, "stringData": {}, "data": {
        "DB_PASSWORD": base64_of(PASSWORD), "DB_USER": base64_of("app-user-7"),
    }}))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    (fake, client)
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

async fn source(client: &kube::Client, from: ConfigObjects, objects: &[&str]) -> KubernetesConfigSource {
    let mut builder = KubernetesConfigSource::builder(from).namespace("shop-{stage}").client(client.clone());
    for object in objects {
        builder = builder.object(*object);
    }
    builder.build().await.unwrap()
}

#[tokio::test]
async fn config_maps_pass_the_config_conformance_suite() {
    let (_fake, client) = seeded().await;
    let source = source(&client, ConfigObjects::ConfigMaps, &["settings", "overrides"]).await;
    config_source(ConfigFixture {
        source: Arc::new(source),
        stage: "dev".into(),
        plain: BTreeMap::from([("LEVEL".into(), "debug".into()), ("REPLICAS".into(), "2".into())]),
        secrets: BTreeMap::new(),
        unknown_stage: "qa".into(),
        older_version: None,
    })
    .await;
}

#[tokio::test]
async fn secrets_pass_the_config_conformance_suite() {
    let (_fake, client) = seeded().await;
    let source = source(&client, ConfigObjects::Secrets, &["db"]).await;
    config_source(ConfigFixture {
        source: Arc::new(source),
        stage: "dev".into(),
        plain: BTreeMap::new(),
        secrets: BTreeMap::from([("DB_PASSWORD".into(), PASSWORD.into()), ("DB_USER".into(), "app-user-7".into())]),
        unknown_stage: "qa".into(),
        older_version: None,
    })
    .await;
}

#[tokio::test]
async fn a_value_reports_its_objects_resource_version_and_a_pin_detects_drift() {
    let (_fake, client) = seeded().await;
    let source = source(&client, ConfigObjects::ConfigMaps, &["settings"]).await;
    let set = source.load(&ConfigRequest::new("dev")).await.unwrap();
    let version = set.get("REPLICAS").unwrap().version.clone().unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop-dev");
    assert_eq!(maps.get("settings").await.unwrap().metadata.resource_version, Some(version.clone()));

    let pins = BTreeMap::from([("REPLICAS".to_owned(), version.clone())]);
    let pinned = source.load(&ConfigRequest::new("dev").with_pins(pins.clone())).await.unwrap();
    assert_eq!(pinned.get("REPLICAS").unwrap().value.expose(), "2", "an unchanged object loads at its pin");

    let mut changed = maps.get("settings").await.unwrap();
    changed.data.as_mut().unwrap().insert("REPLICAS".into(), "5".into());
    maps.replace("settings", &PostParams::default(), &changed).await.unwrap();
    let error = source.load(&ConfigRequest::new("dev").with_pins(pins)).await.unwrap_err();
    let shown = error.to_string();
    assert!(matches!(error, Error::NotFound { .. }), "{error:?}");
    for needle in
        ["stage dev", "key REPLICAS", &format!("version {version}"), "ConfigMap settings", "shop-dev", "drifted"]
    {
        assert!(shown.contains(needle), "{needle:?} in {shown}");
    }
}

#[tokio::test]
async fn a_missing_object_or_key_names_stage_namespace_object_and_key() {
    let (_fake, client) = seeded().await;
    let missing_object = source(&client, ConfigObjects::Secrets, &["db", "api-keys"]).await;
    match missing_object.load(&ConfigRequest::new("dev")).await {
        Err(Error::ConfigSource { stage, message, class: ErrorClass::Persistent, .. }) => {
            assert_eq!(stage, "dev");
            assert!(message.contains("Secret api-keys") && message.contains("namespace shop-dev"), "{message}");
        }
        other => panic!("expected a ConfigSource error, got {other:?}"),
    }
    let missing_key = KubernetesConfigSource::builder(ConfigObjects::Secrets)
        .namespace("shop-{stage}")
        .object("db")
        .keys(["DB_PASSWORD", "DB_HOST"])
        .client(client.clone())
        .build()
        .await
        .unwrap();
    let error = missing_key.load(&ConfigRequest::new("dev")).await.unwrap_err();
    let shown = format!("{error} {error:?}");
    for needle in ["dev", "key DB_HOST", "Secret", "db", "namespace shop-dev"] {
        assert!(shown.contains(needle), "{needle:?} in {shown}");
    }
    assert!(!shown.contains(PASSWORD), "no secret value in an error");

    let keyed = KubernetesConfigSource::builder(ConfigObjects::Secrets)
        .namespace("shop-{stage}")
        .object("db")
        .keys(["DB_PASSWORD"])
        .client(client.clone())
        .build()
        .await
        .unwrap();
    let set = keyed.load(&ConfigRequest::new("dev")).await.unwrap();
    assert_eq!(set.len(), 1, "only the listed keys are read");
    assert!(matches!(set.get("DB_PASSWORD").unwrap().value, ConfigValue::Secret(_)));
    assert!(!format!("{set:?} {keyed:?}").contains(PASSWORD));
}

#[tokio::test]
async fn an_unknown_stage_is_empty_and_names_are_checked() {
    let (_fake, client) = seeded().await;
    let source = source(&client, ConfigObjects::ConfigMaps, &["settings"]).await;
    assert!(source.load(&ConfigRequest::new("prd")).await.unwrap().is_empty());
    let bad = KubernetesConfigSource::builder(ConfigObjects::ConfigMaps)
        .namespace("Shop_{stage}")
        .object("settings")
        .client(client.clone())
        .build()
        .await;
    assert!(bad.unwrap_err().to_string().contains("Shop_{stage}"));
}
