//! GET of one object and LIST of a collection (as a `<Kind>List` or, when asked, a Table).

use std::sync::Arc;

use axum::response::Response;
use serde_json::{Value, json};

use super::super::Shared;
use super::super::status::{ApiError, json_body};
use super::super::table;
use super::{ApiRequest, ResourcePath, present};

pub(super) fn get(shared: &Arc<Shared>, req: &ApiRequest, path: &ResourcePath) -> Result<Response, ApiError> {
    let store = shared.store();
    let object = store
        .get(&path.rt.storage_key(), path.ns(), path.name())
        .ok_or_else(|| ApiError::not_found(&path.rt, path.name()))?;
    let object = present(&path.rt, object);
    if table::wants_table(req.accept()) {
        let rv = store.resource_version();
        return Ok(json_body(&table::table(&path.rt, &[object], rv, shared.now(), req.accept())));
    }
    Ok(json_body(&object))
}

pub(super) fn list(shared: &Arc<Shared>, req: &ApiRequest, path: &ResourcePath) -> Result<Response, ApiError> {
    let selectors = req.selectors(&path.rt)?;
    let store = shared.store();
    let items: Vec<Value> = store
        .list(&path.rt.storage_key(), path.namespace.as_deref())
        .into_iter()
        .filter(|o| selectors.matches(o))
        .map(|o| present(&path.rt, o))
        .collect();
    let rv = store.resource_version();
    drop(store);
    if table::wants_table(req.accept()) {
        return Ok(json_body(&table::table(&path.rt, &items, rv, shared.now(), req.accept())));
    }
    // The real server writes built-in objects in a list without their type (`apiVersion`, `kind`); objects of
    // custom resources keep theirs.
    let items: Vec<Value> = if path.rt.crd.is_some() {
        items
    } else {
        items
            .into_iter()
            .map(|mut item| {
                if let Some(map) = item.as_object_mut() {
                    map.remove("apiVersion");
                    map.remove("kind");
                }
                item
            })
            .collect()
    };
    Ok(json_body(&json!({
        "kind": path.rt.list_kind(),
        "apiVersion": path.rt.api_version(),
        "metadata": {"resourceVersion": rv.to_string()},
        "items": items,
    })))
}
