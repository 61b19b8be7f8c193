//! The [`Gate`] and [`Clock`] conformance suites.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::build::{Build, BuildId};
use crate::clock::Clock;
use crate::gate::{Gate, GateContext, GatePhase};
use crate::ledger::{LedgerView, Verdict};

/// Runs every clause a gate is subject to: acting gates (a command, an HTTP check) are evaluated once,
/// pure gates twice, by their capabilities.
pub async fn gate(gate: Arc<dyn Gate>, now: DateTime<Utc>) {
    names_itself(gate.as_ref());
    decides_with_reasons_and_json_evidence(gate.as_ref(), now).await;
    if gate.capabilities().side_effect_free {
        a_pure_gate_decides_the_same_twice(gate.as_ref(), now).await;
    }
}

/// A gate has a name and a kind, and what it reports is recorded under them.
pub fn names_itself(gate: &dyn Gate) {
    assert!(!gate.name().is_empty(), "a gate must have a name");
    assert!(!gate.kind().is_empty(), "a gate must have a kind");
}

fn candidate(now: DateTime<Utc>) -> Build {
    Build {
        id: BuildId::parse("b-00000000000000c0").expect("valid id"),
        commit: "c0ffee0000000000000000000000000000000000".into(),
        version: Some(semver::Version::new(1, 2, 3)),
        artifacts: BTreeMap::new(),
        author: Some("conformance-author".into()),
        metadata: BTreeMap::from([("coverage".to_owned(), serde_json::json!(85))]),
        registered_at: now,
    }
}

/// In each phase, the gate decides (or fails to decide, as an `Err`, never a panic); a pending or failing
/// verdict says why; its evidence serialises to JSON.
pub async fn decides_with_reasons_and_json_evidence(gate: &dyn Gate, now: DateTime<Utc>) {
    let build = candidate(now);
    let view = LedgerView::new();
    let upstream = vec!["dev".to_owned()];
    for phase in [GatePhase::Entry, GatePhase::Verification] {
        let context =
            GateContext::new(&build, "prd", &view, now).upstream(&upstream).phase(phase).requested_by("conformance");
        if let Ok(report) = gate.evaluate(&context).await {
            serde_json::to_string(&report.evidence).expect("evidence must serialise to JSON");
            if let Verdict::Pending(reason) | Verdict::Fail(reason) = &report.verdict {
                assert!(!reason.is_empty(), "a pending or failing verdict must say why");
            }
            let recorded = report.into_evidence(gate);
            assert_eq!((recorded.gate.as_str(), recorded.kind.as_str()), (gate.name(), gate.kind()));
        }
    }
}

/// A gate that reads nothing outside its context (side-effect free) decides the same way twice, in a
/// promotion and in a plan.
pub async fn a_pure_gate_decides_the_same_twice(gate: &dyn Gate, now: DateTime<Utc>) {
    assert!(gate.capabilities().side_effect_free, "this clause evaluates gates repeatedly; it is for pure gates");
    let build = candidate(now);
    let view = LedgerView::new();
    let upstream = vec!["dev".to_owned()];
    for (phase, dry_run) in [(GatePhase::Entry, false), (GatePhase::Entry, true), (GatePhase::Verification, false)] {
        let context = GateContext::new(&build, "prd", &view, now)
            .upstream(&upstream)
            .phase(phase)
            .requested_by("conformance")
            .dry_run(dry_run);
        let first = gate.evaluate(&context).await;
        let second = gate.evaluate(&context).await;
        match (&first, &second) {
            (Ok(a), Ok(b)) => assert_eq!(a.verdict, b.verdict, "a pure gate must decide the same way twice"),
            (Err(_), Err(_)) => {}
            _ => panic!("a pure gate must not succeed once and fail once: {first:?} / {second:?}"),
        }
    }
}

/// Runs the [`Clock`] conformance suite: time does not go backwards.
pub fn clock(clock: Arc<dyn Clock>) {
    let mut last = clock.now();
    for _ in 0..1_000 {
        let now = clock.now();
        assert!(now >= last, "a clock must not go backwards: {now} after {last}");
        last = now;
    }
}
