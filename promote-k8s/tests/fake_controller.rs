//! The simulated controllers under a manual clock: Deployment → ReplicaSet → Pod, scripted pod outcomes,
//! Deployment status and conditions, rollouts, progress deadlines, and the simpler workloads.
#![cfg(feature = "testing")]

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use promote_k8s::testing::PodOutcome;
use serde_json::json;
use support::{deployment, manual_fake};

fn condition(d: &Deployment, kind: &str) -> (String, String, String) {
    let c = d
        .status
        .as_ref()
        .unwrap()
        .conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_.as_deref() == Some(kind))
        .unwrap()
        .clone();
    (c.status.unwrap_or_default(), c.reason.unwrap_or_default(), c.message.unwrap_or_default())
}

#[tokio::test]
async fn a_ready_deployment_has_the_status_rollout_status_reads() {
    let (_fake, client, _clock) = manual_fake().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ns1");
    deployments.create(&PostParams::default(), &deployment("web", "nginx:1.27", 3)).await.unwrap();
    let web = deployments.get("web").await.unwrap();
    let status = web.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        (status.replicas, status.updated_replicas, status.ready_replicas, status.available_replicas),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(status.unavailable_replicas, None);
    assert_eq!(condition(&web, "Available").1, "MinimumReplicasAvailable");
    let (_, reason, message) = condition(&web, "Progressing");
    assert_eq!(reason, "NewReplicaSetAvailable");

    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), "ns1");
    let sets = rs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(sets.len(), 1);
    let hash = sets[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(sets[0].metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    assert_eq!(message, format!("ReplicaSet \"web-{hash}\" has successfully progressed."));
    assert_eq!(sets[0].metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "1");
    let pods: Api<Pod> = Api::namespaced(client, "ns1");
    let pods = pods.list(&ListParams::default().labels(&format!("pod-template-hash={hash}"))).await.unwrap().items;
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Running")));
}

#[tokio::test]
async fn scripted_failures_show_on_the_pod_at_the_first_tick() {
    let (fake, client, _clock) = manual_fake().await;
    let cases = [
        ("pull", PodOutcome::ImagePullBackOff, "ImagePullBackOff", "Back-off pulling image \"registry.local/pull:1\""),
        ("err", PodOutcome::ErrImagePull, "ErrImagePull", "rpc error: code = NotFound"),
        ("crash", PodOutcome::CrashLoopBackOff, "CrashLoopBackOff", "back-off 10s restarting failed container=app"),
        (
            "config",
            PodOutcome::CreateContainerConfigError,
            "CreateContainerConfigError",
            "configmap \"config\" not found",
        ),
    ];
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ns1");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    for (name, outcome, reason, message) in cases {
        fake.script_pod_outcome(&format!("registry.local/{name}:*"), outcome);
        deployments
            .create(&PostParams::default(), &deployment(name, &format!("registry.local/{name}:1"), 1))
            .await
            .unwrap();
        let pod = pods.list(&ListParams::default().labels(&format!("app={name}"))).await.unwrap().items.remove(0);
        let container = &pod.status.unwrap().container_statuses.unwrap()[0];
        let waiting = container.state.as_ref().unwrap().waiting.as_ref().expect("a waiting container");
        assert_eq!(waiting.reason.as_deref(), Some(reason));
        assert!(waiting.message.as_deref().unwrap().starts_with(message), "{:?}", waiting.message);
        assert!(!container.ready);
    }
}

#[tokio::test]
async fn slow_pods_become_ready_with_injected_time_and_a_stuck_rollout_exceeds_its_deadline() {
    let (fake, client, _clock) = manual_fake().await;
    fake.script_pod_outcome("registry.local/slow:*", PodOutcome::Slow(Duration::from_secs(30)));
    fake.script_pod_outcome("registry.local/never:*", PodOutcome::NeverReady);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "ns1");
    deployments.create(&PostParams::default(), &deployment("web", "registry.local/slow:1", 2)).await.unwrap();
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.status.as_ref().unwrap().available_replicas, None);
    assert_eq!(web.status.as_ref().unwrap().unavailable_replicas, Some(2));
    assert_eq!(condition(&web, "Available").1, "MinimumReplicasUnavailable");

    fake.advance(Duration::from_secs(29));
    assert_eq!(deployments.get("web").await.unwrap().status.unwrap().ready_replicas, None);
    fake.advance(Duration::from_secs(1));
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.status.as_ref().unwrap().available_replicas, Some(2));
    assert_eq!(condition(&web, "Progressing").1, "NewReplicaSetAvailable");

    // A new template that never gets ready: the old ReplicaSet keeps serving until the deadline passes.
    let patch = json!({"spec": {"progressDeadlineSeconds": 60, "template": {"spec": {"containers": [{"name": "app", "image": "registry.local/never:2"}]}}}});
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    let web = deployments.get("web").await.unwrap();
    assert_eq!(web.metadata.generation, Some(2));
    let status = web.status.clone().unwrap();
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!((status.replicas, status.updated_replicas, status.available_replicas), (Some(4), Some(2), Some(2)));
    assert_eq!(condition(&web, "Progressing").1, "ReplicaSetUpdated");
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), "ns1");
    let revisions: Vec<String> = rs
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|r| r.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"].clone())
        .collect();
    assert_eq!(revisions.len(), 2);
    assert!(revisions.contains(&"2".to_string()));

    fake.advance(Duration::from_secs(60));
    assert_eq!(condition(&deployments.get("web").await.unwrap(), "Progressing").1, "ReplicaSetUpdated");
    fake.advance(Duration::from_secs(1));
    let web = deployments.get("web").await.unwrap();
    let (status, reason, message) = condition(&web, "Progressing");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ProgressDeadlineExceeded"));
    assert!(message.ends_with("has timed out progressing."));

    // Rolling back to the first template makes its ReplicaSet revision 3 and scales the broken one down.
    let back =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "registry.local/slow:1"}]}}}});
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(back)).await.unwrap();
    fake.advance(Duration::from_secs(1));
    let sets = rs.list(&ListParams::default()).await.unwrap().items;
    let active: Vec<&ReplicaSet> = sets.iter().filter(|r| r.spec.replicas != Some(0)).collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"], "3");
    let web = deployments.get("web").await.unwrap();
    assert_eq!(condition(&web, "Progressing").1, "NewReplicaSetAvailable");
    assert_eq!(web.status.unwrap().replicas, Some(2));
}

#[tokio::test]
async fn statefulsets_daemonsets_jobs_pvcs_and_load_balancers_settle() {
    let (_fake, client, _clock) = manual_fake().await;
    let labels = json!({"app": "x"});
    let template = json!({"metadata": {"labels": labels}, "spec": {"containers": [{"name": "app", "image": "nginx:1"}], "restartPolicy": "Never"}});
    let sts: Api<StatefulSet> = Api::namespaced(client.clone(), "ns1");
    let created = sts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "db"}, "spec": {"replicas": 2, "serviceName": "db",
            "selector": {"matchLabels": labels}, "template": template}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let _ = created;
    let status = sts.get("db").await.unwrap().status.unwrap();
    assert_eq!((status.ready_replicas, status.updated_replicas), (Some(2), Some(2)));
    assert_eq!(status.current_revision, status.update_revision);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "ns1");
    assert!(pods.get("db-0").await.is_ok() && pods.get("db-1").await.is_ok());

    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "ns1");
    ds.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "agent"}, "spec": {
        "selector": {"matchLabels": labels}, "template": template}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let status = ds.get("agent").await.unwrap().status.unwrap();
    assert_eq!((status.desired_number_scheduled, status.number_ready, status.number_available), (1, 1, Some(1)));

    let jobs: Api<Job> = Api::namespaced(client.clone(), "ns1");
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "migrate"}, "spec": {"template": template}})).unwrap(),
    )
    .await
    .unwrap();
    let status = jobs.get("migrate").await.unwrap().status.unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert!(status.conditions.unwrap().iter().any(|c| c.type_ == "Complete" && c.status == "True"));

    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "ns1");
    pvcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}))
        .unwrap(),
    )
    .await
    .unwrap();
    let pvc = pvcs.get("data").await.unwrap();
    assert_eq!(pvc.status.unwrap().phase.as_deref(), Some("Bound"));

    let services: Api<Service> = Api::namespaced(client, "ns1");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "lb"}, "spec": {
        "type": "LoadBalancer", "selector": labels, "ports": [{"port": 80}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let lb = services.get("lb").await.unwrap();
    assert!(lb.spec.unwrap().cluster_ip.is_some());
    let ingress = lb.status.unwrap().load_balancer.unwrap().ingress.unwrap();
    assert_eq!(ingress[0].ip.as_deref(), Some("192.0.2.10"));
}
