//! Attestors: what publishes a signed record of a promotion once it has succeeded (a stage option).

use std::fmt::Debug;

use async_trait::async_trait;

use crate::error::Result;
use crate::ledger::{AttestationRef, Ledger, PromotionId};

/// Publishes an attestation of a promotion that succeeded: for example a signed in-toto statement attached
/// to the promoted digests, where an admission controller can check it.
///
/// # Contract
/// - The engine calls `attest` after the ledger recorded the promotion's success, while it still holds the
///   stage's lock, and records what it returns in the ledger ([`LedgerEvent::Attested`]). The attestation
///   may therefore cite the success entry (its hash) but not the entry that records the attestation.
/// - Idempotent: asked again about a promotion it attested (a re-run after a crash or a failed ledger
///   write), it returns what it published before and publishes nothing new.
/// - An `Err` leaves the promotion succeeded; the next `promote` of the same build to the stage asks again.
///
/// [`LedgerEvent::Attested`]: crate::ledger::LedgerEvent::Attested
#[async_trait]
pub trait Attestor: Debug + Send + Sync + 'static {
    /// The attestor's name, unique within its stage.
    fn name(&self) -> &str;

    /// Publishes (or finds, when already published) the attestations of `promotion`, reading what it
    /// needs from `ledger`.
    async fn attest(&self, ledger: &dyn Ledger, promotion: &PromotionId) -> Result<Vec<AttestationRef>>;
}

forward_to_inner!(Attestor {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn attest(&self, ledger: &dyn Ledger, promotion: &PromotionId) -> Result<Vec<AttestationRef>> {
        (**self).attest(ledger, promotion).await
    }
});
