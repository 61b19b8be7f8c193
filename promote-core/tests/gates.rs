//! The gate library through specs and the Pipeline: every kind loads from YAML, every bad setting is a
//! spec error naming the file, line and key, and the gates decide promotions with a manual clock.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Duration as Span;
use promote_core::ApprovalOptions;
use promote_core::ledger::{FinalState, PromotionState, Verdict};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{
    ArtifactStore, Build, BuildRequest, Deployer, Error, Identity, ManualClock, MemoryArtifactStore, MemoryDeployer,
    Pipeline, SpecRegistry,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEMPLATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
";

/// A pipeline loaded from a spec, over a store and deployer the test can reach, with a manual clock.
struct World {
    pipeline: Pipeline,
    store: MemoryArtifactStore,
    deployer: MemoryDeployer,
    clock: ManualClock,
    dir: tempfile::TempDir,
}

fn registry(store: &MemoryArtifactStore, deployer: &MemoryDeployer) -> SpecRegistry {
    let mut registry = SpecRegistry::with_defaults();
    let store = store.clone();
    registry.register_store("shared", move |_| {
        let store = store.clone();
        async move { Ok(Arc::new(store) as Arc<dyn ArtifactStore>) }
    });
    let deployer = deployer.clone();
    registry.register_deployer("shared", move |_| {
        let deployer = deployer.clone();
        async move { Ok(Arc::new(deployer) as Arc<dyn Deployer>) }
    });
    registry
}

/// Loads `stages` (the YAML list under `stages:`, indented by two) into a pipeline.
async fn world(stages: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/app.yaml"), TEMPLATE).unwrap();
    let (store, deployer) = (MemoryArtifactStore::new(), MemoryDeployer::new());
    let clock = ManualClock::at("2026-03-02T08:00:00Z".parse().unwrap());
    let text = spec(stages);
    let pipeline = registry(&store, &deployer)
        .load_str(&text, Path::new("promote.yaml"), dir.path(), Some(Arc::new(clock.clone())))
        .await
        .unwrap_or_else(|error| panic!("{error}\n{text}"));
    World { pipeline, store, deployer, clock, dir }
}

fn spec(stages: &str) -> String {
    format!(
        "pipeline: shop\nstore: {{ kind: shared }}\nledger: {{ kind: memory }}\ndeployer: {{ kind: shared }}\ntemplates: manifests\nstages:\n{stages}"
    )
}

impl World {
    async fn build(&self, version: &str, metadata: &[(&str, serde_json::Value)]) -> Build {
        let reference: promote_core::ArtifactRef = format!("memory.local/shop/web:{version}").parse().unwrap();
        let manifest = format!("{{\"schemaVersion\": 2, \"mediaType\": \"{OCI_MANIFEST}\", \"salt\": \"{version}\"}}");
        self.store.push(reference.clone(), OCI_MANIFEST, manifest.into_bytes()).unwrap();
        let mut request =
            BuildRequest::new(format!("{:0>40}", version.replace('.', ""))).artifact("web", reference).author("dana");
        request = request.version(version.parse().unwrap());
        for (key, value) in metadata {
            request = request.metadata(*key, value.clone());
        }
        self.pipeline.register(request, "ci").await.unwrap()
    }

    async fn current(&self, stage: &str) -> Option<promote_core::BuildId> {
        self.pipeline.status().await.unwrap().stage(stage).unwrap().current.clone()
    }
}

async fn load_error(stages: &str) -> (Option<usize>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (store, deployer) = (MemoryArtifactStore::new(), MemoryDeployer::new());
    std::fs::create_dir(dir.path().join("manifests")).unwrap();
    std::fs::write(dir.path().join("manifests/app.yaml"), TEMPLATE).unwrap();
    match registry(&store, &deployer).load_str(&spec(stages), Path::new("promote.yaml"), dir.path(), None).await {
        Err(Error::Spec { location, key, message }) => {
            assert_eq!(location.file, Path::new("promote.yaml"));
            (location.line, key, message)
        }
        Err(other) => panic!("expected a spec error, got {other}"),
        Ok(_) => panic!("expected a spec error for\n{stages}"),
    }
}

#[tokio::test]
async fn every_gate_kind_loads_from_the_spec() {
    let w = world(
        r#"  - name: dev
  - name: prd
    gates:
      - { kind: soak, stage: dev, duration: 24h, count: since_first_pass }
      - { kind: semver, require: ">=1.0.0, <2" }
      - { kind: window, name: office, timezone: Europe/Berlin, days: [mon-fri], hours: ["09:00-17:00"], freezes: [{ from: "2026-12-19", until: "2027-01-04", reason: year-end }] }
      - { kind: metric, name: coverage, check: "coverage >= 80" }
      - { kind: command, program: "true", args: [], env: { A: b }, secrets: { T: s }, timeout: 1m, max_output: 100, safe_for_plan: true }
      - { kind: http, url: "http://127.0.0.1:9/{stage}", expect_status: 204, timeout: 2s, retries: 1, retry_delay: 10ms, allow_private: true, keep_body: true }
      - kind: any
        name: reviewed
        gates:
          - { kind: approval, promoters: [alice] }
          - kind: not
            gate: { kind: metric, check: "risk > 3" }
"#,
    )
    .await;
    let gates = w.pipeline.stage("prd").unwrap().entry_gates();
    let kinds: Vec<(&str, &str)> = gates.iter().map(|g| (g.kind(), g.name())).collect();
    assert_eq!(
        kinds,
        [
            ("soak", "soak"),
            ("semver", "semver"),
            ("window", "office"),
            ("metric", "coverage"),
            ("command", "command"),
            ("http", "http"),
            ("any", "reviewed")
        ]
    );
    let side_effect_free: Vec<bool> = gates.iter().map(|g| g.capabilities().side_effect_free).collect();
    assert_eq!(side_effect_free, [true, true, true, true, true, false, true]);
    assert_eq!(gates[6].approval_policy().unwrap().promoters, ["alice"], "the composite forwards the approval policy");
}

#[tokio::test]
async fn bad_gate_settings_name_the_file_line_and_key() {
    let prefix = "  - name: dev\n  - name: prd\n    gates:\n      - ";
    // (gate, key, part of the message); every gate sits on line 10.
    let cases = [
        ("{ kind: soak, duration: soon }", "stages[1].gates[0].duration", "soon"),
        ("{ kind: soak, duration: 0s }", "stages[1].gates[0].duration", "longer than 0s"),
        ("{ kind: soak, duration: 1h, count: forever }", "stages[1].gates[0]", "forever"),
        ("{ kind: soak, duraton: 1h }", "stages[1].gates[0]", "duraton"),
        ("{ kind: semver, require: \">=banana\" }", "stages[1].gates[0].require", "banana"),
        ("{ kind: semver, allow_downgrades: true }", "stages[1].gates[0]", "allow_downgrades"),
        ("{ kind: window, timezone: Mars/Olympus }", "stages[1].gates[0].timezone", "Mars/Olympus"),
        ("{ kind: window, days: [mon] }", "stages[1].gates[0]", "timezone"),
        ("{ kind: window, timezone: UTC, days: [funday] }", "stages[1].gates[0].days", "funday"),
        ("{ kind: window, timezone: UTC, hours: [\"17:00-09:00\"] }", "stages[1].gates[0].hours", "after the start"),
        (
            "{ kind: window, timezone: UTC, freezes: [{ from: \"2026-12-19\", until: \"2026-12-01\" }] }",
            "stages[1].gates[0].freezes[0]",
            "after `from`",
        ),
        ("{ kind: metric, check: \"coverage about 80\" }", "stages[1].gates[0].check", "coverage about 80"),
        ("{ kind: metric, check: \"coverage >= lots\" }", "stages[1].gates[0].check", "must be a number"),
        ("{ kind: metric }", "stages[1].gates[0]", "check"),
        ("{ kind: command, args: [x] }", "stages[1].gates[0]", "program"),
        ("{ kind: command, program: \"\" }", "stages[1].gates[0].program", "must name a program"),
        ("{ kind: command, program: x, timeout: 0s }", "stages[1].gates[0].timeout", "longer than 0s"),
        ("{ kind: command, program: x, safe_for_plan: maybe }", "stages[1].gates[0].safe_for_plan", "not a boolean"),
        ("{ kind: command, program: x, max_output: 1048577 }", "stages[1].gates[0].max_output", "at most 1048576"),
        ("{ kind: http, url: \"ftp://example.com/\" }", "stages[1].gates[0].url", "http and https"),
        ("{ kind: http, url: \"http://x/\", retries: 99 }", "stages[1].gates[0].retries", "at most 20"),
        (
            "{ kind: http, url: \"http://x/\", expect_status: 42 }",
            "stages[1].gates[0].expect_status",
            "between 100 and 599",
        ),
        ("{ kind: http, url: \"http://x/\", timeout: fast }", "stages[1].gates[0].timeout", "fast"),
        (
            "{ kind: http, url: \"http://x/\", allow_private: maybe }",
            "stages[1].gates[0].allow_private",
            "not a boolean",
        ),
        ("{ kind: all, gates: [] }", "stages[1].gates[0].gates", "at least one gate"),
        ("{ kind: all }", "stages[1].gates[0]", "gates"),
        (
            "{ kind: any, gates: [{ kind: metric, check: \"x > 1\" }, { kind: sok }] }",
            "stages[1].gates[0].gates[1].kind",
            "sok",
        ),
        ("{ kind: any, gates: [{ kind: soak, duration: soon }] }", "stages[1].gates[0].gates[0].duration", "soon"),
        (
            "{ kind: not, gate: [{ kind: metric, check: \"x > 1\" }, { kind: metric, check: \"y > 1\" }] }",
            "stages[1].gates[0].gate",
            "one gate",
        ),
        ("{ kind: approval, promoters: [alice], min_approvals: 0 }", "stages[1].gates[0]", "at least 1"),
        ("{ kind: approval }", "stages[1].gates[0]", "promoters or groups"),
        ("{ kind: approval, promoters: [alice], expires_after: soon }", "stages[1].gates[0]", "soon"),
        ("{ kind: approval, promoters: [alice], quorum: 2 }", "stages[1].gates[0]", "quorum"),
    ];
    for (gate, want_key, want_message) in cases {
        let (line, key, message) = load_error(&format!("{prefix}{gate}\n")).await;
        assert_eq!(line, Some(10), "{gate}: {key}: {message}");
        assert!(key.starts_with(want_key), "{gate}: key {key}, wanted {want_key}: {message}");
        assert!(message.contains(want_message), "{gate}: {message}");
    }
    // In block style, a bad setting is named at its own line (the gate starts on line 10).
    let block_cases = [
        ("kind: soak\n        duration: 0s", 11, "stages[1].gates[0].duration"),
        ("kind: command\n        program: x\n        timeout: 0s", 12, "stages[1].gates[0].timeout"),
        (
            "kind: approval\n        promoters: [alice]\n        min_approvals: 0",
            12,
            "stages[1].gates[0].min_approvals",
        ),
        (
            "kind: approval\n        promoters: [alice]\n        expires_after: soon",
            12,
            "stages[1].gates[0].expires_after",
        ),
        (
            "kind: window\n        timezone: UTC\n        freezes:\n          - { from: \"2026-12-01\", until: \"2026-12-19\" }\n          - { from: \"2026-12-19\", until: \"2026-12-01\" }",
            14,
            "stages[1].gates[0].freezes[1]",
        ),
    ];
    for (gate, want_line, want_key) in block_cases {
        let (line, key, message) = load_error(&format!("{prefix}{gate}\n")).await;
        assert_eq!((line, key.as_str()), (Some(want_line), want_key), "{gate}: {message}");
    }
    // Nested gates in block style name their own line.
    let nested = "  - name: dev\n    gates:\n      - kind: all\n        gates:\n          - { kind: metric, check: \"x > 1\" }\n          - { kind: window, timezone: Nowhere }\n";
    let (line, key, message) = load_error(nested).await;
    assert_eq!((line, key.as_str()), (Some(12), "stages[0].gates[0].gates[1].timezone"), "{message}");
}

#[tokio::test]
async fn fan_in_from_the_spec_needs_every_or_any_upstream_stage() {
    let w = world(
        "  - name: dev
  - name: stg-eu
  - name: stg-us
    upstream: { any_of: [dev] }
  - name: prd
    upstream: { all_of: [stg-eu, stg-us] }
  - name: dr
    upstream: { any_of: [stg-eu, stg-us] }
",
    )
    .await;
    let build = w.build("1.0.0", &[]).await;
    w.pipeline.promote(&build.id, "dev", "ci").await.unwrap();
    w.pipeline.promote(&build.id, "stg-eu", "ci").await.unwrap();
    let refused = w.pipeline.promote(&build.id, "prd", "ci").await;
    assert!(matches!(&refused, Err(Error::NotEligible { reason, .. }) if reason.contains("stg-us")), "{refused:?}");
    w.pipeline.promote(&build.id, "dr", "ci").await.unwrap();
    w.pipeline.promote(&build.id, "stg-us", "ci").await.unwrap();
    w.pipeline.promote(&build.id, "prd", "ci").await.unwrap();
    assert_eq!(w.current("prd").await, Some(build.id));
}

#[tokio::test]
async fn soak_and_window_hold_a_promotion_until_the_clock_allows_it() {
    let w = world(
        "  - name: stg
  - name: prd
    gates:
      - { kind: soak, duration: 24h }
      - { kind: window, timezone: Europe/Berlin, days: [mon-thu], hours: [\"10:00-16:00\"] }
",
    )
    .await;
    let build = w.build("1.0.0", &[]).await;
    // Monday 2026-03-02 09:00 in Berlin.
    w.pipeline.promote(&build.id, "stg", "ci").await.unwrap();
    let pending = w.pipeline.promote(&build.id, "prd", "ci").await;
    let Err(Error::GatePending { reasons, .. }) = &pending else { panic!("{pending:?}") };
    assert!(reasons[0].starts_with("soak: soaked 0s of 1day in stg"), "{reasons:?}");
    assert!(reasons[1].contains("next opening 2026-03-02T10:00:00+01:00"), "{reasons:?}");

    // Tuesday 09:30: soaked, but the window is not open yet.
    w.clock.advance(Span::hours(24) + Span::minutes(30));
    let pending = w.pipeline.promote(&build.id, "prd", "ci").await;
    let Err(Error::GatePending { reasons, .. }) = &pending else { panic!("{pending:?}") };
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].starts_with("window: outside the deploy window"), "{reasons:?}");

    w.clock.advance(Span::minutes(30));
    let record = w.pipeline.promote(&build.id, "prd", "ci").await.unwrap();
    let soak = record.gates.iter().find(|g| g.gate == "soak").unwrap();
    assert_eq!(soak.evidence["soaked_seconds"]["stg"], 25 * 3600);
    let window = record.gates.iter().find(|g| g.gate == "window").unwrap();
    assert_eq!(window.evidence["local_time"], "2026-03-03T10:00:00+01:00");
    // Each pending attempt is in the ledger with its reasons.
    let history = w.pipeline.history(Some("prd")).await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(
        matches!(&history[0].state, PromotionState::Finished(FinalState::Pending { reasons }) if reasons.len() == 2)
    );
}

#[tokio::test]
async fn semver_and_metric_gates_decide_through_the_pipeline() {
    let w = world(
        "  - name: dev
    gates:
      - { kind: metric, name: coverage, check: \"coverage >= 80\" }
      - { kind: semver, require: \"^1\" }
",
    )
    .await;
    let v11 = w.build("1.1.0", &[("coverage", serde_json::json!(91.2))]).await;
    let v10 = w.build("1.0.0", &[("coverage", serde_json::json!(85))]).await;
    let v12 = w.build("1.2.0", &[("coverage", serde_json::json!(70))]).await;
    let v20 = w.build("2.0.0", &[("coverage", serde_json::json!(99))]).await;
    let unmeasured = w.build("1.3.0", &[]).await;
    w.pipeline.promote(&v11.id, "dev", "ci").await.unwrap();
    let failure = |result: promote_core::Result<_>| match result {
        Err(Error::GateFailed { gate, reason, .. }) => format!("{gate}: {reason}"),
        other => panic!("expected a failed gate, got {other:?}"),
    };
    assert!(failure(w.pipeline.promote(&v10.id, "dev", "ci").await).contains("1.0.0 is older than 1.1.0"));
    assert!(failure(w.pipeline.promote(&v12.id, "dev", "ci").await).contains("coverage: metric coverage is 70"));
    assert!(failure(w.pipeline.promote(&v20.id, "dev", "ci").await).contains("does not meet the constraint ^1"));
    assert!(failure(w.pipeline.promote(&unmeasured.id, "dev", "ci").await).contains("has no metric coverage"));
    assert_eq!(w.current("dev").await, Some(v11.id));
}

/// A loopback HTTP server answering 500 for paths that contain `bad`, 200 otherwise.
async fn smoke_server(bad: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (bad, log) = (bad.clone(), log.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let path = String::from_utf8_lossy(&request).split(' ').nth(1).unwrap_or_default().to_owned();
                let status = if path.contains(&bad) { "500 Broken" } else { "200 OK" };
                log.lock().unwrap().push(path);
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{address}"), seen)
}

async fn verification_world(on_failure: &str, base: &str) -> World {
    world(&format!(
        "  - name: dev
    on_failure: {on_failure}
    verify:
      - {{ kind: http, name: smoke, url: \"{base}/health/{{build}}\", retries: 1, retry_delay: 1ms, allow_private: true }}
"
    ))
    .await
}

#[tokio::test]
async fn an_http_gate_on_a_loopback_address_is_refused_unless_the_spec_allows_it() {
    let (base, seen) = smoke_server("never".into()).await;
    let w = world(&format!(
        "  - name: dev
    gates:
      - {{ kind: http, name: metadata, url: \"{base}/latest/meta-data/\", retries: 2, retry_delay: 1ms }}
"
    ))
    .await;
    let build = w.build("1.0.0", &[]).await;
    let refused = w.pipeline.promote(&build.id, "dev", "ci").await;
    assert!(
        matches!(&refused, Err(Error::GateFailed { gate, reason, .. })
            if gate == "metadata" && reason.contains("is a loopback address") && reason.contains("allow_private: true")),
        "{refused:?}"
    );
    assert!(seen.lock().unwrap().is_empty(), "the refused address was never called");
}

#[tokio::test]
async fn a_failed_smoke_test_rolls_back_when_the_stage_says_so() {
    let w0 = world("  - name: dev\n").await;
    // Build ids are content-addressed: learn the bad build's id from a throwaway pipeline first.
    let bad_id = {
        w0.build("1.0.0", &[]).await;
        w0.build("1.1.0", &[]).await.id
    };
    let (base, seen) = smoke_server(bad_id.to_string()).await;
    let w = verification_world("rollback", &base).await;
    let good = w.build("1.0.0", &[]).await;
    w.pipeline.promote(&good.id, "dev", "ci").await.unwrap();
    let bad = w.build("1.1.0", &[]).await;
    assert_eq!(bad.id, bad_id);
    let failed = w.pipeline.promote(&bad.id, "dev", "ci").await;
    assert!(
        matches!(&failed, Err(Error::GateFailed { gate, reason, .. }) if gate == "smoke" && reason.contains("answered 500, expected 200 (after 2 attempts)")),
        "{failed:?}"
    );
    assert_eq!(w.current("dev").await, Some(good.id.clone()), "rolled back to the good build");
    assert!(
        w.deployer.current("dev").await.unwrap().unwrap().masked_text().contains(good.artifacts["web"].digest.as_str())
    );
    let status = w.pipeline.status().await.unwrap();
    assert_eq!(status.stage("dev").unwrap().holds.len(), 1, "the rollback holds automation");
    // The smoke test ran after each deploy; the bad build got its retry.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|p| p.contains(bad_id.as_str())).count(), 2, "{seen:?}");
    let history = w.pipeline.history(Some("dev")).await.unwrap();
    let verdicts = &history[1].gates;
    let smoke = verdicts.iter().find(|g| g.gate == "smoke").unwrap();
    assert!(matches!(smoke.verdict, Verdict::Fail(_)));
    assert_eq!(smoke.evidence["attempts"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_failed_smoke_test_leaves_the_stage_when_the_stage_says_fail() {
    let w0 = world("  - name: dev\n").await;
    let bad_id = {
        w0.build("1.0.0", &[]).await;
        w0.build("1.1.0", &[]).await.id
    };
    let (base, _) = smoke_server(bad_id.to_string()).await;
    let w = verification_world("fail", &base).await;
    let good = w.build("1.0.0", &[]).await;
    w.pipeline.promote(&good.id, "dev", "ci").await.unwrap();
    let bad = w.build("1.1.0", &[]).await;
    assert!(matches!(w.pipeline.promote(&bad.id, "dev", "ci").await, Err(Error::GateFailed { .. })));
    let status = w.pipeline.status().await.unwrap();
    let dev = status.stage("dev").unwrap();
    assert_eq!(dev.current.as_ref(), Some(&good.id), "the last verified build stays current");
    assert!(dev.holds.is_empty(), "no rollback, no hold");
    assert!(dev.failed_since_current.is_some(), "the failed build may be running");
    assert!(
        w.deployer.current("dev").await.unwrap().unwrap().masked_text().contains(bad.artifacts["web"].digest.as_str()),
        "the failed build is left deployed"
    );
}

#[tokio::test]
async fn plan_runs_only_the_gates_marked_safe_for_plan() {
    let w = world("  - name: dev\n").await;
    let marker = |name: &str| -> PathBuf { w.dir.path().join(name) };
    let spec = format!(
        "  - name: dev
    gates:
      - {{ kind: command, name: lint, program: sh, args: [\"-c\", \"touch {}\"], safe_for_plan: true }}
      - {{ kind: command, name: migrate, program: sh, args: [\"-c\", \"touch {}\"] }}
      - {{ kind: all, name: both, gates: [{{ kind: command, program: \"true\" }}, {{ kind: metric, check: \"x >= 0\" }}] }}
",
        marker("linted").display(),
        marker("migrated").display()
    );
    let w2 = world(&spec).await;
    let build = w2.build("1.0.0", &[("x", serde_json::json!(1))]).await;
    let plan = w2.pipeline.plan(&build.id, "dev", "ci").await.unwrap();
    let verdict = |name: &str| plan.gates.iter().find(|g| g.gate == name).unwrap().verdict.clone();
    assert_eq!(verdict("lint"), Verdict::Pass);
    assert_eq!(verdict("migrate"), Verdict::Pending("not run by plan: the gate has side effects".into()));
    assert_eq!(verdict("both"), Verdict::Pending("not run by plan: the gate has side effects".into()));
    assert!(marker("linted").exists(), "the gate safe for plans ran");
    assert!(!marker("migrated").exists(), "the gate with side effects did not");
    w2.pipeline.promote(&build.id, "dev", "ci").await.unwrap();
    assert!(marker("migrated").exists());
}

#[tokio::test]
async fn an_approval_inside_a_composite_is_accepted_and_counted() {
    let w = world(
        "  - name: dev
  - name: prd
    gates:
      - kind: any
        name: reviewed-or-trivial
        gates:
          - { kind: approval, promoters: [alice] }
          - { kind: metric, check: \"lines_changed <= 10\" }
",
    )
    .await;
    let build = w.build("1.0.0", &[("lines_changed", serde_json::json!(250))]).await;
    w.pipeline.promote(&build.id, "dev", "ci").await.unwrap();
    let pending = w.pipeline.promote(&build.id, "prd", "ci").await;
    assert!(
        matches!(&pending, Err(Error::GatePending { reasons, .. }) if reasons[0].contains("awaiting approval by alice")),
        "{pending:?}"
    );
    let refused = w.pipeline.approve(&build.id, "prd", &Identity::new("mallory"), ApprovalOptions::default()).await;
    assert!(matches!(refused, Err(Error::ApprovalRefused { .. })), "{refused:?}");
    w.pipeline
        .approve(&build.id, "prd", &Identity::new("alice"), ApprovalOptions::new().comment("lgtm"))
        .await
        .unwrap();
    w.pipeline.promote(&build.id, "prd", "ci").await.unwrap();
    assert_eq!(w.current("prd").await, Some(build.id));
}
