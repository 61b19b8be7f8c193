//! Fetching an image's config blob, for the revision it declares in its `Labels` (a Dockerfile's `LABEL`).
//! Which config is read and which labels count is `promote_core::manifest`'s to say
//! ([`ManifestSummary::config_for_labels`], [`add_config_labels`]), so that a revision check means the
//! same on every backend: only when the manifest's own annotations lack `org.opencontainers.image.revision`,
//! only for a config of at most 1 MiB, and only from bytes that match the config's digest. An annotation
//! always wins over a label.
//!
//! ECR serves a blob through `GetDownloadUrlForLayer`, which answers with a pre-signed URL (S3); the blob
//! is fetched from there with reqwest on rustls, the TLS stack the SDK uses too, and without credentials
//! (the URL carries its own signature, so it never appears in a message or a log). The URL must be https;
//! plain HTTP is accepted only to a loopback address (a test server), where nothing crosses a network.
//!
//! [`ManifestSummary::config_for_labels`]: promote_core::manifest::ManifestSummary::config_for_labels
//! [`add_config_labels`]: promote_core::manifest::add_config_labels

use std::sync::OnceLock;
use std::time::Duration;

use promote_core::manifest::{Descriptor, MAX_CONFIG_FOR_LABELS};
use promote_core::retry::RetryPolicy;
use promote_core::{Error, ErrorClass, Result};

use crate::error::ECR;

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

    /// The bytes of `config` from `url`: at most the size the manifest says (which
    /// `ManifestSummary::config_for_labels` keeps under 1 MiB), checked against its digest. `name` (`repository@digest`) names the blob in errors;
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
