//! The git deployer against real git: bare repositories on disk and `git daemon` on loopback (real pack
//! negotiation both ways). Every git here runs under a configuration of the test's own (`HOME`,
//! `GIT_CONFIG_NOSYSTEM`, a test user), never the developer's.

mod git_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use git_support::{GitWorld, available, free_port};
use promote_core::deploy::{ApplyMode, ChangeAction, DeployContext, GitDeployer, INDEX_FILE, RenderedObject};
use promote_core::gate::{GateCapabilities, GateContext, GateReport};
use promote_core::ledger::{FinalState, PromotionId, Step, StepDetail, StepOutcome, Verdict};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::progress::Progress;
use promote_core::{
    ApprovalPolicy, Build, BuildRequest, Bundle, Deployer, Error, ErrorClass, Gate, MemoryArtifactStore, MemoryLedger,
    Pipeline, PromotionRecord, PromotionState, Result, SpecRegistry, Stage, Templates, conformance,
};

const TEMPLATE: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: web
data:
  stage: {{stage}}
  image: {{artifacts.web.image}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  template:
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
";

fn object(kind: &str, name: &str, namespace: Option<&str>, body: &str, secret: Option<&str>) -> RenderedObject {
    let ns = namespace.map_or(String::new(), |ns| format!("  namespace: {ns}\n"));
    let content = format!("apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}\n{ns}{body}");
    let masked = match secret {
        Some(value) => content.replace(value, "[redacted]"),
        None => content.clone(),
    };
    RenderedObject::new(
        "v1".into(),
        kind.into(),
        name.into(),
        namespace.map(Into::into),
        "app.yaml".into(),
        content,
        masked,
    )
}

async fn push_and_register(pipeline: &Pipeline, store: &MemoryArtifactStore, commit: &str) -> Build {
    let reference = format!("memory.local/shop/web:{}", &commit[..7]);
    let body =
        format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"c\":\"{commit}\"}}}}");
    store.push(reference.parse().unwrap(), OCI_MANIFEST, body.into_bytes()).unwrap();
    pipeline.register(BuildRequest::new(commit).artifact("web", reference.parse().unwrap()), "ci").await.unwrap()
}

fn commit_id(n: u32) -> String {
    format!("{n:07x}{}", "c".repeat(33))
}

/// A pipeline whose stages all deploy through `deployer`; `verify` (if any) on every stage.
fn pipeline(
    stages: &[&str],
    deployer: &GitDeployer,
    store: &MemoryArtifactStore,
    verify: Option<Arc<FlakyGate>>,
) -> Pipeline {
    let mut builder = Pipeline::builder("shop").store(Arc::new(store.clone())).ledger(Arc::new(MemoryLedger::new()));
    for name in stages {
        let mut stage = Stage::new(*name)
            .templates(Templates::from_sources([("app.yaml", TEMPLATE)]).unwrap())
            .deployer(Arc::new(deployer.clone()));
        if let Some(gate) = &verify {
            stage = stage.verify_gate(gate.clone());
        }
        builder = builder.stage(stage);
    }
    builder.build().unwrap()
}

/// What the deploy step recorded in the ledger: the summary `wait_healthy` returned, if the step finished so.
fn deployed_summary(record: &PromotionRecord) -> Option<String> {
    record.steps.iter().filter(|s| s.step == Step::Deploy).find_map(|s| match &s.finished {
        Some((_, StepOutcome::Ok(StepDetail::Deployed { summary }))) => Some(summary.clone()),
        _ => None,
    })
}

/// The 40-hex commit id a summary names.
fn commit_in(summary: &str) -> String {
    summary
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|word| word.len() == 40)
        .unwrap_or_else(|| panic!("no commit id in {summary:?}"))
        .to_owned()
}

#[tokio::test]
async fn passes_the_deployer_conformance_suite() {
    if !available("passes_the_deployer_conformance_suite") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    let deployer = world.deployer(bare.to_str().unwrap(), "{stage}", "conformance").build().unwrap();
    conformance::deployer(Arc::new(deployer.clone()), "conformance").await;
    assert_eq!(world.log(&bare, "conformance").len(), 2, "one commit per apply that changed something");
}

#[tokio::test]
async fn promotes_dev_stg_prd_over_git_daemon_one_commit_per_promotion_with_trailers() {
    if !available("promotes_dev_stg_prd_over_git_daemon_one_commit_per_promotion_with_trailers") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("shop/deploy.git");
    let daemon = world.daemon();
    let deployer = world.deployer(&daemon.url("shop/deploy.git"), "{stage}", "ci").build().unwrap();
    let store = MemoryArtifactStore::new();
    let pipeline = pipeline(&["dev", "stg", "prd"], &deployer, &store, None);
    let build = push_and_register(&pipeline, &store, &commit_id(1)).await;
    let digest = build.artifacts["web"].digest.to_string();

    for stage in ["dev", "stg", "prd"] {
        let record = pipeline.promote(&build.id, stage, "Dana Ops <dana@example.com>").await.unwrap();
        assert!(record.state.succeeded(), "{stage}: {:?}", record.state);
        let log = world.log(&bare, stage);
        assert_eq!(log.len(), 1, "{stage}: one commit per promotion");
        let tip = &log[0];
        assert_eq!(world.files(&bare, &tip.id, ""), [INDEX_FILE, "configmap-web.yaml", "shop/deployment-web.yaml"]);
        let config_map = world.show(&bare, &tip.id, "configmap-web.yaml");
        assert!(config_map.contains(&format!("stage: {stage}\n")), "{config_map}");
        assert!(config_map.contains(&format!("image: memory.local/shop/web@{digest}")), "{config_map}");

        assert_eq!(tip.trailer("Promote-Build"), [build.id.to_string()]);
        assert_eq!(tip.trailer("Promote-Promotion"), [record.id.to_string()]);
        assert_eq!(tip.trailer("Promote-Bundle"), [record.bundle_hash.clone().unwrap()]);
        assert_eq!(tip.trailer("Promote-Stage"), [stage]);
        assert!(tip.message.starts_with(&format!("promote {stage}: build {}", build.id)), "{}", tip.message);
        assert!(tip.message.contains(&format!("web: {digest}")), "every artifact by digest: {}", tip.message);
        assert!(tip.message.contains(&format!("Commit:  {}", commit_id(1))), "{}", tip.message);
        assert!(tip.message.contains("create ConfigMap/web") && tip.message.contains("create Deployment/shop/web"));
        assert_eq!(
            (tip.author.as_str(), tip.email.as_str()),
            ("Dana Ops", "dana@example.com"),
            "the actor is the author"
        );

        let summary = deployed_summary(&record).expect("the deploy step records its evidence");
        assert_eq!(commit_in(&summary), tip.id, "the ledger holds the pushed commit: {summary}");
        assert!(summary.starts_with("pushed commit") && summary.contains(&daemon.url("shop/deploy.git")), "{summary}");
    }
    let current = deployer.current("stg").await.unwrap().unwrap();
    let record = pipeline.history(Some("stg")).await.unwrap().pop().unwrap();
    assert_eq!(Some(current.hash().to_owned()), record.bundle_hash, "current() reads the branch back");
    assert_eq!(deployer.stats().commits_pushed, 3);
    assert_eq!(deployer.stats().push_retries, 0);
}

/// A verification gate that errors (retryably) on its first evaluation and passes afterwards.
#[derive(Debug, Default)]
struct FlakyGate {
    calls: AtomicUsize,
}

#[async_trait]
impl Gate for FlakyGate {
    fn name(&self) -> &str {
        "smoke"
    }
    fn kind(&self) -> &str {
        "test"
    }
    fn capabilities(&self) -> GateCapabilities {
        GateCapabilities::pure()
    }
    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }
    async fn evaluate(&self, _context: &GateContext<'_>) -> Result<GateReport> {
        match self.calls.fetch_add(1, Ordering::SeqCst) {
            0 => Err(Error::backend("smoke", ErrorClass::Temporary, "the smoke test could not reach the service")),
            _ => Ok(GateReport::new(Verdict::Pass)),
        }
    }
}

#[tokio::test]
async fn a_re_run_of_a_promotion_whose_commit_is_on_the_branch_pushes_nothing() {
    if !available("a_re_run_of_a_promotion_whose_commit_is_on_the_branch_pushes_nothing") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    let deployer = world.deployer(bare.to_str().unwrap(), "main", "ci").path("{stage}").build().unwrap();
    let store = MemoryArtifactStore::new();
    let gate = Arc::new(FlakyGate::default());
    let pipeline = pipeline(&["dev"], &deployer, &store, Some(gate));
    let build = push_and_register(&pipeline, &store, &commit_id(2)).await;

    // The deploy lands, then verification errors: the promotion stays open, its commit is on the branch.
    let error = pipeline.promote(&build.id, "dev", "ci").await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    let pushed = world.log(&bare, "main");
    assert_eq!(pushed.len(), 1);
    // The re-run resumes the same promotion: the trailers say its commit is there, so nothing is pushed.
    let record = pipeline.promote(&build.id, "dev", "ci").await.unwrap();
    assert!(record.state.succeeded());
    let log = world.log(&bare, "main");
    assert_eq!(log.len(), 1, "no second commit");
    assert_eq!(log[0].trailer("Promote-Promotion"), [record.id.to_string()]);
    let summary = deployed_summary(&record).unwrap();
    assert_eq!(commit_in(&summary), pushed[0].id);
    assert!(summary.contains("already on the branch"), "{summary}");
    assert_eq!(deployer.stats().commits_pushed, 1);

    // Recognised by the trailers even when another stage's commit is on top of it (one branch, a path each).
    let other = Bundle::new("qa", vec![object("ConfigMap", "qa", None, "data: {}\n", None)]);
    deployer.apply(&other, ApplyMode::Apply).await.unwrap();
    let rendered = deployer.current("dev").await.unwrap().unwrap();
    let context = DeployContext::new(record.id.clone(), &build, "ci");
    let again = Bundle::new("dev", rendered.objects().to_vec()).with_context(context);
    assert_eq!(again.hash(), record.bundle_hash.as_deref().unwrap());
    let changes = deployer.apply(&again, ApplyMode::Apply).await.unwrap();
    assert!(changes.iter().all(|c| c.action == ChangeAction::Unchanged), "{changes:?}");
    assert_eq!(world.log(&bare, "main").len(), 2, "found below the tip: nothing pushed");
    let summary = deployer.wait_healthy(&again, Duration::from_secs(5), &Progress::none()).await.unwrap();
    assert_eq!(commit_in(&summary), pushed[0].id, "{summary}");

    // The same objects promoted by another promotion are another commit: each promotion is evidence.
    let next = PromotionId::new("dev", &build.id, 2);
    let another =
        Bundle::new("dev", rendered.objects().to_vec()).with_context(DeployContext::new(next.clone(), &build, "ci"));
    let changes = deployer.apply(&another, ApplyMode::Apply).await.unwrap();
    assert!(changes.iter().all(|c| c.action == ChangeAction::Unchanged), "{changes:?}");
    let log = world.log(&bare, "main");
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].trailer("Promote-Promotion"), [next.to_string()]);
    assert_eq!(world.tree(&bare, &log[0].id, ""), world.tree(&bare, &log[1].id, ""), "an empty commit");
}

#[tokio::test]
async fn rollback_is_a_new_commit_restoring_the_earlier_tree_and_naming_what_it_reverts() {
    if !available("rollback_is_a_new_commit_restoring_the_earlier_tree_and_naming_what_it_reverts") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    let daemon = world.daemon();
    let deployer = world.deployer(&daemon.url("deploy.git"), "{stage}", "ci").build().unwrap();
    let store = MemoryArtifactStore::new();
    let pipeline = pipeline(&["dev"], &deployer, &store, None);
    let v1 = push_and_register(&pipeline, &store, &commit_id(3)).await;
    let v2 = push_and_register(&pipeline, &store, &commit_id(4)).await;
    let first = pipeline.promote(&v1.id, "dev", "ci").await.unwrap();
    let second = pipeline.promote(&v2.id, "dev", "ci").await.unwrap();
    let before = world.log(&bare, "dev");
    assert_eq!(before.len(), 2);

    let rollback = pipeline.rollback(Some(&v1.id), "dev", "oncall").await.unwrap();
    assert!(rollback.state.succeeded());
    let log = world.log(&bare, "dev");
    assert_eq!(log.len(), 3, "a new commit, never a rewrite");
    assert_eq!(log[1].id, before[0].id, "history is kept: the rollback's parent is the reverted commit");
    assert_eq!(log[2].id, before[1].id);
    assert_eq!(world.tree(&bare, &log[0].id, ""), world.tree(&bare, &before[1].id, ""), "the earlier tree, exactly");
    let tip = &log[0];
    assert_eq!(tip.trailer("Promote-Reverts"), [second.id.to_string()]);
    assert_eq!(tip.trailer("Promote-Build"), [v1.id.to_string()]);
    assert_eq!(tip.trailer("Promote-Promotion"), [rollback.id.to_string()]);
    assert!(tip.message.starts_with(&format!("rollback dev to build {}", v1.id)), "{}", tip.message);
    assert!(tip.message.contains(&format!("reverts promotion {} (build {})", second.id, v2.id)), "{}", tip.message);
    assert_eq!(tip.author, "oncall");
    assert_ne!(first.id, rollback.id);
    assert_eq!(commit_in(&deployed_summary(&rollback).unwrap()), tip.id);
}

#[tokio::test]
async fn objects_that_left_the_bundle_are_pruned_and_files_of_others_stay() {
    if !available("objects_that_left_the_bundle_are_pruned_and_files_of_others_stay") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    let deployer = world.deployer(bare.to_str().unwrap(), "main", "ci").path("clusters/{stage}").build().unwrap();
    let first = Bundle::new(
        "prd",
        vec![
            object("ConfigMap", "a", None, "data: {}\n", None),
            object("ConfigMap", "b", Some("shop"), "data: {}\n", None),
            object("Service", "c", Some("shop"), "spec: {}\n", None),
        ],
    );
    deployer.apply(&first, ApplyMode::Apply).await.unwrap();
    // Someone commits a file of their own into the stage's directory.
    let hand = world.path().join("hand");
    world.git(world.path(), &["clone", "--quiet", bare.to_str().unwrap(), hand.to_str().unwrap()]);
    std::fs::write(hand.join("clusters/prd/kustomization.yaml"), "resources: []\n").unwrap();
    world.git(&hand, &["add", "-A"]);
    world.git(&hand, &["commit", "--quiet", "-m", "kustomization by hand"]);
    world.git(&hand, &["push", "--quiet", "origin", "HEAD:main"]);

    let second = Bundle::new("prd", vec![object("ConfigMap", "a", None, "data: {x: \"1\"}\n", None)]);
    let mut changes: Vec<_> =
        deployer.apply(&second, ApplyMode::Apply).await.unwrap().into_iter().map(|c| (c.object, c.action)).collect();
    changes.sort();
    assert_eq!(
        changes,
        [
            ("ConfigMap/a".to_owned(), ChangeAction::Update),
            ("ConfigMap/shop/b".to_owned(), ChangeAction::Delete),
            ("Service/shop/c".to_owned(), ChangeAction::Delete)
        ]
    );
    assert_eq!(world.files(&bare, "main", "clusters/prd"), [INDEX_FILE, "configmap-a.yaml", "kustomization.yaml"]);
    let log = world.log(&bare, "main");
    assert_eq!(log.len(), 3);
    assert!(log[0].message.contains("delete ConfigMap/shop/b") && log[0].message.contains("delete Service/shop/c"));
}

#[tokio::test]
async fn a_foreign_commit_pushed_between_fetch_and_push_survives_the_retry() {
    if !available("a_foreign_commit_pushed_between_fetch_and_push_survives_the_retry") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    let daemon = world.daemon();
    let url = daemon.url("deploy.git");
    let deployer = world.deployer(&url, "main", "ci").path("{stage}").build().unwrap();
    let bundle =
        |n: u32| Bundle::new("dev", vec![object("ConfigMap", "web", None, &format!("data: {{n: \"{n}\"}}\n"), None)]);
    deployer.apply(&bundle(1), ApplyMode::Apply).await.unwrap();

    // Another writer, with its own clone, pushes once from inside our apply: after our commit (post-commit,
    // so our push is refused as non-fast-forward), and after git has read the remote's refs (pre-push, so
    // the remote's ref update itself loses the race).
    let foreign = world.path().join("foreign");
    world.git(world.path(), &["clone", "--quiet", &url, foreign.to_str().unwrap()]);
    let clone = world.cache_clone("ci");
    for (round, hook) in [(2, "post-commit"), (3, "pre-push")] {
        let marker = world.path().join(format!("inject-{round}"));
        std::fs::write(&marker, "").unwrap();
        let script = format!(
            "#!/bin/sh\n[ -e '{marker}' ] || exit 0\nrm -f '{marker}'\nunset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX\n\
             cd '{foreign}' && git fetch -q origin && git reset -q --hard origin/main && mkdir -p foreign && \
             echo {round} > foreign/file-{round}.txt && git add -A && git commit -q -m 'foreign {round}' && \
             git push -q origin HEAD:main >&2\n",
            marker = marker.display(),
            foreign = foreign.display(),
        );
        world.hook(&clone.join(".git"), hook, &script);
        let retries = deployer.stats().push_retries;
        deployer.apply(&bundle(round), ApplyMode::Apply).await.unwrap();
        assert!(!marker.exists(), "{hook}: the foreign push happened");
        assert_eq!(deployer.stats().push_retries, retries + 1, "{hook}: one lost race, one retry");
        std::fs::remove_file(clone.join(".git/hooks").join(hook)).unwrap();

        let log = world.log(&bare, "main");
        assert_eq!(log[1].message.trim(), format!("foreign {round}"), "{hook}: ours is on top of the foreign commit");
        assert_eq!(log[0].parents, [log[1].id.clone()]);
        let files = world.files(&bare, "main", "");
        assert!(files.contains(&format!("foreign/file-{round}.txt")), "{hook}: the foreign change survives: {files:?}");
        assert!(world.show(&bare, "main", "dev/configmap-web.yaml").contains(&format!("n: \"{round}\"")));
    }
    assert!(world.log(&bare, "main").iter().all(|commit| commit.parents.len() <= 1), "linear history");
}

#[tokio::test]
async fn a_push_refused_by_a_pre_receive_hook_fails_the_promotion_and_records_no_deploy() {
    if !available("a_push_refused_by_a_pre_receive_hook_fails_the_promotion_and_records_no_deploy") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    world.hook(
        &bare,
        "pre-receive",
        "#!/bin/sh\necho 'refused by policy: deploys are frozen (ask https://ops:t0ken-s3cret@chat.example)' >&2\nexit 1\n",
    );
    let daemon = world.daemon();
    let deployer = world.deployer(&daemon.url("deploy.git"), "{stage}", "ci").build().unwrap();
    let store = MemoryArtifactStore::new();
    let pipeline = pipeline(&["dev"], &deployer, &store, None);
    let build = push_and_register(&pipeline, &store, &commit_id(5)).await;

    let error = pipeline.promote(&build.id, "dev", "ci").await.unwrap_err();
    let message = error.to_string();
    assert!(!error.is_retryable(), "a refusal is not retried: {message}");
    assert!(message.contains("pre-receive hook declined") && message.contains("refused by policy"), "{message}");
    assert!(!message.contains("t0ken-s3cret"), "credentials in git's output are stripped: {message}");
    assert_eq!(deployer.stats().push_retries, 0);
    assert!(world.log(&bare, "dev").is_empty(), "nothing landed");

    let record = pipeline.history(Some("dev")).await.unwrap().pop().unwrap();
    assert!(!record.state.succeeded());
    assert!(
        matches!(&record.state, PromotionState::Finished(FinalState::Failed { step: Step::Deploy, .. })),
        "{:?}",
        record.state
    );
    assert_eq!(deployed_summary(&record), None, "nothing is recorded as deployed");
    assert!(pipeline.view().await.unwrap().current("dev").is_none());
}

#[tokio::test]
async fn an_unreachable_remote_is_a_retryable_error_naming_it_without_credentials() {
    if !available("an_unreachable_remote_is_a_retryable_error_naming_it_without_credentials") {
        return;
    }
    let world = GitWorld::new();
    let port = free_port();
    let deployer = world
        .deployer(&format!("http://ci:t0ken-s3cret@127.0.0.1:{port}/deploy.git"), "{stage}", "ci")
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let store = MemoryArtifactStore::new();
    let pipeline = pipeline(&["dev"], &deployer, &store, None);
    let build = push_and_register(&pipeline, &store, &commit_id(6)).await;
    let error = pipeline.promote(&build.id, "dev", "ci").await.unwrap_err();
    let message = error.to_string();
    assert!(error.is_retryable(), "{message}");
    assert!(message.contains(&format!("http://127.0.0.1:{port}/deploy.git")), "{message}");
    assert!(!message.contains("t0ken-s3cret") && !message.contains("ci:t0ken"), "{message}");
    let record = pipeline.history(Some("dev")).await.unwrap().pop().unwrap();
    assert!(record.state.in_progress(), "left open for a re-run: {:?}", record.state);
    assert_eq!(deployed_summary(&record), None);
    // The cache never keeps the URL with its credentials.
    let cache = world.path().join("caches/ci");
    for entry in walk(&cache) {
        if let Ok(text) = std::fs::read(&entry) {
            assert!(
                !String::from_utf8_lossy(&text).contains("t0ken-s3cret"),
                "{} holds the credential",
                entry.display()
            );
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() { stack.push(path) } else { found.push(path) }
        }
    }
    found
}

#[tokio::test]
async fn plain_text_secrets_are_refused_unless_allowed_and_no_value_leaks() {
    if !available("plain_text_secrets_are_refused_unless_allowed_and_no_value_leaks") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    let value = "hunter2-never-in-git-output";
    let secret = object("Secret", "db", Some("shop"), &format!("stringData:\n  password: {value}\n"), Some(value));
    let holding =
        object("ConfigMap", "web", None, &format!("data:\n  DB_URL: postgres://app:{value}@db\n"), Some(value));
    let strict = world.deployer(bare.to_str().unwrap(), "{stage}", "strict").build().unwrap();
    for refused in [secret.clone(), holding.clone()] {
        let key = refused.object_key();
        let bundle = Bundle::new("prd", vec![object("ConfigMap", "plain", None, "data: {}\n", None), refused]);
        for mode in [ApplyMode::DryRun, ApplyMode::Apply] {
            match strict.apply(&bundle, mode).await {
                Err(error @ Error::DeployFailed { .. }) => {
                    let message = error.to_string();
                    assert!(message.contains(&key) && message.contains("allow_plaintext_secrets"), "{message}");
                    assert!(message.contains("git deployer") && message.contains("branch prd of"), "{message}");
                    assert!(!message.contains(value), "{message}");
                }
                other => panic!("{key} must be refused, got {other:?}"),
            }
        }
    }
    assert_eq!(strict.stats().git_processes, 0, "refused before git runs");
    assert!(world.log(&bare, "prd").is_empty());

    // A stage that allows them gets the value in its file, never in the message; and a hook that echoes the
    // pushed file back has its output redacted before it reaches the error.
    world.hook(
        &bare,
        "pre-receive",
        "#!/bin/sh\nwhile read old new ref; do git show \"$new:shop/secret-db.yaml\" >&2; done\nexit 1\n",
    );
    let allowing =
        world.deployer(bare.to_str().unwrap(), "{stage}", "allowing").allow_plaintext_secrets(true).build().unwrap();
    let bundle = Bundle::new("dev", vec![secret, holding]);
    let error = allowing.apply(&bundle, ApplyMode::Apply).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("password: [redacted]"), "the hook's output, redacted: {message}");
    assert!(!message.contains(value), "{message}");
    std::fs::remove_file(bare.join("hooks/pre-receive")).unwrap();
    allowing.apply(&bundle, ApplyMode::Apply).await.unwrap();
    let log = world.log(&bare, "dev");
    assert!(world.show(&bare, "dev", "shop/secret-db.yaml").contains(value));
    assert!(!log[0].message.contains(value), "{}", log[0].message);
    let summary = allowing.wait_healthy(&bundle, Duration::from_secs(5), &Progress::none()).await.unwrap();
    let current = allowing.current("dev").await.unwrap().unwrap();
    assert!(!format!("{summary} {} {current:?}", current.masked_text()).contains(value));
}

#[tokio::test]
async fn a_dry_run_reports_the_changes_and_the_commit_without_pushing() {
    if !available("a_dry_run_reports_the_changes_and_the_commit_without_pushing") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    let daemon = world.daemon();
    let deployer = world.deployer(&daemon.url("deploy.git"), "{stage}", "ci").build().unwrap();
    let store = MemoryArtifactStore::new();
    let pipeline = pipeline(&["dev"], &deployer, &store, None);
    let v1 = push_and_register(&pipeline, &store, &commit_id(7)).await;
    let v2 = push_and_register(&pipeline, &store, &commit_id(8)).await;
    pipeline.promote(&v1.id, "dev", "ci").await.unwrap();
    let tip = world.log(&bare, "dev")[0].id.clone();

    let plan = pipeline.plan(&v2.id, "dev", "ci").await.unwrap();
    let mut actions: Vec<_> = plan.changes.iter().map(|c| (c.object.as_str(), c.action)).collect();
    actions.sort();
    assert_eq!(actions, [("ConfigMap/web", ChangeAction::Update), ("Deployment/shop/web", ChangeAction::Update)]);
    assert_eq!(world.log(&bare, "dev")[0].id, tip, "a dry run pushes nothing");

    let rendered = deployer.current("dev").await.unwrap().unwrap();
    let planned = deployer.plan_commit(&rendered).await.unwrap();
    assert_eq!(planned.parent.as_deref(), Some(tip.as_str()));
    assert_eq!(planned.already_on_branch.as_deref(), Some(tip.as_str()), "the same bundle, recognised by its trailers");
    assert!(planned.changes.iter().all(|c| c.action == ChangeAction::Unchanged));
    let bundle = Bundle::new("dev", vec![object("ConfigMap", "web", None, "data: {}\n", None)]);
    let planned = deployer.plan_commit(&bundle).await.unwrap();
    assert_eq!(planned.branch, "dev");
    assert!(planned.message.contains(&format!("Promote-Bundle: {}", bundle.hash())), "{}", planned.message);
    assert!(planned.message.contains("update ConfigMap/web") && planned.message.contains("delete Deployment/shop/web"));
    assert_eq!(world.log(&bare, "dev").len(), 1);
    assert_eq!(deployer.stats().commits_pushed, 1);
}

#[tokio::test]
async fn the_git_kind_from_a_spec() {
    if !available("the_git_kind_from_a_spec") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    let dir = world.path().join("project");
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/app.yaml"), TEMPLATE).unwrap();
    // git's configuration for the spec's deployer is the test's own, through the kind's `env`.
    let env: Vec<String> = world.env().iter().map(|(name, value)| format!("{name}: \"{value}\"")).collect();
    let spec = format!(
        "pipeline: shop\nstore: {{ kind: memory }}\nledger: {{ kind: memory }}\ntemplates: manifests\n\
         deployer: {{ kind: git, repository: ../served/deploy.git, branch: \"{{stage}}\", path: apps/web, cache_dir: .cache/git, push_retries: 3, timeout: 1m, env: {{ {} }} }}\n\
         stages:\n  - name: dev\n",
        env.join(", ")
    );
    std::fs::write(dir.join("promote.yaml"), &spec).unwrap();
    let store = MemoryArtifactStore::new();
    let registry = SpecRegistry::with_defaults().with_memory_store(store.clone());
    let pipeline = registry.load_file(dir.join("promote.yaml"), None).await.expect("the git kind loads");
    let build = push_and_register(&pipeline, &store, &commit_id(10)).await;
    let record = pipeline.promote(&build.id, "dev", "ci").await.unwrap();
    assert!(record.state.succeeded());
    assert_eq!(world.files(&bare, "dev", "apps/web"), [INDEX_FILE, "configmap-web.yaml", "shop/deployment-web.yaml"]);
    assert!(dir.join(".cache/git").is_dir(), "the cache directory is relative to the spec");

    for (bad, key, says) in [
        (spec.replace("push_retries: 3", "push_retrys: 3"), "deployer", "push_retrys"),
        (spec.replace("branch: \"{stage}\"", "branch: \"{env}\""), "deployer.branch", "{stage}"),
        (spec.replace("path: apps/web", "path: ../up"), "deployer.path", "starts with '.'"),
        (spec.replace("timeout: 1m", "timeout: soon"), "deployer.timeout", "duration"),
    ] {
        let error = registry.load_str(&bad, Path::new("promote.yaml"), &dir, None).await.unwrap_err();
        match &error {
            Error::Spec { location, key: found, message } => {
                assert_eq!(location.line, Some(5), "{error}");
                assert!(found.starts_with(key) && format!("{found} {message}").contains(says), "{error}");
            }
            other => panic!("expected a spec error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_engine_tells_the_deployer_which_promotion_it_deploys() {
    if !available("the_engine_tells_the_deployer_which_promotion_it_deploys") {
        return;
    }
    let world = GitWorld::new();
    let bare = world.bare("deploy.git");
    let deployer = world.deployer(bare.to_str().unwrap(), "{stage}", "ci").build().unwrap();
    let store = MemoryArtifactStore::new();
    let pipeline = pipeline(&["dev"], &deployer, &store, None);
    let build = push_and_register(&pipeline, &store, &commit_id(9)).await;
    let record = pipeline.promote(&build.id, "dev", "release-bot").await.unwrap();
    let tip = &world.log(&bare, "dev")[0];
    assert_eq!(tip.author, "release-bot");
    assert_eq!(tip.email, "");
    assert!(
        tip.message.contains(&format!("Promotion {} of build {} into stage dev, by release-bot.", record.id, build.id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_promoters_race_into_one_branch_and_every_commit_lands() {
    if !available("eight_promoters_race_into_one_branch_and_every_commit_lands") {
        return;
    }
    const PROMOTERS: u32 = 8;
    const PROMOTIONS: u32 = 20;
    let world = Arc::new(GitWorld::new());
    let bare = world.bare("deploy.git");
    let daemon = world.daemon();
    let url = daemon.url("deploy.git");
    // Real builds to name in the commits.
    let store = MemoryArtifactStore::new();
    let registry = Pipeline::builder("shop")
        .store(Arc::new(store.clone()))
        .ledger(Arc::new(MemoryLedger::new()))
        .stage(Stage::new("dev"))
        .build()
        .unwrap();
    let mut builds = Vec::new();
    for n in 0..PROMOTIONS {
        builds.push(push_and_register(&registry, &store, &commit_id(100 + n)).await);
    }
    let builds = Arc::new(builds);

    let mut racers = Vec::new();
    for promoter in 0..PROMOTERS {
        let deployer = world
            .deployer(&url, "main", &format!("racer-{promoter}"))
            .path("{stage}")
            .push_retries(200)
            .build()
            .unwrap();
        let builds = builds.clone();
        racers.push(tokio::spawn(async move {
            let stage = format!("s{promoter}");
            for (n, build) in builds.iter().enumerate() {
                let context =
                    DeployContext::new(PromotionId::new(&stage, &build.id, 1), build, format!("racer-{promoter}"));
                let bundle = Bundle::new(
                    stage.clone(),
                    vec![
                        object("ConfigMap", "app", None, &format!("data: {{round: \"{n}\"}}\n"), None),
                        object("ConfigMap", &format!("only-{n}"), Some("ns"), "data: {}\n", None),
                    ],
                )
                .with_context(context);
                deployer.apply(&bundle, ApplyMode::Apply).await.expect("every promotion lands");
            }
            deployer.stats()
        }));
    }
    let mut retries = 0;
    for racer in racers {
        let stats = racer.await.unwrap();
        assert_eq!(stats.commits_pushed, u64::from(PROMOTIONS));
        retries += stats.push_retries;
    }
    println!("race: {PROMOTERS} promoters x {PROMOTIONS} promotions into one branch: {retries} push retries");

    let log = world.log(&bare, "main");
    assert_eq!(log.len(), (PROMOTERS * PROMOTIONS) as usize, "every commit is on the branch");
    let promotions: BTreeSet<String> = log.iter().flat_map(|c| c.trailer("Promote-Promotion")).collect();
    assert_eq!(promotions.len(), (PROMOTERS * PROMOTIONS) as usize, "one commit per promotion");
    assert!(log.iter().all(|commit| commit.parents.len() <= 1), "linear history");
    for window in log.windows(2) {
        assert_eq!(window[0].parents, [window[1].id.clone()], "each commit follows the one before");
    }
    // No commit lost another stage's files: each one changes its own stage's directory only.
    let touched =
        world.git(&bare, &["log", "--format=%x1e%H%x00%(trailers:key=Promote-Stage,valueonly)", "--name-only", "main"]);
    let mut by_stage: BTreeMap<String, usize> = BTreeMap::new();
    for record in touched.split('\x1e').filter(|r| !r.trim().is_empty()) {
        let (head, files) = record.split_once('\0').unwrap();
        let mut lines = files.lines();
        let stage = lines.next().unwrap().trim().to_owned();
        for file in lines.filter(|l| !l.trim().is_empty()) {
            assert!(file.starts_with(&format!("{stage}/")), "commit {head} of {stage} changed {file}");
        }
        *by_stage.entry(stage).or_default() += 1;
    }
    assert!(by_stage.values().all(|count| *count == PROMOTIONS as usize), "{by_stage:?}");
    for promoter in 0..PROMOTERS {
        let stage = format!("s{promoter}");
        assert_eq!(
            world.files(&bare, "main", &stage),
            [
                INDEX_FILE.to_owned(),
                "configmap-app.yaml".to_owned(),
                format!("ns/configmap-only-{}.yaml", PROMOTIONS - 1)
            ],
            "{stage} holds its last promotion's objects, pruned"
        );
        let last = world.show(&bare, "main", &format!("{stage}/configmap-app.yaml"));
        assert!(last.contains(&format!("round: \"{}\"", PROMOTIONS - 1)), "{last}");
    }
}
