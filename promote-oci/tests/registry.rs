//! `OciRegistryStore` and the copy engine against real `docker-registry` servers, with skopeo as the
//! independent client that pushes the fixtures and reads back the bytes.

mod support;

use std::sync::Arc;
use std::time::Duration;

use promote_core::conformance::{self, StoreFixture};
use promote_core::{ArtifactRef, ArtifactStore, Error, ErrorClass};
use promote_oci::{
    CopyEndpoint, CopyOptions, OciLayout, OciRegistryStore, RegistryAuth, RetryPolicy, copy_image, image_manifest,
};
use support::proxy::Proxy;
use support::{Fixture, Registry};

const LAYER: usize = 256 * 1024;

fn fast_retry() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(13)
        .with_delays(Duration::from_millis(20), Duration::from_millis(300))
        .with_total(Some(Duration::from_secs(30)))
}

fn store(hosts: &[&str]) -> OciRegistryStore {
    let mut builder = OciRegistryStore::builder().docker_config(false).retry_policy(fast_retry());
    for host in hosts {
        builder = builder.insecure(*host);
    }
    builder.build().unwrap()
}

fn reference(text: &str) -> ArtifactRef {
    text.parse().unwrap()
}

/// skopeo reads back exactly `expected` at `reference`.
fn assert_bytes(registry: &Registry, reference: &str, expected: &[u8]) {
    let served = registry.raw(reference);
    assert!(served == expected, "{reference}: skopeo reads different bytes than the source's");
}

/// Every manifest of the fixture's index graph is byte-identical in `repo` of `registry`.
fn assert_graph(registry: &Registry, repo: &str, tag: &str, fixture: &Fixture) {
    assert_bytes(registry, &format!("{repo}:{tag}"), &fixture.index_bytes);
    for (digest, bytes) in &fixture.children {
        assert_bytes(registry, &format!("{repo}@{digest}"), bytes);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_against_docker_registry() {
    if !support::require_tools() {
        return;
    }
    let registry = Registry::start();
    let fixture = Fixture::new(1, 4096);
    fixture.push_all(&registry, "conf/app");
    let host = &registry.host;
    let conformance = StoreFixture::new(
        Arc::new(store(&[host])),
        (reference(&format!("{host}/conf/app:single")), fixture.single_digest.clone()),
        (reference(&format!("{host}/conf/app:other")), fixture.other_digest.clone()),
        "conformance",
    )
    .with_index(reference(&format!("{host}/conf/app:multi")), fixture.index_digest.clone())
    .with_other_repository(reference(&format!("{host}/conf/elsewhere:x")))
    // The single image declares its revision only in its config's labels.
    .with_revision(reference(&format!("{host}/conf/app:single")), fixture.revision.clone());
    conformance::resolve_by_tag_and_digest(&conformance).await;
    conformance::missing_is_not_found(&conformance).await;
    conformance::exists_never_fails_for_missing(&conformance).await;
    conformance::promote_needs_a_digest(&conformance).await;
    conformance::retag_is_idempotent(&conformance).await;
    conformance::moving_a_tag(&conformance).await;
    conformance::cross_repository(&conformance).await;
    conformance::index_kept_whole(&conformance).await;
    conformance::revision_is_read(&conformance).await;

    // With immutable tags: the same store refuses to move a tag.
    let mut immutable = conformance.clone();
    immutable.store = Arc::new(
        OciRegistryStore::builder().docker_config(false).insecure(host.clone()).immutable_tags(true).build().unwrap(),
    );
    immutable.tag_prefix = "conformance-immutable".into();
    conformance::immutable_tag_conflict(&immutable).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resolve_reads_the_revision_and_retag_keeps_the_bytes() {
    if !support::require_tools() {
        return;
    }
    let registry = Registry::start();
    let fixture = Fixture::new(2, 4096);
    fixture.push_all(&registry, "acme/web");
    let host = &registry.host;
    let store = store(&[host]);

    let index = store.resolve(&reference(&format!("{host}/acme/web:multi"))).await.unwrap();
    assert_eq!(index.digest, fixture.index_digest);
    assert_eq!(index.media_type, support::OCI_INDEX);
    assert_eq!(index.revision(), Some(fixture.revision.as_str()), "the index annotation carries the revision");
    let single = store.resolve(&reference(&format!("{host}/acme/web:single"))).await.unwrap();
    assert_eq!(single.revision(), Some(fixture.revision.as_str()), "a single image's config label carries it");

    let source = reference(&format!("{host}/acme/web@{}", fixture.index_digest));
    let target = reference(&format!("{host}/acme/web:stg"));
    let promoted = store.promote(&source, &target).await.unwrap();
    assert_eq!(promoted.digest, fixture.index_digest);
    assert_eq!(promoted.media_type, support::OCI_INDEX, "an index is never narrowed to one platform");
    assert_bytes(&registry, "acme/web:stg", &fixture.index_bytes);
    // Again: a no-op.
    store.promote(&source, &target).await.unwrap();
    assert_bytes(&registry, "acme/web:stg", &fixture.index_bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn retag_sends_one_manifest_fetch_and_one_put_and_no_blob_request() {
    if !support::require_tools() {
        return;
    }
    let registry = Registry::start();
    let fixture = Fixture::new(3, 4096);
    fixture.push_all(&registry, "acme/web");
    let proxy = Proxy::start(&registry.host).await;
    let store = OciRegistryStore::builder().docker_config(false).insecure(proxy.host.clone()).build().unwrap();
    let source = reference(&format!("{}/acme/web@{}", proxy.host, fixture.index_digest));
    store.promote(&source, &reference(&format!("{}/acme/web:prd", proxy.host))).await.unwrap();
    let requests = proxy.requests();
    assert!(requests.iter().all(|(_, path)| !path.contains("/blobs/")), "retag touched blobs: {requests:?}");
    let gets = requests.iter().filter(|(m, _)| m == "GET").count();
    let puts = requests.iter().filter(|(m, _)| m == "PUT").count();
    assert_eq!((gets, puts), (1, 1), "{requests:?}");
    assert_bytes(&registry, "acme/web:prd", &fixture.index_bytes);

    let before = proxy.requests().len();
    store.promote(&source, &reference(&format!("{}/acme/web:prd", proxy.host))).await.unwrap();
    let again = &proxy.requests()[before..];
    assert!(
        again.iter().all(|(m, _)| m == "HEAD"),
        "promoting onto a tag that holds the digest writes nothing: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_across_repositories_mounts_and_copies_the_signature() {
    if !support::require_tools() {
        return;
    }
    let registry = Registry::start();
    let fixture = Fixture::new(4, LAYER);
    fixture.push_all(&registry, "dev/web");
    let host = &registry.host;
    let store = store(&[host]);
    let options = CopyOptions::default().with_signatures(true).with_retry(fast_retry());
    let report = store
        .copy(&reference(&format!("{host}/dev/web:multi")), &reference(&format!("{host}/prd/web:1.0")), &options)
        .await
        .unwrap();
    assert_eq!(report.digest, fixture.index_digest);
    assert!(report.blobs_mounted >= 6, "same registry: blobs are mounted, not copied: {report}");
    assert_eq!(report.bytes_copied, 0, "{report}");
    assert_eq!(report.related_copied, 1, "the cosign signature tag comes along: {report}");
    assert_graph(&registry, "prd/web", "1.0", &fixture);
    let signature = registry.raw(&format!("dev/web:{}", fixture.signature_tag));
    assert_bytes(&registry, &format!("prd/web:{}", fixture.signature_tag), &signature);
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_between_registries_then_again_with_everything_present() {
    if !support::require_tools() {
        return;
    }
    let (source, target) = (Registry::start(), Registry::start());
    let fixture = Fixture::new(5, LAYER);
    fixture.push_all(&source, "team/api");
    let store = store(&[&source.host, &target.host]);
    let options = CopyOptions::default().with_signatures(true).with_retry(fast_retry());
    let from = CopyEndpoint::registry(&store, reference(&format!("{}/team/api:multi", source.host)));
    let to = CopyEndpoint::registry(&store, reference(&format!("{}/mirror/api:multi", target.host)));
    let first = copy_image(&from, &to, &options).await.unwrap();
    assert_eq!(first.blobs_copied, 6 + 2, "2 configs + 4 layers, and the signature's config and payload: {first}");
    assert_eq!(first.blobs_mounted, 0);
    assert_graph(&target, "mirror/api", "multi", &fixture);
    assert_bytes(
        &target,
        &format!("mirror/api:{}", fixture.signature_tag),
        &source.raw(&format!("team/api:{}", fixture.signature_tag)),
    );

    let second = copy_image(&from, &to, &options).await.unwrap();
    assert_eq!((second.blobs_copied, second.bytes_copied, second.manifests_copied), (0, 0, 0), "{second}");

    // Force re-walks: a child deleted at the target comes back.
    let (child, child_bytes) = &fixture.children[1];
    let url = format!("http://{}/v2/mirror/api/manifests/{child}", target.host);
    let deleted = reqwest::Client::new().delete(&url).send().await.unwrap();
    assert!(deleted.status().is_success(), "delete child: {}", deleted.status());
    let repaired = copy_image(&from, &to, &options.clone().with_force(true)).await.unwrap();
    assert!(repaired.manifests_copied >= 1, "{repaired}");
    assert_bytes(&target, &format!("mirror/api@{child}"), child_bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_and_refused_credentials() {
    if !support::require_tools() {
        return;
    }
    let registry = Registry::start_with_auth("ci", "s3cret-pw");
    let fixture = Fixture::new(6, 4096);
    fixture.push_all(&registry, "private/app");
    let host = registry.host.clone();
    let good = OciRegistryStore::builder()
        .docker_config(false)
        .insecure(host.clone())
        .credentials(host.clone(), RegistryAuth::basic("ci", "s3cret-pw"))
        .build()
        .unwrap();
    let source = reference(&format!("{host}/private/app@{}", fixture.index_digest));
    good.promote(&source, &reference(&format!("{host}/private/app:live"))).await.unwrap();
    good.promote(&source, &reference(&format!("{host}/private/copy:live"))).await.unwrap();
    assert_graph(&registry, "private/copy", "live", &fixture);

    let wrong = OciRegistryStore::builder()
        .docker_config(false)
        .insecure(host.clone())
        .credentials(host.clone(), RegistryAuth::basic("ci", "wrong"))
        .build()
        .unwrap();
    match wrong.resolve(&reference(&format!("{host}/private/app:multi"))).await {
        Err(error @ Error::PermissionDenied { .. }) => {
            assert!(!error.to_string().contains("wrong"), "the password must not appear: {error}");
        }
        other => panic!("wrong credentials must be PermissionDenied, got {other:?}"),
    }
    let anonymous = store(&[&host]);
    assert!(matches!(
        anonymous.resolve(&reference(&format!("{host}/private/app:multi"))).await,
        Err(Error::PermissionDenied { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_tag_is_not_found_naming_the_reference() {
    if !support::require_tools() {
        return;
    }
    let registry = Registry::start();
    let store = store(&[&registry.host]);
    let missing = reference(&format!("{}/nothing/here:v9", registry.host));
    match store.resolve(&missing).await {
        Err(Error::NotFound { name, .. }) => assert_eq!(name, missing.to_string()),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_completes_through_500s_and_429s() {
    if !support::require_tools() {
        return;
    }
    let (source, target) = (Registry::start(), Registry::start());
    let fixture = Fixture::new(7, LAYER);
    fixture.push_all(&source, "team/api");
    let proxy = Proxy::start(&target.host).await;
    proxy.faults.status_faults.store(10, std::sync::atomic::Ordering::SeqCst);
    let store = store(&[&source.host, &proxy.host]);
    let report = store
        .copy(
            &reference(&format!("{}/team/api:multi", source.host)),
            &reference(&format!("{}/team/api:multi", proxy.host)),
            &CopyOptions::default().with_retry(fast_retry()),
        )
        .await
        .unwrap();
    assert_eq!(report.digest, fixture.index_digest);
    assert_eq!(proxy.faults.status_faults.load(std::sync::atomic::Ordering::SeqCst), 0, "every fault was served");
    assert_graph(&target, "team/api", "multi", &fixture);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storm_that_outlasts_the_retry_policy_ends_exhausted() {
    if !support::require_tools() {
        return;
    }
    let registry = Registry::start();
    let fixture = Fixture::new(10, 4096);
    fixture.push_all(&registry, "team/api");
    let proxy = Proxy::start(&registry.host).await;
    proxy.faults.status_faults.store(1000, std::sync::atomic::Ordering::SeqCst);
    let store = OciRegistryStore::builder()
        .docker_config(false)
        .insecure(proxy.host.clone())
        .retry_policy(RetryPolicy::default().with_max_attempts(3).with_constant_delay(Duration::from_millis(10)))
        .build()
        .unwrap();
    let error = store.resolve(&reference(&format!("{}/team/api:multi", proxy.host))).await.unwrap_err();
    assert!(matches!(error, Error::Backend { class: ErrorClass::Exhausted, .. }), "{error:?}");
    assert!(!error.is_retryable(), "the policy already retried: a caller must not repeat the storm at once");
    assert!(error.may_succeed_later(), "but the registry may recover: {error}");
    assert!(error.to_string().contains("gave up after 3 attempts"), "{error}");
    assert_eq!(proxy.requests().len(), 3, "one request per attempt: {:?}", proxy.requests());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_cut_mid_blob_leaves_the_tag_alone_and_a_rerun_completes() {
    if !support::require_tools() {
        return;
    }
    let (source, target) = (Registry::start(), Registry::start());
    let fixture = Fixture::new(8, LAYER);
    fixture.push_all(&source, "team/api");
    // The old release the tag holds before the copy.
    source.push_as(fixture.path(), "other", "team/api", "old");
    target.push_as(fixture.path(), "other", "team/api", "live");
    let old = target.raw("team/api:live");
    let proxy = Proxy::start(&source.host).await;
    proxy.faults.cut_blob_gets.store(1000, std::sync::atomic::Ordering::SeqCst);
    let store = OciRegistryStore::builder()
        .docker_config(false)
        .insecure(proxy.host.clone())
        .insecure(target.host.clone())
        .retry_policy(fast_retry().with_max_attempts(3))
        .build()
        .unwrap();
    let from = reference(&format!("{}/team/api:multi", proxy.host));
    let to = reference(&format!("{}/team/api:live", target.host));
    let options = CopyOptions::default().with_retry(fast_retry().with_max_attempts(3));
    let failed = store.copy(&from, &to, &options).await;
    let error = failed.expect_err("every blob download is cut: the copy must fail");
    assert!(matches!(error, Error::Backend { class: ErrorClass::Exhausted, .. }), "{error:?}");
    assert!(error.may_succeed_later() && !error.is_retryable(), "retried already, may pass later: {error}");
    assert!(target.raw("team/api:live") == old, "a failed copy must leave the target tag untouched");

    proxy.faults.cut_blob_gets.store(0, std::sync::atomic::Ordering::SeqCst);
    let report = store.copy(&from, &to, &options).await.unwrap();
    assert_eq!(report.digest, fixture.index_digest);
    assert_graph(&target, "team/api", "live", &fixture);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_over_the_size_cap_is_a_clear_error() {
    if !support::require_tools() {
        return;
    }
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).await.unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"layer";
    let mut annotations = std::collections::BTreeMap::new();
    annotations.insert("padding".to_owned(), "x".repeat(5 * 1024 * 1024));
    let manifest = image_manifest(config, &[layer], &annotations);
    layout.write_image(Some("huge"), config, &[layer], &manifest).await.unwrap();
    let store = store(&[&registry.host]);
    let result = copy_image(
        &CopyEndpoint::layout_tag(&layout, "huge"),
        &CopyEndpoint::registry(&store, reference(&format!("{}/big/app:huge", registry.host))),
        &CopyOptions::default().with_retry(fast_retry()),
    )
    .await;
    let error = result.expect_err("the registry refuses a 5 MiB manifest");
    assert!(!error.is_retryable(), "{error}");
    assert!(error.to_string().contains("size limit"), "the error must say why: {error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_to_layout_and_back_keeps_every_byte() {
    if !support::require_tools() {
        return;
    }
    let registry = Registry::start();
    let fixture = Fixture::new(9, LAYER);
    fixture.push_all(&registry, "team/api");
    let store = store(&[&registry.host]);
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).await.unwrap();
    let options = CopyOptions::default().with_signatures(true).with_retry(fast_retry());
    copy_image(
        &CopyEndpoint::registry(&store, reference(&format!("{}/team/api:multi", registry.host))),
        &CopyEndpoint::layout_tag(&layout, "multi"),
        &options,
    )
    .await
    .unwrap();
    assert!(support::raw_from_layout(dir.path(), "multi") == fixture.index_bytes, "skopeo reads the layout's index");
    assert!(layout.resolve_tag(&fixture.signature_tag).await.unwrap().is_some(), "the signature came along");

    let report = copy_image(
        &CopyEndpoint::layout_tag(&layout, "multi"),
        &CopyEndpoint::registry(&store, reference(&format!("{}/airgap/api:multi", registry.host))),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.digest, fixture.index_digest);
    assert_graph(&registry, "airgap/api", "multi", &fixture);
}
