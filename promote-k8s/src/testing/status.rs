//! `Status` error bodies, written exactly the way the real API server writes them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::resources::ResourceType;

/// A failed API call: its HTTP code, `reason`, `message` and `details`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    /// Boxed: with serde_json's `preserve_order` a map is large, and every handler returns this error.
    pub(crate) details: Option<Box<Map<String, Value>>>,
    /// `Retry-After` seconds, for 429 answers.
    pub(crate) retry_after: Option<u64>,
}

fn details(name: &str, group: &str, kind: &str) -> Map<String, Value> {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), json!(kind));
    }
    d
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: None, retry_after: None }
    }

    fn with_resource(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = Some(Box::new(details(name, &rt.group, &rt.plural)));
        self
    }

    /// `deployments.apps "web" not found`.
    pub(crate) fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{} \"{name}\" not found", rt.qualified_plural())).with_resource(rt, name)
    }

    /// `namespaces "ns1" not found`, when an object is created in a namespace that does not exist.
    pub(crate) fn namespace_not_found(namespace: &str) -> Self {
        let mut e = Self::new(404, "NotFound", format!("namespaces \"{namespace}\" not found"));
        e.details = Some(Box::new(details(namespace, "", "namespaces")));
        e
    }

    /// A 404 for a URL that names no served resource.
    pub(crate) fn no_route() -> Self {
        let mut e = Self::new(404, "NotFound", "the server could not find the requested resource");
        e.details = Some(Box::default());
        e
    }

    pub(crate) fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", rt.qualified_plural()))
            .with_resource(rt, name)
    }

    /// The optimistic-concurrency conflict of an update with a stale resourceVersion.
    pub(crate) fn modified(rt: &ResourceType, name: &str) -> Self {
        Self::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `Operation cannot be fulfilled on <resource> "<name>": <why>`.
    pub(crate) fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", rt.qualified_plural()),
        )
        .with_resource(rt, name)
    }

    /// A server-side apply conflict, with one `FieldManagerConflict` cause per field.
    pub(crate) fn apply_conflict(rt: &ResourceType, name: &str, message: String, causes: Vec<Value>) -> Self {
        let mut e = Self::new(409, "Conflict", message).with_resource(rt, name);
        if let Some(d) = e.details.as_mut() {
            d.insert("causes".into(), Value::Array(causes));
        }
        e
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 Invalid: `<Kind>.<group> "<name>" is invalid: <field>: <detail>`.
    pub(crate) fn invalid(kind_group: &str, name: &str, field: &str, detail: &str) -> Self {
        let mut e = Self::new(422, "Invalid", format!("{kind_group} \"{name}\" is invalid: {field}: {detail}"));
        let (kind, group) = kind_group.split_once('.').unwrap_or((kind_group, ""));
        let mut d = details(name, group, kind);
        d.insert("causes".into(), json!([{"reason": "FieldValueRequired", "message": detail, "field": field}]));
        e.details = Some(Box::new(d));
        e
    }

    pub(crate) fn method_not_allowed() -> Self {
        let mut e =
            Self::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
        e.details = Some(Box::default());
        e
    }

    pub(crate) fn unsupported_media_type() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, \
             application/yaml, application/vnd.kubernetes.protobuf",
        )
    }

    /// The `too old resource version` answer for a watch or list at a compacted resourceVersion.
    pub(crate) fn expired(requested: u64, oldest: u64) -> Self {
        Self::new(410, "Expired", format!("too old resource version: {requested} ({oldest})"))
    }

    /// RBAC's refusal, worded as the authorizer words it.
    pub(crate) fn forbidden(
        user: &str,
        verb: &str,
        rt: &ResourceType,
        subresource: Option<&str>,
        name: &str,
        ns: Option<&str>,
    ) -> Self {
        let resource = match subresource {
            Some(sub) => format!("{}/{sub}", rt.plural),
            None => rt.plural.clone(),
        };
        let object =
            if name.is_empty() { rt.qualified_plural() } else { format!("{} \"{name}\"", rt.qualified_plural()) };
        let scope = match ns {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{object} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
                rt.group
            ),
        )
        .with_resource(rt, name)
    }

    pub(crate) fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::new(429, "TooManyRequests", "Too many requests, please try again later.");
        let mut d = Map::new();
        d.insert("retryAfterSeconds".into(), json!(retry_after));
        e.details = Some(Box::new(d));
        e.retry_after = Some(retry_after);
        e
    }

    /// A scripted 5xx from a fault hook.
    pub(crate) fn server_error(code: u16) -> Self {
        match code {
            503 => Self::new(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
            504 => Self::new(504, "Timeout", "the server was unable to return a response in the time allotted"),
            _ => Self::new(code, "InternalError", "Internal error occurred: injected fault"),
        }
    }

    /// The Status object as JSON.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        if let Some(d) = &self.details {
            status["details"] = Value::Object((**d).clone());
        }
        status["code"] = json!(self.code);
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, json_body(&self.to_status())).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON answer with the content type the API server uses.
pub(crate) fn json_body(value: &Value) -> Response {
    let mut response = serde_json::to_vec(value).unwrap_or_default().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON answer with an explicit HTTP code (201 on create).
pub(crate) fn json_with_code(code: u16, value: &Value) -> Response {
    let mut response = json_body(value);
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    response
}
