//! The bearer-token flow of `OciRegistryStore` against a real `docker-registry` configured for token auth,
//! with a loopback token server that signs RS256 JWTs (see `support/token.rs`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use promote_core::{ArtifactRef, ArtifactStore, Error};
use promote_oci::{
    CopyOptions, CredentialProvider, OciRegistryStore, OciRegistryStoreBuilder, RegistryAuth, RetryPolicy,
};
use support::Fixture;
use support::token::{IDENTITY_TOKEN, TokenRegistry};

const USER: &str = "ci";
const PASSWORD: &str = "s3cret";

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(13)
        .with_delays(Duration::from_millis(20), Duration::from_millis(300))
        .with_total(Some(Duration::from_secs(30)))
}

/// A builder for a store on the token-auth registry at `host`, with no credentials yet.
fn builder(host: &str) -> OciRegistryStoreBuilder {
    OciRegistryStore::builder().docker_config(false).insecure(host).retry_policy(fast_retry())
}

fn store(host: &str, auth: RegistryAuth) -> OciRegistryStore {
    let mut builder = builder(host);
    if auth != RegistryAuth::Anonymous {
        builder = builder.credentials(host, auth);
    }
    builder.build().unwrap()
}

fn reference(text: &str) -> ArtifactRef {
    text.parse().unwrap()
}

fn require_tools() -> bool {
    support::require("docker-registry") & support::require("skopeo") & support::require("openssl")
}

/// skopeo (with the good credentials) reads back exactly `expected` at `reference`.
fn assert_bytes(server: &TokenRegistry, reference: &str, expected: &[u8]) {
    let served = server.registry.raw(reference);
    assert!(served == expected, "{reference}: skopeo reads different bytes than the source's");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_resolve_retag_and_copy_across_repositories() {
    if !require_tools() {
        return;
    }
    let server = TokenRegistry::start(USER, PASSWORD).await;
    let fixture = Fixture::new(31, 64 * 1024);
    fixture.push_all(&server.registry, "token/app");
    let host = server.host().to_owned();
    server.clear_requests();
    let store = store(&host, RegistryAuth::basic(USER, PASSWORD));

    let resolved = store.resolve(&reference(&format!("{host}/token/app:multi"))).await.unwrap();
    assert_eq!(resolved.digest, fixture.index_digest);
    assert_eq!(resolved.media_type, support::OCI_INDEX);
    assert_eq!(resolved.revision(), Some(fixture.revision.as_str()));
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.status == 200
            && r.user.as_deref() == Some(USER)
            && r.scopes.iter().any(|s| s == "repository:token/app:pull")),
        "the store fetched a pull token with the credentials: {requests:?}"
    );

    // Retag within the repository: a push token.
    let source = reference(&format!("{host}/token/app@{}", fixture.index_digest));
    let promoted = store.promote(&source, &reference(&format!("{host}/token/app:stg"))).await.unwrap();
    assert_eq!(promoted.digest, fixture.index_digest);
    assert_bytes(&server, "token/app:stg", &fixture.index_bytes);
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.status == 200 && r.scopes.iter().any(|s| s == "repository:token/app:pull,push")),
        "the store fetched a push token: {requests:?}"
    );

    // Into another repository of the same registry: mounting needs a token for both repositories; a
    // streamed fallback is fine too. Either way the bytes must match.
    let options = CopyOptions::default().with_signatures(true).with_retry(fast_retry());
    let report = store
        .copy(&reference(&format!("{host}/token/app:multi")), &reference(&format!("{host}/token/prd:1.0")), &options)
        .await
        .unwrap();
    assert_eq!(report.digest, fixture.index_digest, "{report}");
    assert_eq!(report.related_copied, 1, "the signature tag comes along: {report}");
    assert_eq!(
        (report.blobs_mounted, report.blobs_copied),
        (6 + 2, 0),
        "a token for both repositories lets every blob mount: {report}"
    );
    assert_bytes(&server, "token/prd:1.0", &fixture.index_bytes);
    for (digest, bytes) in &fixture.children {
        assert_bytes(&server, &format!("token/prd@{digest}"), bytes);
    }
    let signature = server.registry.raw(&format!("token/app:{}", fixture.signature_tag));
    assert_bytes(&server, &format!("token/prd:{}", fixture.signature_tag), &signature);
    let requests = server.requests();
    assert!(requests.iter().all(|r| r.status == 200), "no token request was refused: {requests:?}");
    println!("cross-repository copy with bearer tokens: {report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_refused_credentials_are_permission_denied_without_the_password() {
    if !require_tools() {
        return;
    }
    let server = TokenRegistry::start(USER, PASSWORD).await;
    let fixture = Fixture::new(32, 4096);
    server.registry.push(fixture.path(), "single", "token/private");
    let host = server.host().to_owned();
    let image = reference(&format!("{host}/token/private:single"));

    let wrong_password = "wr0ng-pa55word";
    let wrong = store(&host, RegistryAuth::basic(USER, wrong_password));
    match wrong.resolve(&image).await {
        Err(error @ Error::PermissionDenied { .. }) => {
            let text = format!("{error} {error:?}");
            assert!(!text.contains(wrong_password), "the password must not appear: {text}");
        }
        other => panic!("wrong credentials must be PermissionDenied, got {other:?}"),
    }
    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.status == 401 && r.user.as_deref() == Some(USER)),
        "the token server refused the wrong password: {requests:?}"
    );

    // Anonymous: the token server hands out a token without access, which the registry refuses.
    let anonymous = store(&host, RegistryAuth::Anonymous);
    assert!(
        matches!(anonymous.resolve(&image).await, Err(Error::PermissionDenied { .. })),
        "an anonymous token has no access"
    );

    // The good credentials still work against the same server.
    let good = store(&host, RegistryAuth::basic(USER, PASSWORD));
    assert_eq!(good.resolve(&image).await.unwrap().digest, fixture.single_digest);
}

/// Credentials from a provider whose answers are scripted: the first `stale` calls answer a password that
/// has expired, later ones the good one. Counts its calls.
#[derive(Debug)]
struct ScriptedProvider {
    stale: usize,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl CredentialProvider for ScriptedProvider {
    async fn credentials(&self, _registry: &str) -> promote_core::Result<RegistryAuth> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(RegistryAuth::basic(USER, if call < self.stale { "expired-pa55word" } else { PASSWORD }))
    }
}

fn provided_store(host: &str, provider: Arc<ScriptedProvider>) -> OciRegistryStore {
    builder(host).credential_provider(provider).build().unwrap()
}

/// A credential provider (a docker credential helper, an ECR token) is asked once per registry, not once per
/// repository or challenge; and when what it gave is refused, it is asked again, once, within the request.
#[tokio::test(flavor = "multi_thread")]
async fn a_credential_provider_is_asked_once_and_again_only_when_refused() {
    if !require_tools() {
        return;
    }
    let server = TokenRegistry::start(USER, PASSWORD).await;
    let fixture = Fixture::new(33, 4096);
    fixture.push_all(&server.registry, "token/app");
    let host = server.host().to_owned();

    let provider = Arc::new(ScriptedProvider { stale: 0, calls: Default::default() });
    let store = provided_store(&host, provider.clone());
    store.resolve(&reference(&format!("{host}/token/app:multi"))).await.unwrap();
    let source = reference(&format!("{host}/token/app@{}", fixture.index_digest));
    store.promote(&source, &reference(&format!("{host}/token/app:stg"))).await.unwrap();
    let options = CopyOptions::default().with_retry(fast_retry());
    let report = store.copy(&source, &reference(&format!("{host}/token/prd:1.0")), &options).await.unwrap();
    assert_eq!(report.digest, fixture.index_digest);
    assert_bytes(&server, "token/prd:1.0", &fixture.index_bytes);
    let calls = provider.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(calls, 1, "one lookup serves every repository and challenge of the registry");

    // The first answer has expired: the token service refuses it, and the store asks again at once.
    let provider = Arc::new(ScriptedProvider { stale: 1, calls: Default::default() });
    let store = provided_store(&host, provider.clone());
    let resolved = store.resolve(&reference(&format!("{host}/token/app:multi"))).await.unwrap();
    assert_eq!(resolved.digest, fixture.index_digest);
    assert_eq!(provider.calls.load(std::sync::atomic::Ordering::SeqCst), 2);

    // Credentials that stay wrong are refused after one fresh lookup, and nothing loops.
    let provider = Arc::new(ScriptedProvider { stale: usize::MAX, calls: Default::default() });
    let store = provided_store(&host, provider.clone());
    let refused = store.resolve(&reference(&format!("{host}/token/app:multi"))).await;
    assert!(matches!(refused, Err(Error::PermissionDenied { .. })), "{refused:?}");
    assert_eq!(provider.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_tokens_are_exchanged_with_the_oauth2_refresh_grant() {
    if !require_tools() {
        return;
    }
    let server = TokenRegistry::start(USER, PASSWORD).await;
    let fixture = Fixture::new(33, 4096);
    server.registry.push(fixture.path(), "single", "token/idt");
    let host = server.host().to_owned();
    server.clear_requests();

    let accepted = store(&host, RegistryAuth::IdentityToken(promote_core::Secret::new(IDENTITY_TOKEN)));
    let source = reference(&format!("{host}/token/idt:single"));
    assert_eq!(accepted.resolve(&source).await.unwrap().digest, fixture.single_digest);
    let pinned = reference(&format!("{host}/token/idt@{}", fixture.single_digest));
    let promoted = accepted.promote(&pinned, &reference(&format!("{host}/token/idt:prd"))).await.unwrap();
    assert_eq!(promoted.digest, fixture.single_digest);
    // Taken before skopeo (which logs in with the password) reads the registry.
    let requests = server.requests();
    let original = server.registry.raw("token/idt:single");
    assert_bytes(&server, "token/idt:prd", &original);
    assert!(!requests.is_empty() && requests.iter().all(|r| r.oauth && r.status == 200), "{requests:?}");
    let push_scope = |s: &String| s.starts_with("repository:token/idt:") && s.contains("push");
    assert!(requests.iter().any(|r| r.scopes.iter().any(push_scope)), "a push token for the retag: {requests:?}");

    let revoked = "idt-revoked-0000";
    let refused = store(&host, RegistryAuth::IdentityToken(promote_core::Secret::new(revoked)));
    match refused.resolve(&source).await {
        Err(error @ Error::PermissionDenied { .. }) => {
            let text = format!("{error} {error:?}");
            assert!(!text.contains(revoked), "the token must not appear: {text}");
        }
        other => panic!("a refused identity token must be PermissionDenied, got {other:?}"),
    }
}

/// `docker login` against an OAuth2 registry stores `identitytoken` in the docker config; the store reads it
/// from there. `DOCKER_CONFIG` is process-wide, so this runs the test below in a child process.
#[test]
fn identity_tokens_are_read_from_the_docker_config() {
    if std::env::var_os("PROMOTE_TEST_DOCKER_CONFIG_CHILD").is_some() || !require_tools() {
        return;
    }
    let config = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "docker_config_child", "--nocapture"])
        .env("PROMOTE_TEST_DOCKER_CONFIG_CHILD", "1")
        .env("DOCKER_CONFIG", config.path())
        .status()
        .unwrap();
    assert!(status.success(), "the child test failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_config_child() {
    let Some(dir) = std::env::var_os("PROMOTE_TEST_DOCKER_CONFIG_CHILD").and(std::env::var_os("DOCKER_CONFIG")) else {
        return;
    };
    let server = TokenRegistry::start(USER, PASSWORD).await;
    let fixture = Fixture::new(34, 4096);
    server.registry.push(fixture.path(), "single", "token/cfg");
    let host = server.host().to_owned();
    let config = serde_json::json!({ "auths": { host.clone(): { "auth": "", "identitytoken": IDENTITY_TOKEN } } });
    std::fs::write(std::path::Path::new(&dir).join("config.json"), config.to_string()).unwrap();
    server.clear_requests();

    let store = OciRegistryStore::builder().insecure(&host).retry_policy(fast_retry()).build().unwrap();
    let resolved = store.resolve(&reference(&format!("{host}/token/cfg:single"))).await.unwrap();
    assert_eq!(resolved.digest, fixture.single_digest);
    let requests = server.requests();
    assert!(requests.iter().any(|r| r.oauth && r.status == 200), "{requests:?}");
}
