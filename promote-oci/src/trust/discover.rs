//! Finding the sigstore bundles attached to a digest: the OCI referrers API first, then the
//! `sha256-<hex>` tag-schema index (what `@sigstore/oci` and cosign v3 write on registries without the API).

use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use futures::StreamExt as _;
use oci_client::manifest::OciImageManifest;
use promote_core::manifest::Descriptor;
use promote_core::retry::RetryPolicy;
use promote_core::{Digest, Result};

use crate::copy::referrers;
pub(crate) use crate::copy::referrers::{Listing, tag_schema_tag};
use crate::copy::{GraphSource, Pointer};
use crate::error::{FailResult, persistent, verify_bytes};

/// The media type prefix of every sigstore bundle version (`…bundle+json;version=0.2`, `…bundle.v0.3+json`).
pub const BUNDLE_MEDIA_TYPE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// The largest bundle we read: DSSE attestations with large predicates stay well under it.
const MAX_BUNDLE_BYTES: u64 = 4 * 1024 * 1024;

/// A bundle found as a referrer of the digest: its exact bytes, checked against the layer digest.
#[derive(Debug, Clone)]
pub(crate) struct FoundBundle {
    /// The referrer manifest's digest.
    pub(crate) referrer: Digest,
    /// The bundle (layer blob) digest.
    pub(crate) bundle_digest: Digest,
    pub(crate) bytes: Bytes,
}

/// What discovery saw for one digest.
#[derive(Debug)]
pub(crate) struct Discovery {
    pub(crate) listing: Listing,
    /// Referrers listed, of any artifact type.
    pub(crate) referrers: usize,
    pub(crate) bundles: Vec<FoundBundle>,
    /// Registry requests made (retries not counted).
    pub(crate) requests: u32,
}

fn is_bundle_type(media_type: &str) -> bool {
    media_type.starts_with(BUNDLE_MEDIA_TYPE_PREFIX)
}

/// Lists and reads the sigstore bundles attached to `digest` in `source`.
pub(crate) async fn discover(source: &dyn GraphSource, digest: &Digest, retry: &RetryPolicy) -> Result<Discovery> {
    let listed = referrers::list(source, digest, retry).await?;
    let requests = AtomicU32::new(listed.requests);
    let counted = || {
        requests.fetch_add(1, Ordering::Relaxed);
    };
    let (listing, entries) = (listed.listing, listed.entries);
    let referrers = entries.len();
    let mut bundles = Vec::new();
    for entry in entries {
        // The tag-schema index says each entry's artifact type; skip what is plainly not a bundle (an SBOM).
        if entry.artifact_type.as_deref().is_some_and(|t| !is_bundle_type(t)) {
            continue;
        }
        let pointer = Pointer::Digest(entry.digest.clone());
        let hint = Some(entry.media_type.as_str()).filter(|t| !t.is_empty());
        let Some(manifest) = retry
            .run("read a referrer", || {
                counted();
                source.fetch_manifest(&pointer, hint)
            })
            .await?
        else {
            continue;
        };
        let Some(layer) = bundle_layer(&manifest.bytes, digest) else { continue };
        let bytes = retry
            .run("read a bundle", || {
                counted();
                read_blob(source, &layer)
            })
            .await?;
        bundles.push(FoundBundle { referrer: entry.digest, bundle_digest: layer.digest, bytes });
    }
    Ok(Discovery { listing, referrers, bundles, requests: requests.load(Ordering::Relaxed) })
}

/// The bundle layer of a referrer manifest whose subject is `subject`, if it is a sigstore bundle
/// referrer: `artifactType` (or, for older writers, the config media type) a bundle type, and a layer
/// of a bundle type (or the only layer).
pub(crate) fn bundle_layer(bytes: &[u8], subject: &Digest) -> Option<Descriptor> {
    let manifest: OciImageManifest = serde_json::from_slice(bytes).ok()?;
    if manifest.subject.as_ref().map(|s| s.digest.as_str()) != Some(subject.as_str()) {
        return None;
    }
    let artifact_type = manifest.artifact_type.as_deref().unwrap_or(manifest.config.media_type.as_str());
    let layer = match manifest.layers.iter().find(|layer| is_bundle_type(&layer.media_type)) {
        Some(layer) => layer,
        None if is_bundle_type(artifact_type) && manifest.layers.len() == 1 => &manifest.layers[0],
        None => return None,
    };
    Some(Descriptor {
        media_type: layer.media_type.clone(),
        digest: Digest::parse(&layer.digest).ok()?,
        size: u64::try_from(layer.size).ok()?,
    })
}

/// A whole (small) blob, checked against its digest.
pub(crate) async fn read_blob(source: &dyn GraphSource, descriptor: &Descriptor) -> FailResult<Bytes> {
    let name = format!("{}@{}", source.name(), descriptor.digest);
    if descriptor.size > MAX_BUNDLE_BYTES {
        return Err(persistent(format!("{name}: {} bytes, over the {MAX_BUNDLE_BYTES} we read", descriptor.size)));
    }
    let mut stream = source.open_blob(descriptor).await?;
    let mut bytes = Vec::with_capacity(usize::try_from(descriptor.size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| persistent(format!("{name}: {error}")))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > descriptor.size {
            return Err(persistent(format!("{name}: more bytes than the {} the manifest says", descriptor.size)));
        }
    }
    verify_bytes(&name, &descriptor.digest, &bytes)?;
    Ok(Bytes::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_referrer_names_its_subject_and_a_bundle_layer() {
        let subject = Digest::sha256_of(b"image");
        let layer = Digest::sha256_of(b"bundle");
        let manifest = |subject: &Digest, artifact_type: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{artifact_type}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[{{"mediaType":"{artifact_type}","digest":"{layer}","size":6}}],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{subject}","size":10}}}}"#
            )
        };
        let bundle = "application/vnd.dev.sigstore.bundle.v0.3+json";
        assert_eq!(bundle_layer(manifest(&subject, bundle).as_bytes(), &subject).unwrap().digest, layer);
        assert!(bundle_layer(manifest(&Digest::sha256_of(b"other"), bundle).as_bytes(), &subject).is_none());
        assert!(bundle_layer(manifest(&subject, "application/spdx+json").as_bytes(), &subject).is_none());
        assert_eq!(tag_schema_tag(&subject), format!("sha256-{}", subject.hex()));
    }
}
