//! [`SignatureGate`]: every artifact of the build carries enough verified sigstore signatures.

use std::fmt;

use async_trait::async_trait;
use promote_core::gate::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GateReport};
use promote_core::ledger::Verdict;
use promote_core::{Artifact, Error, Result};
use serde_json::{Value, json};

use super::discover::{Discovery, Listing, discover, tag_schema_tag};
use super::policy::{SignaturePolicy, TrustRoot};
use super::verify::{Accepted, ParsedBundle, Rejection};
use crate::copy::CopyEndpoint;
use crate::registry::OciRegistryStore;

/// The SLSA provenance v1 predicate type.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// An entry gate (also usable as a registration check) that admits a build only when each of its artifact
/// digests carries sigstore bundles, attached as OCI referrers, that satisfy `require` different policies.
///
/// - Discovery, per artifact: the referrers API (`GET /v2/<repo>/referrers/<digest>`), else the
///   `sha256-<hex>` tag-schema index; then each referrer manifest and its bundle layer (digest-checked).
///   On a registry with the referrers API that is `1 + 2 × bundles` requests per artifact; without it,
///   one more.
/// - Verification, offline, by `sigstore-verify` against the [`TrustRoot`] (loaded once): certificate
///   chain and SCT (keyless), transparency-log checkpoint, inclusion proof and SET (unless a policy
///   says [`SignaturePolicy::without_tlog`]), the signature, the log body's consistency with the bundle,
///   and that the signed statement's subject (or the signed message) is the artifact's digest.
/// - `require` policies must each be met by a different bundle (a bundle counts for one policy).
/// - With [`SignatureGate::require_provenance`], a verified SLSA provenance v1 statement about the digest
///   must name the build's commit as its source revision.
///
/// Evidence per artifact: where the referrers were listed, the requests made, and for each policy met the
/// signer (certificate identity and issuer, or `key:<sha256 of the key>`), the log index, the bundle
/// digest and the referrer digest. A failure names the artifact and why: no referrer, wrong identity,
/// wrong issuer, wrong key, subject mismatch, untrusted root, tampered, no log entry.
#[derive(Clone)]
pub struct SignatureGate {
    name: String,
    store: OciRegistryStore,
    root: TrustRoot,
    policies: Vec<SignaturePolicy>,
    require: usize,
    provenance: bool,
}

impl fmt::Debug for SignatureGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureGate")
            .field("name", &self.name)
            .field("root", &self.root)
            .field("policies", &self.policies.iter().map(SignaturePolicy::name).collect::<Vec<_>>())
            .field("require", &self.require)
            .field("provenance", &self.provenance)
            .finish()
    }
}

impl SignatureGate {
    /// A gate named `name` that reads referrers through `store` and verifies against `root`; it passes
    /// when one of `policies` is met (see [`SignatureGate::require`]).
    pub fn new(
        name: impl Into<String>,
        store: OciRegistryStore,
        root: TrustRoot,
        policies: Vec<SignaturePolicy>,
    ) -> Result<Self> {
        let name = name.into();
        if policies.is_empty() {
            return Err(Error::invalid("signature gate", name, "needs at least one policy"));
        }
        let mut names: Vec<&str> = policies.iter().map(SignaturePolicy::name).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(Error::invalid("signature gate", name, format!("two policies are named `{}`", pair[0])));
        }
        Ok(SignatureGate { name, store, root, policies, require: 1, provenance: false })
    }

    /// Requires `n` signatures, each meeting a different policy (1 to the number of policies).
    pub fn require(mut self, n: usize) -> Result<Self> {
        if n == 0 || n > self.policies.len() {
            return Err(Error::invalid(
                "signature gate",
                self.name.clone(),
                format!("require must be between 1 and the number of policies ({}), not {n}", self.policies.len()),
            ));
        }
        self.require = n;
        Ok(self)
    }

    /// Also requires a SLSA provenance v1 attestation, signed by one of the policies, whose source
    /// revision is the build's commit.
    pub fn require_provenance(mut self, required: bool) -> Self {
        self.provenance = required;
        self
    }

    /// Judges one artifact: `Ok(evidence)` when it passes, `Err((reason, evidence))` when not.
    async fn check_artifact(
        &self,
        name: &str,
        artifact: &Artifact,
        commit: &str,
    ) -> Result<std::result::Result<Value, (String, Value)>> {
        let digest = &artifact.digest;
        let endpoint = CopyEndpoint::registry(&self.store, artifact.reference.clone());
        let discovery = discover(endpoint.reader(), digest, &self.store.copy_options().retry).await?;
        let label = format!("artifact {name} ({})", artifact.reference);
        let mut evidence = json!({
            "digest": digest.as_str(),
            "listed_by": discovery.listing.as_str(),
            "referrers": discovery.referrers,
            "bundles": discovery.bundles.len(),
            "requests": discovery.requests,
        });
        if discovery.bundles.is_empty() {
            let reason = format!("{label}: no referrer: {}", no_bundle_reason(&discovery, digest));
            return Ok(Err((reason, evidence)));
        }
        // judged[b][p]: bundle b against policy p.
        let judged: Vec<Vec<std::result::Result<Accepted, Rejection>>> = discovery
            .bundles
            .iter()
            .map(|found| {
                let parsed = ParsedBundle::parse(&found.bytes);
                self.policies.iter().map(|policy| parsed.judge(&self.root, policy, digest)).collect()
            })
            .collect();
        let assignment = best_assignment(&judged, self.policies.len());
        let matched: Vec<Value> = assignment
            .iter()
            .enumerate()
            .filter_map(|(policy, bundle)| {
                let bundle = (*bundle)?;
                let accepted = judged[bundle][policy].as_ref().ok()?;
                let found = &discovery.bundles[bundle];
                Some(json!({
                    "policy": self.policies[policy].name(),
                    "signer": accepted.signer,
                    "issuer": accepted.issuer,
                    "log_index": accepted.log_index,
                    "bundle_digest": found.bundle_digest.as_str(),
                    "referrer": found.referrer.as_str(),
                }))
            })
            .collect();
        let met = matched.len();
        evidence["matched"] = Value::Array(matched);
        if met < self.require {
            let mut why: Vec<String> = Vec::new();
            for (policy_index, policy) in self.policies.iter().enumerate() {
                if assignment[policy_index].is_some() {
                    continue;
                }
                let rejections: Vec<String> = judged
                    .iter()
                    .zip(&discovery.bundles)
                    .map(|(row, found)| match &row[policy_index] {
                        Err(rejection) => format!("bundle {}: {rejection}", short(found.bundle_digest.as_str())),
                        // Accepted, but the bundle already counts for another policy.
                        Ok(_) => {
                            format!("bundle {} already counts for another policy", short(found.bundle_digest.as_str()))
                        }
                    })
                    .collect();
                why.push(format!("policy {} not met ({})", policy.name(), rejections.join("; ")));
            }
            evidence["rejected"] = rejection_evidence(&judged, &discovery, &self.policies);
            let reason = format!("{label}: {met} of {} required signatures verified: {}", self.require, why.join("; "));
            return Ok(Err((reason, evidence)));
        }
        if self.provenance {
            match check_provenance(&judged, &discovery, commit) {
                Ok(provenance) => evidence["provenance"] = provenance,
                Err(reason) => return Ok(Err((format!("{label}: {reason}"), evidence))),
            }
        }
        Ok(Ok(evidence))
    }
}

fn short(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

fn no_bundle_reason(discovery: &Discovery, digest: &promote_core::Digest) -> String {
    match discovery.listing {
        Listing::Nothing => {
            format!("no sigstore bundle is attached (no referrers API, and no {} index)", tag_schema_tag(digest))
        }
        listing => format!(
            "none of the {} referrers listed by the {} is a sigstore bundle about this digest",
            discovery.referrers,
            listing.as_str()
        ),
    }
}

fn rejection_evidence(
    judged: &[Vec<std::result::Result<Accepted, Rejection>>],
    discovery: &Discovery,
    policies: &[SignaturePolicy],
) -> Value {
    let mut out = Vec::new();
    for (row, found) in judged.iter().zip(&discovery.bundles) {
        for (cell, policy) in row.iter().zip(policies) {
            if let Err(rejection) = cell {
                out.push(json!({
                    "policy": policy.name(),
                    "bundle_digest": found.bundle_digest.as_str(),
                    "reason": rejection.code(),
                }));
            }
        }
    }
    Value::Array(out)
}

/// A verified SLSA provenance v1 statement naming `commit`, or why there is none.
fn check_provenance(
    judged: &[Vec<std::result::Result<Accepted, Rejection>>],
    discovery: &Discovery,
    commit: &str,
) -> std::result::Result<Value, String> {
    let mut seen: Vec<String> = Vec::new();
    for (row, found) in judged.iter().zip(&discovery.bundles) {
        for accepted in row.iter().filter_map(|cell| cell.as_ref().ok()) {
            let Some(statement) = &accepted.statement else { continue };
            if statement.predicate_type != SLSA_PROVENANCE_V1 {
                continue;
            }
            let revisions = provenance_revisions(&statement.predicate);
            if revisions.iter().any(|revision| revision.eq_ignore_ascii_case(commit)) {
                return Ok(json!({
                    "revision": commit,
                    "signer": accepted.signer,
                    "bundle_digest": found.bundle_digest.as_str(),
                }));
            }
            seen.extend(revisions);
        }
    }
    if seen.is_empty() {
        Err(format!("no verified SLSA provenance ({SLSA_PROVENANCE_V1}) names a source revision"))
    } else {
        seen.sort();
        seen.dedup();
        Err(format!(
            "provenance mismatch: the verified SLSA provenance names revision {}, the build's commit is {commit}",
            seen.join(", ")
        ))
    }
}

/// The git revisions a SLSA v1 provenance predicate names: `gitCommit` (or `sha1`) digests of its
/// `buildDefinition.resolvedDependencies`.
fn provenance_revisions(predicate: &Value) -> Vec<String> {
    let Some(dependencies) = predicate.pointer("/buildDefinition/resolvedDependencies").and_then(Value::as_array)
    else {
        return Vec::new();
    };
    dependencies
        .iter()
        .filter_map(|dependency| {
            let digest = dependency.get("digest")?;
            digest.get("gitCommit").or_else(|| digest.get("sha1"))?.as_str().map(str::to_owned)
        })
        .collect()
}

/// The largest set of (policy, bundle) pairs in which every policy and every bundle appears at most once
/// and every pair verified: `assignment[policy] = Some(bundle)`. Augmenting paths (Kuhn); both sides are
/// small.
fn best_assignment(judged: &[Vec<std::result::Result<Accepted, Rejection>>], policies: usize) -> Vec<Option<usize>> {
    fn augment(
        policy: usize,
        judged: &[Vec<std::result::Result<Accepted, Rejection>>],
        visited: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for bundle in 0..judged.len() {
            if judged[bundle][policy].is_err() || visited[bundle] {
                continue;
            }
            visited[bundle] = true;
            if owner[bundle].is_none_or(|other| augment(other, judged, visited, owner)) {
                owner[bundle] = Some(policy);
                return true;
            }
        }
        false
    }
    let mut owner: Vec<Option<usize>> = vec![None; judged.len()];
    for policy in 0..policies {
        let mut visited = vec![false; judged.len()];
        augment(policy, judged, &mut visited, &mut owner);
    }
    let mut assignment = vec![None; policies];
    for (bundle, policy) in owner.iter().enumerate() {
        if let Some(policy) = policy {
            assignment[*policy] = Some(bundle);
        }
    }
    assignment
}

#[async_trait]
impl Gate for SignatureGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "signature"
    }

    fn capabilities(&self) -> GateCapabilities {
        GateCapabilities::pure()
    }

    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }

    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        let mut artifacts = serde_json::Map::new();
        let mut failures = Vec::new();
        for (name, artifact) in &context.build.artifacts {
            match self.check_artifact(name, artifact, &context.build.commit).await? {
                Ok(evidence) => {
                    artifacts.insert(name.clone(), evidence);
                }
                Err((reason, evidence)) => {
                    artifacts.insert(name.clone(), evidence);
                    failures.push(reason);
                }
            }
        }
        let verdict = if failures.is_empty() { Verdict::Pass } else { Verdict::Fail(failures.join("; ")) };
        Ok(GateReport::new(verdict)
            .with("trusted_root", self.root.digest().as_str())
            .with("require", self.require)
            .with("artifacts", Value::Object(artifacts)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> std::result::Result<Accepted, Rejection> {
        Ok(Accepted { signer: "s".into(), issuer: None, log_index: None, statement: None })
    }
    fn no() -> std::result::Result<Accepted, Rejection> {
        Err(Rejection::Tampered("x".into()))
    }

    #[test]
    fn each_bundle_counts_for_one_policy() {
        // Bundle 0 meets both policies, bundle 1 only the first: both policies can be met.
        let judged = vec![vec![ok(), ok()], vec![ok(), no()]];
        assert_eq!(best_assignment(&judged, 2), [Some(1), Some(0)]);
        // One bundle meeting two policies is one signature.
        let judged = vec![vec![ok(), ok()]];
        assert_eq!(best_assignment(&judged, 2).iter().flatten().count(), 1);
    }

    #[test]
    fn provenance_revisions_come_from_resolved_dependencies() {
        let predicate = json!({"buildDefinition": {"resolvedDependencies": [
            {"uri": "git+https://example.invalid/app", "digest": {"gitCommit": "abc123"}},
            {"uri": "pkg:npm/x", "digest": {"sha256": "00"}}
        ]}});
        assert_eq!(provenance_revisions(&predicate), ["abc123"]);
        assert!(provenance_revisions(&json!({})).is_empty());
    }
}
