//! POST (create, with `generateName`) and PUT (replace, with a resourceVersion precondition; `/status`).

use std::sync::Arc;

use axum::http::{HeaderValue, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::super::Shared;
use super::super::controller;
use super::super::protobuf;
use super::super::resources::ResourceType;
use super::super::ssa;
use super::super::status::{ApiError, json_with_code};
use super::super::store::Store;
use super::{ApiRequest, ResourcePath, present};

/// Decodes a JSON, YAML or (for the kinds `kubectl create` generators send) protobuf body.
pub(super) fn decode_body(req: &ApiRequest) -> Result<Value, ApiError> {
    let value: Value = match req.content_type() {
        "" | "application/json" => serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}")))?,
        "application/yaml" => {
            let text = std::str::from_utf8(&req.body).map_err(|e| ApiError::bad_request(format!("yaml: {e}")))?;
            serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("yaml: {e}")))?
        }
        "application/vnd.kubernetes.protobuf" => protobuf::decode(&req.body)?,
        _ => return Err(ApiError::unsupported_media_type()),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be an object"));
    }
    Ok(value)
}

/// `fieldValidation`: Strict refuses unknown top-level fields, Warn (the default) reports them in a `Warning`
/// header, Ignore drops them silently. Returns the warnings to send.
pub(super) fn validate_fields(
    req: &ApiRequest,
    rt: &ResourceType,
    object: &Value,
    strict_message: impl Fn(&str) -> String,
) -> Result<Vec<String>, ApiError> {
    let Some(known) = rt.top_level_fields else { return Ok(Vec::new()) };
    let unknown: Vec<&String> =
        object.as_object().map(|m| m.keys().filter(|k| !known.contains(&k.as_str())).collect()).unwrap_or_default();
    match (req.param("fieldValidation"), unknown.first()) {
        (_, None) | (Some("Ignore"), _) => Ok(Vec::new()),
        (Some("Strict"), Some(field)) => Err(ApiError::bad_request(strict_message(field))),
        _ => Ok(unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect()),
    }
}

/// Checks `apiVersion`/`kind` against the URL's type and puts the URL's namespace on the object.
pub(super) fn check_identity(path: &ResourcePath, object: &mut Value) -> Result<(), ApiError> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if kind.is_empty() {
        return Err(ApiError::bad_request(format!("Object 'Kind' is missing in '{object}'")));
    }
    if kind != path.rt.kind || api_version != path.rt.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            path.rt.api_version()
        )));
    }
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    let meta = object["metadata"].as_object_mut().expect("metadata is an object");
    if path.rt.namespaced {
        let url_ns = path.ns();
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    if let Some(name) = &path.name {
        let body_name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
        if body_name.is_empty() {
            meta.insert("name".into(), json!(name));
        } else if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
    }
    Ok(())
}

pub(super) fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

/// Resolves `generateName` into a free name, as the API server does.
fn assign_name(store: &mut Store, path: &ResourcePath, object: &mut Value) -> Result<(), ApiError> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    if !name.is_empty() {
        return Ok(());
    }
    let Some(prefix) = object.pointer("/metadata/generateName").and_then(Value::as_str).map(str::to_string) else {
        return Err(ApiError::invalid(
            &kind_group(&path.rt),
            "",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    };
    for _ in 0..8 {
        let candidate = format!("{prefix}{}", store.random_suffix(5));
        if store.get(&path.rt.storage_key(), path.ns(), &candidate).is_none() {
            object["metadata"]["name"] = json!(candidate);
            return Ok(());
        }
    }
    Err(ApiError::already_exists(&path.rt, &prefix))
}

/// `Deployment.apps`, as 422 messages name a kind.
pub(super) fn kind_group(rt: &ResourceType) -> String {
    if rt.group.is_empty() { rt.kind.clone() } else { format!("{}.{}", rt.kind, rt.group) }
}

pub(super) fn create(shared: &Arc<Shared>, req: &ApiRequest, path: &ResourcePath) -> Result<Response, ApiError> {
    let mut object = decode_body(req)?;
    check_identity(path, &mut object)?;
    let warnings =
        validate_fields(req, &path.rt, &object, |f| format!("strict decoding error: unknown field \"{f}\""))?;
    let now = shared.now();
    let manager = req.field_manager();
    let mut store = shared.store();
    assign_name(&mut store, path, &mut object)?;
    if path.rt.status_subresource {
        object.as_object_mut().map(|m| m.remove("status"));
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    controller::admit_create(&mut store, &path.rt, &mut object);
    let object = ssa::record_update(None, object, &manager, now);
    let created = if req.dry_run() {
        let (namespace, name) = super::super::store::object_key(&object);
        if path.rt.namespaced && !store.namespace_exists(&namespace) {
            return Err(ApiError::namespace_not_found(&namespace));
        }
        if store.get(&path.rt.storage_key(), &namespace, &name).is_some() {
            return Err(ApiError::already_exists(&path.rt, &name));
        }
        let mut object = object;
        store.stamp_new(&path.rt, &mut object, now);
        object
    } else {
        store.create(&path.rt, object, now)?
    };
    Ok(with_warnings(json_with_code(201, &present(&path.rt, &created)), &warnings))
}

/// Enforces the status subresource split: the main resource keeps the live status, `/status` keeps the rest.
pub(super) fn split_status(path: &ResourcePath, old: &Value, new: &mut Value) {
    if !path.rt.status_subresource {
        return;
    }
    if path.is_status() {
        let status = new.get("status").cloned();
        *new = old.clone();
        match status {
            Some(status) => new["status"] = status,
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    } else {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
}

/// Stores (or, for a dry run, only computes) the replacement of `old` by `new`, with managedFields updated for
/// `manager`. Answers 200 with the result.
pub(super) fn commit_update(
    shared: &Arc<Shared>,
    store: &mut Store,
    req: &ApiRequest,
    path: &ResourcePath,
    old: &Value,
    mut new: Value,
    manager: &str,
) -> Value {
    split_status(path, old, &mut new);
    let mut new = if path.is_status() {
        ssa::record_status_update(old, new, manager, shared.now())
    } else {
        ssa::record_update(Some(old), new, manager, shared.now())
    };
    if req.dry_run() {
        for field in ["uid", "creationTimestamp", "resourceVersion"] {
            if let Some(v) = old["metadata"].get(field) {
                new["metadata"][field] = v.clone();
            }
        }
        Store::next_generation(&path.rt, old, &mut new);
        return new;
    }
    store.update(&path.rt, new)
}

pub(super) fn update(shared: &Arc<Shared>, req: &ApiRequest, path: &ResourcePath) -> Result<Response, ApiError> {
    let mut object = decode_body(req)?;
    check_identity(path, &mut object)?;
    let warnings =
        validate_fields(req, &path.rt, &object, |f| format!("strict decoding error: unknown field \"{f}\""))?;
    let manager = req.field_manager();
    let mut store = shared.store();
    let old = store
        .get(&path.rt.storage_key(), path.ns(), path.name())
        .cloned()
        .ok_or_else(|| ApiError::not_found(&path.rt, path.name()))?;
    let wanted_rv = object.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
    let live_rv = old.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
    if !wanted_rv.is_empty() && wanted_rv != live_rv {
        return Err(ApiError::modified(&path.rt, path.name()));
    }
    let updated = commit_update(shared, &mut store, req, path, &old, object, &manager);
    Ok(with_warnings(json_with_code(200, &present(&path.rt, &updated)), &warnings))
}
