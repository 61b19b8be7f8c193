//! The quickstart: a two-service build (web, worker) promoted dev → stg → prd. prd needs a soak in stg and
//! two approvals. Manifests are rendered from one template set per stage's config, and written for a GitOps
//! tool. Then prd is rolled back. No services are needed: images live in an OCI image layout on disk, the
//! ledger is a file. State lives in `.promote-quickstart/` (or `$PROMOTE_QUICKSTART_DIR`); delete it to start
//! over. Running it again continues the same ledger.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use promote_core::ApprovalOptions;
use promote_core::error::ApprovalRefusal;
use promote_core::ledger::{FinalState, PromotionState};
use promote_core::manifest::REVISION_ANNOTATION;
use promote_core::{Build, BuildRequest, Error, Identity, Pipeline, SpecRegistry};
use promote_oci::{OciLayoutStore, image_manifest};

const SPEC: &str = include_str!("promote.yaml");
const TEMPLATE: &str = include_str!("manifests/app.yaml");
const SOAK: Duration = Duration::from_secs(2);

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
    println!("state kept in {}/ (delete it to start over)", state.display());

    let mut registry = SpecRegistry::with_defaults();
    promote_oci::kinds::register(&mut registry);
    let pipeline = registry.load_file(&spec_path, None).await?;
    println!("pipeline {} loaded from {}\n", pipeline.name(), spec_path.display());

    // A previous run's rollback left a hold on automatic promotion into prd; a person lifts it.
    for hold in pipeline.status().await?.stages.into_iter().flat_map(|stage| stage.holds) {
        pipeline.lift_hold(&hold.id, "quickstart").await?;
        println!("lifted {} on {} ({})", hold.id, hold.stage, hold.reason);
    }

    let images = OciLayoutStore::new(state.join("images"));
    let v1 = ci_build(&pipeline, &images, "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "1.0.0").await?;
    let v2 = ci_build(&pipeline, &images, "f00dfeed0123456789abcdef0123456789abcdef", "1.1.0").await?;

    for build in [&v1, &v2] {
        println!("\n== promoting {} ({}) through the pipeline", build.label(), build.id);
        for stage in ["dev", "stg", "prd"] {
            promote(&pipeline, build, stage).await?;
        }
    }

    print_status(&pipeline).await?;
    print_history(&pipeline).await?;
    print_rendered(&state)?;

    println!("\n== prd misbehaves: rolling back to the build it ran before");
    let record = pipeline.rollback(None, "prd", "oncall").await?;
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

/// What a CI job does: build one image per service (config, a layer, a manifest declaring the commit),
/// write it to the image layout tagged with the commit, then register the build.
async fn ci_build(pipeline: &Pipeline, images: &OciLayoutStore, commit: &str, version: &str) -> Result<Build, Error> {
    let mut request = BuildRequest::new(commit).version(version.parse().expect("valid version")).author("dana");
    for service in ["web", "worker"] {
        let repository = format!("shop/{service}");
        let tag = &commit[..7];
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Labels\":{{\"{REVISION_ANNOTATION}\":\"{commit}\"}}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}"
        );
        let layer = format!("{service} {version} built from {commit}\n");
        let annotations = BTreeMap::from([(REVISION_ANNOTATION.to_owned(), commit.to_owned())]);
        let manifest = image_manifest(config.as_bytes(), &[layer.as_bytes()], &annotations);
        images
            .layout(&repository)
            .await?
            .write_image(Some(tag), config.as_bytes(), &[layer.as_bytes()], &manifest)
            .await?;
        request = request.artifact(service, images.reference(&repository, tag)?);
    }
    let build = pipeline.register(request, "ci").await?;
    println!("registered {} = commit {} version {}", build.id, &build.commit[..7], build.label());
    for (name, artifact) in &build.artifacts {
        println!("    {name:<7} {}", artifact.reference);
    }
    Ok(build)
}

/// Promotes, and when gates are pending, does what they wait for: two approvals and the soak.
async fn promote(pipeline: &Pipeline, build: &Build, stage: &str) -> Result<(), Error> {
    let reasons = match pipeline.promote(&build.id, stage, "dana").await {
        Ok(record) => return report(stage, &record),
        Err(Error::GatePending { reasons, .. }) => reasons,
        Err(other) => return Err(other),
    };
    for reason in &reasons {
        println!("  {stage}: pending: {reason}");
    }
    for approver in ["alice", "bob"] {
        match pipeline
            .approve(&build.id, stage, &Identity::new(approver), ApprovalOptions::new().comment("looks good"))
            .await
        {
            Ok(_) => println!("  {stage}: approved by {approver}"),
            Err(Error::ApprovalRefused { reason: ApprovalRefusal::Duplicate, .. }) => {
                println!("  {stage}: {approver} had already approved")
            }
            Err(other) => return Err(other),
        }
    }
    if reasons.iter().any(|reason| reason.starts_with("stg-soak")) {
        println!("  {stage}: letting the build soak in stg for {SOAK:?}");
        tokio::time::sleep(SOAK).await;
    }
    let record = pipeline.promote(&build.id, stage, "dana").await?;
    report(stage, &record)
}

fn report(stage: &str, record: &promote_core::PromotionRecord) -> Result<(), Error> {
    println!("  {stage}: {} ({})", state_label(&record.state), record.id);
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
    println!("\nhistory (oldest first):");
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
            "  {:<28} {:<10} by {:<7} at {finished}  token {:?}{}{}",
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

/// Shows what the GitOps deployer wrote: one file per object per stage, rendered from one template set.
fn print_rendered(state: &Path) -> Result<(), Error> {
    let deploy = state.join("deploy");
    println!("\nmanifests written for a GitOps tool under {}/:", deploy.display());
    for stage in ["dev", "stg", "prd"] {
        let dir = deploy.join(stage);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect();
        files.sort();
        println!("  {stage}/: {}", files.join(", "));
    }
    let web = deploy.join("prd").join("deployment-web.yaml");
    let text = std::fs::read_to_string(&web).map_err(|e| Error::io(&web, e))?;
    println!("  prd/deployment-web.yaml has:");
    for line in
        text.lines().filter(|line| line.contains("image:") || line.contains("replicas:") || line.contains("DB_HOST"))
    {
        println!("    {}", line.trim());
    }
    Ok(())
}

fn state_label(state: &PromotionState) -> &'static str {
    match state {
        PromotionState::InProgress { .. } => "open",
        PromotionState::Finished(FinalState::Succeeded) => "succeeded",
        PromotionState::Finished(FinalState::Pending { .. }) => "pending",
        PromotionState::Finished(FinalState::Failed { .. }) => "failed",
    }
}
