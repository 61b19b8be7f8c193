//! PATCH: JSON merge patch, JSON patch, strategic merge patch (applied as a merge patch), and server-side apply.

use std::sync::Arc;

use axum::response::Response;
use serde_json::{Value, json};

use super::super::Shared;
use super::super::controller;
use super::super::ssa;
use super::super::status::{ApiError, json_with_code};
use super::super::store::Store;
use super::write::{check_identity, commit_update, kind_group, split_status, validate_fields, with_warnings};
use super::{ApiRequest, ResourcePath, present};

pub(super) fn patch(shared: &Arc<Shared>, req: &ApiRequest, path: &ResourcePath) -> Result<Response, ApiError> {
    match req.content_type() {
        "application/apply-patch+yaml" => apply(shared, req, path),
        "application/merge-patch+json" | "application/strategic-merge-patch+json" | "application/json-patch+json" => {
            if req.param("force").is_some() {
                return Err(ApiError::invalid(
                    "PatchOptions.meta.k8s.io",
                    "",
                    "force",
                    "Forbidden: may not be specified for non-apply patch",
                ));
            }
            non_apply(shared, req, path)
        }
        _ => Err(ApiError::unsupported_media_type()),
    }
}

fn non_apply(shared: &Arc<Shared>, req: &ApiRequest, path: &ResourcePath) -> Result<Response, ApiError> {
    let patch: Value =
        serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut store = shared.store();
    let old = store
        .get(&path.rt.storage_key(), path.ns(), path.name())
        .map(|o| present(&path.rt, o))
        .ok_or_else(|| ApiError::not_found(&path.rt, path.name()))?;
    let mut new = old.clone();
    if req.content_type() == "application/json-patch+json" {
        let ops: json_patch::Patch =
            serde_json::from_value(patch).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
        json_patch::patch(&mut new, &ops)
            .map_err(|e| ApiError::invalid(&kind_group(&path.rt), path.name(), "patch", &e.to_string()))?;
    } else {
        if !patch.is_object() {
            return Err(ApiError::bad_request("error decoding patch: the patch must be a JSON object"));
        }
        json_patch::merge(&mut new, &patch);
    }
    // A resourceVersion in the patch is a precondition, as on the real server.
    let wanted_rv = new.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
    let live_rv = old.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default();
    if wanted_rv != live_rv {
        return Err(ApiError::modified(&path.rt, path.name()));
    }
    check_identity(path, &mut new)?;
    if new.pointer("/metadata/namespace") != old.pointer("/metadata/namespace") {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let warnings = validate_fields(req, &path.rt, &new, |f| format!("strict decoding error: unknown field \"{f}\""))?;
    let manager = req.field_manager();
    let updated = commit_update(shared, &mut store, req, path, &old, new, &manager);
    Ok(with_warnings(json_with_code(200, &present(&path.rt, &updated)), &warnings))
}

fn decode_apply_body(req: &ApiRequest) -> Result<Value, ApiError> {
    // kubectl and kube-rs send JSON, which is YAML too; parse it as JSON first, exactly.
    if let Ok(value) = serde_json::from_slice::<Value>(&req.body) {
        return Ok(value);
    }
    let text =
        std::str::from_utf8(&req.body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    serde_saphyr::from_str(text).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

/// Everything but `managedFields` timestamps: an apply that changes nothing must not write.
fn without_times(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(entries) = out.pointer_mut("/metadata/managedFields").and_then(Value::as_array_mut) {
        for entry in entries {
            entry.as_object_mut().map(|e| e.remove("time"));
        }
    }
    out
}

fn apply(shared: &Arc<Shared>, req: &ApiRequest, path: &ResourcePath) -> Result<Response, ApiError> {
    let manager = req.param("fieldManager").unwrap_or_default().to_string();
    if manager.is_empty() {
        return Err(ApiError::invalid(
            "PatchOptions.meta.k8s.io",
            "",
            "fieldManager",
            "Required value: is required for apply patch",
        ));
    }
    let force = req.param("force") == Some("true");
    let mut config = decode_apply_body(req)?;
    if !config.is_object() {
        return Err(ApiError::bad_request("error decoding YAML: the applied configuration must be an object"));
    }
    check_identity(path, &mut config)?;
    let strict_message = |field: &str| {
        format!(
            "failed to create typed patch object ({}/{}; {}, Kind={}): .{field}: field not declared in schema",
            path.ns(),
            path.name(),
            path.rt.api_version(),
            path.rt.kind
        )
    };
    let warnings = validate_fields(req, &path.rt, &config, strict_message)?;
    if let (Some(known), Some(map)) = (path.rt.top_level_fields, config.as_object_mut()) {
        map.retain(|k, _| known.contains(&k.as_str()));
    }
    if path.rt.status_subresource {
        if path.is_status() {
            let status = config.get("status").cloned();
            let meta = json!({"name": path.name(), "namespace": config["metadata"].get("namespace")});
            config = json!({"apiVersion": config["apiVersion"], "kind": config["kind"], "metadata": meta});
            if let Some(status) = status {
                config["status"] = status;
            }
        } else {
            config.as_object_mut().map(|m| m.remove("status"));
        }
    }
    let now = shared.now();
    let mut store = shared.store();
    let live = store.get(&path.rt.storage_key(), path.ns(), path.name()).map(|o| present(&path.rt, o));
    if live.is_none() && path.is_status() {
        return Err(ApiError::not_found(&path.rt, path.name()));
    }
    let result = match &live {
        Some(live) if path.is_status() => ssa::apply_status(live, &config, &manager, force, now),
        _ => ssa::apply(live.as_ref(), &config, &manager, force, now),
    };
    let mut merged = match result {
        Ok(merged) => merged,
        Err(conflicts) => {
            let causes = conflicts
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": c.cause_message(), "field": c.field}))
                .collect();
            return Err(ApiError::apply_conflict(&path.rt, path.name(), ssa::conflict_message(&conflicts), causes));
        }
    };
    let Some(live) = live else {
        return create_applied(shared, &mut store, req, path, merged, &warnings);
    };
    split_status(path, &live, &mut merged);
    if without_times(&merged) == without_times(&live) {
        return Ok(with_warnings(json_with_code(200, &live), &warnings));
    }
    let updated = if req.dry_run() {
        Store::next_generation(&path.rt, &live, &mut merged);
        merged
    } else {
        store.update(&path.rt, merged)
    };
    Ok(with_warnings(json_with_code(200, &present(&path.rt, &updated)), &warnings))
}

fn create_applied(
    shared: &Arc<Shared>,
    store: &mut Store,
    req: &ApiRequest,
    path: &ResourcePath,
    mut object: Value,
    warnings: &[String],
) -> Result<Response, ApiError> {
    let now = shared.now();
    controller::admit_create(store, &path.rt, &mut object);
    let created = if req.dry_run() {
        if path.rt.namespaced && !store.namespace_exists(path.ns()) {
            return Err(ApiError::namespace_not_found(path.ns()));
        }
        store.stamp_new(&path.rt, &mut object, now);
        object
    } else {
        store.create(&path.rt, object, now)?
    };
    Ok(with_warnings(json_with_code(201, &present(&path.rt, &created)), warnings))
}
