//! The wire: kube-rs's exact server-side apply request (pinned with tower-test), the fake's discovery and
//! protobuf handling, fault hooks, the request log, and access rules.
#![cfg(feature = "testing")]

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, Response, StatusCode};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use promote_k8s::testing::{AccessRule, FakeApiServer, FaultResponse};
use serde_json::{Value, json};
use support::{manual_fake, status_of};
use tower::ServiceExt;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}),
    )
    .unwrap()
}

/// kube-rs sends server-side apply as a PATCH with `application/apply-patch+yaml`, `fieldManager` and `force`
/// in the query, and the object as JSON: what the fake (and a real server) must accept.
#[tokio::test]
async fn kube_rs_server_side_apply_wire_shape() {
    let (service, mut handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
    let client = kube::Client::new(service, "ns1");
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    let call = tokio::spawn(async move {
        cms.patch("cfg", &PatchParams::apply("promote").force(), &Patch::Apply(cm("cfg"))).await
    });
    let (request, respond) = handle.next_request().await.expect("kube-rs sends a request");
    assert_eq!(request.method(), Method::PATCH);
    assert_eq!(request.uri().path(), "/api/v1/namespaces/ns1/configmaps/cfg");
    assert_eq!(request.uri().query(), Some("&force=true&fieldManager=promote"));
    assert_eq!(request.headers()["content-type"], "application/apply-patch+yaml");
    let body = http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes();
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(sent["metadata"]["name"], "cfg");
    respond.send_response(Response::new(Body::from(serde_json::to_vec(&cm("cfg")).unwrap())));
    call.await.unwrap().unwrap();

    let (service, mut handle) = tower_test::mock::pair::<Request<kube::client::Body>, Response<Body>>();
    let cms: Api<ConfigMap> = Api::namespaced(kube::Client::new(service, "ns1"), "ns1");
    let call = tokio::spawn(async move {
        cms.patch("cfg", &PatchParams::apply("promote").dry_run(), &Patch::Apply(cm("cfg"))).await
    });
    let (request, respond) = handle.next_request().await.unwrap();
    assert_eq!(request.uri().query(), Some("&dryRun=All&fieldManager=promote"), "force is omitted unless set");
    respond.send_response(Response::new(Body::from(serde_json::to_vec(&cm("cfg")).unwrap())));
    call.await.unwrap().unwrap();
}

async fn raw(fake: &FakeApiServer, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
    let response = fake.service().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn discovery_answers_the_version_the_client_asked_for() {
    let (fake, _client, _clock) = manual_fake().await;
    for version in ["v2", "v2beta1"] {
        let accept =
            format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList,application/json");
        let (status, headers, body) =
            raw(&fake, Request::get("/apis").header("Accept", accept).body(Body::empty()).unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["content-type"],
            format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
        );
        assert_eq!(body["apiVersion"], format!("apidiscovery.k8s.io/{version}"));
        let apps = body["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "deployments")
            .unwrap();
        assert_eq!(deployments["shortNames"], json!(["deploy"]));
        assert_eq!(deployments["categories"], json!(["all"]));
    }
    let (_, headers, legacy) =
        raw(&fake, Request::get("/api").header("Accept", "application/json").body(Body::empty()).unwrap()).await;
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(legacy["kind"], "APIVersions");
    let (_, _, version) = raw(&fake, Request::get("/version").body(Body::empty()).unwrap()).await;
    assert_eq!((version["major"].as_str(), version["minor"].as_str()), (Some("1"), Some("32")));
    let (_, _, openapi) = raw(&fake, Request::get("/openapi/v3/apis/apps/v1").body(Body::empty()).unwrap()).await;
    let patch = &openapi["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    assert!(
        patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
    );
}

#[tokio::test]
async fn a_protobuf_namespace_create_is_decoded() {
    let (fake, _client, _clock) = manual_fake().await;
    // `kubectl create namespace ns9`'s body, with the name changed (same length).
    let hex =
        "6b3873000a0f0a02763112094e616d657370616365121b0a130a036e733912001a0022002a0032003800420012001a020a001a002200";
    let body: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let request = Request::post("/api/v1/namespaces?fieldManager=kubectl-create&fieldValidation=Strict")
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .header("Accept", "application/vnd.kubernetes.protobuf,application/json")
        .body(Body::from(body.clone()))
        .unwrap();
    let (status, _, created) = raw(&fake, request).await;
    assert_eq!(status, 201);
    assert_eq!(
        (created["metadata"]["name"].as_str(), created["status"]["phase"].as_str()),
        (Some("ns9"), Some("Active"))
    );
    let again = Request::post("/api/v1/namespaces")
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .body(Body::from(body))
        .unwrap();
    let (status, _, error) = raw(&fake, again).await;
    assert_eq!((status.as_u16(), error["message"].as_str()), (409, Some("namespaces \"ns9\" already exists")));
}

#[tokio::test]
async fn fault_hooks_fail_throttle_and_count_requests() {
    let (fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    fake.fail_next(1, Some(Method::POST), "/api/v1/namespaces/ns1/configmaps", FaultResponse::ServerError(503));
    let failed = status_of(cms.create(&PostParams::default(), &cm("a")).await.unwrap_err());
    assert_eq!((failed.code, failed.reason.as_str()), (503, "ServiceUnavailable"));
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();

    fake.fail_next(
        2,
        None,
        "/api/v1/namespaces/ns1/configmaps/a",
        FaultResponse::TooManyRequests { retry_after_secs: 3 },
    );
    let (status, headers, body) =
        raw(&fake, Request::get("/api/v1/namespaces/ns1/configmaps/a").body(Body::empty()).unwrap()).await;
    assert_eq!((status.as_u16(), body["reason"].as_str()), (429, Some("TooManyRequests")));
    assert_eq!(headers["retry-after"], "3");
    assert_eq!(status_of(cms.get("a").await.unwrap_err()).code, 429);
    cms.get("a").await.unwrap();

    fake.set_latency(Duration::from_millis(5));
    fake.clear_requests();
    cms.list(&ListParams::default()).await.unwrap();
    cms.get("a").await.unwrap();
    let log = fake.requests();
    assert_eq!(log.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["GET", "GET"]);
    assert_eq!(log[1].path, "/api/v1/namespaces/ns1/configmaps/a");
}

#[tokio::test]
async fn watches_can_be_dropped_and_expired_on_demand() {
    let (fake, client, _clock) = manual_fake().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    let created = cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let mut stream = cms.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    fake.drop_watches();
    assert!(stream.next().await.is_none(), "a dropped watch ends its stream");

    fake.expire_next_watch();
    let mut expired = cms.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    assert!(matches!(expired.next().await.unwrap().unwrap(), WatchEvent::Error(e) if e.code == 410));
    let mut fine = cms.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();
    assert!(matches!(fine.next().await.unwrap().unwrap(), WatchEvent::Modified(_)), "only the next watch expires");
}

#[tokio::test]
async fn access_rules_answer_forbidden_like_rbac() {
    let (fake, _client, _clock) = manual_fake().await;
    fake.restrict(
        "ci-token",
        "system:serviceaccount:ns1:promote",
        vec![AccessRule::new("coordination.k8s.io", &["leases"], &["list", "create"]).in_namespaces(&["ns1"])],
    );
    let client = kube::Client::new(fake.service_as("ci-token"), "ns1");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "ns1");
    leases.list(&ListParams::default()).await.unwrap();
    let denied = status_of(leases.get("promote-stg").await.unwrap_err());
    assert_eq!((denied.code, denied.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        denied.message,
        "leases.coordination.k8s.io \"promote-stg\" is forbidden: User \"system:serviceaccount:ns1:promote\" cannot get \
         resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"ns1\""
    );
    let elsewhere: Api<Lease> = Api::namespaced(client.clone(), "default");
    let denied = status_of(elsewhere.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        denied.message,
        "leases.coordination.k8s.io is forbidden: User \"system:serviceaccount:ns1:promote\" cannot list resource \
         \"leases\" in API group \"coordination.k8s.io\" in the namespace \"default\""
    );
    let cms: Api<ConfigMap> = Api::namespaced(client, "ns1");
    assert_eq!(status_of(cms.list(&ListParams::default()).await.unwrap_err()).code, 403);
    let admin: Api<ConfigMap> = Api::namespaced(kube::Client::new(fake.service(), "ns1"), "ns1");
    admin.list(&ListParams::default()).await.unwrap();
}
