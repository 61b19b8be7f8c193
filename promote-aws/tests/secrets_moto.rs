//! `SecretsManagerSource` against moto: real HTTP, the real SDK.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::proxy::Proxy;
use common::{Moto, sdk_config};
use promote_aws::{RetryPolicy, SecretSpec, SecretsManagerBuilder, SecretsManagerSource};
use promote_core::conformance::{ConfigFixture, config_source};
use promote_core::{ConfigRequest, ConfigSource, ConfigValue, Error, Resource};

type Client = aws_sdk_secretsmanager::Client;

async fn client(endpoint: &str) -> Client {
    Client::new(&sdk_config(endpoint).await)
}

/// Creates a secret and returns its first version id.
async fn create(client: &Client, name: &str, value: &str) -> String {
    let output = client.create_secret().name(name).secret_string(value).send().await.expect("create secret");
    output.version_id().unwrap().to_owned()
}

/// Puts a new current version and returns its id.
async fn update(client: &Client, name: &str, value: &str) -> String {
    let output = client.put_secret_value().secret_id(name).secret_string(value).send().await.expect("put secret value");
    output.version_id().unwrap().to_owned()
}

async fn builder(endpoint: &str) -> SecretsManagerBuilder {
    SecretsManagerSource::builder().sdk_config(&sdk_config(endpoint).await).retry_policy(
        RetryPolicy::default().with_max_attempts(3).with_delays(Duration::from_millis(5), Duration::from_millis(50)),
    )
}

fn request(stage: &str) -> ConfigRequest {
    ConfigRequest::new(stage)
}

#[tokio::test]
async fn conformance() {
    let Some(moto) = Moto::start() else { return };
    let sm = client(&moto.endpoint).await;
    let v1 = create(&sm, "prd/app", r#"{"DB_URL": "postgres://old", "API_KEY": "k-1"}"#).await;
    update(&sm, "prd/app", r#"{"DB_URL": "postgres://new", "API_KEY": "k-2"}"#).await;
    create(&sm, "prd/token", "tok-3e4f").await;
    let source = builder(&moto.endpoint)
        .await
        .template(["dev", "prd"], [SecretSpec::json("{stage}/app")])
        .stage("prd", [SecretSpec::string("prd/token", "TOKEN")])
        .build()
        .await
        .unwrap();
    config_source(ConfigFixture {
        source: Arc::new(source),
        stage: "prd".into(),
        plain: BTreeMap::new(),
        secrets: BTreeMap::from([
            ("DB_URL".into(), "postgres://new".into()),
            ("API_KEY".into(), "k-2".into()),
            ("TOKEN".into(), "tok-3e4f".into()),
        ]),
        unknown_stage: "qa".into(),
        older_version: Some(("DB_URL".into(), v1, "postgres://old".into())),
    })
    .await;
}

#[tokio::test]
async fn json_members_and_string_secrets_become_keys_with_their_version() {
    let Some(moto) = Moto::start() else { return };
    let sm = client(&moto.endpoint).await;
    let app = create(&sm, "stg/app", r#"{"DB_URL": "postgres://stg", "PORT": 5432, "DEBUG": false}"#).await;
    let token = create(&sm, "stg/token", "plain string value").await;
    let source = builder(&moto.endpoint)
        .await
        .stage("stg", [SecretSpec::json("stg/app"), SecretSpec::string("stg/token", "API_TOKEN")])
        .build()
        .await
        .unwrap();
    let set = source.load(&request("stg")).await.unwrap();
    let shown: BTreeMap<&str, (&str, Option<&str>)> =
        set.iter().map(|(key, entry)| (key.as_str(), (entry.value.expose(), entry.version.as_deref()))).collect();
    assert_eq!(
        shown,
        BTreeMap::from([
            ("API_TOKEN", ("plain string value", Some(token.as_str()))),
            ("DB_URL", ("postgres://stg", Some(app.as_str()))),
            ("DEBUG", ("false", Some(app.as_str()))),
            ("PORT", ("5432", Some(app.as_str()))),
        ])
    );
    assert!(set.iter().all(|(_, entry)| matches!(entry.value, ConfigValue::Secret(_))), "every value is a Secret");
    let provenance = set.provenance();
    assert_eq!(provenance["DB_URL"].version.as_deref(), Some(app.as_str()), "plan shows the version id");
}

#[tokio::test]
async fn versions_are_selected_by_stage_label_or_id() {
    let Some(moto) = Moto::start() else { return };
    let sm = client(&moto.endpoint).await;
    let v1 = create(&sm, "prd/token", "first").await;
    let v2 = update(&sm, "prd/token", "second").await;
    let staged = sm
        .put_secret_value()
        .secret_id("prd/token")
        .secret_string("staged")
        .version_stages("CANARY")
        .send()
        .await
        .unwrap()
        .version_id()
        .unwrap()
        .to_owned();
    let source = builder(&moto.endpoint)
        .await
        .stage("current", [SecretSpec::string("prd/token", "TOKEN")])
        .stage("previous", [SecretSpec::string("prd/token", "TOKEN").at_version_stage("AWSPREVIOUS")])
        .stage("canary", [SecretSpec::string("prd/token", "TOKEN").at_version_stage("CANARY")])
        .stage("fixed", [SecretSpec::string("prd/token", "TOKEN").at_version_id(&v1)])
        .build()
        .await
        .unwrap();
    for (stage, value, version) in
        [("current", "second", &v2), ("previous", "first", &v1), ("canary", "staged", &staged), ("fixed", "first", &v1)]
    {
        let set = source.load(&request(stage)).await.unwrap();
        let entry = set.get("TOKEN").unwrap();
        assert_eq!((entry.value.expose(), entry.version.as_ref()), (value, Some(version)), "{stage}");
    }
    // A rollback pins the version the earlier deploy used.
    let pinned =
        source.load(&request("current").with_pins(BTreeMap::from([("TOKEN".into(), v1.clone())]))).await.unwrap();
    assert_eq!(pinned.get("TOKEN").unwrap().value.expose(), "first");
}

#[tokio::test]
async fn twenty_secrets_load_in_one_batch_call() {
    let Some(moto) = Moto::start() else { return };
    let sm = client(&moto.endpoint).await;
    let mut specs = Vec::new();
    for i in 0..20 {
        create(&sm, &format!("prd/part-{i:02}"), &format!(r#"{{"KEY_{i:02}": "value-{i}"}}"#)).await;
        specs.push(SecretSpec::json(format!("prd/part-{i:02}")));
    }
    let proxy = Proxy::start(&moto.endpoint).await;
    let source = builder(&proxy.endpoint).await.stage("prd", specs).build().await.unwrap();
    let set = source.load(&request("prd")).await.unwrap();
    assert_eq!(set.len(), 20);
    assert_eq!(set.get("KEY_07").unwrap().value.expose(), "value-7");
    assert_eq!(proxy.calls(), ["BatchGetSecretValue"], "20 known secrets are one batch call");

    proxy.reset();
    assert!(source.load(&request("dev")).await.unwrap().is_empty());
    assert!(proxy.calls().is_empty(), "a stage with no secrets makes no call");
}

#[tokio::test]
async fn missing_secret_missing_key_and_bad_json_are_clear_errors() {
    let Some(moto) = Moto::start() else { return };
    let sm = client(&moto.endpoint).await;
    create(&sm, "prd/app", r#"{"DB_URL": "postgres://x"}"#).await;
    create(&sm, "prd/not-json", "hunter2-not-json").await;
    create(&sm, "prd/array", r#"["hunter2-in-array"]"#).await;
    let source = builder(&moto.endpoint)
        .await
        .stage("missing-secret", [SecretSpec::json("prd/app"), SecretSpec::json("prd/nope")])
        .stage("missing-key", [SecretSpec::json("prd/app").with_keys(["DB_URL", "DB_PASSWORD"])])
        .stage("not-json", [SecretSpec::json("prd/not-json")])
        .stage("array", [SecretSpec::json("prd/array")])
        .build()
        .await
        .unwrap();

    let error = source.load(&request("missing-secret")).await.unwrap_err();
    assert!(
        matches!(error.root(), Error::NotFound { resource: Resource::Secret, name } if name == "prd/nope"),
        "{error:?}"
    );
    let context = error.context().expect("the stage and the source are named");
    assert_eq!((context.stage.as_deref(), context.source_name.is_some()), (Some("missing-secret"), true));
    assert!(error.to_string().starts_with("stage missing-secret, source "), "{error}");

    let error = source.load(&request("missing-key")).await.unwrap_err();
    assert!(matches!(error, Error::NotFound { resource: Resource::ConfigKey, .. }), "{error:?}");
    assert!(error.to_string().contains("DB_PASSWORD") && error.to_string().contains("prd/app"), "{error}");

    for stage in ["not-json", "array"] {
        let error = source.load(&request(stage)).await.unwrap_err();
        assert!(matches!(error, Error::ConfigSource { .. }) && !error.is_retryable(), "{error:?}");
        let message = format!("{error} {error:?}");
        assert!(message.contains("JSON") && message.contains("prd/"), "{message}");
        assert!(!message.contains("hunter2"), "the content never shows: {message}");
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures this thread's tracing output at TRACE, with the `log` crate bridged in (rustls and other
/// dependencies log through it), as an embedder's `tracing_subscriber::fmt().init()` would.
fn capture_traces() -> (Captured, tracing::subscriber::DefaultGuard) {
    // Once per process; a second call (another test) finds the bridge in place.
    let _ = tracing_log::LogTracer::init();
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    (captured.clone(), tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn secret_values_never_reach_traces_or_errors() {
    let Some(moto) = Moto::start() else { return };
    let sm = client(&moto.endpoint).await;
    let old = create(&sm, "prd/app", r#"{"DB_PASSWORD": "leak-canary-1"}"#).await;
    update(&sm, "prd/app", r#"{"DB_PASSWORD": "leak-canary-2"}"#).await;
    create(&sm, "prd/token", "leak-canary-3").await;
    create(&sm, "prd/broken", "leak-canary-4 is not json").await;
    let (captured, _guard) = capture_traces();

    let source = builder(&moto.endpoint)
        .await
        .stage("prd", [SecretSpec::json("prd/app"), SecretSpec::string("prd/token", "TOKEN")])
        .stage("broken", [SecretSpec::json("prd/broken")])
        .stage("missing-key", [SecretSpec::json("prd/app").with_keys(["NOPE"])])
        .build()
        .await
        .unwrap();
    let current = source.load(&request("prd")).await.unwrap();
    let pinned = source.load(&request("prd").with_pins(BTreeMap::from([("DB_PASSWORD".into(), old)]))).await.unwrap();
    assert_eq!(pinned.get("DB_PASSWORD").unwrap().value.expose(), "leak-canary-1");
    let errors = [
        source.load(&request("broken")).await.unwrap_err(),
        source.load(&request("missing-key")).await.unwrap_err(),
        source
            .load(&request("prd").with_pins(BTreeMap::from([("TOKEN".into(), "no-such-version".into())])))
            .await
            .unwrap_err(),
    ];
    drop(_guard);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("BatchGetSecretValue") && logs.contains("TRACE"), "the capture saw the SDK at TRACE");
    let shown = format!(
        "{logs}\n{current:?}\n{pinned:?}\n{errors:?}\n{}",
        errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    );
    assert!(!shown.contains("leak-canary"), "a secret value leaked:\n{shown}");
}

#[tokio::test]
async fn throttled_secret_reads_are_retried() {
    let Some(moto) = Moto::start() else { return };
    let sm = client(&moto.endpoint).await;
    create(&sm, "prd/app", r#"{"A": "1"}"#).await;
    let proxy = Proxy::start(&moto.endpoint).await;
    let source = builder(&proxy.endpoint).await.stage("prd", [SecretSpec::json("prd/app")]).build().await.unwrap();
    proxy.fail_next("BatchGetSecretValue", 2, "ThrottlingException");
    assert_eq!(source.load(&request("prd")).await.unwrap().len(), 1);
    assert_eq!(proxy.count("BatchGetSecretValue"), 3);

    proxy.fail_next("BatchGetSecretValue", 3, "ThrottlingException");
    let error = source.load(&request("prd")).await.unwrap_err();
    assert!(!error.is_retryable() && error.may_succeed_later(), "the SDK gave up: {error:?}");
    assert!(matches!(&error, Error::ConfigSource { stage, .. } if stage == "prd"), "{error:?}");
}

/// A whole promotion with a Secrets Manager source: the value reaches the deployed manifest and nothing
/// else — not the engine's events, not the ledger, not the plan.
#[tokio::test]
async fn secret_values_never_reach_engine_events_the_ledger_or_a_plan() {
    use promote_core::Ledger;
    use promote_core::ledger::LedgerExt;
    use promote_core::manifest::OCI_MANIFEST;
    use promote_core::{
        BuildRequest, Deployer, MemoryArtifactStore, MemoryDeployer, MemoryLedger, Pipeline, Stage, Templates,
    };

    let Some(moto) = Moto::start() else { return };
    let (captured, guard) = capture_traces();
    let sm = client(&moto.endpoint).await;
    create(&sm, "prd/app", r#"{"DB_PASSWORD": "engine-canary-7"}"#).await;
    let source = builder(&moto.endpoint).await.stage("prd", [SecretSpec::json("prd/app")]).build().await.unwrap();

    let store = MemoryArtifactStore::new();
    let image: promote_core::ArtifactRef = "memory.local/shop/web:abc1234".parse().unwrap();
    store.push(image.clone(), OCI_MANIFEST, br#"{"schemaVersion":2}"#.to_vec()).unwrap();
    let template = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {{config.DB_PASSWORD}}\n  \
                    quoted: {{quote config.DB_PASSWORD}}\ndata:\n  encoded: {{b64enc config.DB_PASSWORD}}\n";
    let deployer = MemoryDeployer::new();
    let ledger = MemoryLedger::new();
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store))
        .ledger(Arc::new(ledger.clone()))
        .stage(
            Stage::new("prd")
                .config_source(source)
                .templates(Templates::from_sources([("secret.yaml", template)]).unwrap())
                .deployer(Arc::new(deployer.clone())),
        )
        .build()
        .unwrap();
    let mut events = pipeline.subscribe();
    let build = pipeline.register(BuildRequest::new("abc1234").artifact("web", image), "ci").await.unwrap();
    let plan = pipeline.plan(&build.id, "prd", "ci").await.unwrap();
    pipeline.promote(&build.id, "prd", "ci").await.unwrap();

    let deployed = deployer.current("prd").await.unwrap().unwrap();
    assert!(deployed.objects()[0].expose_content().contains("engine-canary-7"), "the deploy gets the value");
    let mut shown = format!("{plan:?}\n{}\n{}", serde_json::to_string(&plan).unwrap(), plan.diff);
    while let Ok(event) = events.try_recv() {
        shown.push_str(&format!("{event:?}\n{}\n", serde_json::to_string(&event).unwrap()));
    }
    for entry in ledger.read_since(0).await.unwrap() {
        shown.push_str(&serde_json::to_string(&entry).unwrap());
    }
    shown.push_str(&format!("{:?}", ledger.view().await.unwrap().promotions()));
    drop(guard);
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("handlebars"), "the template engine's log records were captured");
    shown.push_str(&logs);
    assert!(shown.contains("DB_PASSWORD"), "the key is shown, with its provenance");
    for form in ["engine-canary-7", "ZW5naW5lLWNhbmFyeS03"] {
        assert!(!shown.contains(form), "a secret value leaked:\n{shown}");
    }
}
