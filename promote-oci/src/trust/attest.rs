//! [`PromotionAttestor`]: after a successful promotion, a signed in-toto statement of what was promoted,
//! attached to each promoted digest as an OCI referrer, where an admission controller can check it.
//!
//! The statement (in-toto Statement v1) names every promoted digest as a subject; its predicate
//! ([`PROMOTION_PREDICATE_TYPE`]) is built from the ledger alone, so that the same promotion always gives
//! the same statement. It is signed as a DSSE envelope with a P-256 key and wrapped in a sigstore bundle
//! v0.3 (public-key hint, no transparency-log entry: keyless signing and Rekor need online services).
//! Each referrer manifest carries the promotion id as an annotation; an attestation already attached for
//! the promotion is found and reused, so a re-run attaches nothing new.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use promote_core::attest::Attestor;
use promote_core::ledger::{AttestationRef, FinalState, Ledger, LedgerEvent, LedgerView, PromotionId, PromotionKind};
use promote_core::manifest::{Descriptor, OCI_MANIFEST};
use promote_core::{Digest, Error, ErrorClass, Resource, Result, Secret};
use serde_json::{Value, json};
use sigstore_verify::crypto::KeyPair;

use super::discover::{BUNDLE_MEDIA_TYPE_PREFIX, bundle_layer};
use crate::copy::referrers::{self, Listing};
use crate::copy::{CopyEndpoint, GraphEndpoint, GraphSource, Manifest, Pointer};
use crate::registry::OciRegistryStore;

/// The predicate type of promote's promotion attestation (version 0.1). Its fields:
///
/// - `stage`: the stage promoted to; `kind`: `promote` or `rollback`;
/// - `build`: `{id, commit, version}`; `promotion`: `{id, actor, startedAt}`;
/// - `ledger`: `{seq, hash}` of the entry that recorded the success (`PromotionFinished`, succeeded);
/// - `approvers`: who approved the build for the stage; `gates`: `{name, kind, verdict, evidenceDigest}`
///   per gate, the digest being the SHA-256 of the gate evidence's JSON as the ledger holds it;
/// - `artifacts`: `{name, srcRef, dstRef, digest}` (the names in-toto's promotion-record predicate uses);
/// - `timestamp`: when the success was recorded (RFC 3339); `builderId`: promote and its version.
///
/// in-toto's `promotion-record` predicate describes one image copied between registries, and its
/// `deployment` predicate an authorization scope; neither records stage, build, ledger entry, approvals
/// and gates together, hence this type.
pub const PROMOTION_PREDICATE_TYPE: &str = "https://example.invalid/promote/attestation/promotion/v0.1";
/// The referrer annotation naming the promotion an attestation records.
pub const PROMOTION_ANNOTATION: &str = "dev.promote.promotion";
/// The sigstore bundle v0.3 media type.
const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const EMPTY_CONFIG: &str = "application/vnd.oci.empty.v1+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// Signs and attaches promotion attestations with a P-256 key.
#[derive(Clone)]
pub struct PromotionAttestor {
    name: String,
    store: OciRegistryStore,
    key: Arc<KeyPair>,
    key_id: String,
    public_key_pem: String,
}

impl fmt::Debug for PromotionAttestor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PromotionAttestor")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Where one attestation is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttachedAttestation {
    /// The promoted artifact's name.
    pub artifact: String,
    /// The repository and digest it is attached to (`registry/repo@sha256:…`).
    pub subject: String,
    /// The referrer manifest's digest.
    pub referrer: Digest,
    /// The bundle (layer) digest.
    pub bundle: Digest,
    /// Whether this call attached it (`false`: it was there already, from an earlier run).
    pub attached_now: bool,
}

/// What [`PromotionAttestor::attest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttestationReport {
    /// The SHA-256 of the signed statement (the DSSE payload).
    pub statement_digest: Digest,
    /// Per promoted artifact.
    pub attached: Vec<AttachedAttestation>,
    /// Registry requests made (retries not counted).
    pub requests: u32,
}

impl PromotionAttestor {
    /// An attestor that writes through `store` and signs with this P-256 private key (PKCS#8 PEM).
    pub fn new(store: OciRegistryStore, private_key_pem: &Secret) -> Result<Self> {
        let invalid = |reason: &str| Error::invalid("attestation key", "(secret)", reason.to_owned());
        let text = private_key_pem.expose();
        let body: String = text
            .lines()
            .skip_while(|line| !line.starts_with("-----BEGIN PRIVATE KEY-----"))
            .skip(1)
            .take_while(|line| !line.starts_with("-----END"))
            .collect();
        if body.is_empty() {
            return Err(invalid("expected a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)"));
        }
        let der = STANDARD.decode(body.trim()).map_err(|_| invalid("the PEM body is not base64"))?;
        let key = KeyPair::from_pkcs8_der(&der).map_err(|_| invalid("not a P-256 PKCS#8 private key"))?;
        let public = key.public_key_der().map_err(|_| invalid("no public key"))?;
        let key_id = Digest::sha256_of(public.as_bytes()).hex().to_owned();
        let public_key_pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            STANDARD
                .encode(public.as_bytes())
                .as_bytes()
                .chunks(64)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok(PromotionAttestor { name: "attestation".into(), store, key: Arc::new(key), key_id, public_key_pem })
    }

    /// Names the attestor (default `attestation`), as the ledger records its attestations.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Hex SHA-256 of the DER public key: the bundle's key hint and the DSSE signature's `keyid`.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key (PEM), for verifiers and admission policies.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The statement recording the promotion `id`, which must have succeeded, as the ledger shows it.
    pub async fn statement(&self, ledger: &dyn Ledger, id: &PromotionId) -> Result<Value> {
        let entries = ledger.read_since(0).await?;
        let success = entries
            .iter()
            .rev()
            .find(|entry| {
                matches!(&entry.event, LedgerEvent::PromotionFinished { promotion, state: FinalState::Succeeded }
                    if promotion == id)
            })
            .ok_or_else(|| {
                Error::invalid("promotion", id.to_string(), "has not succeeded: only a success is attested")
            })?
            .clone();
        let mut view = LedgerView::new();
        view.apply_all(entries);
        let record = view.promotion(id).ok_or_else(|| Error::not_found(Resource::Promotion, id.to_string()))?;
        let build =
            view.build(&record.build).ok_or_else(|| Error::not_found(Resource::Build, record.build.to_string()))?;
        let approvers: Vec<&str> = view.approvals(&record.stage, &record.build).map(|a| a.approver.as_str()).collect();
        let gates: Vec<Value> = record
            .gates
            .iter()
            .map(|gate| {
                let evidence = serde_json::to_vec(gate).unwrap_or_default();
                json!({
                    "name": gate.gate, "kind": gate.kind, "verdict": gate.verdict,
                    "evidenceDigest": Digest::sha256_of(&evidence).as_str(),
                })
            })
            .collect();
        let artifacts: Vec<Value> = record
            .artifacts
            .iter()
            .map(|(name, placed)| {
                let source = build.artifacts.get(name).map(|a| a.reference.to_string());
                json!({"name": name, "srcRef": source, "dstRef": placed.target.to_string(), "digest": placed.digest.as_str()})
            })
            .collect();
        let mut subjects: BTreeMap<String, Value> = BTreeMap::new();
        for placed in record.artifacts.values() {
            subjects.entry(placed.digest.to_string()).or_insert_with(
                || json!({"name": placed.target.name(), "digest": {placed.digest.algorithm(): placed.digest.hex()}}),
            );
        }
        let kind = match record.kind {
            PromotionKind::Rollback { .. } => "rollback",
            _ => "promote",
        };
        Ok(json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": subjects.into_values().collect::<Vec<_>>(),
            "predicateType": PROMOTION_PREDICATE_TYPE,
            "predicate": {
                "stage": record.stage,
                "kind": kind,
                "build": {"id": build.id.as_str(), "commit": build.commit, "version": build.version.as_ref().map(ToString::to_string)},
                "promotion": {"id": id.to_string(), "actor": record.actor, "startedAt": record.started_at.to_rfc3339()},
                "ledger": {"seq": success.seq, "hash": success.hash},
                "approvers": approvers,
                "gates": gates,
                "artifacts": artifacts,
                "timestamp": success.at.to_rfc3339(),
                "builderId": concat!("https://example.invalid/promote@", env!("CARGO_PKG_VERSION")),
            },
        }))
    }

    /// Signs `statement` into a sigstore bundle v0.3 (DSSE, public-key hint, no log entry).
    pub fn sign(&self, statement: &Value) -> Result<Vec<u8>> {
        let payload = serde_json::to_vec(statement).map_err(|e| Error::invalid("statement", "", e.to_string()))?;
        let signature = self
            .key
            .sign(&sigstore_verify::types::pae(IN_TOTO, &payload))
            .map_err(|e| Error::backend("attestation", ErrorClass::Persistent, format!("signing failed: {e}")))?;
        let bundle = json!({
            "mediaType": BUNDLE_V03,
            "verificationMaterial": {"publicKey": {"hint": self.key_id}, "tlogEntries": [], "timestampVerificationData": {}},
            "dsseEnvelope": {
                "payload": STANDARD.encode(&payload),
                "payloadType": IN_TOTO,
                "signatures": [{"sig": STANDARD.encode(signature.as_bytes()), "keyid": self.key_id}],
            },
        });
        serde_json::to_vec(&bundle).map_err(|e| Error::invalid("bundle", "", e.to_string()))
    }

    /// Attests the promotion `id`: builds and signs the statement, then attaches it to every promoted
    /// digest where the stage finds it (children first: blobs, the referrer manifest, then the listing),
    /// unless an attestation of this promotion is already attached there.
    pub async fn attest(&self, ledger: &dyn Ledger, id: &PromotionId) -> Result<AttestationReport> {
        let statement = self.statement(ledger, id).await?;
        let statement_digest = Digest::sha256_of(&serde_json::to_vec(&statement).unwrap_or_default());
        let mut view = LedgerView::new();
        view.apply_all(ledger.read_since(0).await?);
        let record = view.promotion(id).ok_or_else(|| Error::not_found(Resource::Promotion, id.to_string()))?;
        let retry = self.store.copy_options().retry;
        let mut bundle: Option<Bytes> = None;
        let mut requests = 0;
        let mut attached = Vec::new();
        for (name, placed) in &record.artifacts {
            let endpoint = CopyEndpoint::registry(&self.store, placed.target.pinned(&placed.digest));
            let subject = format!("{}@{}", placed.target.name(), placed.digest);
            let listed = referrers::list(endpoint.reader(), &placed.digest, &retry).await?;
            requests += listed.requests;
            let (found, reads) = existing(endpoint.writer(), &listed.entries, &placed.digest, id, &retry).await?;
            requests += reads;
            if let Some((referrer, layer)) = found {
                attached.push(AttachedAttestation {
                    artifact: name.clone(),
                    subject,
                    referrer,
                    bundle: layer,
                    attached_now: false,
                });
                continue;
            }
            let bytes = match &bundle {
                Some(bytes) => bytes.clone(),
                None => bundle.insert(Bytes::from(self.sign(&statement)?)).clone(),
            };
            let (referrer, layer, writes) =
                attach(endpoint.writer(), &placed.digest, bytes, id, listed.listing, &retry).await?;
            requests += writes;
            attached.push(AttachedAttestation {
                artifact: name.clone(),
                subject,
                referrer,
                bundle: layer,
                attached_now: true,
            });
        }
        Ok(AttestationReport { statement_digest, attached, requests })
    }
}

#[async_trait]
impl Attestor for PromotionAttestor {
    fn name(&self) -> &str {
        &self.name
    }

    async fn attest(&self, ledger: &dyn Ledger, promotion: &PromotionId) -> Result<Vec<AttestationRef>> {
        let report = PromotionAttestor::attest(self, ledger, promotion).await?;
        Ok(report
            .attached
            .into_iter()
            .map(|attached| AttestationRef::new(&self.name, attached.artifact, attached.subject, attached.referrer))
            .collect())
    }
}

/// An attestation of promotion `id` among the listed referrers: (referrer, bundle layer), and the
/// requests made looking.
async fn existing(
    target: &dyn GraphEndpoint,
    entries: &[referrers::Listed],
    subject: &Digest,
    id: &PromotionId,
    retry: &promote_core::retry::RetryPolicy,
) -> Result<(Option<(Digest, Digest)>, u32)> {
    let mut reads = 0;
    for entry in entries {
        if entry.artifact_type.as_deref().is_some_and(|t| !t.starts_with(BUNDLE_MEDIA_TYPE_PREFIX)) {
            continue;
        }
        let pointer = Pointer::Digest(entry.digest.clone());
        reads += 1;
        let Some(manifest) = retry.run("read a referrer", || target.fetch_manifest(&pointer, None)).await? else {
            continue;
        };
        let parsed: Value = serde_json::from_slice(&manifest.bytes).unwrap_or(Value::Null);
        if parsed["annotations"][PROMOTION_ANNOTATION].as_str() != Some(id.as_str()) {
            continue;
        }
        if let Some(layer) = bundle_layer(&manifest.bytes, subject) {
            return Ok((Some((entry.digest.clone(), layer.digest)), reads));
        }
    }
    Ok((None, reads))
}

/// Writes the bundle and the empty config, the referrer manifest, then the listing: (referrer, bundle,
/// requests).
async fn attach(
    target: &dyn GraphEndpoint,
    subject: &Digest,
    bundle: Bytes,
    id: &PromotionId,
    listing: Listing,
    retry: &promote_core::retry::RetryPolicy,
) -> Result<(Digest, Digest, u32)> {
    let mut requests = 0;
    let subject_pointer = Pointer::Digest(subject.clone());
    let subject_manifest = retry
        .run("read the subject", || target.fetch_manifest(&subject_pointer, None))
        .await?
        .ok_or_else(|| Error::not_found(Resource::Artifact, format!("{}@{subject}", GraphSource::name(target))))?;
    requests += 1;
    let empty = Bytes::from_static(b"{}");
    let layer =
        Descriptor { media_type: BUNDLE_V03.into(), digest: Digest::sha256_of(&bundle), size: bundle.len() as u64 };
    let config = Descriptor { media_type: EMPTY_CONFIG.into(), digest: Digest::sha256_of(&empty), size: 2 };
    for (descriptor, bytes) in [(&layer, bundle), (&config, empty)] {
        requests += 1;
        if retry.run("check a blob", || target.has_blob(&descriptor.digest)).await? {
            continue;
        }
        requests += 2;
        retry
            .run("write a blob", || {
                let bytes = bytes.clone();
                target.write_blob(descriptor, Box::pin(futures::stream::once(async move { Ok(bytes) })))
            })
            .await?;
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": BUNDLE_V03,
        "config": {"mediaType": EMPTY_CONFIG, "digest": config.digest.as_str(), "size": config.size},
        "layers": [{"mediaType": BUNDLE_V03, "digest": layer.digest.as_str(), "size": layer.size}],
        "subject": {"mediaType": subject_manifest.media_type, "digest": subject.as_str(), "size": subject_manifest.bytes.len()},
        "annotations": {
            PROMOTION_ANNOTATION: id.as_str(),
            "dev.sigstore.bundle.content": "dsse-envelope",
            "dev.sigstore.bundle.predicateType": PROMOTION_PREDICATE_TYPE,
        },
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).map_err(|e| Error::invalid("manifest", "", e.to_string()))?);
    let referrer = Manifest { digest: Digest::sha256_of(&bytes), bytes, media_type: OCI_MANIFEST.into() };
    let pointer = Pointer::Digest(referrer.digest.clone());
    retry.run("write the referrer", || target.put_manifest(&pointer, &referrer)).await?;
    requests += 1;
    // A registry with the referrers API lists it by its subject; others need the tag-schema index.
    if listing != Listing::ReferrersApi {
        let merged =
            referrers::merge_into_index(target, target, subject, &[referrers::entry_of(&referrer)], retry).await?;
        requests += merged.reads + merged.writes;
    }
    Ok((referrer.digest, layer.digest, requests))
}
