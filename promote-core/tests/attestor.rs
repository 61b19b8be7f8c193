//! A stage's attestors: asked after a promotion's success is in the ledger (they may cite it), their
//! attestations recorded in the ledger; a failing attestor leaves the promotion succeeded and is asked again
//! by the next `promote`; an attested promotion is not attested twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use promote_core::attest::Attestor;
use promote_core::ledger::{AttestationRef, FinalState, Ledger, LedgerEvent, PromotionId};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{BuildRequest, Digest, Error, ErrorClass, MemoryArtifactStore, MemoryLedger, Pipeline, Stage};

/// Fails its first `failures` calls, then attests with the hash of the success entry as the "digest".
#[derive(Debug, Default)]
struct CountingAttestor {
    calls: AtomicU32,
    failures: u32,
}

#[async_trait]
impl Attestor for CountingAttestor {
    fn name(&self) -> &str {
        "counting"
    }

    async fn attest(&self, ledger: &dyn Ledger, promotion: &PromotionId) -> promote_core::Result<Vec<AttestationRef>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call < self.failures {
            return Err(Error::backend("attestor", ErrorClass::Temporary, "the registry is down"));
        }
        let success = ledger.read_since(0).await?.into_iter().rev().find(|entry| {
            matches!(&entry.event, LedgerEvent::PromotionFinished { promotion: p, state: FinalState::Succeeded } if p == promotion)
        });
        let success = success.expect("the success is recorded before the attestor is asked");
        Ok(vec![AttestationRef::new("counting", "web", "memory.local/web", Digest::sha256_of(success.hash.as_bytes()))])
    }
}

async fn pipeline(attestor: Arc<CountingAttestor>) -> (Pipeline, promote_core::Build, MemoryLedger) {
    let store = MemoryArtifactStore::new();
    store.push("memory.local/web:3f2c1a9".parse().unwrap(), OCI_MANIFEST, br#"{"schemaVersion":2}"#.to_vec()).unwrap();
    let ledger = MemoryLedger::new();
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store))
        .ledger(Arc::new(ledger.clone()))
        .stage(Stage::new("prd").attestor(attestor))
        .build()
        .unwrap();
    let build = pipeline
        .register(BuildRequest::new("3f2c1a9").artifact("web", "memory.local/web:3f2c1a9".parse().unwrap()), "ci")
        .await
        .unwrap();
    (pipeline, build, ledger)
}

#[tokio::test]
async fn the_ledger_records_what_the_attestor_published_after_the_success() {
    let attestor = Arc::new(CountingAttestor::default());
    let (pipeline, build, ledger) = pipeline(attestor.clone()).await;
    let record = pipeline.promote(&build.id, "prd", "ci").await.unwrap();
    assert_eq!(record.attestations.len(), 1);
    let entries = ledger.read_since(0).await.unwrap();
    let success = entries
        .iter()
        .position(|e| matches!(&e.event, LedgerEvent::PromotionFinished { state: FinalState::Succeeded, .. }))
        .unwrap();
    assert!(matches!(&entries[success + 1].event, LedgerEvent::Attested { .. }), "recorded right after the success");
    assert_eq!(record.attestations[0].digest, Digest::sha256_of(entries[success].hash.as_bytes()));
    let again = pipeline.promote(&build.id, "prd", "ci").await.unwrap();
    assert_eq!(again.attestations, record.attestations);
    assert_eq!(attestor.calls.load(Ordering::SeqCst), 1, "an attested promotion is not attested again");
    assert_eq!(ledger.read_since(0).await.unwrap().len(), entries.len());
}

#[tokio::test]
async fn a_failing_attestor_leaves_the_promotion_succeeded_and_is_asked_again() {
    let attestor = Arc::new(CountingAttestor { failures: 1, ..CountingAttestor::default() });
    let (pipeline, build, _ledger) = pipeline(attestor.clone()).await;
    let error = pipeline.promote(&build.id, "prd", "ci").await.unwrap_err();
    assert!(error.is_retryable() && error.to_string().contains("registry is down"), "{error}");
    let status = pipeline.status().await.unwrap();
    assert_eq!(status.stage("prd").unwrap().current.as_ref(), Some(&build.id), "the promotion itself succeeded");
    let record = pipeline.promote(&build.id, "prd", "ci").await.unwrap();
    assert!(record.state.succeeded());
    assert_eq!(record.attestations.len(), 1);
    assert_eq!(attestor.calls.load(Ordering::SeqCst), 2);
}
