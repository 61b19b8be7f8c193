//! Comparing objects: the canonical form of what is applied (for its hash), whether a live object still
//! holds what was applied, and the dry-run diff between a live object and what an apply would make of it.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Fields the API server owns: they differ between any two reads and say nothing about what was applied.
const SERVER_METADATA: &[&str] =
    &["managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"];

/// Client-side apply's copy of the whole object: noise in a diff, and a copy of any value in it.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `value` with every map's keys in sorted order, whatever order the map keeps (serde_json's `preserve_order`
/// keeps insertion order, and a workspace may turn it on).
pub(crate) fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        scalar => scalar.clone(),
    }
}

/// Compact JSON with sorted keys: the same object always gives the same text.
pub(crate) fn canonical_json(value: &Value) -> String {
    serde_json::to_string(&sorted(value)).unwrap_or_default()
}

/// An object without the server's bookkeeping and without `status`: what a diff compares.
pub(crate) fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_METADATA {
                metadata.remove(*field);
            }
            if let Some(annotations) = metadata.get_mut("annotations").and_then(Value::as_object_mut) {
                annotations.remove(LAST_APPLIED);
                if annotations.is_empty() {
                    metadata.remove("annotations");
                }
            }
        }
    }
    sorted(&object)
}

/// Whether `live` holds everything in `applied`: every field `applied` sets has the same value in `live`
/// (maps may hold more fields; lists must have the same length, compared item by item). A live object
/// that still holds what was applied needs no new apply.
pub(crate) fn contains(live: &Value, applied: &Value) -> bool {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) => {
            applied.iter().all(|(key, value)| live.get(key).is_some_and(|have| contains(have, value)))
        }
        (Value::Array(live), Value::Array(applied)) => {
            live.len() == applied.len() && live.iter().zip(applied).all(|(have, want)| contains(have, want))
        }
        (Value::Number(have), Value::Number(want)) => have == want || have.as_f64() == want.as_f64(),
        (have, want) => have == want,
    }
}

/// What an apply changes in a live object: a unified diff of the two as YAML, or, for an object whose
/// content is secret, only the paths of the fields that change (never a value). `None` when nothing changes.
pub(crate) fn describe(live: &Value, planned: &Value, secret: bool) -> Option<String> {
    let (live, planned) = (comparable(live), comparable(planned));
    if live == planned {
        return None;
    }
    if secret {
        let mut paths = Vec::new();
        changed_paths(&live, &planned, String::new(), &mut paths);
        let mut text = String::from("# the object holds secret values: only the fields that change are shown\n");
        for path in paths {
            let _ = writeln!(text, "{path}");
        }
        return Some(text);
    }
    let before = serde_saphyr::to_string(&live).unwrap_or_default();
    let after = serde_saphyr::to_string(&planned).unwrap_or_default();
    Some(
        similar::TextDiff::from_lines(&before, &after)
            .unified_diff()
            .context_radius(3)
            .header("live", "planned")
            .to_string(),
    )
}

/// `~ path` for changed values, `+ path` for added and `- path` for removed fields.
fn changed_paths(live: &Value, planned: &Value, at: String, out: &mut Vec<String>) {
    match (live, planned) {
        (Value::Object(live), Value::Object(planned)) => {
            let mut keys: Vec<&String> = live.keys().chain(planned.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = format!("{at}.{key}");
                match (live.get(key), planned.get(key)) {
                    (Some(old), Some(new)) => changed_paths(old, new, path, out),
                    (None, Some(_)) => out.push(format!("+ {path}")),
                    (Some(_), None) => out.push(format!("- {path}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(live), Value::Array(planned)) if live.len() == planned.len() => {
            for (index, (old, new)) in live.iter().zip(planned).enumerate() {
                changed_paths(old, new, format!("{at}[{index}]"), out);
            }
        }
        (old, new) if old != new => out.push(format!("~ {at}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_live_object_with_server_defaults_still_holds_what_was_applied() {
        let applied = json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}});
        let live = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "web"}, "type": "ClusterIP"}});
        assert!(contains(&live, &applied));
        let edited = json!({"spec": {"ports": [{"port": 8080, "protocol": "TCP"}], "selector": {"app": "web"}}});
        assert!(!contains(&edited, &applied));
        let longer = json!({"spec": {"ports": [{"port": 80}, {"port": 81}], "selector": {"app": "web"}}});
        assert!(!contains(&longer, &applied), "lists are compared whole");
    }

    #[test]
    fn diffs_leave_out_bookkeeping_and_never_show_secret_values() {
        let live = json!({"kind": "Secret", "metadata": {"name": "db", "resourceVersion": "7", "uid": "u"},
            "data": {"password": "b2xk"}, "status": {}});
        let planned = json!({"kind": "Secret", "metadata": {"name": "db", "resourceVersion": "8", "uid": "u"},
            "data": {"password": "bmV3", "user": "YWRtaW4="}});
        let shown = describe(&live, &planned, true).unwrap();
        assert!(shown.contains("~ .data.password") && shown.contains("+ .data.user"), "{shown}");
        assert!(!shown.contains("bmV3") && !shown.contains("b2xk"), "{shown}");
        assert!(
            describe(&live, &json!({"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "b2xk"}}), true)
                .is_none()
        );

        let live =
            json!({"kind": "ConfigMap", "metadata": {"name": "web", "generation": 1}, "data": {"level": "info"}});
        let planned =
            json!({"kind": "ConfigMap", "metadata": {"name": "web", "generation": 2}, "data": {"level": "debug"}});
        let shown = describe(&live, &planned, false).unwrap();
        assert!(shown.contains("-  level: info") && shown.contains("+  level: debug"), "{shown}");
        assert!(!shown.contains("generation"), "{shown}");
    }
}
