//! Specs from YAML: a valid one loads; every mistake names the file, the line and the key.

use std::path::Path;

use promote_core::{Error, SpecRegistry};

async fn load(text: &str) -> promote_core::Result<promote_core::Pipeline> {
    let dir = tempfile::tempdir().unwrap();
    SpecRegistry::with_defaults().load_str(text, Path::new("promote.yaml"), dir.path(), None).await
}

fn spec_error(result: promote_core::Result<promote_core::Pipeline>) -> (Option<usize>, String, String) {
    match result {
        Err(Error::Spec { location, key, message }) => {
            assert_eq!(location.file, Path::new("promote.yaml"));
            (location.line, key, message)
        }
        Err(other) => panic!("expected a spec error, got {other}"),
        Ok(_) => panic!("expected a spec error, the spec loaded"),
    }
}

const VALID: &str = "pipeline: shop
store: { kind: memory }
ledger: { kind: memory }
stages:
  - name: dev
    auto: true
  - name: stg
    lock_wait: 30s
    placement: { repository: \"promoted/{name}\", tag: \"{stage}-{version}\" }
  - name: prd
    upstream: { all_of: [dev, stg] }
    on_failure: rollback
    gates:
      - { kind: approval, promoters: [alice], min_approvals: 1, expires_after: 24h }
";

#[tokio::test]
async fn a_valid_spec_loads() {
    let pipeline = load(VALID).await.unwrap();
    let names: Vec<&str> = pipeline.stages().iter().map(|s| s.name()).collect();
    assert_eq!(names, ["dev", "stg", "prd"]);
    assert!(pipeline.stage("dev").unwrap().is_auto());
    assert_eq!(pipeline.stage("prd").unwrap().entry_gates().len(), 1);
}

#[tokio::test]
async fn an_unknown_key_names_its_line_and_key() {
    let (line, key, message) =
        spec_error(load(&VALID.replace("    auto: true", "    auto: true\n    atuo: false")).await);
    assert_eq!(line, Some(7));
    assert_eq!(key, "stages[0].atuo");
    assert_eq!(message, "unknown key `atuo` (did you mean `auto`?)");
    let (_, key, message) = spec_error(load(&VALID.replace("    lock_wait: 30s", "    lock_wiat: 30s")).await);
    assert_eq!(
        (key.as_str(), message.as_str()),
        ("stages[1].lock_wiat", "unknown key `lock_wiat` (did you mean `lock_wait`?)")
    );
    let (_, _, message) = spec_error(load(&VALID.replace("    auto: true", "    auto: true\n    zzzzzz: 1")).await);
    assert!(message.starts_with("unknown key `zzzzzz` (known: name, auto, upstream"), "{message}");
    let (line, _, message) = spec_error(load(&format!("{VALID}extra: 1\n")).await);
    assert!(message.contains("extra"), "{message}");
    assert!(line.is_some());
}

#[tokio::test]
async fn an_unknown_kind_lists_the_known_ones() {
    let (line, key, message) = spec_error(load(&VALID.replace("kind: approval", "kind: aproval")).await);
    assert_eq!(line, Some(14));
    assert_eq!(key, "stages[2].gates[0].kind");
    assert!(message.contains("aproval") && message.contains("approval"), "{message}");
}

#[tokio::test]
async fn a_wrong_type_names_the_key() {
    let (line, key, message) = spec_error(load(&VALID.replace("min_approvals: 1", "min_approvals: two")).await);
    assert_eq!(line, Some(14));
    assert!(key.starts_with("stages[2].gates[0]"), "{key}");
    assert!(message.contains("two") || message.contains("invalid"), "{message}");
    let (_, key, message) = spec_error(load(&VALID.replace("lock_wait: 30s", "lock_wait: soon")).await);
    assert_eq!(key, "stages[1].lock_wait");
    assert!(message.contains("soon"), "{message}");
}

#[tokio::test]
async fn bad_settings_for_a_backend_are_errors_at_load() {
    let (_, key, message) =
        spec_error(load(&VALID.replace("ledger: { kind: memory }", "ledger: { kind: file }")).await);
    assert_eq!(key, "ledger");
    assert!(message.contains("path"), "{message}");
    let (_, _, message) = spec_error(load(&VALID.replace("promoters: [alice]", "promoters: []")).await);
    assert!(message.contains("promoters or groups"), "{message}");
    let (_, _, message) = spec_error(load(&VALID.replace("all_of: [dev, stg]", "all_of: [dev, qa]")).await);
    assert!(message.contains("qa"), "{message}");
    let (_, key, _) = spec_error(load("pipeline: shop\nstore: { kind: memory }\nledger: { kind: memory }\n").await);
    assert_eq!(key, "stages");
}

/// Template errors name the file as the spec wrote it, relative to the spec's directory, the way a compiler
/// names its sources: not the absolute path the loader resolved.
#[tokio::test]
async fn template_errors_name_the_path_as_written_in_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(
        dir.path().join("manifests/app.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  x: {{config.MISSING}}\n",
    )
    .unwrap();
    let spec = format!("{VALID}templates: manifests\n");
    std::fs::write(dir.path().join("promote.yaml"), &spec).unwrap();
    let images = promote_core::MemoryArtifactStore::new();
    let image: promote_core::ArtifactRef = "memory.local/web:3f2c1a9".parse().unwrap();
    images.push(image.clone(), promote_core::manifest::OCI_MANIFEST, br#"{"schemaVersion":2}"#.to_vec()).unwrap();
    let registry = SpecRegistry::with_defaults().with_memory_store(images);
    let pipeline = registry.load_file(dir.path().join("promote.yaml"), None).await.unwrap();
    let build =
        pipeline.register(promote_core::BuildRequest::new("3f2c1a9").artifact("web", image), "ci").await.unwrap();
    let error = pipeline.promote(&build.id, "dev", "ci").await.unwrap_err();
    assert!(error.to_string().starts_with("manifests/app.yaml:6:"), "{error}");
}
