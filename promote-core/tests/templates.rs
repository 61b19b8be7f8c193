//! Strict templates: the line of a missing variable, the helpers, validation of the output and
//! determinism.

use std::collections::BTreeMap;
use std::sync::Arc;

use promote_core::config::{ConfigEntry, ConfigValue};
use promote_core::error::Location;
use promote_core::manifest::{OCI_MANIFEST, REVISION_ANNOTATION};
use promote_core::{
    Build, BuildRequest, ConfigSet, Error, MemoryArtifactStore, MemoryLedger, Pipeline, Secret, Stage, Templates,
};

const COMMIT: &str = "3f2c1a9d00000000000000000000000000000000";

async fn build() -> Build {
    let store = MemoryArtifactStore::new();
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"{REVISION_ANNOTATION}\":\"{COMMIT}\"}}}}"
    );
    store.push("memory.local/shop/web:3f2c1a9".parse().unwrap(), OCI_MANIFEST, manifest.into_bytes()).unwrap();
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store))
        .ledger(Arc::new(MemoryLedger::new()))
        .stage(Stage::new("dev"))
        .build()
        .unwrap();
    let request = BuildRequest::new(COMMIT)
        .version("1.4.0".parse().unwrap())
        .artifact("web", "memory.local/shop/web:3f2c1a9".parse().unwrap());
    pipeline.register(request, "ci").await.unwrap()
}

fn config(values: &[(&str, &str)], secrets: &[(&str, &str)]) -> ConfigSet {
    let mut set = ConfigSet::new();
    for (key, value) in values {
        let entry = ConfigEntry { value: ConfigValue::Plain((*value).into()), source: "test".into(), version: None };
        set.insert((*key).into(), entry);
    }
    for (key, value) in secrets {
        let entry =
            ConfigEntry { value: ConfigValue::Secret(Secret::new(*value)), source: "vault".into(), version: None };
        set.insert((*key).into(), entry);
    }
    set
}

async fn render(template: &str, config: &ConfigSet) -> promote_core::Result<promote_core::Bundle> {
    let templates = Templates::from_sources([("manifests/app.yaml", template)])?;
    templates.render("prd", &build().await, &BTreeMap::new(), config)
}

fn template_error(result: promote_core::Result<promote_core::Bundle>) -> (Location, String) {
    match result {
        Err(Error::Template { location, message }) => (location, message),
        other => panic!("expected a template error, got {other:?}"),
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    stage: {{stage}}
spec:
  replicas: {{config.REPLICAS}}
  template:
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
          env:
            - name: DB_URL
              value: {{quote config.DB_URL}}
";

#[tokio::test]
async fn a_missing_variable_names_the_template_line_and_the_key() {
    let (location, message) = template_error(render(DEPLOYMENT, &config(&[("REPLICAS", "3")], &[])).await);
    assert_eq!(location.file, std::path::PathBuf::from("manifests/app.yaml"));
    assert_eq!(location.line, Some(16), "the line of {{{{quote config.DB_URL}}}}");
    assert!(message.contains("config key DB_URL is not set for stage prd"), "{message}");

    // The same for a variable on its own, further up.
    let (location, message) = template_error(render(DEPLOYMENT, &config(&[("DB_URL", "postgres://db")], &[])).await);
    assert_eq!(location.line, Some(8));
    assert!(message.contains("REPLICAS"), "{message}");
    let shown = Error::Template { location, message }.to_string();
    assert!(shown.starts_with("manifests/app.yaml:8:"), "{shown}");

    // And for a path outside config.
    let (location, message) = template_error(
        render(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: {{artifacts.api.image}}\n",
            &ConfigSet::new(),
        )
        .await,
    );
    assert_eq!(location.line, Some(6));
    assert!(message.contains("artifacts.api.image"), "{message}");
}

#[tokio::test]
async fn artifacts_are_pinned_by_digest_and_carry_commit_and_version() {
    let bundle =
        render(DEPLOYMENT, &config(&[("REPLICAS", "3"), ("DB_URL", "postgres://db:5432/shop")], &[])).await.unwrap();
    let text = bundle.objects()[0].expose_content();
    let build = build().await;
    let digest = &build.artifacts["web"].digest;
    assert!(text.contains(&format!("image: memory.local/shop/web@{digest}\n")), "{text}");
    assert!(text.contains("value: \"postgres://db:5432/shop\""), "{text}");
    assert!(text.contains("stage: prd"), "{text}");

    let fields = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: build\ndata:\n  digest: {{artifacts.web.digest}}\n  commit: {{artifacts.web.commit}}\n  version: {{quote artifacts.web.version}}\n  repository: {{artifacts.web.repository}}\n";
    let bundle = render(fields, &ConfigSet::new()).await.unwrap();
    assert_eq!(
        bundle.objects()[0].expose_content(),
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: build\ndata:\n  digest: {digest}\n  commit: {COMMIT}\n  version: \"1.4.0\"\n  repository: memory.local/shop/web\n"
        )
    );
}

const HELPERS: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: helpers
data:
  level: {{default config.LOG_LEVEL \"info\"}}
  replicas: {{quote (default config.REPLICAS \"1\")}}
  region: {{required config.REGION \"set REGION for every stage\"}}
  token: {{b64enc config.TOKEN}}
  labels: {{toJson config}}
  script: |
{{indent 4 config.SCRIPT}}
";

#[tokio::test]
async fn helpers_default_required_b64enc_quote_tojson_indent() {
    let set =
        config(&[("REGION", "eu-west-1"), ("REPLICAS", ""), ("SCRIPT", "set -e\necho hi")], &[("TOKEN", "t0ken")]);
    let bundle = render(HELPERS, &set).await.unwrap();
    let manifest = &bundle.objects()[0];
    let text = manifest.expose_content();
    assert!(text.contains("  level: info\n"), "default fills a missing key: {text}");
    assert!(text.contains("  replicas: \"1\"\n"), "default fills an empty value, and composes: {text}");
    assert!(text.contains("  region: eu-west-1\n"), "{text}");
    assert!(text.contains("  token: dDBrZW4=\n"), "b64enc of the secret: {text}");
    assert!(text.contains("  script: |\n    set -e\n    echo hi\n"), "{text}");
    assert!(text.contains("\"REGION\":\"eu-west-1\""), "{text}");

    // The masked rendering holds neither the secret nor its base64.
    let masked = manifest.masked();
    assert!(!masked.contains("t0ken") && !masked.contains("dDBrZW4="), "{masked}");
    assert!(masked.contains("\"TOKEN\":\"[redacted]\""), "{masked}");
    assert!(manifest.holds_secrets());
    // A default given for a key that is set changes nothing.
    let set =
        config(&[("REGION", "eu"), ("LOG_LEVEL", "debug"), ("REPLICAS", "5"), ("SCRIPT", "x")], &[("TOKEN", "t")]);
    let text = render(HELPERS, &set).await.unwrap().objects()[0].expose_content().to_owned();
    assert!(text.contains("  level: debug\n") && text.contains("  replicas: \"5\"\n"), "{text}");
}

#[tokio::test]
async fn required_names_the_key_the_stage_the_message_and_the_line() {
    let set = config(&[("SCRIPT", "x")], &[("TOKEN", "t")]);
    let (location, message) = template_error(render(HELPERS, &set).await);
    assert_eq!(location.line, Some(8));
    assert!(
        message.contains("config key REGION is required for stage prd")
            && message.contains("set REGION for every stage"),
        "{message}"
    );
}

#[tokio::test]
async fn quote_escapes_so_the_yaml_stays_valid() {
    let template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: q\ndata:\n  motd: {{quote config.MOTD}}\n";
    let bundle = render(template, &config(&[("MOTD", "say \"hi\": # not a comment\nbye")], &[])).await.unwrap();
    assert!(bundle.objects()[0].expose_content().contains(r#"motd: "say \"hi\": # not a comment\nbye""#));
}

#[tokio::test]
async fn output_is_validated_as_multi_document_yaml() {
    let two = "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: shop\n---\n# only a comment\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: b\n";
    let bundle = render(two, &ConfigSet::new()).await.unwrap();
    let keys: Vec<String> = bundle.objects().iter().map(|m| m.object_key()).collect();
    assert_eq!(keys, ["ConfigMap/shop/a", "Service/b"]);

    for (broken, expected) in [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "has no metadata.name"),
        ("kind: ConfigMap\nmetadata:\n  name: a\n", "has no apiVersion"),
        ("apiVersion: v1\nmetadata:\n  name: a\n", "has no kind"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: [oops\n",
            "document 2: is not valid YAML",
        ),
        ("- just\n- a list\n", "not"),
    ] {
        let (location, message) = template_error(render(broken, &ConfigSet::new()).await);
        assert_eq!(location.file, std::path::PathBuf::from("manifests/app.yaml"));
        assert!(message.contains(expected), "{broken:?}: {message}");
    }

    // A syntax error in the template itself names its line when the templates are loaded.
    let error = Templates::from_sources([("bad.yaml", "a: 1\nb: {{#if x}}\n")]).unwrap_err();
    assert!(matches!(&error, Error::Template { location, .. } if location.line.is_some()), "{error:?}");
}

#[tokio::test]
async fn a_secret_may_not_decide_an_object_identity() {
    let template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{config.TOKEN}}\n";
    let (_, message) = template_error(render(template, &config(&[], &[("TOKEN", "abc")])).await);
    assert!(message.contains("secret value decides") && !message.contains("abc"), "{message}");

    let template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: {{config.TOKEN}}\n";
    let (_, message) = template_error(render(template, &config(&[], &[("TOKEN", "v\n---\nkind: Evil")])).await);
    assert!(message.contains("same single YAML document") && !message.contains("Evil"), "{message}");
}

#[tokio::test]
async fn the_same_inputs_render_byte_identical_bundles() {
    let set = config(&[("REGION", "eu"), ("SCRIPT", "x"), ("B", "2"), ("A", "1")], &[("TOKEN", "t")]);
    let first = render(HELPERS, &set).await.unwrap();
    for _ in 0..3 {
        let again = render(HELPERS, &set).await.unwrap();
        assert_eq!(again.hash(), first.hash());
        assert_eq!(again.objects()[0].expose_content(), first.objects()[0].expose_content());
        assert_eq!(again.masked_text(), first.masked_text());
    }
    // A changed secret changes the hash, though the masked text stays the same.
    let changed = config(&[("REGION", "eu"), ("SCRIPT", "x"), ("B", "2"), ("A", "1")], &[("TOKEN", "u")]);
    let other = render(HELPERS, &changed).await.unwrap();
    assert_ne!(other.hash(), first.hash());
    assert_eq!(other.masked_text(), first.masked_text());
}

/// Found with the `templates` fuzz target's harness (`fuzz/artifacts/templates/timeout-nested-each`): nested
/// `{{#each}}` blocks with empty bodies write nothing, so the output cap never stopped them, and eight keys
/// nested eight deep ran for minutes.
#[tokio::test]
async fn nested_each_blocks_stop_at_the_iteration_budget() {
    let keys: Vec<(String, String)> = (0..8).map(|i| (format!("K{i}"), "v".to_owned())).collect();
    let keys: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let template = format!("{}{}", "{{#each @root.config}}".repeat(8), "{{/each}}".repeat(8));
    let (location, message) = template_error(render(&template, &config(&keys, &[])).await);
    assert_eq!(location.file, std::path::Path::new("manifests/app.yaml"));
    assert!(message.contains("iterate more than 131072 times (the render budget)"), "{message}");
}

#[tokio::test]
async fn each_iterations_count_against_the_budget_one_by_one() {
    let template = "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: c }\ndata:\n{{#each config}}  {{@key}}: {{quote this}}\n{{/each}}";
    let values = config(&[("A", "1"), ("B", "2"), ("C", "3")], &[]);
    let build = build().await;
    let with = |iterations| {
        Templates::from_sources([("app.yaml", template)])
            .unwrap()
            .with_budget(promote_core::RenderBudget::default().with_max_iterations(iterations))
    };
    let bundle = with(3).render("prd", &build, &BTreeMap::new(), &values).unwrap();
    assert!(bundle.objects()[0].masked().contains("C: \"3\""));
    let (_, message) = template_error(with(2).render("prd", &build, &BTreeMap::new(), &values));
    assert!(message.contains("iterate more than 2 times"), "{message}");
}
