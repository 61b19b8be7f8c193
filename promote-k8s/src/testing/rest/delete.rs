//! DELETE of one object (preconditions, propagationPolicy, dryRun) and of a collection.

use std::sync::Arc;

use axum::response::Response;
use serde_json::{Value, json};

use super::super::Shared;
use super::super::status::{ApiError, json_body};
use super::gc::{Propagation, delete_cascading};
use super::{ApiRequest, ResourcePath, present};

/// `DeleteOptions`, from the body (what kube-rs and kubectl send) or the query.
struct DeleteOptions {
    propagation: Propagation,
    dry_run: bool,
    uid: Option<String>,
    resource_version: Option<String>,
}

fn options(req: &ApiRequest) -> Result<DeleteOptions, ApiError> {
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let policy = body.get("propagationPolicy").and_then(Value::as_str).or(req.param("propagationPolicy"));
    let propagation = match policy {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::invalid(
                "DeleteOptions.meta.k8s.io",
                "",
                "propagationPolicy",
                &format!(
                    "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                ),
            ));
        }
    };
    let orphan = body.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    let dry_run =
        req.dry_run() || body.get("dryRun").and_then(Value::as_array).is_some_and(|a| a.iter().any(|v| v == "All"));
    let precondition =
        |field: &str| body.pointer(&format!("/preconditions/{field}")).and_then(Value::as_str).map(str::to_string);
    Ok(DeleteOptions {
        propagation: if orphan { Propagation::Orphan } else { propagation },
        dry_run,
        uid: precondition("uid"),
        resource_version: precondition("resourceVersion"),
    })
}

fn success(path: &ResourcePath, object: &Value) -> Value {
    let mut details = json!({"name": path.name(), "kind": path.rt.plural});
    if !path.rt.group.is_empty() {
        details["group"] = json!(path.rt.group);
    }
    if let Some(uid) = object.pointer("/metadata/uid") {
        details["uid"] = uid.clone();
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

pub(super) fn delete(shared: &Arc<Shared>, req: &ApiRequest, path: &ResourcePath) -> Result<Response, ApiError> {
    let opts = options(req)?;
    let now = shared.now();
    let mut store = shared.store();
    let key = path.rt.storage_key();
    let object =
        store.get(&key, path.ns(), path.name()).cloned().ok_or_else(|| ApiError::not_found(&path.rt, path.name()))?;
    let meta = |field: &str| {
        object.pointer(&format!("/metadata/{field}")).and_then(Value::as_str).unwrap_or_default().to_string()
    };
    if let Some(uid) = &opts.uid
        && *uid != meta("uid")
    {
        let why = format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {}", meta("uid"));
        return Err(ApiError::conflict(&path.rt, path.name(), &why));
    }
    if let Some(rv) = &opts.resource_version
        && *rv != meta("resourceVersion")
    {
        let why = format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta("resourceVersion")
        );
        return Err(ApiError::conflict(&path.rt, path.name(), &why));
    }
    if opts.dry_run {
        return Ok(json_body(&success(path, &object)));
    }
    delete_cascading(&mut store, &key, path.ns(), path.name(), opts.propagation, now);
    if opts.propagation == Propagation::Foreground {
        // The real server answers with the object it marked for foreground deletion.
        let mut marked = present(&path.rt, &object);
        marked["metadata"]["deletionTimestamp"] = json!(super::super::store::timestamp(now));
        marked["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
        return Ok(json_body(&marked));
    }
    Ok(json_body(&success(path, &object)))
}

pub(super) fn delete_collection(
    shared: &Arc<Shared>,
    req: &ApiRequest,
    path: &ResourcePath,
) -> Result<Response, ApiError> {
    let opts = options(req)?;
    let selectors = req.selectors(&path.rt)?;
    let now = shared.now();
    let mut store = shared.store();
    let key = path.rt.storage_key();
    let doomed: Vec<Value> =
        store.list(&key, path.namespace.as_deref()).into_iter().filter(|o| selectors.matches(o)).cloned().collect();
    let mut items = Vec::new();
    for object in doomed {
        let (ns, name) = super::super::store::object_key(&object);
        if opts.dry_run {
            items.push(present(&path.rt, &object));
        } else if let Some(deleted) = delete_cascading(&mut store, &key, &ns, &name, opts.propagation, now) {
            items.push(present(&path.rt, &deleted));
        }
    }
    Ok(json_body(&json!({
        "kind": path.rt.list_kind(),
        "apiVersion": path.rt.api_version(),
        "metadata": {"resourceVersion": store.resource_version().to_string()},
        "items": items,
    })))
}
