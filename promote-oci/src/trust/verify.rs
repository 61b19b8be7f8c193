//! Judging one bundle against one policy, offline: `sigstore-verify` checks the whole bundle against the
//! trust root (certificate chain, SCT, checkpoint, inclusion proof, SET, signature, log-body consistency,
//! statement subject); we add what it cannot know (anchored identity patterns, a predicate type) and
//! turn its errors into reasons a person can act on.

use std::fmt;

use promote_core::Digest;
use sigstore_verify::types::bundle::VerificationMaterialContent;
use sigstore_verify::types::{Bundle, Sha256Hash, SignatureContent, Statement};
use sigstore_verify::{CertificateError, Error as VerifyError, TransparencyLogError};

use super::policy::{LibraryPolicy, SignaturePolicy, Signer, TrustRoot};

/// Why a bundle does not satisfy a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The certificate's identity (SAN) is not the one the policy names.
    WrongIdentity(String),
    /// The certificate's OIDC issuer is not the one the policy names.
    WrongIssuer(String),
    /// Signed by another key (or by a certificate where the policy wants a key).
    WrongKey(String),
    /// The signed statement or message is about another digest.
    SubjectMismatch(String),
    /// The certificate or log entry does not chain to the trust root.
    UntrustedRoot(String),
    /// The signature, statement or log entry was changed after signing.
    Tampered(String),
    /// No transparency-log inclusion proof, and the policy requires one.
    NoLogEntry(String),
    /// The statement's predicate type is not the one the policy counts.
    PredicateType(String),
    /// Not a sigstore bundle this verifier can read.
    Malformed(String),
}

impl Rejection {
    /// A short code for the reason, as evidence records it.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::WrongIdentity(_) => "wrong identity",
            Rejection::WrongIssuer(_) => "wrong issuer",
            Rejection::WrongKey(_) => "wrong key",
            Rejection::SubjectMismatch(_) => "subject mismatch",
            Rejection::UntrustedRoot(_) => "untrusted root",
            Rejection::Tampered(_) => "tampered",
            Rejection::NoLogEntry(_) => "no log entry",
            Rejection::PredicateType(_) => "predicate type",
            Rejection::Malformed(_) => "malformed",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Rejection::WrongIdentity(d)
            | Rejection::WrongIssuer(d)
            | Rejection::WrongKey(d)
            | Rejection::SubjectMismatch(d)
            | Rejection::UntrustedRoot(d)
            | Rejection::Tampered(d)
            | Rejection::NoLogEntry(d)
            | Rejection::PredicateType(d)
            | Rejection::Malformed(d) => d,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.detail())
    }
}

/// What a bundle that satisfies a policy proves.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifiedSignature {
    /// The certificate identity (SAN), or `key:<hex SHA-256 of the DER public key>`.
    pub signer: String,
    /// The certificate's OIDC issuer (keyless signatures).
    pub issuer: Option<String>,
    /// The transparency-log index of the signature's entry, when it has one.
    pub log_index: Option<u64>,
    /// The verified in-toto statement (DSSE bundles; `None` for message signatures).
    pub statement: Option<Statement>,
}

/// The crate's short name for it.
pub(crate) type Accepted = VerifiedSignature;

/// A bundle parsed once and judged against every policy.
pub(crate) struct ParsedBundle {
    bundle: Option<Bundle>,
    parse_error: Option<String>,
}

impl ParsedBundle {
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| Bundle::from_json(text).map_err(|error| error.to_string()))
        {
            Ok(bundle) => ParsedBundle { bundle: Some(bundle), parse_error: None },
            Err(error) => ParsedBundle { bundle: None, parse_error: Some(error) },
        }
    }

    /// Judges the bundle as a signature of `digest` by `policy`, against `root`.
    pub(crate) fn judge(
        &self,
        root: &TrustRoot,
        policy: &SignaturePolicy,
        digest: &Digest,
    ) -> Result<Accepted, Rejection> {
        let Some(bundle) = &self.bundle else {
            return Err(Rejection::Malformed(self.parse_error.clone().unwrap_or_default()));
        };
        if digest.algorithm() != "sha256" {
            return Err(Rejection::SubjectMismatch(format!("{digest}: only sha256 image digests are verified")));
        }
        let artifact = Sha256Hash::from_hex(digest.hex()).map_err(|e| Rejection::Malformed(e.to_string()))?;
        let key_hint = match &bundle.verification_material.content {
            VerificationMaterialContent::PublicKey(key) => Some(key.hint.clone()),
            _ => None,
        };
        match (&policy.signer, &key_hint) {
            (Signer::Keyless { .. }, Some(hint)) => {
                return Err(Rejection::WrongKey(format!(
                    "signed with a key (hint {}), the policy wants a certificate identity",
                    shown(hint)
                )));
            }
            (Signer::Key { .. }, None) => {
                return Err(Rejection::WrongKey("signed with a certificate, the policy wants a key".to_owned()));
            }
            _ => {}
        }
        let verifier = root.verifier();
        let verified = match policy.library_policy() {
            LibraryPolicy::Keyless(library) => verifier.verify(artifact, bundle, &library),
            LibraryPolicy::Key(library) => verifier.verify(artifact, bundle, &library),
        };
        let result = verified.map_err(|error| classify(error, policy, key_hint.as_deref()))?;
        let (signer, issuer) = match &policy.signer {
            Signer::Keyless { identity, issuer } => {
                let actual_identity = result.identity().map(|san| san.as_str().to_owned()).unwrap_or_default();
                let actual_issuer = result.issuer().unwrap_or_default().to_owned();
                if !identity.matches(&actual_identity) {
                    return Err(Rejection::WrongIdentity(format!(
                        "the certificate is for `{actual_identity}`, the policy wants {identity}"
                    )));
                }
                if !issuer.matches(&actual_issuer) {
                    return Err(Rejection::WrongIssuer(format!(
                        "the certificate's issuer is `{actual_issuer}`, the policy wants {issuer}"
                    )));
                }
                (actual_identity, Some(actual_issuer))
            }
            Signer::Key { key_id, .. } => (format!("key:{key_id}"), None),
        };
        let statement = match &bundle.content {
            SignatureContent::DsseEnvelope(envelope) => {
                serde_json::from_slice::<Statement>(envelope.payload.as_bytes())
                    .map(Some)
                    .map_err(|error| Rejection::Malformed(format!("the signed statement: {error}")))?
            }
            _ => None,
        };
        if let Some(wanted) = &policy.predicate_type {
            let actual = statement.as_ref().map(|s| s.predicate_type.as_str()).unwrap_or("(a message signature)");
            if actual != wanted {
                return Err(Rejection::PredicateType(format!(
                    "the statement is a `{actual}`, the policy counts `{wanted}`"
                )));
            }
        }
        let log_index = bundle.verification_material.tlog_entries.first().map(|entry| entry.log_index.get());
        Ok(Accepted { signer, issuer, log_index, statement })
    }
}

fn shown(hint: &str) -> &str {
    hint.get(..16).unwrap_or(hint)
}

/// Turns the library's error into the reason a person acts on.
fn classify(error: VerifyError, policy: &SignaturePolicy, key_hint: Option<&str>) -> Rejection {
    let text = error.to_string();
    // A key policy whose key is not the one the bundle names: say so, whatever failed first.
    if let (Signer::Key { key_id, .. }, Some(hint)) = (&policy.signer, key_hint)
        && !hint.is_empty()
        && hint != key_id
        && matches!(error, VerifyError::SignatureInvalid(_) | VerifyError::TransparencyLog(_))
    {
        return Rejection::WrongKey(format!(
            "signed with key {}…, the policy's key is {}… ({text})",
            shown(hint),
            shown(key_id)
        ));
    }
    match error {
        VerifyError::IdentityMismatch { .. } => Rejection::WrongIdentity(text),
        VerifyError::IssuerMismatch { .. } => Rejection::WrongIssuer(text),
        VerifyError::ArtifactMismatch(_) => Rejection::SubjectMismatch(text),
        VerifyError::SignatureInvalid(_) => match policy.signer {
            Signer::Key { .. } => {
                Rejection::WrongKey(format!("the signature does not verify with the policy's key ({text})"))
            }
            Signer::Keyless { .. } => Rejection::Tampered(text),
        },
        VerifyError::Certificate(CertificateError::Malformed(_)) => Rejection::Malformed(text),
        VerifyError::Certificate(_) => Rejection::UntrustedRoot(text),
        VerifyError::TransparencyLog(
            TransparencyLogError::UnknownLog { .. }
            | TransparencyLogError::Checkpoint(_)
            | TransparencyLogError::InclusionPromise(_),
        ) => Rejection::UntrustedRoot(text),
        VerifyError::TransparencyLog(TransparencyLogError::MalformedEntry(_)) => Rejection::Malformed(text),
        VerifyError::TransparencyLog(_) => Rejection::Tampered(text),
        VerifyError::Timestamp(_) => Rejection::UntrustedRoot(text),
        VerifyError::InvalidBundle(ref detail) | VerifyError::UnsupportedBundle(ref detail)
            if detail.contains("inclusion proof") =>
        {
            Rejection::NoLogEntry(text)
        }
        _ => Rejection::Malformed(text),
    }
}
