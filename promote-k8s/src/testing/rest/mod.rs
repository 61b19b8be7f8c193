//! The HTTP front: request parsing, fault hooks and the request log, access checks, and dispatch by route and
//! verb to the discovery, OpenAPI, read, write, patch, delete and watch handlers.

mod delete;
mod gc;
mod patch;
mod read;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::access::Attributes;
use super::faults::RecordedRequest;
use super::resources::{Catalogue, ResourceType};
use super::selectors::{FieldSelector, LabelSelector, Selectors};
use super::status::ApiError;
use super::{Shared, discovery, lock, openapi, watch};

/// Request bodies larger than this are refused (the real server's limit is 3 MiB for etcd objects).
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A request, read whole.
pub(crate) struct ApiRequest {
    pub(crate) method: Method,
    pub(crate) path: String,
    query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl ApiRequest {
    fn new(method: Method, uri: &Uri, headers: HeaderMap, body: Bytes) -> Self {
        let query = Query::<Vec<(String, String)>>::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
        ApiRequest { method, path: uri.path().to_string(), query, headers, body }
    }

    /// A query parameter.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn header(&self, name: header::HeaderName) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    pub(crate) fn accept(&self) -> &str {
        self.header(header::ACCEPT)
    }

    /// The media type of the body, without parameters.
    pub(crate) fn content_type(&self) -> &str {
        self.header(header::CONTENT_TYPE).split(';').next().unwrap_or_default().trim()
    }

    pub(crate) fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    pub(crate) fn bearer_token(&self) -> Option<&str> {
        self.header(header::AUTHORIZATION).strip_prefix("Bearer ").map(str::trim)
    }

    /// The field manager of a write: `fieldManager=`, else the User-Agent up to its first `/`, as the real
    /// server derives it.
    pub(crate) fn field_manager(&self) -> String {
        if let Some(m) = self.param("fieldManager") {
            return m.to_string();
        }
        let agent = self.header(header::USER_AGENT);
        let prefix = agent.split('/').next().unwrap_or_default();
        if prefix.is_empty() { "unknown".to_string() } else { prefix.chars().take(128).collect() }
    }

    pub(crate) fn selectors(&self, rt: &ResourceType) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            labels: LabelSelector::parse(self.param("labelSelector").unwrap_or_default())?,
            fields: FieldSelector::parse(self.param("fieldSelector").unwrap_or_default(), &rt.kind)?,
        })
    }

    fn is_watch(&self) -> bool {
        matches!(self.param("watch"), Some("true" | "1"))
    }
}

/// A resource URL: its type, namespace, name and subresource.
#[derive(Debug, Clone)]
pub(crate) struct ResourcePath {
    pub(crate) rt: ResourceType,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

impl ResourcePath {
    /// The namespace as stored: empty for cluster-scoped objects.
    pub(crate) fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or_default()
    }

    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    pub(crate) fn is_status(&self) -> bool {
        self.subresource.as_deref() == Some("status")
    }
}

fn parse_resource(catalogue: &Catalogue, group: &str, version: &str, rest: &[&str]) -> Option<ResourcePath> {
    let (namespace, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..]
            if catalogue.by_plural(group, version, plural).is_some_and(|t| t.namespaced) =>
        {
            (Some(ns.to_string()), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return None,
    };
    let rt = catalogue.by_plural(group, version, plural)?.clone();
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => (Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return None;
    }
    if let Some(sub) = &subresource
        && !(sub == "status" && rt.status_subresource)
    {
        return None;
    }
    Some(ResourcePath { rt, namespace, name, subresource })
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => return ApiError::bad_request("the request body could not be read").into_response(),
    };
    let req = ApiRequest::new(parts.method, &parts.uri, parts.headers, body);
    let (latency, fault) = {
        let mut faults = lock(&shared.faults);
        faults.requests.push(RecordedRequest {
            method: req.method.to_string(),
            path: req.path.clone(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            content_type: req.header(header::CONTENT_TYPE).to_string(),
        });
        let fault = faults.take(&req.method, &req.path);
        (faults.latency, fault)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(error) = fault {
        return error.into_response();
    }
    dispatch(&shared, &req).unwrap_or_else(IntoResponse::into_response)
}

fn dispatch(shared: &Arc<Shared>, req: &ApiRequest) -> Result<Response, ApiError> {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let catalogue = shared.store().catalogue.clone();
    let get_only =
        |response: Response| if req.method == Method::GET { Ok(response) } else { Err(ApiError::method_not_allowed()) };
    match segments.as_slice() {
        ["version"] => get_only(discovery::version()),
        ["healthz" | "livez" | "readyz"] => get_only("ok".into_response()),
        ["api"] => get_only(discovery::core(req, &catalogue)),
        ["apis"] => get_only(discovery::groups(req, &catalogue)),
        ["api", version] => get_only(discovery::resource_list(&catalogue, "", version)?),
        ["apis", group] => get_only(discovery::group(&catalogue, group)?),
        ["apis", group, version] => get_only(discovery::resource_list(&catalogue, group, version)?),
        ["openapi", "v3"] => get_only(openapi::root(&catalogue)),
        ["openapi", "v3", "api", version] => get_only(openapi::group_version(&catalogue, "", version)?),
        ["openapi", "v3", "apis", group, version] => get_only(openapi::group_version(&catalogue, group, version)?),
        ["api", version, rest @ ..] => {
            let path = parse_resource(&catalogue, "", version, rest).ok_or_else(ApiError::no_route)?;
            resource(shared, req, path)
        }
        ["apis", group, version, rest @ ..] => {
            let path = parse_resource(&catalogue, group, version, rest).ok_or_else(ApiError::no_route)?;
            resource(shared, req, path)
        }
        _ => Err(ApiError::no_route()),
    }
}

fn resource(shared: &Arc<Shared>, req: &ApiRequest, path: ResourcePath) -> Result<Response, ApiError> {
    let collection = path.name.is_none();
    let verb = match req.method {
        Method::GET if collection && req.is_watch() => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST if collection => "create",
        Method::PUT if !collection => "update",
        Method::PATCH if !collection => "patch",
        Method::DELETE if collection => "deletecollection",
        Method::DELETE => "delete",
        _ => return Err(ApiError::method_not_allowed()),
    };
    let attrs = Attributes {
        verb,
        resource: &path.rt,
        subresource: path.subresource.as_deref(),
        name: path.name(),
        namespace: path.namespace.as_deref(),
    };
    lock(&shared.access).check(req.bearer_token(), &attrs)?;
    let response = match verb {
        "watch" => return watch::watch(shared, req, &path),
        "list" => return read::list(shared, req, &path),
        "get" => return read::get(shared, req, &path),
        "create" => write::create(shared, req, &path)?,
        "update" => write::update(shared, req, &path)?,
        "patch" => patch::patch(shared, req, &path)?,
        "deletecollection" => delete::delete_collection(shared, req, &path)?,
        _ => delete::delete(shared, req, &path)?,
    };
    if !req.dry_run() {
        // The controllers react to the write, as the real ones do milliseconds after it.
        shared.reconcile();
    }
    Ok(response)
}

/// A stored object as served at `rt`'s version (a CRD's objects are served at each of its versions).
pub(crate) fn present(rt: &ResourceType, object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(map) = out.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(rt.api_version()));
        map.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    out
}
