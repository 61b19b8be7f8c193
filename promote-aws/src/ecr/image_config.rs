//! The revision an image's config declares in its `Labels` (a Dockerfile's `LABEL`), read the way
//! `promote-oci` reads it, so that a revision check means the same on both backends: only when the
//! manifest's own annotations lack `org.opencontainers.image.revision`, only for a config of at most 1 MiB,
//! and only from bytes that match the config's digest. An annotation always wins over a label.
//!
//! ECR serves a blob through `GetDownloadUrlForLayer`, which answers with a pre-signed URL (S3); the blob
//! is fetched from there with reqwest on rustls, the TLS stack the SDK uses too, and without credentials
//! (the URL carries its own signature, so it never appears in a message or a log). The URL must be https;
//! plain HTTP is accepted only to a loopback address (a test server), where nothing crosses a network.
//!
//! The label parser repeats the few lines of `promote-oci`'s: the two crates do not depend on each other
//! (only the optional `oci-copy` feature links them). It belongs in `promote_core::manifest` beside
//! `ManifestSummary`, where both would call it.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use promote_core::manifest::{Descriptor, ManifestSummary, REVISION_ANNOTATION};
use promote_core::retry::RetryPolicy;
use promote_core::{Error, ErrorClass, Result};
use serde::Deserialize;

use crate::error::ECR;

/// A config blob bigger than this is not read just for its labels.
pub(super) const MAX_CONFIG_FOR_LABELS: u64 = 1024 * 1024;

/// The config blob worth reading for labels: only when the manifest's own annotations lack the revision,
/// and only if it is small.
pub(super) fn config_to_read(summary: &ManifestSummary) -> Option<&Descriptor> {
    if summary.annotations.contains_key(REVISION_ANNOTATION) {
        return None;
    }
    summary.config.as_ref().filter(|config| config.size <= MAX_CONFIG_FOR_LABELS)
}

/// Adds the config's labels to `annotations`, never overriding an annotation. A config that does not parse
/// adds nothing: labels are a hint, not something to fail a resolve over.
pub(super) fn add_labels(annotations: &mut BTreeMap<String, String>, config_bytes: &[u8]) {
    #[derive(Deserialize, Default)]
    struct ImageConfig {
        #[serde(default)]
        config: Option<ContainerConfig>,
    }
    #[derive(Deserialize, Default)]
    struct ContainerConfig {
        #[serde(default, rename = "Labels")]
        labels: Option<BTreeMap<String, String>>,
    }
    let parsed: ImageConfig = serde_json::from_slice(config_bytes).unwrap_or_default();
    for (key, value) in parsed.config.and_then(|c| c.labels).unwrap_or_default() {
        annotations.entry(key).or_insert(value);
    }
}

/// Fetches config blobs from the pre-signed URLs ECR hands out.
#[derive(Debug)]
pub(super) struct ConfigFetcher {
    /// Built on first use: loading TLS roots costs start-up time that stores never reading labels skip.
    http: OnceLock<reqwest::Client>,
    retry: RetryPolicy,
}

impl ConfigFetcher {
    pub(super) fn new(retry: RetryPolicy) -> Self {
        ConfigFetcher { http: OnceLock::new(), retry }
    }

    fn client(&self) -> Result<&reqwest::Client> {
        if let Some(client) = self.http.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(120))
            // A pre-signed URL names its object exactly: a redirect is not part of the exchange.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| Error::Backend {
                backend: ECR,
                message: "cannot build the HTTP client for config blobs".into(),
                class: ErrorClass::Persistent,
                source: Some(Box::new(error)),
            })?;
        Ok(self.http.get_or_init(|| client))
    }

    /// The bytes of `config` from `url`: at most the size the manifest says (which [`config_to_read`] keeps
    /// under 1 MiB), checked against its digest. `name` (`repository@digest`) names the blob in errors;
    /// the URL never appears in one. Temporary failures are retried with the store's policy.
    pub(super) async fn fetch(&self, url: &str, config: &Descriptor, name: &str) -> Result<Vec<u8>> {
        let url = reqwest::Url::parse(url).map_err(|_| {
            Error::backend(ECR, ErrorClass::Persistent, format!("GetDownloadUrlForLayer of {name}: not a URL"))
        })?;
        let loopback = url
            .host_str()
            .and_then(|host| host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().ok())
            .is_some_and(|ip| ip.is_loopback());
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(Error::backend(
                ECR,
                ErrorClass::Persistent,
                format!(
                    "GetDownloadUrlForLayer of {name}: refusing a download URL that is not https (nor plain HTTP to loopback)"
                ),
            ));
        }
        let limit = config.size.min(MAX_CONFIG_FOR_LABELS);
        let bytes = self.retry.run("fetch config", || self.get(&url, limit, name)).await?;
        config.digest.verify(&bytes).map_err(|error| match error {
            Error::DigestMismatch { expected, actual, .. } => Error::digest_mismatch(name, expected, actual),
            other => other,
        })?;
        Ok(bytes)
    }

    async fn get(&self, url: &reqwest::Url, limit: u64, name: &str) -> Result<Vec<u8>> {
        let what = format!("GET config blob {name}");
        let broken = |error: reqwest::Error| Error::Backend {
            backend: ECR,
            message: format!("{what}: the request failed"),
            class: ErrorClass::Temporary,
            source: Some(Box::new(error.without_url())),
        };
        let mut response = self.client()?.get(url.clone()).send().await.map_err(broken)?;
        let status = response.status();
        if !status.is_success() {
            let class = ErrorClass::from_http_status(status.as_u16());
            return Err(Error::backend(ECR, class, format!("{what}: HTTP {status}")));
        }
        let too_large = || {
            Error::backend(ECR, ErrorClass::Persistent, format!("{what}: the response is larger than {limit} bytes"))
        };
        if response.content_length().is_some_and(|length| length > limit) {
            return Err(too_large());
        }
        // Counted as it arrives: a missing or lying Content-Length cannot make this buffer more.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(broken)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use promote_core::Digest;

    use super::*;

    #[test]
    fn labels_fill_in_but_never_override_annotations() {
        let config = br#"{"config":{"Labels":{"org.opencontainers.image.revision":"from-label","team":"web"}}}"#;
        let mut annotations = BTreeMap::from([("team".to_owned(), "from-annotation".to_owned())]);
        add_labels(&mut annotations, config);
        assert_eq!(annotations[REVISION_ANNOTATION], "from-label");
        assert_eq!(annotations["team"], "from-annotation");
        let mut nothing = BTreeMap::new();
        add_labels(&mut nothing, b"not json");
        assert!(nothing.is_empty());
    }

    #[test]
    fn only_small_configs_of_unannotated_manifests_are_read() {
        let descriptor = |size: u64| Descriptor { media_type: "c".into(), digest: Digest::sha256_of(b"c"), size };
        let summary = |size: u64, annotated: bool| ManifestSummary {
            config: Some(descriptor(size)),
            annotations: if annotated {
                BTreeMap::from([(REVISION_ANNOTATION.to_owned(), "r".to_owned())])
            } else {
                BTreeMap::new()
            },
            ..ManifestSummary::default()
        };
        assert!(config_to_read(&summary(100, false)).is_some());
        assert!(config_to_read(&summary(100, true)).is_none(), "the annotation is enough");
        assert!(config_to_read(&summary(MAX_CONFIG_FOR_LABELS + 1, false)).is_none(), "too big to read");
    }

    #[tokio::test]
    async fn download_urls_are_https_or_loopback() {
        let config = Descriptor { media_type: "c".into(), digest: Digest::sha256_of(b"c"), size: 1 };
        let fetcher = ConfigFetcher::new(RetryPolicy::none());
        for url in ["http://203.0.113.7/blob?X-Amz-Signature=s3cr3t", "ftp://127.0.0.1/blob?X-Amz-Signature=s3cr3t"] {
            let error = fetcher.fetch(url, &config, "web@c").await.unwrap_err();
            assert!(error.to_string().contains("not https") && !format!("{error:?}").contains("s3cr3t"), "{error}");
        }
    }
}
