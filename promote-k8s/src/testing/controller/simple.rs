//! Create-time defaults (namespaces, services, deployments) and the small controllers: CRD establishment,
//! each namespace's `default` ServiceAccount, PVC binding, LoadBalancer ingress.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{builtin, create, objects, set_status, uid, update};
use crate::testing::resources::ResourceType;
use crate::testing::store::{Store, object_key, timestamp};

/// Defaults the API server's strategies and admission set on create, for the kinds where clients read them.
pub(crate) fn admit_create(store: &mut Store, rt: &ResourceType, object: &mut Value) {
    if rt.crd.is_some() || !rt.group.is_empty() && rt.group != "apps" {
        return;
    }
    match rt.kind.as_str() {
        "Namespace" => {
            let name = object_key(object).1;
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        "Service" => {
            let spec = &mut object["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("type") != Some(&json!("ExternalName")) && spec.get("clusterIP").is_none() {
                let n = store.random_suffix(1).bytes().next().unwrap_or(0) as u32 * 7 % 250 + 2;
                let ip = format!("10.96.{}.{n}", store.resource_version() % 250);
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
                spec["ipFamilies"] = json!(["IPv4"]);
                spec["ipFamilyPolicy"] = json!("SingleStack");
            }
            if spec.get("sessionAffinity").is_none() {
                spec["sessionAffinity"] = json!("None");
            }
            let node_ports = matches!(spec["type"].as_str(), Some("NodePort" | "LoadBalancer"));
            let rv = store.resource_version();
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for (i, port) in ports.iter_mut().enumerate() {
                    if port.get("protocol").is_none() {
                        port["protocol"] = json!("TCP");
                    }
                    if port.get("targetPort").is_none() {
                        port["targetPort"] = port.get("port").cloned().unwrap_or(json!(80));
                    }
                    if node_ports && port.get("nodePort").is_none() {
                        port["nodePort"] = json!(30000 + (rv * 7 + i as u64) % 2768);
                    }
                }
            }
            object["status"] = json!({"loadBalancer": {}});
        }
        "Deployment" => {
            let spec = &mut object["spec"];
            if spec.get("replicas").is_none() {
                spec["replicas"] = json!(1);
            }
            if spec.get("progressDeadlineSeconds").is_none() {
                spec["progressDeadlineSeconds"] = json!(600);
            }
            if spec.get("revisionHistoryLimit").is_none() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if spec.get("strategy").is_none() {
                spec["strategy"] =
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
            }
        }
        _ => {}
    }
}

/// Creates a namespace that exists from the start (`default`, `kube-system`, ...).
pub(crate) fn bootstrap_namespace(store: &mut Store, name: &str, now: DateTime<Utc>) {
    let rt = builtin(store, "", "namespaces");
    let mut namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    admit_create(store, &rt, &mut namespace);
    let _ = store.create(&rt, namespace, now);
    namespaces(store, now);
}

/// Each active namespace gets its `default` ServiceAccount, as the service account controller makes it.
pub(super) fn namespaces(store: &mut Store, now: DateTime<Utc>) {
    let ns_type = builtin(store, "", "namespaces");
    let sa_type = builtin(store, "", "serviceaccounts");
    for namespace in objects(store, &ns_type) {
        let name = object_key(&namespace).1;
        if store.get(&sa_type.storage_key(), &name, "default").is_none() {
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}});
            create(store, &sa_type, sa, "kube-controller-manager", now);
        }
    }
}

fn condition(kind: &str, ok: bool, reason: &str, message: &str, generation: i64, now: DateTime<Utc>) -> Value {
    json!({"type": kind, "status": if ok { "True" } else { "False" }, "reason": reason, "message": message,
        "lastTransitionTime": timestamp(now), "observedGeneration": generation})
}

/// CRDs: names accepted, served versions registered, `Established`.
pub(super) fn crds(store: &mut Store, now: DateTime<Utc>) {
    let crd_type = builtin(store, "apiextensions.k8s.io", "customresourcedefinitions");
    for crd in objects(store, &crd_type) {
        let generation = crd.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
        let observed = crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Established"))
            .and_then(|c| c.get("observedGeneration"))
            .and_then(Value::as_i64);
        if observed == Some(generation) {
            continue;
        }
        let mut accepted = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let status = match store.catalogue.register_crd(&crd) {
            Ok(()) => {
                let kind = accepted["kind"].as_str().unwrap_or_default().to_string();
                if accepted.get("singular").is_none() {
                    accepted["singular"] = json!(kind.to_lowercase());
                }
                if accepted.get("listKind").is_none() {
                    accepted["listKind"] = json!(format!("{kind}List"));
                }
                let stored: Vec<Value> = crd
                    .pointer("/spec/versions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|v| v["storage"] == json!(true))
                    .map(|v| v["name"].clone())
                    .collect();
                json!({
                    "conditions": [
                        condition("NamesAccepted", true, "NoConflicts", "no conflicts found", generation, now),
                        condition("Established", true, "InitialNamesAccepted", "the initial names have been accepted", generation, now),
                    ],
                    "acceptedNames": accepted,
                    "storedVersions": stored,
                })
            }
            Err(message) => json!({
                "conditions": [
                    condition("NamesAccepted", false, "InvalidNames", &message, generation, now),
                    condition("Established", false, "NotAccepted", "not all names are accepted", generation, now),
                ],
                "acceptedNames": {"kind": "", "plural": ""},
                "storedVersions": [],
            }),
        };
        set_status(store, &crd_type, &crd, status, "kube-apiserver", now);
    }
}

/// Every PVC binds at once to a volume of the size it requested.
pub(super) fn persistent_volume_claims(store: &mut Store, now: DateTime<Utc>) {
    let pvc_type = builtin(store, "", "persistentvolumeclaims");
    for pvc in objects(store, &pvc_type) {
        if pvc.pointer("/status/phase") == Some(&json!("Bound")) {
            continue;
        }
        let mut bound = pvc.clone();
        if bound.pointer("/spec/volumeName").is_none() {
            bound["spec"]["volumeName"] = json!(format!("pvc-{}", uid(&pvc)));
            update(store, &pvc_type, &pvc, bound, "kube-controller-manager", now);
        }
        let (ns, name) = object_key(&pvc);
        let Some(current) = store.get(&pvc_type.storage_key(), &ns, &name).cloned() else { continue };
        let storage = pvc.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"));
        let access = pvc.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"]));
        let status = json!({"phase": "Bound", "accessModes": access, "capacity": {"storage": storage}});
        set_status(store, &pvc_type, &current, status, "kube-controller-manager", now);
    }
}

/// A LoadBalancer Service gets an ingress address at once (from the documentation range; never connected to).
pub(super) fn load_balancers(store: &mut Store, now: DateTime<Utc>) {
    let svc_type = builtin(store, "", "services");
    for svc in objects(store, &svc_type) {
        if svc.pointer("/spec/type") != Some(&json!("LoadBalancer"))
            || svc.pointer("/status/loadBalancer/ingress").is_some()
        {
            continue;
        }
        let status = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}});
        set_status(store, &svc_type, &svc, status, "cloud-controller-manager", now);
    }
}
