//! A hostile registry on loopback (a scripted hyper server, `support/hostile.rs`) and a second "trap"
//! server on another port, which stands for anywhere else: what the registry names (an upload location, a
//! token service) gets no credential, every digest it reports is checked against the bytes, and bodies
//! that never end are typed errors, not unbounded buffers.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use base64::Engine as _;
use promote_core::manifest::REVISION_ANNOTATION;
use promote_core::{ArtifactRef, ArtifactStore, Digest, Error, ErrorClass, Secret};
use promote_oci::{
    CopyEndpoint, CopyOptions, OciLayout, OciRegistryStore, OciRegistryStoreBuilder, RegistryAuth, RetryPolicy,
    copy_image, image_manifest,
};
use support::hostile::{Reply, Seen, Server};

const USER: &str = "ci";
const PASSWORD: &str = "hostile-test-password-61f0";
const TOKEN: &str = "hostile-test-bearer-token-9c2e";
const REFRESH_TOKEN: &str = "hostile-test-refresh-token-4d7a";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// No test may hang on a body that never ends: each scenario runs under this bound (a guard, not a
/// measurement).
const GUARD: Duration = Duration::from_secs(120);

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(3)
        .with_delays(Duration::from_millis(10), Duration::from_millis(50))
        .with_total(Some(Duration::from_secs(10)))
}

fn builder(host: &str) -> OciRegistryStoreBuilder {
    OciRegistryStore::builder().docker_config(false).insecure(host).retry_policy(fast_retry())
}

fn reference(text: &str) -> ArtifactRef {
    text.parse().unwrap()
}

fn basic_header() -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")))
}

/// Whether any request carried any of the secrets, in a header, the query or the body.
fn carries_a_secret(seen: &Seen) -> bool {
    let basic = basic_header();
    let encoded_password = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let body = String::from_utf8_lossy(&seen.body);
    [PASSWORD, TOKEN, REFRESH_TOKEN, encoded_password.as_str(), basic.as_str()].iter().any(|secret| {
        seen.authorization.as_deref().is_some_and(|value| value.contains(secret))
            || seen.query.contains(secret)
            || body.contains(secret)
    })
}

/// An image: config, one layer, and its manifest, with these manifest annotations.
struct Image {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
    digest: Digest,
}

fn image(revision_label: &str, annotations: &[(&str, &str)]) -> Image {
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"{REVISION_ANNOTATION}":"{revision_label}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    )
    .into_bytes();
    let layer = b"a layer that is not really a tarball".to_vec();
    let annotations: BTreeMap<String, String> =
        annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let manifest = image_manifest(&config, &[&layer], &annotations);
    let digest = Digest::sha256_of(&manifest);
    Image { config, layer, manifest, digest }
}

/// A registry's answers by (method, path); anything else is 404.
#[derive(Default, Clone)]
struct Routes(HashMap<(String, String), Reply>);

impl Routes {
    fn add(&mut self, method: &str, path: &str, reply: Reply) -> &mut Self {
        self.0.insert((method.to_owned(), path.to_owned()), reply);
        self
    }

    /// HEAD and GET of `/v2/app/manifests/{reference}`, reporting `digest_header` (if any) on both.
    fn manifest(&mut self, reference: &str, bytes: &[u8], digest_header: Option<&str>) -> &mut Self {
        let path = format!("/v2/app/manifests/{reference}");
        let mut head =
            Reply::status(200).header("content-type", MANIFEST_TYPE).header("content-length", bytes.len().to_string());
        let mut get = Reply::bytes(200, bytes.to_vec()).header("content-type", MANIFEST_TYPE);
        if let Some(digest) = digest_header {
            head = head.header("docker-content-digest", digest);
            get = get.header("docker-content-digest", digest);
        }
        self.add("HEAD", &path, head).add("GET", &path, get)
    }

    fn blob(&mut self, digest: &Digest, reply: Reply) -> &mut Self {
        self.add("GET", &format!("/v2/app/blobs/{digest}"), reply)
    }

    fn answer(&self, seen: &Seen) -> Reply {
        self.0.get(&(seen.method.clone(), seen.path.clone())).cloned().unwrap_or_else(|| Reply::status(404))
    }
}

/// An anonymous registry serving `routes`.
async fn open_registry(routes: Routes) -> Server {
    Server::start(move |seen| routes.answer(seen)).await
}

fn is_persistent_backend(error: &Error) -> bool {
    matches!(error, Error::Backend { class: ErrorClass::Persistent, .. })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_location_on_another_origin_gets_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).await.unwrap();
    let image = image("0000000", &[]);
    layout.write_image(Some("v1"), &image.config, &[&image.layer], &image.manifest).await.unwrap();

    for (auth, expected) in [
        (RegistryAuth::basic(USER, PASSWORD), basic_header()),
        (RegistryAuth::Bearer(Secret::new(TOKEN)), format!("Bearer {TOKEN}")),
    ] {
        // The trap refuses the upload, so the store also closes the session there (a DELETE).
        let trap =
            Server::start(|seen| if seen.method == "PUT" { Reply::status(400) } else { Reply::status(204) }).await;
        let location = format!("http://{}/upload/session-1?_state=x", trap.host);
        let registry = Server::start(move |seen| {
            if seen.authorization.as_deref() != Some(expected.as_str()) {
                return Reply::status(401).header("www-authenticate", "Basic realm=\"hostile\"");
            }
            match (seen.method.as_str(), seen.path.as_str()) {
                ("POST", "/v2/app/blobs/uploads/") => Reply::status(202).header("location", location.clone()),
                _ => Reply::status(404),
            }
        })
        .await;
        let store = builder(&registry.host).credentials(registry.host.clone(), auth).build().unwrap();
        let target = CopyEndpoint::registry(&store, reference(&format!("{}/app:v1", registry.host)));
        let copied = tokio::time::timeout(
            GUARD,
            copy_image(
                &CopyEndpoint::layout_tag(&layout, "v1"),
                &target,
                &CopyOptions::default().with_retry(fast_retry()),
            ),
        )
        .await
        .expect("bounded");
        assert!(copied.is_err(), "the trap refused the upload");

        let trapped = trap.requests();
        assert!(trapped.iter().any(|r| r.method == "PUT"), "the blob went to the location: {trapped:?}");
        assert!(trapped.iter().any(|r| r.method == "DELETE"), "the session was closed there: {trapped:?}");
        assert!(trapped.iter().all(|r| r.authorization.is_none()), "no credential at the other origin: {trapped:?}");
        assert!(!trapped.iter().any(carries_a_secret));
        let registered = registry.requests();
        assert!(
            registered.iter().any(|r| r.method == "POST" && r.authorization.is_some()),
            "the registry's own origin did get the credentials"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_service_on_another_origin_gets_no_credentials() {
    let image = image("0000000", &[]);
    for auth in [RegistryAuth::basic(USER, PASSWORD), RegistryAuth::IdentityToken(Secret::new(REFRESH_TOKEN))] {
        // A plain-HTTP token service on another port: another origin.
        let trap = Server::start(|_| Reply::bytes(200, r#"{"token":"anonymous-token"}"#)).await;
        let realm = format!("http://{}/token", trap.host);
        let mut routes = Routes::default();
        routes.manifest("v1", &image.manifest, Some(image.digest.as_str()));
        routes.manifest(image.digest.as_str(), &image.manifest, Some(image.digest.as_str()));
        routes.blob(&Digest::sha256_of(&image.config), Reply::bytes(200, image.config.clone()));
        // Every request without the anonymous token, `/v2/` included, gets the challenge.
        let registry = Server::start(move |seen| {
            if seen.authorization.as_deref() != Some("Bearer anonymous-token") {
                let challenge = format!(r#"Bearer realm="{realm}",service="hostile",scope="repository:app:pull""#);
                return Reply::status(401).header("www-authenticate", challenge);
            }
            routes.answer(seen)
        })
        .await;
        // Trusting the trap's origin over https changes nothing: it speaks plain HTTP.
        let store = builder(&registry.host)
            .credentials(registry.host.clone(), auth)
            .trusted_token_realm(registry.host.clone(), format!("https://{}", trap.host))
            .build()
            .unwrap();
        let resolved = tokio::time::timeout(GUARD, store.resolve(&reference(&format!("{}/app:v1", registry.host))))
            .await
            .expect("bounded")
            .expect("an anonymous token is enough for this registry");
        assert_eq!(resolved.digest, image.digest);

        let trapped = trap.requests();
        assert!(!trapped.is_empty(), "the token service was asked");
        assert!(trapped.iter().all(|r| r.method == "GET" && r.authorization.is_none()), "{trapped:?}");
        assert!(!trapped.iter().any(carries_a_secret), "{trapped:?}");
        assert!(!registry.requests().iter().any(carries_a_secret), "the registry got only the anonymous token");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lying_content_digest_header_is_a_digest_mismatch() {
    let image = image("0000000", &[]);
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).await.unwrap();
    for lie in [Digest::sha256_of(b"some other manifest"), Digest::sha512_of(b"some other manifest")] {
        let mut routes = Routes::default();
        routes.manifest("v1", &image.manifest, Some(lie.as_str()));
        routes.manifest(lie.as_str(), &image.manifest, Some(lie.as_str()));
        let registry = open_registry(routes).await;
        let store = builder(&registry.host).build().unwrap();
        let tagged = reference(&format!("{}/app:v1", registry.host));

        let resolved = store.resolve(&tagged).await;
        assert!(
            matches!(&resolved, Err(Error::DigestMismatch { reference, expected, .. }) if reference.contains("app") && expected == &lie),
            "{lie}: {resolved:?}"
        );
        let copied = copy_image(
            &CopyEndpoint::registry(&store, tagged),
            &CopyEndpoint::layout_tag(&layout, "v1"),
            &CopyOptions::default().with_retry(fast_retry()),
        )
        .await;
        assert!(matches!(copied, Err(Error::DigestMismatch { .. })), "{lie}: {copied:?}");
        assert_eq!(layout.resolve_tag("v1").await.unwrap(), None, "nothing was tagged");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_honest_sha512_digest_header_is_accepted() {
    let image = image("0000000", &[]);
    let sha512 = Digest::sha512_of(&image.manifest);
    let mut routes = Routes::default();
    routes.manifest("v1", &image.manifest, Some(sha512.as_str()));
    routes.manifest(sha512.as_str(), &image.manifest, Some(sha512.as_str()));
    routes.blob(&Digest::sha256_of(&image.config), Reply::bytes(200, image.config.clone()));
    routes.blob(&Digest::sha256_of(&image.layer), Reply::bytes(200, image.layer.clone()));
    let registry = open_registry(routes).await;
    let store = builder(&registry.host).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).await.unwrap();
    copy_image(
        &CopyEndpoint::registry(&store, reference(&format!("{}/app:v1", registry.host))),
        &CopyEndpoint::layout_tag(&layout, "v1"),
        &CopyOptions::default().with_retry(fast_retry()),
    )
    .await
    .unwrap();
    assert_eq!(layout.resolve_tag("v1").await.unwrap(), Some(sha512.clone()));
    assert_eq!(layout.read_blob(&sha512).await.unwrap().unwrap(), image.manifest, "stored under its sha512");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_digest_must_match_the_bytes_whatever_its_algorithm() {
    // Served for any pinned digest: a manifest with a forged revision annotation.
    let forged = image("0000000", &[(REVISION_ANNOTATION, "forged-revision")]);
    let sha512_pin = Digest::sha512_of(b"the manifest that was really built");
    let blake3_pin = Digest::parse("blake3:0123456789abcdef").unwrap();
    let mut routes = Routes::default();
    for pin in [&sha512_pin, &blake3_pin] {
        routes.manifest(pin.as_str(), &forged.manifest, None);
    }
    let registry = open_registry(routes).await;
    let store = builder(&registry.host).build().unwrap();

    let resolved = store.resolve(&reference(&format!("{}/app@{sha512_pin}", registry.host))).await;
    match &resolved {
        Err(Error::DigestMismatch { reference, expected, actual }) => {
            assert!(reference.contains("app@sha512:"), "{reference}");
            assert_eq!(expected, &sha512_pin);
            assert_eq!(actual, &Digest::sha512_of(&forged.manifest));
        }
        other => panic!("the forged bytes were accepted: {other:?}"),
    }
    let unverifiable = store.resolve(&reference(&format!("{}/app@{blake3_pin}", registry.host))).await;
    assert!(
        matches!(&unverifiable, Err(Error::NotSupported { operation, .. }) if operation.contains("blake3")),
        "an algorithm we cannot verify fails closed: {unverifiable:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_blob_must_match_its_digest_before_its_labels_count() {
    let honest = image(&"a".repeat(40), &[]);
    let forged_config = String::from_utf8(honest.config.clone()).unwrap().replace(&"a".repeat(40), &"b".repeat(40));
    assert_eq!(forged_config.len(), honest.config.len());
    let mut routes = Routes::default();
    routes.manifest("v1", &honest.manifest, Some(honest.digest.as_str()));
    routes.manifest(honest.digest.as_str(), &honest.manifest, Some(honest.digest.as_str()));
    routes.blob(&Digest::sha256_of(&honest.config), Reply::bytes(200, forged_config.into_bytes()));
    let registry = open_registry(routes).await;
    let store = builder(&registry.host).build().unwrap();
    let resolved = store.resolve(&reference(&format!("{}/app:v1", registry.host))).await;
    assert!(matches!(resolved, Err(Error::DigestMismatch { .. })), "forged labels were believed: {resolved:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_blob_that_never_ends_is_a_typed_error() {
    let image = image("0000000", &[]);
    let mut routes = Routes::default();
    routes.manifest("v1", &image.manifest, Some(image.digest.as_str()));
    routes.manifest(image.digest.as_str(), &image.manifest, Some(image.digest.as_str()));
    routes.blob(&Digest::sha256_of(&image.config), Reply::endless(200));
    let registry = open_registry(routes).await;
    let store = builder(&registry.host).build().unwrap();
    let resolved = tokio::time::timeout(GUARD, store.resolve(&reference(&format!("{}/app:v1", registry.host))))
        .await
        .expect("bounded");
    let error = resolved.expect_err("an endless config is refused");
    assert!(is_persistent_backend(&error) && !error.is_retryable(), "{error:?}");
    assert!(error.to_string().contains(&format!("larger than {} bytes", image.config.len())), "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_manifests_layers_and_referrers_are_typed_errors() {
    let image = image("0000000", &[]);
    let copy_from = |registry: &Server, store: &OciRegistryStore, layout: &OciLayout, referrers: bool| {
        let source = CopyEndpoint::registry(store, reference(&format!("{}/app:v1", registry.host)));
        let target = CopyEndpoint::layout_tag(layout, "v1");
        let options = CopyOptions::default().with_retry(fast_retry()).with_referrers(referrers);
        async move { tokio::time::timeout(GUARD, copy_image(&source, &target, &options)).await.expect("bounded") }
    };

    // A manifest: read up to distribution's 4 MiB, no further.
    let mut routes = Routes::default();
    routes.add("HEAD", "/v2/app/manifests/v1", Reply::status(200).header("content-type", MANIFEST_TYPE));
    routes.add("GET", "/v2/app/manifests/v1", Reply::endless(200).header("content-type", MANIFEST_TYPE));
    let registry = open_registry(routes).await;
    let store = builder(&registry.host).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).await.unwrap();
    let error = copy_from(&registry, &store, &layout, false).await.expect_err("an endless manifest is refused");
    assert!(is_persistent_backend(&error) && error.to_string().contains("larger than 4194304 bytes"), "{error}");

    // A layer: the stream stops where the manifest's size ends, and nothing is stored.
    let mut routes = Routes::default();
    routes.manifest("v1", &image.manifest, Some(image.digest.as_str()));
    routes.blob(&Digest::sha256_of(&image.config), Reply::bytes(200, image.config.clone()));
    routes.blob(&Digest::sha256_of(&image.layer), Reply::endless(200));
    let registry = open_registry(routes).await;
    let store = builder(&registry.host).build().unwrap();
    let error = copy_from(&registry, &store, &layout, false).await.expect_err("an endless layer is refused");
    assert!(error.to_string().contains("more than the"), "{error}");
    assert!(!layout.has_blob(&Digest::sha256_of(&image.layer)).await.unwrap());
    assert_eq!(layout.resolve_tag("v1").await.unwrap(), None);

    // A referrers response: read up to 4 MiB, no further.
    let mut routes = Routes::default();
    routes.manifest("v1", &image.manifest, Some(image.digest.as_str()));
    routes.blob(&Digest::sha256_of(&image.config), Reply::bytes(200, image.config.clone()));
    routes.blob(&Digest::sha256_of(&image.layer), Reply::bytes(200, image.layer.clone()));
    routes.add("GET", &format!("/v2/app/referrers/{}", image.digest), Reply::endless(200));
    let registry = open_registry(routes).await;
    let store = builder(&registry.host).build().unwrap();
    let error = copy_from(&registry, &store, &layout, true).await.expect_err("an endless referrers list is refused");
    assert!(is_persistent_backend(&error) && error.to_string().contains("larger than 4194304 bytes"), "{error}");
    let requests = registry.requests();
    assert!(requests.iter().any(|r| r.path.contains("/referrers/")), "{requests:?}");
}
