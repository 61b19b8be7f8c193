//! `init`: a starter pipeline that runs as it is, on local backends only.

use std::path::{Path, PathBuf};

use promote_core::{Error, Result};
use serde_json::json;

use super::Context;
use crate::args::InitArgs;
use crate::output::Report;

const SPEC: &str = r#"# A starter pipeline: dev → stg → prd, on local backends (nothing to run).
# Images come from OCI image layouts under images/: `promote copy REGISTRY/app:TAG oci:images/app:TAG`, then
# `promote register --commit SHA --artifact app=oci-layout.local/app:TAG`. Or switch `store` to
# `{ kind: oci-registry }` for a registry (credentials from the docker config).
pipeline: app
store: { kind: oci-layout, root: images }
ledger: { kind: file, path: .promote/ledger.jsonl }
lock: { kind: file, dir: .promote/locks }
templates: manifests
# Rendered manifests, one directory per stage, for Argo CD or Flux; or `{ kind: kubernetes, namespace: "app-{stage}" }`.
deployer: { kind: directory, root: deploy }
config:
  - { kind: inline, name: defaults, values: { REPLICAS: "1", LOG_LEVEL: info } }
  - { kind: file, name: stage-config, path: "config/{stage}.yaml" }
stages:
  - name: dev
    auto: true
  - name: stg
  - name: prd
    gates:
      - { kind: soak, name: stg-soak, stage: stg, duration: 1h }
      - { kind: approval, name: release, promoters: [alice, bob], min_approvals: 1 }
"#;

const TEMPLATE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels: { app: app, stage: {{stage}} }
spec:
  replicas: {{config.REPLICAS}}
  selector: { matchLabels: { app: app } }
  template:
    metadata: { labels: { app: app } }
    spec:
      containers:
        - name: app
          image: {{artifacts.app.image}}
          env:
            - { name: DB_HOST, value: {{quote config.DB_HOST}} }
            - { name: LOG_LEVEL, value: {{quote config.LOG_LEVEL}} }
"#;

fn stage_config(stage: &str, replicas: u32) -> String {
    format!(
        "# Config for stage {stage}; mark secrets with `secret_keys:` on the source, or use a secret store.\nDB_HOST: db.{stage}.internal\nREPLICAS: \"{replicas}\"\n"
    )
}

/// Writes the spec, a template and per-stage config; refuses to overwrite without `--force`.
pub(super) fn run(context: &Context, args: InitArgs) -> Result<Report> {
    let spec = if context.spec.is_absolute() { context.spec.clone() } else { args.dir.join(&context.spec) };
    let base = spec.parent().map(Path::to_owned).unwrap_or_else(|| args.dir.clone());
    let files: Vec<(PathBuf, String)> = vec![
        (spec.clone(), SPEC.to_owned()),
        (base.join("manifests/app.yaml"), TEMPLATE.to_owned()),
        (base.join("config/dev.yaml"), stage_config("dev", 1)),
        (base.join("config/stg.yaml"), stage_config("stg", 2)),
        (base.join("config/prd.yaml"), stage_config("prd", 3)),
    ];
    if !args.force
        && let Some((existing, _)) = files.iter().find(|(path, _)| path.exists())
    {
        return Err(Error::AlreadyExists {
            resource: promote_core::Resource::Template,
            name: existing.display().to_string(),
            detail: "init does not overwrite files (pass --force)".into(),
        });
    }
    let mut created = Vec::new();
    for (path, text) in &files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(path, text).map_err(|e| Error::io(path, e))?;
        created.push(path.display().to_string());
    }
    let text = format!(
        "created {}\nnext: `promote -f {} validate`, then put an image in images/ and `promote register`",
        created.join(", "),
        spec.display()
    );
    Ok(Report::done(json!({ "created": created, "spec": spec }), text))
}
