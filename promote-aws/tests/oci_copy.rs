//! Cross-registry promotion (feature `oci-copy`): an ECR authorization token from moto's
//! `GetAuthorizationToken` authenticates the OCI copy engine against two real `docker-registry`
//! instances that accept exactly that token (htpasswd `AWS:<password>`). moto does not serve the
//! registry `/v2` API, so the registries stand in for ECR's.
#![cfg(feature = "oci-copy")]

mod common;

use std::process::Command;

use base64::Engine as _;
use bytes::Bytes;
use common::proxy::Proxy;
use common::{sdk_config, sha256};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use promote_aws::{EcrCredentialProvider, EcrStore};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{ArtifactRef, ArtifactStore};
use promote_testkit::registry::{self, Registry};
use promote_testkit::{Moto, free_port, require};

/// A `docker-registry` on a free loopback port that accepts exactly the users in `htpasswd`; killed on drop.
fn start_registry(htpasswd: &std::path::Path) -> Registry {
    let auth = format!("auth:\n  htpasswd:\n    realm: test\n    path: {}\n", htpasswd.display());
    Registry::spawn(tempfile::tempdir().unwrap(), free_port(), &auth, None)
}

/// One HTTP/1.1 request; returns the status, the `Location` header and the body.
async fn http(
    method: &str,
    url: &str,
    auth: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Option<String>, Vec<u8>) {
    let uri: hyper::Uri = url.parse().unwrap();
    let address = uri.authority().unwrap().as_str().to_owned();
    let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", address)
        .header("content-type", content_type)
        .header("accept", OCI_MANIFEST);
    if let Some(auth) = auth {
        request = request.header("authorization", format!("Basic {auth}"));
    }
    let response = sender.send_request(request.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let location = response.headers().get("location").map(|value| value.to_str().unwrap().to_owned());
    (status, location, response.into_body().collect().await.unwrap().to_bytes().to_vec())
}

/// Pushes a blob (monolithic: POST then one PUT) with basic auth.
async fn push_blob(host: &str, repository: &str, auth: &str, content: &[u8]) {
    let (status, location, _) = http(
        "POST",
        &format!("http://{host}/v2/{repository}/blobs/uploads/"),
        Some(auth),
        "application/octet-stream",
        vec![],
    )
    .await;
    assert_eq!(status, 202, "start upload");
    let location = location.unwrap();
    let location = if location.starts_with("http") { location } else { format!("http://{host}{location}") };
    let separator = if location.contains('?') { '&' } else { '?' };
    let digest = promote_core::Digest::sha256_of(content);
    let (status, _, _) = http(
        "PUT",
        &format!("{location}{separator}digest={digest}"),
        Some(auth),
        "application/octet-stream",
        content.to_vec(),
    )
    .await;
    assert_eq!(status, 201, "finish upload");
}

#[tokio::test]
async fn promotes_across_registries_with_an_ecr_token() {
    if !(require("docker-registry", registry::INSTALL) & require("htpasswd", registry::INSTALL)) {
        return;
    }
    let Some(moto) = Moto::start() else { return };
    let counter = Proxy::start(&moto.endpoint).await;
    let sdk = sdk_config(&counter.endpoint).await;

    // The registries accept exactly the credentials in moto's token.
    let token = aws_sdk_ecr::Client::new(&sdk).get_authorization_token().send().await.unwrap();
    let encoded = token.authorization_data()[0].authorization_token().unwrap().to_owned();
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&encoded).unwrap()).unwrap();
    let (user, password) = decoded.split_once(':').unwrap();
    assert_eq!(user, "AWS");
    let auth_dir = tempfile::tempdir().unwrap();
    let htpasswd = auth_dir.path().join("htpasswd");
    let output = Command::new("htpasswd").args(["-Bbn", user, password]).output().unwrap();
    assert!(output.status.success());
    std::fs::write(&htpasswd, output.stdout).unwrap();
    let source_registry = start_registry(&htpasswd);
    let target_registry = start_registry(&htpasswd);

    // Seed the source registry: config, layer, then the manifest, whose exact bytes must arrive.
    let seed_auth = base64::engine::general_purpose::STANDARD.encode(&decoded);
    let manifest = {
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layer = b"layer bytes".to_vec();
        push_blob(&source_registry.host, "team/web", &seed_auth, &config).await;
        push_blob(&source_registry.host, "team/web", &seed_auth, &layer).await;
        format!(
            "{{\n   \"schemaVersion\": 2,\n \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{}\", \"size\": {}}},\n  \"layers\": [{{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar\", \"digest\": \"{}\", \"size\": {}}}]\n}}\n",
            promote_core::Digest::sha256_of(&config),
            config.len(),
            promote_core::Digest::sha256_of(&layer),
            layer.len()
        )
    };
    let (status, _, _) = http(
        "PUT",
        &format!("http://{}/v2/team/web/manifests/3f2c1a9", source_registry.host),
        Some(&seed_auth),
        OCI_MANIFEST,
        manifest.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 201, "push manifest");
    let digest = sha256(&manifest);

    // Loopback hosts stand for ECR registries only because they are declared aliases.
    let credentials = EcrCredentialProvider::new(&sdk)
        .with_registry_alias(source_registry.host.clone())
        .with_registry_alias(target_registry.host.clone());
    let copier = promote_oci::OciRegistryStore::builder()
        .credential_provider(credentials)
        .docker_config(false)
        .insecure(source_registry.host.clone())
        .insecure(target_registry.host.clone())
        .build()
        .unwrap();
    let store = EcrStore::builder().sdk_config(&sdk).copier(copier).build().await.unwrap();
    assert!(store.capabilities().cross_registry && store.capabilities().cross_repository);

    let source = ArtifactRef::by_digest(&source_registry.host, "team/web", digest.clone()).unwrap();
    let target = ArtifactRef::by_tag(&target_registry.host, "prd/web", "3f2c1a9").unwrap();
    let promoted = store.promote(&source, &target).await.expect("cross-registry promotion");
    assert_eq!(promoted.digest, digest);
    assert_eq!(store.resolve(&target).await.unwrap().digest, digest, "the target resolves to the source digest");

    let manifest_url = format!("http://{}/v2/prd/web/manifests/3f2c1a9", target_registry.host);
    let (status, _, _) = http("GET", &manifest_url, None, "", vec![]).await;
    assert_eq!(status, 401, "the target registry requires the token");
    let (status, _, body) = http("GET", &manifest_url, Some(&seed_auth), "", vec![]).await;
    assert_eq!((status, body), (200, manifest.into_bytes()), "byte for byte");
    // One token serves both registries of the region. moto's token "expired in 2015"; the provider
    // reuses an already-expired token for a minute rather than fetching one per request.
    assert_eq!(counter.count("GetAuthorizationToken"), 2, "one for the test's own setup, one for the copy");
}
