//! `validate`: load the spec (every backend built, every key checked), then render every stage's
//! templates with placeholder artifacts, through `plan` on a copy of the pipeline whose store, ledger, lock
//! and deployers are in memory. Config sources are the real ones: a missing key is found here too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use promote_core::error::{ErrorContext, Resource};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{
    Artifact, ArtifactRef, ArtifactStore, BuildRequest, Deployer, EnvironmentLock, Error, Ledger, MemoryDeployer,
    MemoryLedger, MemoryLock, Result, StoreCapabilities,
};
use serde_json::json;

use super::Context;
use crate::output::{Report, cell, table};

/// The registry placeholder images live in; nothing resolves there.
const PLACEHOLDER_REGISTRY: &str = "placeholder.invalid";
const PLACEHOLDER_TAG: &str = "validate";
const PLACEHOLDER_COMMIT: &str = "0000000000000000000000000000000000000000";

/// Checks the spec and renders each stage; the first error names its file and line (and the stage).
pub(super) async fn run(context: &Context) -> Result<Report> {
    let actor = context.actor().map(|a| a.name).unwrap_or_else(|_| "validate".into());
    let pipeline = context.pipeline().await?;
    let names = artifact_names(&context.spec)?;
    let rendering = placeholder_pipeline(&context.spec).await?;
    let mut request = BuildRequest::new(PLACEHOLDER_COMMIT);
    for name in &names {
        let repository = name.to_ascii_lowercase().replace('_', "-");
        request = request.artifact(name, ArtifactRef::by_tag(PLACEHOLDER_REGISTRY, &repository, PLACEHOLDER_TAG)?);
    }
    let build = rendering.register(request, &actor).await?;
    let mut stages = Vec::new();
    let mut rows = Vec::new();
    for stage in pipeline.stages() {
        let plan = rendering
            .plan(&build.id, stage.name(), &actor)
            .await
            .map_err(|error| error.in_context(ErrorContext::stage(stage.name()).with_step("render")))?;
        let secrets = plan.config.values().filter(|p| p.secret).count();
        rows.push(vec![
            cell(stage.name()),
            cell(plan.changes.len().to_string()),
            cell(format!("{} ({secrets} secret)", plan.config.len())),
            cell(plan.bundle_hash.clone().unwrap_or_else(|| "no templates".into())),
        ]);
        stages.push(json!({
            "stage": stage.name(),
            "objects": plan.changes.iter().map(|c| &c.object).collect::<Vec<_>>(),
            "config_keys": plan.config.keys().collect::<Vec<_>>(),
            "bundle_hash": plan.bundle_hash,
        }));
    }
    let text = format!(
        "{} is valid: pipeline {}, {} stages, artifacts {}\n{}",
        context.spec.display(),
        pipeline.name(),
        stages.len(),
        names.iter().cloned().collect::<Vec<_>>().join(", "),
        table(&context.output, &["STAGE", "OBJECTS", "CONFIG KEYS", "BUNDLE"], &rows)
    );
    let document = json!({
        "ok": true,
        "spec": context.spec,
        "pipeline": pipeline.name(),
        "artifacts": names,
        "stages": stages,
    });
    Ok(Report::done(document, text))
}

/// The spec's pipeline with every store, ledger, lock and deployer kind replaced by one in memory.
async fn placeholder_pipeline(spec: &Path) -> Result<promote_core::Pipeline> {
    let mut registry = crate::pipeline::registry();
    for kind in ["memory", "oci-registry", "oci-layout", "ecr"] {
        registry.register_store(kind, |_| async { Ok(Arc::new(PlaceholderStore) as Arc<dyn ArtifactStore>) });
    }
    for kind in ["memory", "file"] {
        registry.register_ledger(kind, |_| async { Ok(Arc::new(MemoryLedger::new()) as Arc<dyn Ledger>) });
        registry.register_lock(kind, |_| async { Ok(Arc::new(MemoryLock::new()) as Arc<dyn EnvironmentLock>) });
    }
    for kind in ["memory", "directory", "git", "kubernetes"] {
        registry.register_deployer(kind, |_| async { Ok(Arc::new(MemoryDeployer::new()) as Arc<dyn Deployer>) });
    }
    registry.load_file(spec, None).await
}

/// A store in which every placeholder reference resolves (to a digest of its name) and nothing else does.
#[derive(Debug)]
struct PlaceholderStore;

#[async_trait]
impl ArtifactStore for PlaceholderStore {
    fn capabilities(&self) -> StoreCapabilities {
        StoreCapabilities::default()
    }

    async fn resolve(&self, reference: &ArtifactRef) -> Result<Artifact> {
        if reference.registry() != PLACEHOLDER_REGISTRY || reference.tag() != Some(PLACEHOLDER_TAG) {
            return Err(Error::not_found(Resource::Artifact, reference.to_string()));
        }
        let digest = promote_core::Digest::sha256_of(reference.repository().as_bytes());
        Ok(Artifact::new(reference, digest, OCI_MANIFEST, 2))
    }

    async fn promote(&self, _source: &ArtifactRef, _target: &ArtifactRef) -> Result<Artifact> {
        Err(Error::NotSupported { backend: "validate", operation: "promoting a placeholder".into() })
    }

    async fn exists(&self, _reference: &ArtifactRef) -> Result<bool> {
        Ok(false)
    }
}

/// The artifact names the templates use (`artifacts.NAME`), found in the template directories the spec
/// names (top-level and per stage); `app` when none is found.
fn artifact_names(spec: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(spec).map_err(|e| Error::io(spec, e))?;
    let base = spec.parent().map(Path::to_owned).unwrap_or_default();
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(root) = marked_yaml::parse_yaml(0, &text)
        && let Some(map) = root.as_mapping()
    {
        if let Some(dir) = map.get_scalar("templates") {
            dirs.push(base.join(dir.as_str()));
        }
        if let Some(stages) = map.get_sequence("stages") {
            for stage in stages.iter().filter_map(|s| s.as_mapping()) {
                if let Some(dir) = stage.get_scalar("templates") {
                    dirs.push(base.join(dir.as_str()));
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    for dir in dirs {
        collect_names(&dir, &mut names, 0);
    }
    if names.is_empty() {
        names.insert("app".to_owned());
    }
    Ok(names)
}

fn collect_names(path: &Path, names: &mut BTreeSet<String>, depth: usize) {
    if depth > 8 {
        return;
    }
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else { return };
        for entry in entries.flatten() {
            collect_names(&entry.path(), names, depth + 1);
        }
    } else if let Ok(text) = std::fs::read_to_string(path) {
        names.extend(names_in(&text));
    }
}

/// Every `NAME` in `artifacts.NAME` in a template's text.
fn names_in(text: &str) -> Vec<String> {
    text.match_indices("artifacts.")
        .filter(|(at, _)| !text[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.'))
        .filter_map(|(at, needle)| {
            let rest = &text[at + needle.len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-')).unwrap_or(rest.len());
            (end > 0).then(|| rest[..end].to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_artifact_references() {
        let text = "image: {{artifacts.web.image}}\n sidecar: {{artifacts.log_shipper.digest}} {{my.artifacts.x}}";
        assert_eq!(names_in(text), ["web", "log_shipper"]);
    }
}
