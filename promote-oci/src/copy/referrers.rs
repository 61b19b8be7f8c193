//! Referrers of a digest: listing them (the OCI referrers API, else the `sha256-<hex>` tag-schema index) and
//! adding entries to a tag-schema index without losing anyone else's.
//!
//! Registries without the referrers API (docker-registry 2.8.2 among them) also ignore `If-Match`, so an
//! index update is a read-modify-write that a concurrent writer can undo. [`merge_into_index`] therefore
//! re-reads after each write and writes again until its entries, and every entry it has seen listed, are
//! there on two reads in a row, a pause apart, within a bounded number of rounds. It only ever adds. What
//! it cannot repair without a compare-and-swap: an entry another writer adds between our read and our write
//! and that we therefore never see; a writer that also re-reads (every promote) puts its own back.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use oci_client::manifest::{OciImageIndex, OciImageManifest};
use promote_core::manifest::OCI_INDEX;
use promote_core::retry::RetryPolicy;
use promote_core::{Digest, Error, ErrorClass, Result};
use serde_json::{Value, json};

use super::graph::{GraphSource, GraphTarget, Manifest, Pointer};
use crate::error::REGISTRY_BACKEND;

/// Rounds of read, merge, write and re-read before an index update gives up.
const MERGE_ROUNDS: u32 = 10;
/// The pause before the confirming re-read, and the scale of the jitter between rounds.
const SETTLE: Duration = Duration::from_millis(150);

/// Where the referrers were listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    /// `GET /v2/<repo>/referrers/<digest>`.
    ReferrersApi,
    /// The `sha256-<hex>` index.
    TagSchema,
    /// No referrers API, and no `sha256-<hex>` index.
    Nothing,
}

impl Listing {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Listing::ReferrersApi => "referrers API",
            Listing::TagSchema => "tag-schema index",
            Listing::Nothing => "none",
        }
    }
}

/// A referrer as a listing names it.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
    /// Known from a tag-schema index (the API listing we read keeps descriptors only).
    pub(crate) artifact_type: Option<String>,
}

/// The referrers listing of `digest` in `source`, and the requests it took.
#[derive(Debug)]
pub(crate) struct Referrers {
    pub(crate) listing: Listing,
    pub(crate) entries: Vec<Listed>,
    pub(crate) requests: u32,
}

/// The tag the referrers tag schema uses for `digest`: `sha256-<hex>`.
pub(crate) fn tag_schema_tag(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm(), digest.hex())
}

/// Lists the referrers of `digest`: the referrers API first, then the tag-schema index.
pub(crate) async fn list(source: &dyn GraphSource, digest: &Digest, retry: &RetryPolicy) -> Result<Referrers> {
    let requests = AtomicU32::new(0);
    let listed = retry
        .run("list referrers", || {
            requests.fetch_add(1, Ordering::Relaxed);
            source.referrers(digest)
        })
        .await?;
    let (listing, entries) = match listed {
        Some(descriptors) => (
            Listing::ReferrersApi,
            descriptors
                .into_iter()
                .map(|d| Listed { digest: d.digest, media_type: d.media_type, artifact_type: None })
                .collect(),
        ),
        None => {
            let pointer = Pointer::Tag(tag_schema_tag(digest));
            let index = retry
                .run("read the referrers index", || {
                    requests.fetch_add(1, Ordering::Relaxed);
                    source.fetch_manifest(&pointer, Some(OCI_INDEX))
                })
                .await?;
            match index {
                Some(index) => (Listing::TagSchema, index_entries(&index)?),
                None => (Listing::Nothing, Vec::new()),
            }
        }
    };
    Ok(Referrers { listing, entries, requests: requests.load(Ordering::Relaxed) })
}

fn index_entries(index: &Manifest) -> Result<Vec<Listed>> {
    let parsed: OciImageIndex = serde_json::from_slice(&index.bytes)
        .map_err(|error| Error::invalid("referrers index", index.digest.to_string(), error.to_string()))?;
    Ok(parsed
        .manifests
        .into_iter()
        .filter_map(|entry| {
            Some(Listed {
                digest: Digest::parse(&entry.digest).ok()?,
                media_type: entry.media_type,
                artifact_type: entry.artifact_type,
            })
        })
        .collect())
}

/// The index entry that lists `manifest` as a referrer, as the OCI spec builds it: media type, digest,
/// size, `artifactType` (or the config's media type) and the manifest's annotations.
pub(crate) fn entry_of(manifest: &Manifest) -> Value {
    let mut entry = json!({
        "mediaType": manifest.media_type,
        "digest": manifest.digest.as_str(),
        "size": manifest.bytes.len(),
    });
    if let Ok(parsed) = serde_json::from_slice::<OciImageManifest>(&manifest.bytes) {
        let artifact_type = parsed.artifact_type.unwrap_or(parsed.config.media_type);
        entry["artifactType"] = json!(artifact_type);
        if let Some(annotations) = parsed.annotations.filter(|a| !a.is_empty()) {
            entry["annotations"] = json!(annotations);
        }
    }
    entry
}

/// What an index merge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MergeReport {
    /// Index reads.
    pub(crate) reads: u32,
    /// Index writes (0 when every entry was already listed).
    pub(crate) writes: u32,
}

/// A pause that differs between writers, so that two of them do not keep overwriting each other in step.
fn jitter(round: u32) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let spread = SETTLE.as_millis() as u32 * (round + 1);
    Duration::from_millis(u64::from(nanos % spread.max(1)))
}

/// Adds `entries` (index entries, see [`entry_of`]) to the `sha256-<hex>` index of `subject` in the target,
/// keeping every entry already there; the referrer manifests must already be in the target.
pub(crate) async fn merge_into_index(
    reader: &dyn GraphSource,
    writer: &dyn GraphTarget,
    subject: &Digest,
    entries: &[Value],
    retry: &RetryPolicy,
) -> Result<MergeReport> {
    let pointer = Pointer::Tag(tag_schema_tag(subject));
    let mut report = MergeReport::default();
    let mut confirmed = false;
    let mut seen: Vec<Value> = Vec::new();
    for round in 0..MERGE_ROUNDS {
        report.reads += 1;
        let current =
            retry.run("read the referrers index", || reader.fetch_manifest(&pointer, Some(OCI_INDEX))).await?;
        let mut index: Value = match &current {
            Some(manifest) => serde_json::from_slice(&manifest.bytes).map_err(|error| {
                Error::invalid("referrers index", format!("{}{pointer}", reader.name()), error.to_string())
            })?,
            None => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
        };
        let current: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
        // Everyone's entries we have seen stay listed too: a writer that wrote from a stale copy may have
        // dropped one since.
        for entry in &current {
            if !seen.iter().any(|s| s["digest"] == entry["digest"]) {
                seen.push(entry.clone());
            }
        }
        let missing: Vec<&Value> = entries
            .iter()
            .chain(&seen)
            .filter(|wanted| !current.iter().any(|e| e["digest"] == wanted["digest"]))
            .fold(Vec::new(), |mut unique: Vec<&Value>, wanted| {
                if !unique.iter().any(|u| u["digest"] == wanted["digest"]) {
                    unique.push(wanted);
                }
                unique
            });
        if missing.is_empty() {
            // Nothing written: nothing to confirm. Written: confirmed once more after a pause, in case a
            // writer that read before our write puts its older copy back.
            if report.writes == 0 || confirmed {
                return Ok(report);
            }
            confirmed = true;
            tokio::time::sleep(SETTLE).await;
            continue;
        }
        confirmed = false;
        if !index["manifests"].is_array() {
            index["manifests"] = json!([]);
        }
        if let Some(manifests) = index["manifests"].as_array_mut() {
            manifests.extend(missing.into_iter().cloned());
        }
        let bytes =
            Bytes::from(serde_json::to_vec(&index).map_err(|e| Error::invalid("referrers index", "", e.to_string()))?);
        let manifest = Manifest { digest: Digest::sha256_of(&bytes), bytes, media_type: OCI_INDEX.to_owned() };
        retry.run("write the referrers index", || writer.put_manifest(&pointer, &manifest)).await?;
        report.writes += 1;
        tokio::time::sleep(jitter(round)).await;
    }
    Err(Error::backend(
        REGISTRY_BACKEND,
        ErrorClass::Temporary,
        format!(
            "{}{pointer}: the referrers index kept losing entries to concurrent writers for {MERGE_ROUNDS} rounds",
            reader.name()
        ),
    ))
}
