//! A ledger built entry by entry, and gates evaluated against it: for unit tests of gates, custom ones
//! included, with no pipeline around them.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use promote_core::MetricGate;
//! use promote_core::ledger::Verdict;
//! use promote_core::testing::scene::{Scene, at};
//! let mut scene = Scene::new();
//! let build = scene.register("1.2.0", &[("coverage", 91.into())]);
//! let gate = MetricGate::parse("coverage", "coverage >= 80").unwrap();
//! let report = scene.evaluate(&gate, &build, "prd", &["stg"], at("2026-01-02T00:00:00Z")).await;
//! assert_eq!(report.verdict, Verdict::Pass);
//! # });
//! ```
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::build::{Build, BuildId};
use crate::config::Redactor;
use crate::error::Result;
use crate::gate::{Gate, GateContext, GateReport};
use crate::ledger::{FinalState, LedgerEntry, LedgerEvent, LedgerView, NewEntry, PromotionId, PromotionKind};

/// A UTC instant from RFC 3339 text.
pub fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("an RFC 3339 time").with_timezone(&Utc)
}

/// A ledger view built entry by entry.
#[derive(Debug, Default)]
pub struct Scene {
    /// The ledger as the gates see it.
    pub view: LedgerView,
    /// The secrets the gates are told about (none unless a test sets them).
    pub secrets: Redactor,
    builds: u64,
    promotions: u32,
}

impl Scene {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    fn append(&mut self, at: DateTime<Utc>, event: LedgerEvent) {
        let seq = self.view.head_seq() + 1;
        let (entry, _): (LedgerEntry, _) =
            LedgerEntry::seal(seq, self.view.head_hash(), NewEntry { at, actor: "test".into(), fence: None, event });
        self.view.apply(entry);
    }

    /// Registers a build with a version (`""` for none) and metadata.
    pub fn register(&mut self, version: &str, metadata: &[(&str, serde_json::Value)]) -> Build {
        self.builds += 1;
        let build = Build {
            id: BuildId::parse(&format!("b-{:016x}", self.builds)).unwrap(),
            commit: format!("{:040x}", self.builds),
            version: (!version.is_empty()).then(|| version.parse().unwrap()),
            artifacts: BTreeMap::new(),
            author: Some("dana".into()),
            metadata: metadata.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
            registered_at: at("2026-01-01T00:00:00Z"),
        };
        self.append(build.registered_at, LedgerEvent::BuildRegistered { build: build.clone() });
        build
    }

    /// Records a successful promotion of `build` into `stage` at `at`.
    pub fn pass(&mut self, stage: &str, build: &Build, at: DateTime<Utc>) {
        self.promotions += 1;
        let promotion = PromotionId::new(stage, &build.id, self.promotions);
        self.append(
            at,
            LedgerEvent::PromotionStarted {
                promotion: promotion.clone(),
                build: build.id.clone(),
                stage: stage.to_owned(),
                kind: PromotionKind::Promote,
            },
        );
        self.append(at, LedgerEvent::PromotionFinished { promotion, state: FinalState::Succeeded });
    }

    /// Evaluates an entry gate for a promotion (not a plan), panicking on an error.
    pub async fn evaluate(
        &self,
        gate: &dyn Gate,
        build: &Build,
        stage: &str,
        upstream: &[&str],
        now: DateTime<Utc>,
    ) -> GateReport {
        self.evaluate_with(gate, build, stage, upstream, now, PromotionKind::Promote, false)
            .await
            .expect("the gate decides")
    }

    /// Evaluates an entry gate with every knob.
    #[allow(clippy::too_many_arguments)]
    pub async fn evaluate_with(
        &self,
        gate: &dyn Gate,
        build: &Build,
        stage: &str,
        upstream: &[&str],
        now: DateTime<Utc>,
        kind: PromotionKind,
        dry_run: bool,
    ) -> Result<GateReport> {
        let upstream: Vec<String> = upstream.iter().map(|s| (*s).to_owned()).collect();
        let current = self.view.current_build(stage).and_then(|id| self.view.build(id));
        let context = GateContext::new(build, stage, &self.view, now)
            .upstream(&upstream)
            .current(current)
            .kind(&kind)
            .requested_by("ci")
            .dry_run(dry_run)
            .secrets(&self.secrets);
        gate.evaluate(&context).await
    }
}
