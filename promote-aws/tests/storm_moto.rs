//! Fault storms against moto: the ECR store promotes a multi-platform index (retag by digest, then verify
//! the digest the tag serves) through the fault proxy of promote-oci's storm tests, for each kind of fault;
//! and the Secrets Manager config source loads a stage's secrets through the same storms.
//!
//! Each storm either completes, or fails with an error that may succeed later; then the storm ends and
//! the promotion runs again. The tag is then read from moto directly (not through the proxy or the store):
//! it serves the source's bytes exactly, and every child manifest of the index is there under its digest.
//! A failed run leaves the tag absent or on the same complete graph.
//!
//! Two intensities, as in promote-oci's storms: gusts (every second call, 3 faults at most) and a gale
//! (every call, 8 at most: more than the store's attempts). `RELIABILITY_LONG=1` adds longer storms.

mod common;

use std::time::{Duration, Instant};

use aws_sdk_ecr::types::ImageIdentifier;
use common::{Moto, REGISTRY, create_repository, index_manifest, oci_manifest, put_manifest, sdk_config, sha256};
use promote_aws::{EcrStore, RetryPolicy};
use promote_core::manifest::{MANIFEST_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST};
use promote_core::{ArtifactRef, ArtifactStore, ArtifactStoreExt, Error};
use promote_testkit::storm::{Fault, FaultProxy};

const REPOSITORY: &str = "storm/web";
/// The longest one promotion may take, storm or not.
const DEADLINE: Duration = Duration::from_secs(120);

fn long() -> bool {
    std::env::var_os("RELIABILITY_LONG").is_some_and(|v| v == "1")
}

fn reference(tag: &str) -> ArtifactRef {
    ArtifactRef::by_tag(REGISTRY, REPOSITORY, tag).unwrap()
}

/// The manifest `image` (a tag or a digest) holds, read from moto directly: `None` if there is none.
async fn manifest(ecr: &aws_sdk_ecr::Client, image: ImageIdentifier) -> Option<String> {
    let output = ecr
        .batch_get_image()
        .repository_name(REPOSITORY)
        .image_ids(image)
        .set_accepted_media_types(Some(MANIFEST_MEDIA_TYPES.iter().map(|t| (*t).to_owned()).collect()))
        .send()
        .await
        .expect("batch get image");
    output.images().first().and_then(|image| image.image_manifest()).map(str::to_owned)
}

/// The tag's manifest, checked directly: absent, or an index whose every child is there under its digest.
async fn check_tag(ecr: &aws_sdk_ecr::Client, tag: &str, at: &str) -> Option<String> {
    let index = manifest(ecr, ImageIdentifier::builder().image_tag(tag).build()).await?;
    let document: serde_json::Value = serde_json::from_str(&index).unwrap();
    for child in document["manifests"].as_array().unwrap() {
        let digest = child["digest"].as_str().unwrap();
        let bytes = manifest(ecr, ImageIdentifier::builder().image_digest(digest).build())
            .await
            .unwrap_or_else(|| panic!("{at}: the tag points at an index whose child {digest} is missing"));
        assert_eq!(sha256(&bytes).as_str(), digest, "{at}: child {digest} holds other bytes");
    }
    Some(index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecr_promotions_survive_fault_storms() {
    let Some(moto) = Moto::start() else { return };
    let direct = aws_sdk_ecr::Client::new(&sdk_config(&moto.endpoint).await);
    create_repository(&direct, REPOSITORY, false).await;
    let amd = oci_manifest("amd64");
    let arm = oci_manifest("arm64");
    let amd_digest = put_manifest(&direct, REPOSITORY, None, &amd, OCI_MANIFEST).await;
    let arm_digest = put_manifest(&direct, REPOSITORY, None, &arm, OCI_MANIFEST).await;
    let index = index_manifest(
        OCI_INDEX,
        &[(amd_digest, amd.len(), OCI_MANIFEST, "amd64"), (arm_digest, arm.len(), OCI_MANIFEST, "arm64")],
    );
    let index_digest = put_manifest(&direct, REPOSITORY, Some("build"), &index, OCI_INDEX).await;

    let proxy = FaultProxy::start(moto.endpoint.trim_start_matches("http://")).await;
    let store = EcrStore::builder()
        .sdk_config(&sdk_config(&format!("http://{}", proxy.host)).await)
        .read_config_labels(false)
        .retry_policy(
            RetryPolicy::default().with_max_attempts(4).with_delays(Duration::from_millis(20), Duration::from_secs(2)),
        )
        .build()
        .await
        .unwrap();
    let shapes: &[(&str, u32, u32)] = if long() {
        &[("gust", 2, 3), ("gust-3", 3, 6), ("gale", 1, 8), ("gale-12", 1, 12)]
    } else {
        &[("gust", 2, 3), ("gale", 1, 8)]
    };
    let source = reference("build").pinned(&index_digest);

    let started = Instant::now();
    let mut rows = Vec::new();
    for (index_of_fault, fault) in Fault::ALL.into_iter().enumerate() {
        for (shape, every, budget) in shapes {
            let at = format!("{} ({shape})", fault.name());
            let tag = format!("stg-{index_of_fault}-{shape}");
            let target = reference(&tag);
            let budget = if fault == Fault::StalledBody { (*budget).min(2) } else { *budget };
            let plan = proxy.storm(fault, *every, budget);
            let place = async {
                store.promote(&source, &target).await?;
                store.verify_digest(&target, &index_digest).await
            };
            let outcome = tokio::time::timeout(DEADLINE, place)
                .await
                .unwrap_or_else(|_| panic!("{at}: the promotion did not end within {DEADLINE:?}"));
            proxy.calm();
            let injected = plan.injected.load(std::sync::atomic::Ordering::SeqCst);
            let first = match &outcome {
                Ok(artifact) => {
                    assert_eq!(artifact.digest, index_digest, "{at}");
                    "completed".to_owned()
                }
                Err(error) => {
                    assert!(error.may_succeed_later(), "{at}: a fault must give an error worth retrying: {error}");
                    assert!(
                        matches!(
                            error.root(),
                            Error::Backend { .. } | Error::DigestMismatch { .. } | Error::Timeout { .. }
                        ),
                        "{at}: {error:?}"
                    );
                    if let Some(held) = check_tag(&direct, &tag, &at).await {
                        assert_eq!(held, index, "{at}: a failed run left the tag on other bytes");
                    }
                    format!("failed, retryable: {}", error.root().kind())
                }
            };
            if outcome.is_err() {
                tokio::time::timeout(DEADLINE, store.promote(&source, &target))
                    .await
                    .unwrap_or_else(|_| panic!("{at}: the re-run did not end within {DEADLINE:?}"))
                    .unwrap_or_else(|e| panic!("{at}: the re-run after the storm failed: {e}"));
            }
            let held = check_tag(&direct, &tag, &at).await.unwrap_or_else(|| panic!("{at}: no tag after success"));
            assert_eq!(held, index, "{at}: the tag holds other bytes than the source");
            rows.push((at, injected, first));
        }
    }
    println!("{:<44} {:>7}  first run", "storm (ECR on moto)", "faults");
    for (at, injected, first) in &rows {
        println!("{at:<44} {injected:>7}  {first}");
    }
    println!("{} storms in {:.1?}", rows.len(), started.elapsed());
    for fault in Fault::ALL {
        let served: u32 = rows.iter().filter(|(at, ..)| at.starts_with(fault.name())).map(|row| row.1).sum();
        assert!(served > 0, "{}: never injected", fault.name());
    }
}

/// The bug the storm found: `BatchGetImage` bytes that are not the digest asked for were put under the
/// tag as they were (moto took them; real ECR would refuse the put as a permanent error). They are now a
/// retryable `DigestMismatch`, and nothing is put.
#[tokio::test]
async fn manifest_bytes_that_are_not_the_digest_are_never_put() {
    use aws_sdk_ecr::operation::batch_get_image::BatchGetImageOutput;
    use aws_sdk_ecr::types::Image;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    let manifest = oci_manifest("amd64");
    let digest = sha256(&manifest);
    let claimed = digest.clone();
    let altered = format!("{manifest} ");
    let get = mock!(aws_sdk_ecr::Client::batch_get_image).then_output(move || {
        BatchGetImageOutput::builder()
            .images(
                Image::builder()
                    .image_id(ImageIdentifier::builder().image_digest(claimed.as_str()).build())
                    .image_manifest(altered.clone())
                    .image_manifest_media_type(OCI_MANIFEST)
                    .build(),
            )
            .build()
    });
    let put = mock!(aws_sdk_ecr::Client::put_image)
        .then_output(|| aws_sdk_ecr::operation::put_image::PutImageOutput::builder().build());
    let client = mock_client!(aws_sdk_ecr, RuleMode::MatchAny, [&get, &put]);
    let error = EcrStore::from_client(client)
        .promote(&reference("build").pinned(&digest), &reference("stg"))
        .await
        .unwrap_err();
    assert!(matches!(error.root(), Error::DigestMismatch { .. }), "{error:?}");
    assert!(error.is_retryable(), "bytes changed in transit may arrive whole next time: {error}");
    assert_eq!(put.num_calls(), 0, "nothing was put");
}

/// Secrets Manager through the same storms: loading a stage's secrets either returns exactly the stored
/// values, or fails with an error worth retrying, and no error (Display or Debug) carries any part of a
/// secret value, even when the body that held it was cut in half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_loads_survive_fault_storms_without_leaking() {
    use promote_aws::{SecretSpec, SecretsManagerSource};
    use promote_core::{ConfigRequest, ConfigSource};

    const DB_URL: &str = "postgres://storm-user:Qv7-leak-canary-db@db.internal/app";
    const TOKEN: &str = "tok-Qv7-leak-canary-token-5b1f";
    let Some(moto) = Moto::start() else { return };
    let direct = aws_sdk_secretsmanager::Client::new(&sdk_config(&moto.endpoint).await);
    let app = serde_json::json!({ "DB_URL": DB_URL, "PORT": "5432" }).to_string();
    direct.create_secret().name("prd/app").secret_string(&app).send().await.expect("create secret");
    direct.create_secret().name("prd/token").secret_string(TOKEN).send().await.expect("create secret");

    let proxy = FaultProxy::start(moto.endpoint.trim_start_matches("http://")).await;
    let source = SecretsManagerSource::builder()
        .sdk_config(&sdk_config(&format!("http://{}", proxy.host)).await)
        .retry_policy(
            RetryPolicy::default().with_max_attempts(4).with_delays(Duration::from_millis(20), Duration::from_secs(2)),
        )
        .stage("prd", [SecretSpec::json("prd/app"), SecretSpec::string("prd/token", "TOKEN")])
        .build()
        .await
        .unwrap();
    let expected = [("DB_URL", DB_URL), ("PORT", "5432"), ("TOKEN", TOKEN)];
    // Pieces of each value, so that half a value in an error is found too.
    let pieces: Vec<&str> = [DB_URL, TOKEN].iter().flat_map(|v| [&v[..v.len() / 2], &v[v.len() / 2..]]).collect();
    // One load is one call (`BatchGetSecretValue`): a gust is a few faults in a row, fewer than the attempts.
    let shapes: &[(&str, u32, u32)] = if long() {
        &[("gust", 1, 2), ("gust-3", 1, 3), ("gale", 1, 8), ("gale-12", 1, 12)]
    } else {
        &[("gust", 1, 2), ("gale", 1, 8)]
    };
    let mut rows = Vec::new();
    // Secrets Manager serves no manifests: the wrong-bytes fault has nothing to hit.
    for fault in Fault::ALL.into_iter().filter(|fault| *fault != Fault::WrongManifestBytes) {
        for (shape, every, budget) in shapes {
            let at = format!("{} ({shape})", fault.name());
            let budget = if fault == Fault::StalledBody { (*budget).min(2) } else { *budget };
            let plan = proxy.storm(fault, *every, budget);
            let outcome = tokio::time::timeout(DEADLINE, source.load(&ConfigRequest::new("prd")))
                .await
                .unwrap_or_else(|_| panic!("{at}: the load did not end within {DEADLINE:?}"));
            proxy.calm();
            let loaded = match outcome {
                Ok(loaded) => {
                    rows.push((at.clone(), plan.injected.load(std::sync::atomic::Ordering::SeqCst), "loaded"));
                    loaded
                }
                Err(error) => {
                    assert!(error.may_succeed_later(), "{at}: a fault must give an error worth retrying: {error}");
                    let shown = format!("{error} {error:?}");
                    for piece in &pieces {
                        assert!(!shown.contains(piece), "{at}: the error shows part of a secret: {shown}");
                    }
                    rows.push((
                        at.clone(),
                        plan.injected.load(std::sync::atomic::Ordering::SeqCst),
                        "failed, retryable",
                    ));
                    source.load(&ConfigRequest::new("prd")).await.unwrap_or_else(|e| panic!("{at}: the re-run: {e}"))
                }
            };
            for (key, value) in expected {
                let entry = loaded.get(key).unwrap_or_else(|| panic!("{at}: {key} missing"));
                assert_eq!(entry.value.expose(), value, "{at}: {key}");
            }
            assert_eq!(loaded.len(), expected.len(), "{at}");
        }
    }
    println!("{:<44} {:>7}  first run", "storm (Secrets Manager on moto)", "faults");
    for (at, injected, first) in &rows {
        println!("{at:<44} {injected:>7}  {first}");
    }
}
