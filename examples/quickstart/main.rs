//! The quickstart: a two-service build promoted dev → stg → prd with an approval before prd, then prd
//! rolled back. No services needed. State lives in `.promote-quickstart/` (delete it to start over), so
//! running it again continues the same ledger.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use promote_core::error::ApprovalRefusal;
use promote_core::manifest::{OCI_MANIFEST, REVISION_ANNOTATION};
use promote_core::{
    ArtifactRef, ArtifactStore, Build, BuildRequest, Error, Identity, MemoryArtifactStore, Pipeline, SpecRegistry,
};

const SPEC: &str = include_str!("promote.yaml");
const TEMPLATE: &str = include_str!("manifests/app.yaml");

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("quickstart failed: {error}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Error> {
    let state =
        std::env::var_os("PROMOTE_QUICKSTART_DIR").map_or_else(|| PathBuf::from(".promote-quickstart"), PathBuf::from);
    let spec_path = write_defaults(&state)?;
    println!("state kept in {}/ (delete it to start over)\n", state.display());

    // The images CI built: in this quickstart, an in-memory registry the spec's `memory` store serves.
    let images = MemoryArtifactStore::new();
    let mut registry = SpecRegistry::with_defaults();
    let shared = images.clone();
    registry.register_store("memory", move |spec| {
        let store = shared.clone();
        async move {
            spec.parse::<std::collections::BTreeMap<String, String>>()?;
            Ok(Arc::new(store) as Arc<dyn ArtifactStore>)
        }
    });
    let pipeline = registry.load_file(&spec_path, None).await?;
    println!("pipeline {} loaded from {}", pipeline.name(), spec_path.display());

    // A previous run's rollback left a hold on automatic promotion into prd; a person lifts it.
    for hold in pipeline.status().await?.stages.into_iter().flat_map(|stage| stage.holds) {
        pipeline.lift_hold(&hold.id, "quickstart").await?;
        println!("lifted {} on {} ({})", hold.id, hold.stage, hold.reason);
    }

    let v1 = ci_build(&pipeline, &images, "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "1.0.0").await?;
    let v2 = ci_build(&pipeline, &images, "f00dfeed0123456789abcdef0123456789abcdef", "1.1.0").await?;

    for build in [&v1, &v2] {
        println!("\n== promoting {} ({}) through the pipeline", build.label(), build.id);
        for stage in ["dev", "stg", "prd"] {
            promote_with_approval(&pipeline, build, stage).await?;
        }
    }

    print_status(&pipeline).await?;
    print_history(&pipeline).await?;

    println!("\n== prd misbehaves: rolling back to the build it ran before");
    let record = pipeline.rollback("prd", None, "oncall").await?;
    println!("prd is back on {} (promotion {}); automatic promotion into prd is now held", record.build, record.id);
    print_status(&pipeline).await?;
    Ok(())
}

/// Writes the embedded spec and template into the state directory unless they are there already.
fn write_defaults(state: &Path) -> Result<PathBuf, Error> {
    let manifests = state.join("manifests");
    std::fs::create_dir_all(&manifests).map_err(|e| Error::io(&manifests, e))?;
    for (path, text) in [(state.join("promote.yaml"), SPEC), (manifests.join("app.yaml"), TEMPLATE)] {
        if !path.exists() {
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(state.join("promote.yaml"))
}

/// What a CI job does: push one image per service tagged with the commit, then register the build.
async fn ci_build(
    pipeline: &Pipeline,
    images: &MemoryArtifactStore,
    commit: &str,
    version: &str,
) -> Result<Build, Error> {
    let mut request = BuildRequest::new(commit).version(version.parse().expect("valid version")).author("dana");
    for service in ["web", "worker"] {
        let reference: ArtifactRef = format!("memory.local/shop/{service}:{}", &commit[..7]).parse()?;
        let manifest = format!(
            "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"sha256:{}\", \"size\": 2}},\n  \"layers\": [],\n  \"annotations\": {{\"{REVISION_ANNOTATION}\": \"{commit}\", \"org.opencontainers.image.title\": \"{service}\"}}\n}}\n",
            "4".repeat(64)
        );
        images.push(reference.clone(), OCI_MANIFEST, manifest.into_bytes())?;
        request = request.artifact(service, reference);
    }
    let build = pipeline.register(request, "ci").await?;
    println!("registered {} = commit {} version {}", build.id, &build.commit[..7], build.label());
    for (name, artifact) in &build.artifacts {
        println!("    {name:<7} {}", artifact.reference);
    }
    Ok(build)
}

async fn promote_with_approval(pipeline: &Pipeline, build: &Build, stage: &str) -> Result<(), Error> {
    match pipeline.promote(&build.id, stage, "dana").await {
        Ok(record) => println!("  {stage}: {:?} ({})", record.state, record.id),
        Err(Error::GatePending { reasons, .. }) => {
            println!("  {stage}: pending: {}", reasons.join("; "));
            let approver = Identity::new(if build.label() == "1.0.0" { "alice" } else { "bob" });
            match pipeline.approve(&build.id, stage, &approver, Some("looks good"), None).await {
                Ok(_) => println!("  {stage}: approved by {}", approver.name),
                Err(Error::ApprovalRefused { reason: ApprovalRefusal::Duplicate, .. }) => {
                    println!("  {stage}: {} had already approved", approver.name)
                }
                Err(other) => return Err(other),
            }
            let record = pipeline.promote(&build.id, stage, "dana").await?;
            println!("  {stage}: {:?} ({})", record.state, record.id);
        }
        Err(other) => return Err(other),
    }
    Ok(())
}

async fn print_status(pipeline: &Pipeline) -> Result<(), Error> {
    let status = pipeline.status().await?;
    println!("\n{:<6} {:<20} {:<8} {:<40} holds", "stage", "current", "version", "eligible to enter");
    for stage in &status.stages {
        let eligible: Vec<String> = stage.eligible.iter().map(ToString::to_string).collect();
        let holds: Vec<String> = stage.holds.iter().map(|h| format!("{} ({:?})", h.reason, h.scope)).collect();
        println!(
            "{:<6} {:<20} {:<8} {:<40} {}",
            stage.stage,
            stage.current.as_ref().map_or("-".into(), ToString::to_string),
            stage.current_label.as_deref().unwrap_or("-"),
            if eligible.is_empty() { "-".into() } else { eligible.join(", ") },
            if holds.is_empty() { "-".into() } else { holds.join("; ") }
        );
    }
    Ok(())
}

async fn print_history(pipeline: &Pipeline) -> Result<(), Error> {
    println!("\nhistory (newest last):");
    for record in pipeline.history(None).await? {
        let finished = record.finished_at.map_or("-".into(), |t| t.format("%H:%M:%S").to_string());
        let approvers: Vec<String> = record
            .gates
            .iter()
            .filter(|g| g.kind == "approval")
            .flat_map(|g| g.evidence.get("approvers").and_then(|a| a.as_array()).cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        println!(
            "  {:<28} {:<10} by {:<7} at {finished}  tokens {:?}{}{}",
            record.id.to_string(),
            state_label(&record.state),
            record.actor,
            record.fencing_tokens,
            record.bundle_hash.as_deref().map_or(String::new(), |h| format!("  bundle {}", &h[..19])),
            if approvers.is_empty() { String::new() } else { format!("  approved by {}", approvers.join(", ")) },
        );
    }
    Ok(())
}

fn state_label(state: &promote_core::ledger::PromotionState) -> String {
    use promote_core::ledger::{FinalState, PromotionState};
    match state {
        PromotionState::InProgress { .. } => "open".into(),
        PromotionState::Finished(FinalState::Succeeded) => "succeeded".into(),
        PromotionState::Finished(FinalState::Pending { .. }) => "pending".into(),
        PromotionState::Finished(FinalState::Failed { .. }) => "failed".into(),
    }
}
