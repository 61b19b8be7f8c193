//! Supply-chain trust: the [`SignatureGate`], which verifies the sigstore bundles attached to each artifact
//! digest as OCI referrers, offline, against a sigstore trust root and signer policies.
//!
//! - `policy.rs`: who may sign ([`SignaturePolicy`]: a keyless identity and issuer, or a public key) and
//!   the [`TrustRoot`] (`trusted_root.json`).
//! - `discover.rs`: the referrers of a digest (referrers API, then the `sha256-<hex>` tag-schema index)
//!   and their bundle layers.
//! - `verify.rs`: one bundle against one policy, with `sigstore-verify` (chain, SCT, checkpoint, inclusion
//!   proof, SET, signature, statement subject), and the [`Rejection`] reasons.
//! - `attest.rs`: the [`PromotionAttestor`]: a signed in-toto statement of a successful promotion, attached
//!   to each promoted digest as a referrer.
//! - `gate.rs`: the gate: `require` different policies per artifact, optional SLSA provenance, evidence.

mod attest;
mod discover;
mod gate;
mod policy;
mod verify;

pub use attest::{
    AttachedAttestation, AttestationReport, PROMOTION_ANNOTATION, PROMOTION_PREDICATE_TYPE, PromotionAttestor,
};
pub use discover::BUNDLE_MEDIA_TYPE_PREFIX;
pub use gate::{SLSA_PROVENANCE_V1, SignatureGate};
pub use policy::{Match, SignaturePolicy, Signer, TrustRoot};
/// The in-toto Statement type of [`VerifiedSignature::statement`] (from `sigstore-verify`).
pub use sigstore_verify::types::Statement;
pub use verify::{Rejection, VerifiedSignature};
