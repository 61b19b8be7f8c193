//! The quickstart: a two-service build (web, worker) promoted dev → canary → stg → prd. prd needs a soak in
//! stg and two approvals. Manifests are rendered from one template set per stage's config: dev, stg and prd
//! write them for a GitOps tool; canary deploys them to a Kubernetes cluster and waits for the rollouts. A
//! build whose image cannot be pulled fails in canary within a second and is rolled back automatically. Then
//! prd is rolled back by hand. No services are needed: images live in an OCI image layout on disk, the ledger
//! is a file, and the Kubernetes cluster is simulated by the fake API server of `promote-k8s` (feature
//! `testing`), in process. State lives in `.promote-quickstart/` (or `$PROMOTE_QUICKSTART_DIR`); delete it to
//! start over. Running it again continues the same ledger (the simulated cluster starts empty each time).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use promote_core::ApprovalOptions;
use promote_core::engine::Event;
use promote_core::error::ApprovalRefusal;
use promote_core::ledger::{FinalState, PromotionKind, PromotionState, Step};
use promote_core::manifest::REVISION_ANNOTATION;
use promote_core::{Build, BuildRequest, Error, Identity, Pipeline, PromotionRecord, SpecRegistry};
use promote_k8s::testing::{FakeApiServer, PodOutcome};
use promote_oci::{OciLayoutStore, image_manifest};
use tokio::sync::broadcast;

const SPEC: &str = include_str!("promote.yaml");
const TEMPLATE: &str = include_str!("manifests/app.yaml");
const SOAK: Duration = Duration::from_secs(2);
/// How long the simulated cluster takes to start a pod of a good build (its creation time has whole
/// seconds, so a pod is ready 0.5 to 1.5 s after it is created).
const POD_START: Duration = Duration::from_millis(1500);

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

    // The canary stage's Kubernetes cluster: the fake API server, in process, with controllers that follow
    // real time. Its pods run nothing; each image's fate is scripted (see `script_images`).
    let cluster = FakeApiServer::new();
    let mut registry = SpecRegistry::with_defaults();
    promote_oci::kinds::register(&mut registry);
    promote_k8s::kinds::register_with_client(&mut registry, kube::Client::new(cluster.service(), "default"));
    let pipeline = registry.load_file(&spec_path, None).await?;
    println!("pipeline {} loaded from {}", pipeline.name(), spec_path.display());
    let stages: Vec<String> = pipeline.status().await?.stages.into_iter().map(|s| s.stage).collect();
    let canary = stages.iter().any(|s| s == "canary");
    if canary {
        println!(
            "stage canary deploys to a simulated Kubernetes cluster: promote-k8s's fake API server, in this process"
        );
    } else {
        println!("note: {} predates the canary stage; delete {} to see it", spec_path.display(), state.display());
    }
    println!();
    let mut events = pipeline.subscribe();

    // A previous run's rollback left a hold on automatic promotion into prd; a person lifts it.
    for hold in pipeline.status().await?.stages.into_iter().flat_map(|stage| stage.holds) {
        pipeline.lift_hold(&hold.id, "quickstart").await?;
        println!("lifted {} on {} ({})", hold.id, hold.stage, hold.reason);
    }

    let images = OciLayoutStore::new(state.join("images"));
    let v1 = ci_build(&pipeline, &images, "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678", "1.0.0").await?;
    let v2 = ci_build(&pipeline, &images, "f00dfeed0123456789abcdef0123456789abcdef", "1.1.0").await?;
    let v3 = ci_build(&pipeline, &images, "badc0ffee0ddf00d5eed5eed5eed5eed5eed5eed", "1.2.0").await?;
    script_images(&cluster, &v1, None);
    script_images(&cluster, &v2, None);
    // The registry lost v3's web image: every pod of it backs off pulling.
    script_images(&cluster, &v3, Some("web"));

    for build in [&v1, &v2] {
        println!("\n== promoting {} ({}) through the pipeline", build.label(), build.id);
        for stage in &stages {
            promote(&pipeline, &mut events, build, stage).await?;
        }
    }
    if canary {
        print_cluster(&cluster, "canary").await?;
        println!("\n== {} ({}): its web image cannot be pulled", v3.label(), v3.id);
        promote(&pipeline, &mut events, &v3, "dev").await?;
        match follow(&pipeline, &mut events, &v3, "canary").await {
            Err(Error::DeployFailed { .. }) => {}
            Err(other) => return Err(other),
            Ok(record) => println!("  canary: unexpectedly {}", state_label(&record.state)),
        }
        let current = pipeline.status().await?.stage("canary").and_then(|s| s.current.clone());
        println!(
            "  canary: back on {}, rolled back automatically; {} goes no further",
            current.map_or_else(|| "nothing".to_owned(), |build| build.to_string()),
            v3.label()
        );
        print_cluster(&cluster, "canary").await?;
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

/// Scripts, in the simulated cluster, what happens to pods of `build`'s images: they start after
/// [`POD_START`], except `broken`'s, which cannot be pulled.
fn script_images(cluster: &FakeApiServer, build: &Build, broken: Option<&str>) {
    for (name, artifact) in &build.artifacts {
        let outcome =
            if Some(name.as_str()) == broken { PodOutcome::ImagePullBackOff } else { PodOutcome::Slow(POD_START) };
        cluster.script_pod_outcome(&format!("*@{}", artifact.digest), outcome);
    }
}

/// Promotes, printing what the deployer reports while it waits (rollout progress) and what the engine
/// does on its own (an automatic rollback).
async fn follow(
    pipeline: &Pipeline,
    events: &mut broadcast::Receiver<Event>,
    build: &Build,
    stage: &str,
) -> Result<PromotionRecord, Error> {
    let mut deploying = Instant::now();
    let mut promotion = std::pin::pin!(pipeline.promote(&build.id, stage, "dana"));
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Ok(event) => print_event(stage, &event, &mut deploying),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return promotion.await,
            },
            outcome = &mut promotion => {
                while let Ok(event) = events.try_recv() {
                    print_event(stage, &event, &mut deploying);
                }
                return outcome;
            }
        }
    }
}

/// Prints what a CLI would draw of `event`; `deploying` is when the last deploy step started.
fn print_event(stage: &str, event: &Event, deploying: &mut Instant) {
    match event {
        Event::StepStarted { step: Step::Deploy, .. } => *deploying = Instant::now(),
        Event::Progress { update, .. } => println!("  {stage}: {}: {}", update.subject, update.message),
        Event::Finished { state: FinalState::Failed { reason, .. }, .. } => {
            println!("  {stage}: failed {:.1}s into the rollout: {reason}", deploying.elapsed().as_secs_f64())
        }
        Event::StageStarted { kind: PromotionKind::Rollback { .. }, build, .. } => {
            println!("  {stage}: rolling back automatically to {build}")
        }
        _ => {}
    }
}

/// Promotes, and when gates are pending, does what they wait for: two approvals and the soak.
async fn promote(
    pipeline: &Pipeline,
    events: &mut broadcast::Receiver<Event>,
    build: &Build,
    stage: &str,
) -> Result<(), Error> {
    let reasons = match follow(pipeline, events, build, stage).await {
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
    let record = follow(pipeline, events, build, stage).await?;
    report(stage, &record)
}

/// What the simulated cluster runs in `stage`'s namespace, as `kubectl get deployments` would show it.
async fn print_cluster(cluster: &FakeApiServer, stage: &str) -> Result<(), Error> {
    let namespace = format!("shop-{stage}");
    let api: kube::Api<Deployment> = kube::Api::namespaced(kube::Client::new(cluster.service(), "default"), &namespace);
    let deployments = api.list(&Default::default()).await.map_err(|e| {
        Error::backend(
            "simulated cluster",
            promote_core::ErrorClass::Persistent,
            format!("cannot list deployments: {e}"),
        )
    })?;
    println!("  simulated cluster, namespace {namespace}:");
    for deployment in deployments {
        let name = deployment.metadata.name.unwrap_or_default();
        let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        let wanted = deployment.spec.replicas.unwrap_or(1);
        let image = deployment
            .spec
            .template
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.image)
            .unwrap_or_default();
        let short = image.find("@sha256:").map_or(image.as_str(), |at| &image[..at + 20]);
        println!("    deployment {name:<7} {ready}/{wanted} ready  {short}…");
    }
    Ok(())
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
