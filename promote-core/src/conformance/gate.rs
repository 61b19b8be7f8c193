//! The [`Gate`] and [`Clock`] conformance suites.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::build::{Build, BuildId};
use crate::clock::Clock;
use crate::gate::{Gate, GateContext, GatePhase};
use crate::ledger::{LedgerView, PromotionKind, Verdict};

/// Runs the [`Gate`] conformance suite on a gate that reads nothing outside the context it is given (every
/// side-effect-free built-in gate qualifies): it is named, its evidence is JSON, it decides the same way
/// twice for the same context, and a failure to decide is an `Err`, never a panic.
pub async fn gate(gate: Arc<dyn Gate>, now: DateTime<Utc>) {
    assert!(!gate.name().is_empty(), "a gate must have a name");
    assert!(!gate.kind().is_empty(), "a gate must have a kind");
    assert!(gate.capabilities().side_effect_free, "this suite evaluates gates repeatedly; give it pure gates");
    let build = Build {
        id: BuildId::parse("b-00000000000000c0").expect("valid id"),
        commit: "c0ffee0000000000000000000000000000000000".into(),
        version: Some(semver::Version::new(1, 2, 3)),
        artifacts: BTreeMap::new(),
        author: Some("conformance-author".into()),
        metadata: BTreeMap::from([("coverage".to_owned(), serde_json::json!(85))]),
        registered_at: now,
    };
    let view = LedgerView::new();
    let upstream = vec!["dev".to_owned()];
    for (phase, dry_run) in [(GatePhase::Entry, false), (GatePhase::Entry, true), (GatePhase::Verification, false)] {
        let context = GateContext {
            build: &build,
            stage: "prd",
            upstream: &upstream,
            current: None,
            ledger: &view,
            now,
            kind: &PromotionKind::Promote,
            phase,
            requested_by: "conformance",
            dry_run,
            secrets: &crate::config::Redactor::default(),
        };
        let first = gate.evaluate(&context).await;
        let second = gate.evaluate(&context).await;
        match (&first, &second) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.verdict, b.verdict, "a pure gate must decide the same way twice");
                serde_json::to_string(&a.evidence).expect("evidence must serialise to JSON");
                if let Verdict::Pending(reason) | Verdict::Fail(reason) = &a.verdict {
                    assert!(!reason.is_empty(), "a pending or failing verdict must say why");
                }
                let recorded = a.clone().into_evidence(gate.as_ref());
                assert_eq!((recorded.gate.as_str(), recorded.kind.as_str()), (gate.name(), gate.kind()));
            }
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
