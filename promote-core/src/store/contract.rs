//! The argument checks every [`ArtifactStore`](super::ArtifactStore) implementation makes first, written once. Implementors reach
//! them through `promote_core::backend`.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::ArtifactRef;

/// Checks an `exists` call's argument the way the [`ArtifactStore`](super::ArtifactStore) contract requires, and returns the digest
/// it pins. Backends call it first.
pub fn check_exists_args(reference: &ArtifactRef) -> Result<&Digest> {
    reference.digest().ok_or_else(|| Error::invalid("reference", reference.to_string(), "exists needs a digest"))
}

/// Checks a `promote` call's arguments the way the [`ArtifactStore`](super::ArtifactStore) contract requires, and returns the
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
