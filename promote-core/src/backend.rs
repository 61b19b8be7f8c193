//! For those who implement a backend rather than use one: the checks every store's contract requires, and
//! the ledger's hash chain for a ledger of your own. Users of `promote` do not need this module.
//!
//! A lock implementation builds its leases with [`Lease::new`](crate::lock::Lease::new), adding
//! [`Lease::lost_when`](crate::lock::Lease::lost_when) or [`Lease::lost_if`](crate::lock::Lease::lost_if)
//! when its locks can be lost while held. Every backend runs the conformance suites (feature
//! `conformance`) against itself.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::ArtifactRef;

pub use crate::ledger::{ChainTip, GENESIS_HASH, verify_chain, verify_chain_with};

/// Checks an `exists` call's argument the way the [`ArtifactStore`](crate::ArtifactStore) contract requires, and returns the digest
/// it pins. Backends call it first.
pub fn check_exists_args(reference: &ArtifactRef) -> Result<&Digest> {
    reference.digest().ok_or_else(|| Error::invalid("reference", reference.to_string(), "exists needs a digest"))
}

/// Checks a `promote` call's arguments the way the [`ArtifactStore`](crate::ArtifactStore) contract requires, and returns the
/// source digest. Backends call it first.
pub fn check_promote_args<'a>(source: &'a ArtifactRef, target: &ArtifactRef) -> Result<&'a Digest> {
    let digest = source.digest().ok_or_else(|| {
        Error::invalid("reference", source.to_string(), "promotion needs a source pinned to a digest")
    })?;
    if let Some(target_digest) = target.digest()
        && target_digest != digest
    {
        return Err(Error::invalid(
            "reference",
            target.to_string(),
            format!("the target pins {target_digest}, but the source is {digest}"),
        ));
    }
    Ok(digest)
}
