//! `/openapi/v3`: the root index and one document per group-version, with what `kubectl apply`'s
//! `fieldValidation` support check reads (a PATCH operation per kind, tagged with its GVK, taking
//! `fieldValidation` in the query). No schemas: `kubectl explain` is not served.

use axum::response::Response;
use serde_json::{Map, Value, json};

use super::resources::{Catalogue, ResourceType};
use super::status::{ApiError, json_body};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// A stable hash of what a group-version serves, for the `?hash=` in the root (clients cache by it).
fn hash(catalogue: &Catalogue, group: &str, version: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for rt in catalogue.types().iter().filter(|t| t.group == group && t.version == version) {
        for byte in format!("{}/{}/{}", rt.plural, rt.kind, rt.namespaced).bytes() {
            h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016X}")
}

/// `GET /openapi/v3`.
pub(crate) fn root(catalogue: &Catalogue) -> Response {
    let mut paths = Map::new();
    for (group, versions) in catalogue.groups() {
        for version in versions {
            let path = gv_path(&group, &version);
            let url = format!("/openapi/v3/{path}?hash={}", hash(catalogue, &group, &version));
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
    }
    json_body(&json!({"paths": paths}))
}

fn parameter(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operations(rt: &ResourceType) -> Value {
    let gvk = rt.gvk_json();
    let op = |id: &str, action: &str, params: &[&str]| {
        json!({
            "operationId": format!("{id}{}", rt.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": params.iter().map(|p| parameter(p)).collect::<Vec<_>>(),
            "responses": {"200": {"description": "OK"}},
        })
    };
    json!({
        "get": op("read", "get", &[]),
        "put": op("replace", "put", &["dryRun", "fieldManager", "fieldValidation"]),
        "patch": op("patch", "patch", &["dryRun", "fieldManager", "fieldValidation", "force"]),
        "delete": op("delete", "delete", &["dryRun", "gracePeriodSeconds", "propagationPolicy"]),
    })
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`.
pub(crate) fn group_version(catalogue: &Catalogue, group: &str, version: &str) -> Result<Response, ApiError> {
    if !catalogue.serves_group_version(group, version) {
        return Err(ApiError::no_route());
    }
    let mut paths = Map::new();
    for rt in catalogue.types().iter().filter(|t| t.group == group && t.version == version) {
        let item = if rt.namespaced {
            format!("{}/namespaces/{{namespace}}/{}/{{name}}", rt.prefix(), rt.plural)
        } else {
            format!("{}/{}/{{name}}", rt.prefix(), rt.plural)
        };
        paths.insert(item, operations(rt));
    }
    Ok(json_body(&json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    })))
}
