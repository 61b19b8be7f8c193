//! The walks over JSON objects that server-side apply is made of, each guided by the [`Schema`]:
//! the fields an applied configuration sets ([`applied_fields`]), what changed between two objects
//! ([`compare`]), merging a configuration into a live object ([`merge`]), and removing fields ([`remove`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, PathElement};
use super::schema::{KeyField, Location, Schema, Shape, item_elements};

/// The fields an applied configuration sets, which become its manager's set: every leaf (scalar, atomic list,
/// atomic map), every list-map and set item (the item itself, `.`), and every empty or null object field.
pub(super) fn applied_fields(config: &Value, schema: &Schema) -> FieldSet {
    let mut set = FieldSet::default();
    collect_fields(config, &schema.root(), &mut Vec::new(), &mut set);
    set
}

fn collect_fields(value: &Value, location: &Location<'_>, path: &mut Vec<PathElement>, set: &mut FieldSet) {
    let shape = location.shape_of(value);
    match (shape, value) {
        (Shape::Struct | Shape::Map, Value::Object(fields)) => {
            let named = matches!(shape, Shape::Struct);
            for (name, field) in fields {
                path.push(PathElement::Field(name.clone()));
                collect_fields(field, &location.field(name), path, set);
                let empty = field.is_null() || field.as_object().is_some_and(Map::is_empty);
                // Map data is owned key by key; a struct field only through what is below it, unless empty.
                if empty || !named {
                    set.insert(path);
                }
                path.pop();
            }
        }
        (Shape::Associative(keys), Value::Array(items)) => match item_elements(keys, items) {
            Some(elements) => {
                for (element, item) in elements.into_iter().zip(items) {
                    path.push(element);
                    collect_fields(item, &location.item(), path, set);
                    set.insert(path);
                    path.pop();
                }
            }
            None => set.insert(path),
        },
        _ => set.insert(path),
    }
}

/// The difference between two versions of an object, as three disjoint field sets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Comparison {
    /// Fields present only in the new object (including every new object field and list item itself).
    pub(super) added: FieldSet,
    /// Leaves whose value differs.
    pub(super) modified: FieldSet,
    /// Fields present only in the old object.
    pub(super) removed: FieldSet,
}

impl Comparison {
    /// Added or modified: the fields a write sets.
    pub(super) fn changed(&self) -> FieldSet {
        self.added.union(&self.modified)
    }

    /// The same comparison with every set passed through `filter`.
    pub(super) fn filtered(&self, filter: impl Fn(&FieldSet) -> FieldSet) -> Comparison {
        Comparison { added: filter(&self.added), modified: filter(&self.modified), removed: filter(&self.removed) }
    }
}

/// Compares two versions of an object field by field.
pub(super) fn compare(old: &Value, new: &Value, schema: &Schema) -> Comparison {
    let mut comparison = Comparison::default();
    compare_at(Some(old), Some(new), &schema.root(), &mut Vec::new(), &mut comparison);
    comparison
}

fn compare_at(
    old: Option<&Value>,
    new: Option<&Value>,
    location: &Location<'_>,
    path: &mut Vec<PathElement>,
    comparison: &mut Comparison,
) {
    match location.shape_of_pair(old, new) {
        Shape::Struct | Shape::Map => {
            let (old_fields, new_fields) = (old.and_then(Value::as_object), new.and_then(Value::as_object));
            if old_fields.is_none_or(Map::is_empty) && new_fields.is_none_or(Map::is_empty) {
                // Empty and null objects compare as values, so `{}` and null stay distinct.
                return compare_leaf(old, new, path, comparison);
            }
            let empty = Map::new();
            let (old_fields, new_fields) = (old_fields.unwrap_or(&empty), new_fields.unwrap_or(&empty));
            let names = old_fields.keys().chain(new_fields.keys().filter(|name| !old_fields.contains_key(*name)));
            for name in names {
                path.push(PathElement::Field(name.clone()));
                compare_at(old_fields.get(name), new_fields.get(name), &location.field(name), path, comparison);
                path.pop();
            }
            compare_presence(old, new, path, comparison);
        }
        Shape::Associative(keys) => {
            let (old_items, new_items) = (items_of(old), items_of(new));
            let identified = item_elements(keys, old_items).zip(item_elements(keys, new_items));
            let Some((old_elements, new_elements)) =
                identified.filter(|_| !(old_items.is_empty() && new_items.is_empty()))
            else {
                return compare_leaf(old, new, path, comparison);
            };
            let old_by_element: BTreeMap<&PathElement, &Value> = old_elements.iter().zip(old_items).collect();
            let new_by_element: BTreeMap<&PathElement, &Value> = new_elements.iter().zip(new_items).collect();
            let elements = old_elements.iter().chain(new_elements.iter().filter(|e| !old_by_element.contains_key(e)));
            for element in elements {
                path.push(element.clone());
                let (old_item, new_item) = (old_by_element.get(element).copied(), new_by_element.get(element).copied());
                compare_at(old_item, new_item, &location.item(), path, comparison);
                path.pop();
            }
            compare_presence(old, new, path, comparison);
        }
        Shape::Leaf => compare_leaf(old, new, path, comparison),
    }
}

fn items_of(list: Option<&Value>) -> &[Value] {
    list.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

fn compare_leaf(old: Option<&Value>, new: Option<&Value>, path: &[PathElement], comparison: &mut Comparison) {
    match (old, new) {
        (None, Some(_)) => comparison.added.insert(path),
        (Some(_), None) => comparison.removed.insert(path),
        (Some(old), Some(new)) if old != new => comparison.modified.insert(path),
        _ => {}
    }
}

/// An object or list that appears or disappears is itself added or removed (its `.` in `fieldsV1`).
fn compare_presence(old: Option<&Value>, new: Option<&Value>, path: &[PathElement], comparison: &mut Comparison) {
    match (old, new) {
        (None, Some(_)) => comparison.added.insert(path),
        (Some(_), None) => comparison.removed.insert(path),
        _ => {}
    }
}

/// Merges an applied configuration into the live object: values from the configuration win, objects merge field
/// by field, list-maps and sets merge item by item (an item in both merges recursively), everything else (scalars,
/// atomic lists and maps, `null`) is replaced.
pub(super) fn merge(live: &Value, config: &Value, schema: &Schema) -> Value {
    merge_at(Some(live), config, &schema.root())
}

fn merge_at(live: Option<&Value>, config: &Value, location: &Location<'_>) -> Value {
    match (location.shape_of_pair(live, Some(config)), live, config) {
        (Shape::Struct | Shape::Map, Some(Value::Object(live_fields)), Value::Object(config_fields)) => {
            let mut out = Map::new();
            for (name, live_value) in live_fields {
                let merged = match config_fields.get(name) {
                    Some(config_value) => merge_at(Some(live_value), config_value, &location.field(name)),
                    None => live_value.clone(),
                };
                out.insert(name.clone(), merged);
            }
            for (name, config_value) in config_fields {
                if !live_fields.contains_key(name) {
                    out.insert(name.clone(), config_value.clone());
                }
            }
            Value::Object(out)
        }
        (Shape::Associative(keys), Some(Value::Array(live_items)), Value::Array(config_items)) => {
            merge_items(keys, live_items, config_items, location).unwrap_or_else(|| config.clone())
        }
        _ => config.clone(),
    }
}

/// Merges list-map or set items. Items keep the configuration's relative order; items only in the live list
/// stay where they were relative to their neighbours, the way the API server interleaves the two lists.
fn merge_items(keys: &[KeyField], live: &[Value], config: &[Value], list: &Location<'_>) -> Option<Value> {
    let location = &list.item();
    let live_elements = item_elements(keys, live)?;
    let config_elements = item_elements(keys, config)?;
    let live_by_element: BTreeMap<&PathElement, &Value> = live_elements.iter().zip(live).collect();
    let in_config: BTreeMap<&PathElement, &Value> = config_elements.iter().zip(config).collect();
    // Items in both lists, in the configuration's order: the next one is the only shared item a live item may
    // be merged at; other shared live items wait for their turn in the configuration.
    let shared: Vec<&PathElement> = config_elements.iter().filter(|e| live_by_element.contains_key(e)).collect();
    let mut shared_taken = 0;
    let mut emitted: Vec<&PathElement> = Vec::new();
    let mut out = Vec::with_capacity(live.len().max(config.len()));
    let (mut l, mut c) = (0, 0);
    while l < live.len() || c < config.len() {
        if l < live.len() && c < config.len() {
            if live_elements[l] == config_elements[c] {
                out.push(merge_at(Some(&live[l]), &config[c], location));
                emitted.push(&config_elements[c]);
                shared_taken += usize::from(shared.get(shared_taken) == Some(&&config_elements[c]));
                l += 1;
                c += 1;
                continue;
            }
            let waits = in_config.contains_key(&live_elements[l]);
            if waits && shared.get(shared_taken).is_some_and(|next| **next != live_elements[l]) {
                l += 1;
                continue;
            }
        }
        if l < live.len() {
            if !in_config.contains_key(&live_elements[l]) {
                out.push(live[l].clone());
                l += 1;
                continue;
            }
            if emitted.contains(&&live_elements[l]) {
                l += 1;
            }
        }
        if c < config.len() {
            let element = &config_elements[c];
            out.push(merge_at(live_by_element.get(element).copied(), &config[c], location));
            emitted.push(element);
            shared_taken += usize::from(shared.get(shared_taken) == Some(&element));
            c += 1;
        }
    }
    Some(Value::Array(out))
}

/// Adds, as members, the struct fields that have members below them: the API server treats a struct field as
/// owned by whoever owns something inside it (this is what lets pruning remove a whole struct).
pub(super) fn with_named_fields(set: &FieldSet, schema: &Schema) -> FieldSet {
    named_fields_at(set, &schema.root())
}

fn named_fields_at(set: &FieldSet, location: &Location<'_>) -> FieldSet {
    let mut out = set.clone();
    for element in set.child_elements() {
        let Some(child) = set.child(element) else { continue };
        let child_location = match element {
            PathElement::Field(name) => {
                if location.keys_are_named_fields() {
                    out.insert_member(element.clone());
                }
                location.field(name)
            }
            _ => location.item(),
        };
        out.set_child(element.clone(), named_fields_at(child, &child_location));
    }
    out
}

/// Removes the fields and items in `set` (each with everything below it) from `object`. An object or list left
/// empty by the removal goes too.
pub(super) fn remove(object: &mut Value, set: &FieldSet, schema: &Schema) {
    remove_at(object, set, &schema.root());
}

fn remove_at(value: &mut Value, set: &FieldSet, location: &Location<'_>) {
    match location.shape_of(value) {
        Shape::Struct | Shape::Map => {
            let Value::Object(fields) = value else { return };
            let mut gone = Vec::new();
            for (name, field) in fields.iter_mut() {
                let element = PathElement::Field(name.clone());
                let owned = set.has_member(&element);
                if owned || set.child(&element).is_some_and(|below| remove_emptied(field, below, &location.field(name)))
                {
                    gone.push(name.clone());
                }
            }
            // `retain` keeps the order of the remaining fields whatever serde_json's map is.
            fields.retain(|name, _| !gone.contains(name));
        }
        Shape::Associative(keys) => {
            let Value::Array(items) = value else { return };
            let Some(elements) = item_elements(keys, items) else { return };
            let mut kept = Vec::with_capacity(items.len());
            for (element, mut item) in elements.into_iter().zip(items.drain(..)) {
                if set.has_member(&element) {
                    continue;
                }
                if let Some(below) = set.child(&element)
                    && remove_emptied(&mut item, below, &location.item())
                {
                    continue;
                }
                kept.push(item);
            }
            *items = kept;
        }
        Shape::Leaf => {}
    }
}

/// Removes `set` below `value`; true when that emptied a non-empty object or list (so it should go as well).
fn remove_emptied(value: &mut Value, set: &FieldSet, location: &Location<'_>) -> bool {
    let is_empty = |v: &Value| match v {
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    };
    let was_empty = is_empty(value);
    remove_at(value, set, location);
    !was_empty && is_empty(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Schema {
        Schema::for_kind("apps/v1", "Deployment")
    }

    #[test]
    fn applied_fields_match_the_api_server_shape() {
        let config = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}
                ]}}
            }
        });
        assert_eq!(
            applied_fields(&config, &deployment()).to_fields_v1(),
            json!({
                "f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}},
                "f:spec": {
                    "f:replicas": {}, "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn compare_marks_new_objects_and_items_as_added() {
        let old = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let new = json!({"spec": {
            "replicas": 3,
            "template": {
                "metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "a", "image": "y"}, {"name": "b", "image": "z"}]}
            }
        }});
        let comparison = compare(&old, &new, &deployment());
        assert_eq!(
            comparison.added.to_fields_v1(),
            json!({"f:spec": {"f:replicas": {}, "f:template": {
                "f:metadata": {".": {}, "f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"b\"}": {".": {}, "f:image": {}, "f:name": {}}}}
            }}})
        );
        assert_eq!(
            comparison.modified.to_fields_v1(),
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {"f:image": {}}}}}}})
        );
        assert!(comparison.removed.is_empty());
        assert!(compare(&new, &new, &deployment()).changed().is_empty());
    }

    #[test]
    fn merge_keeps_live_items_and_follows_the_config_order() {
        let schema = deployment();
        let containers = |items: Value| json!({"spec": {"template": {"spec": {"containers": items}}}});
        let live = containers(
            json!([{"name": "a", "image": "1"}, {"name": "sidecar", "image": "s"}, {"name": "b", "image": "2"}]),
        );
        let config = containers(json!([{"name": "b", "image": "3"}, {"name": "a"}, {"name": "c", "image": "4"}]));
        let merged = merge(&live, &config, &schema);
        // The live-only sidecar comes first: the API server emits live-only items as soon as it reaches them.
        assert_eq!(
            merged,
            containers(json!([
                {"name": "sidecar", "image": "s"}, {"name": "b", "image": "3"}, {"name": "a", "image": "1"},
                {"name": "c", "image": "4"}
            ]))
        );
        // Atomic lists are replaced.
        let live = containers(json!([{"name": "a", "args": ["1", "2"]}]));
        let config = containers(json!([{"name": "a", "args": ["3"]}]));
        assert_eq!(merge(&live, &config, &schema), config);
    }

    #[test]
    fn remove_drops_items_and_objects_it_empties() {
        let schema = deployment();
        let mut object = json!({
            "metadata": {"labels": {"a": "1"}},
            "spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}
        });
        let mut set = FieldSet::default();
        set.insert(&[
            PathElement::Field("metadata".into()),
            PathElement::Field("labels".into()),
            PathElement::Field("a".into()),
        ]);
        let containers =
            applied_fields(&json!({"spec": {"template": {"spec": {"containers": [{"name": "b"}]}}}}), &schema);
        remove(&mut object, &set.union(&containers), &schema);
        assert_eq!(object, json!({"spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}}));
    }

    #[test]
    fn named_fields_become_members_but_map_keys_do_not() {
        let schema = deployment();
        let set = applied_fields(&json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}}), &schema);
        assert_eq!(
            with_named_fields(&set, &schema).to_fields_v1(),
            json!({"f:metadata": {".": {}, "f:labels": {".": {}, "f:a": {}}}, "f:spec": {".": {}, "f:replicas": {}}})
        );
    }
}
