//! `/version`, aggregated discovery (`apidiscovery.k8s.io` v2 and v2beta1, as the client asks) and legacy
//! discovery (`APIVersions`, `APIGroupList`, `APIGroup`, `APIResourceList`).

use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::resources::{Catalogue, ResourceType};
use super::rest::ApiRequest;
use super::status::{ApiError, json_body};

/// The version kubectl's dispatcher reads to pick `kubectl.1.32`.
pub(crate) fn version() -> Response {
    json_body(&json!({
        "major": "1",
        "minor": "32",
        "gitVersion": "v1.32.0",
        "gitCommit": "70d3cc986aa8221cd1dfb1121852688902d3bf53",
        "gitTreeState": "clean",
        "buildDate": "2024-12-11T17:59:15Z",
        "goVersion": "go1.23.3",
        "compiler": "gc",
        "platform": "linux/amd64"
    }))
}

/// The aggregated discovery version the client offers first in `Accept` (`v2` or `v2beta1`), if any.
fn aggregated_version(accept: &str) -> Option<&'static str> {
    for offer in accept.split(',') {
        let params: Vec<(&str, &str)> =
            offer.split(';').skip(1).filter_map(|p| p.split_once('=')).map(|(k, v)| (k.trim(), v.trim())).collect();
        let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        if param("g") == Some("apidiscovery.k8s.io") && param("as") == Some("APIGroupDiscoveryList") {
            match param("v") {
                Some("v2") => return Some("v2"),
                Some("v2beta1") => return Some("v2beta1"),
                _ => {}
            }
        }
    }
    None
}

fn resource_discovery(rt: &ResourceType) -> Value {
    let mut resource = json!({
        "resource": rt.plural,
        "responseKind": rt.gvk_json(),
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": rt.verbs(),
    });
    if !rt.short_names.is_empty() {
        resource["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        resource["categories"] = json!(rt.categories);
    }
    if rt.status_subresource {
        resource["subresources"] = json!([{
            "subresource": "status",
            "responseKind": rt.gvk_json(),
            "verbs": ["get", "patch", "update"],
        }]);
    }
    resource
}

fn aggregated(catalogue: &Catalogue, version: &str, core: bool) -> Response {
    let items: Vec<Value> = catalogue
        .groups()
        .into_iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = catalogue
                        .types()
                        .iter()
                        .filter(|t| t.group == group && t.version == *v)
                        .map(resource_discovery)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let mut response = json_body(&body);
    let content_type = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(&content_type).expect("ascii"));
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// `GET /api`.
pub(crate) fn core(req: &ApiRequest, catalogue: &Catalogue) -> Response {
    match aggregated_version(req.accept()) {
        Some(version) => aggregated(catalogue, version, true),
        None => json_body(&json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
        })),
    }
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

/// `GET /apis`.
pub(crate) fn groups(req: &ApiRequest, catalogue: &Catalogue) -> Response {
    match aggregated_version(req.accept()) {
        Some(version) => aggregated(catalogue, version, false),
        None => {
            let groups: Vec<Value> = catalogue
                .groups()
                .iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, versions)| group_json(g, versions))
                .collect();
            json_body(&json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
    }
}

/// `GET /apis/<group>`.
pub(crate) fn group(catalogue: &Catalogue, group: &str) -> Result<Response, ApiError> {
    let groups = catalogue.groups();
    let (_, versions) = groups.iter().find(|(g, _)| g == group && !g.is_empty()).ok_or_else(ApiError::no_route)?;
    let mut body = group_json(group, versions);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(json_body(&body))
}

/// `GET /api/v1` or `GET /apis/<group>/<version>`: the legacy `APIResourceList` that kube-rs discovery reads.
pub(crate) fn resource_list(catalogue: &Catalogue, group: &str, version: &str) -> Result<Response, ApiError> {
    if !catalogue.serves_group_version(group, version) {
        return Err(ApiError::no_route());
    }
    let mut resources = Vec::new();
    for rt in catalogue.types().iter().filter(|t| t.group == group && t.version == version) {
        let mut resource = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": rt.verbs(),
        });
        if !rt.short_names.is_empty() {
            resource["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            resource["categories"] = json!(rt.categories);
        }
        resources.push(resource);
        if rt.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", rt.plural),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Ok(json_body(
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    ))
}

#[cfg(test)]
mod tests {
    use super::aggregated_version;

    #[test]
    fn honours_the_offered_discovery_version() {
        let kubectl_132 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                           application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl_132), Some("v2"));
        let kubectl_128 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(kubectl_128), Some("v2beta1"));
        assert_eq!(aggregated_version("application/json, */*"), None);
        assert_eq!(
            aggregated_version("application/json; as=APIGroupDiscoveryList; v=v2; g=apidiscovery.k8s.io"),
            Some("v2")
        );
    }
}
