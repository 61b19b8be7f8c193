//! Table output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), with the columns `kubectl get` shows.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::resources::ResourceType;

pub(crate) fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|offer| offer.split(';').any(|p| p.trim() == "as=Table"))
}

/// kubectl's `HumanDuration`, which the real server uses for the AGE cells.
pub(crate) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    format!("{}y", hours / 24 / 365)
}

fn age(object: &Value, now: DateTime<Utc>) -> String {
    object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration((now - t.with_timezone(&Utc)).num_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

type Column = (&'static str, &'static str, i64);

fn columns(kind: &str) -> Vec<Column> {
    let name = ("Name", "string", 0);
    let age = ("Age", "string", 0);
    match kind {
        "Deployment" => vec![
            name,
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            age,
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "ReplicaSet" => vec![
            name,
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            age,
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        "Pod" => vec![name, ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0), age],
        "Lease" => vec![name, ("Holder", "string", 0), age],
        "ConfigMap" => vec![name, ("Data", "integer", 0), age],
        "Namespace" => vec![name, ("Status", "string", 0), age],
        "Service" => vec![
            name,
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            age,
        ],
        _ => vec![name, age],
    }
}

fn containers(object: &Value, template: &str, field: &str) -> String {
    object
        .pointer(&format!("{template}/containers"))
        .and_then(Value::as_array)
        .map(|cs| cs.iter().map(|c| text(c, &format!("/{field}"))).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn pod_status(pod: &Value) -> String {
    let statuses = pod.pointer("/status/containerStatuses").and_then(Value::as_array);
    for status in statuses.into_iter().flatten() {
        let reason = text(status, "/state/waiting/reason");
        if !reason.is_empty() {
            return reason.to_string();
        }
    }
    let phase = text(pod, "/status/phase");
    if phase.is_empty() { "Pending".into() } else { phase.into() }
}

fn cells(kind: &str, object: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(text(object, "/metadata/name"));
    let age = json!(age(object, now));
    match kind {
        "Deployment" => {
            let selector = object
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(format!("{}/{}", int(object, "/status/readyReplicas"), int(object, "/spec/replicas"))),
                json!(int(object, "/status/updatedReplicas")),
                json!(int(object, "/status/availableReplicas")),
                age,
                json!(containers(object, "/spec/template/spec", "name")),
                json!(containers(object, "/spec/template/spec", "image")),
                json!(selector),
            ]
        }
        "ReplicaSet" => vec![
            name,
            json!(int(object, "/spec/replicas")),
            json!(int(object, "/status/replicas")),
            json!(int(object, "/status/readyReplicas")),
            age,
            json!(containers(object, "/spec/template/spec", "name")),
            json!(containers(object, "/spec/template/spec", "image")),
        ],
        "Pod" => {
            let statuses = object.pointer("/status/containerStatuses").and_then(Value::as_array);
            let total = object.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
            let ready = statuses.map_or(0, |s| s.iter().filter(|c| c.get("ready") == Some(&json!(true))).count());
            let restarts: i64 = statuses.map_or(0, |s| s.iter().map(|c| int(c, "/restartCount")).sum());
            vec![name, json!(format!("{ready}/{total}")), json!(pod_status(object)), json!(restarts.to_string()), age]
        }
        "Lease" => vec![name, json!(text(object, "/spec/holderIdentity")), age],
        "ConfigMap" => {
            let data = object.get("data").and_then(Value::as_object).map_or(0, |m| m.len())
                + object.get("binaryData").and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, json!(data), age]
        }
        "Namespace" => vec![name, json!(text(object, "/status/phase")), age],
        "Service" => {
            let ports = object
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            match p.get("nodePort").and_then(Value::as_i64) {
                                Some(node) => format!("{}:{node}/{proto}", int(p, "/port")),
                                None => format!("{}/{proto}", int(p, "/port")),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let external = object
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|i| i.iter().filter_map(|x| x.get("ip").and_then(Value::as_str)).collect::<Vec<_>>().join(","))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| {
                    if text(object, "/spec/type") == "LoadBalancer" { "<pending>".into() } else { "<none>".into() }
                });
            let service_type = text(object, "/spec/type");
            vec![
                name,
                json!(if service_type.is_empty() { "ClusterIP" } else { service_type }),
                json!(text(object, "/spec/clusterIP")),
                json!(external),
                json!(if ports.is_empty() { "<none>".to_string() } else { ports }),
                age,
            ]
        }
        _ => vec![name, age],
    }
}

/// The `Table` for `objects` of type `rt`; rows carry PartialObjectMetadata, as `kubectl get -A` needs.
pub(crate) fn table(rt: &ResourceType, objects: &[Value], rv: u64, now: DateTime<Utc>, accept: &str) -> Value {
    let version =
        if accept.contains("v=v1;") || accept.contains("v=v1,") || accept.ends_with("v=v1") { "v1" } else { "v1beta1" };
    let meta_version = if accept.split(',').any(|o| o.contains("as=Table") && o.split(';').any(|p| p.trim() == "v=v1"))
    {
        "v1"
    } else {
        version
    };
    let definitions: Vec<Value> = columns(&rt.kind)
        .into_iter()
        .map(|(name, kind, priority)| {
            let mut column = json!({"name": name, "type": kind, "format": "", "description": "", "priority": priority});
            if name == "Name" {
                column["format"] = json!("name");
                column["description"] = json!("Name must be unique within a namespace.");
            }
            column
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "cells": cells(&rt.kind, o, now),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": format!("meta.k8s.io/{meta_version}"),
                    "metadata": o.get("metadata").cloned().unwrap_or(json!({})),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{meta_version}"),
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(150), "2m30s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(3 * 86400), "3d");
    }
}
