//! Who may sign: [`SignaturePolicy`] (a keyless identity and issuer, or a public key) and the
//! [`TrustRoot`] the signatures chain to.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use promote_core::{Digest, Error, Result};
use regex::Regex;
use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::DerPublicKey;
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

/// A sigstore trust root (`trusted_root.json`: Fulcio CAs, Rekor logs, CT logs, TSAs), parsed and
/// prepared once, then shared by every verification.
#[derive(Clone)]
pub struct TrustRoot {
    verifier: Arc<Verifier>,
    digest: Digest,
    source: String,
}

impl fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustRoot").field("source", &self.source).field("digest", &self.digest).finish()
    }
}

impl TrustRoot {
    /// Reads a `trusted_root.json` file (the sigstore `TrustedRoot` JSON form).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|error| Error::io(PathBuf::from(path), error))?;
        Self::from_json(&json, &path.display().to_string())
    }

    /// Parses a trusted root from its JSON; `source` names it in messages.
    pub fn from_json(json: &str, source: &str) -> Result<Self> {
        let invalid = |reason: String| Error::invalid("trusted root", source.to_owned(), reason);
        let root = TrustedRoot::from_json(json).map_err(|error| invalid(error.to_string()))?;
        let verifier = Verifier::new(&root).map_err(|error| invalid(error.to_string()))?;
        Ok(TrustRoot {
            verifier: Arc::new(verifier),
            digest: Digest::sha256_of(json.as_bytes()),
            source: source.into(),
        })
    }

    /// The SHA-256 of the root's JSON, recorded as evidence of which root judged.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    pub(crate) fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Verifies one sigstore bundle (its JSON bytes) as a signature of `digest` by `policy`, offline: what
    /// the [`SignatureGate`](super::SignatureGate) does for each bundle it finds.
    pub fn verify_bundle(
        &self,
        bundle: &[u8],
        policy: &SignaturePolicy,
        digest: &Digest,
    ) -> std::result::Result<super::VerifiedSignature, super::Rejection> {
        super::verify::ParsedBundle::parse(bundle).judge(self, policy, digest)
    }
}

/// How a value (a certificate identity, an OIDC issuer) is matched.
#[derive(Debug, Clone)]
pub enum Match {
    /// Equal to this string.
    Exact(String),
    /// Matched in full by this regular expression (it is anchored: `^(?:pattern)$`).
    Pattern(Regex),
}

impl Match {
    /// An anchored pattern: `pattern` must match the whole value.
    pub fn pattern(pattern: &str) -> Result<Self> {
        Regex::new(&format!("^(?:{pattern})$"))
            .map(Match::Pattern)
            .map_err(|error| Error::invalid("identity pattern", pattern, error.to_string()))
    }

    /// Whether `value` satisfies this matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Match::Exact(expected) => expected == value,
            Match::Pattern(pattern) => pattern.is_match(value),
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Exact(value) => write!(f, "`{value}`"),
            // Shown without the anchors we added.
            Match::Pattern(pattern) => {
                let text = pattern.as_str();
                let inner = text.strip_prefix("^(?:").and_then(|t| t.strip_suffix(")$")).unwrap_or(text);
                write!(f, "pattern `{inner}`")
            }
        }
    }
}

/// Who signed: a certificate identity from an OIDC issuer (keyless), or a key.
#[derive(Debug, Clone)]
pub enum Signer {
    /// A Fulcio certificate whose SAN and OIDC issuer match.
    Keyless {
        /// The certificate's subject alternative name (email, URI…).
        identity: Match,
        /// The OIDC issuer recorded in the certificate.
        issuer: Match,
    },
    /// A signature by this public key.
    Key {
        /// The key (DER SubjectPublicKeyInfo).
        key: DerPublicKey,
        /// Hex SHA-256 of the DER key: the hint sigstore-js and cosign write, and the evidence we record.
        key_id: String,
    },
}

/// One acceptable signer, with what its signature must carry.
#[derive(Debug, Clone)]
pub struct SignaturePolicy {
    pub(crate) name: String,
    pub(crate) signer: Signer,
    pub(crate) tlog: bool,
    pub(crate) predicate_type: Option<String>,
}

impl SignaturePolicy {
    /// A keyless signer: a certificate for exactly `identity`, issued on a token from exactly `issuer`.
    pub fn keyless(name: impl Into<String>, identity: impl Into<String>, issuer: impl Into<String>) -> Self {
        Self::keyless_matching(name, Match::Exact(identity.into()), Match::Exact(issuer.into()))
    }

    /// A keyless signer whose identity and issuer satisfy these matchers.
    pub fn keyless_matching(name: impl Into<String>, identity: Match, issuer: Match) -> Self {
        SignaturePolicy {
            name: name.into(),
            signer: Signer::Keyless { identity, issuer },
            tlog: true,
            predicate_type: None,
        }
    }

    /// A signer holding the private half of this PEM public key (SubjectPublicKeyInfo).
    pub fn public_key(name: impl Into<String>, pem: &str) -> Result<Self> {
        let name = name.into();
        let key = DerPublicKey::from_pem(pem)
            .map_err(|error| Error::invalid("public key", name.clone(), format!("not a PEM public key: {error}")))?;
        let key_id = Digest::sha256_of(key.as_bytes()).hex().to_owned();
        Ok(SignaturePolicy { name, signer: Signer::Key { key, key_id }, tlog: true, predicate_type: None })
    }

    /// Accepts signatures without a transparency-log inclusion proof (by default one is required).
    pub fn without_tlog(mut self) -> Self {
        self.tlog = false;
        self
    }

    /// Only counts DSSE statements with this `predicateType` (by default any statement, or a plain
    /// message signature over the manifest, that names the digest counts).
    pub fn predicate_type(mut self, predicate_type: impl Into<String>) -> Self {
        self.predicate_type = Some(predicate_type.into());
        self
    }

    /// The policy's name, as evidence and reasons show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who the policy accepts.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The library policy that checks this one's cryptography. A keyless policy with a pattern asks the
    /// library for the chain, SCT and log checks only; the pattern is then checked on the verified
    /// certificate's claims (see `verify.rs`).
    pub(crate) fn library_policy(&self) -> LibraryPolicy {
        match &self.signer {
            Signer::Keyless { identity, issuer } => {
                let mut policy = VerificationPolicy::any_identity();
                if let Match::Exact(identity) = identity {
                    policy = policy.require_identity(identity.as_str());
                }
                if let Match::Exact(issuer) = issuer {
                    policy = policy.require_issuer(issuer.as_str());
                }
                if !self.tlog {
                    policy = policy.skip_tlog_unsafe();
                }
                LibraryPolicy::Keyless(policy)
            }
            Signer::Key { key, .. } => {
                let mut policy = PublicKeyVerificationPolicy::new(key.clone());
                if !self.tlog {
                    policy = policy.skip_tlog_unsafe();
                }
                LibraryPolicy::Key(policy)
            }
        }
    }
}

/// A [`SignaturePolicy`] in `sigstore-verify`'s terms.
pub(crate) enum LibraryPolicy {
    Keyless(VerificationPolicy),
    Key(PublicKeyVerificationPolicy),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_anchored() {
        let pattern = Match::pattern(r"https://github\.com/acme/.+").unwrap();
        assert!(pattern.matches("https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"));
        assert!(!pattern.matches("https://evil.example/?https://github.com/acme/app"), "must match from the start");
        let prefix = Match::pattern("ci@promote").unwrap();
        assert!(!prefix.matches("ci@promote.test.evil"), "must match to the end");
        assert_eq!(prefix.to_string(), "pattern `ci@promote`");
        assert!(Match::pattern("(").is_err());
    }

    #[test]
    fn a_key_policy_knows_its_key_id() {
        // A P-256 SubjectPublicKeyInfo.
        let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWLuZqDPn1x3Y6Nw3I2Hcl4mU5Q+Fg+o6cOyO0lHH\nS0v4ZvqPTGK6DdE9MlfP5pcmHCM/TqXqOtkuLdGoG6MJXw==\n-----END PUBLIC KEY-----\n";
        let policy = SignaturePolicy::public_key("release", pem).unwrap();
        let Signer::Key { key_id, .. } = policy.signer() else { panic!("a key policy") };
        assert_eq!(key_id.len(), 64);
        assert!(SignaturePolicy::public_key("release", "not pem").is_err());
    }
}
