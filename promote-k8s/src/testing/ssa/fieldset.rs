//! Sets of field paths, and their `FieldsV1` wire form (`metadata.managedFields[].fieldsV1`).
//!
//! A path is a sequence of [`PathElement`]s: `f:<name>` selects a map field, `k:{"name":"web"}` selects a list-map
//! item by its keys, `v:"value"` selects a set item, `i:<n>` selects an item by index. A [`FieldSet`] is a tree:
//! each node has *members* (paths that end there, written `"<element>": {}` or `".": {}` inside a child) and
//! *children* (paths that continue). This mirrors the shape of `fieldsV1`, so encoding and decoding are direct.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};

use serde_json::{Map, Value};

/// A JSON value with the total order the API server uses to sort path elements: numbers, then strings, booleans,
/// lists, maps, and null last. Equality follows the order (so `1` equals `1.0`, as in the API server).
#[derive(Clone, Debug)]
pub(super) struct OrderedValue(pub(super) Value);

impl OrderedValue {
    fn rank(&self) -> u8 {
        match self.0 {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
}

impl Ord for OrderedValue {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.0, &other.0) {
            (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => a.as_f64().unwrap_or(f64::NAN).total_cmp(&b.as_f64().unwrap_or(f64::NAN)),
            },
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => {
                a.iter().cloned().map(OrderedValue).cmp(b.iter().cloned().map(OrderedValue))
            }
            (Value::Object(a), Value::Object(b)) => sorted_entries(a).cmp(&sorted_entries(b)),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, OrderedValue)> {
    let mut entries: Vec<_> = map.iter().map(|(k, v)| (k, OrderedValue(v.clone()))).collect();
    entries.sort();
    entries
}

impl PartialOrd for OrderedValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for OrderedValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for OrderedValue {}

/// One step of a field path. The variant order is the order the API server sorts elements in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum PathElement {
    /// A field of a map or struct: `f:replicas`.
    Field(String),
    /// A list-map item, by its key fields sorted by name: `k:{"name":"web"}`.
    Key(Vec<(String, OrderedValue)>),
    /// A set item, by its value: `v:"example.com/finalizer"`.
    Value(OrderedValue),
    /// A list item by position: `i:0` (never produced here, read for completeness).
    Index(usize),
}

impl PathElement {
    /// The `fieldsV1` key for this element.
    fn to_fields_v1_key(&self) -> String {
        let mut out = String::new();
        match self {
            PathElement::Field(name) => {
                out.push_str("f:");
                out.push_str(name);
            }
            PathElement::Key(fields) => {
                out.push_str("k:{");
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_go_json_string(&mut out, name);
                    out.push(':');
                    write_go_json(&mut out, &value.0);
                }
                out.push('}');
            }
            PathElement::Value(value) => {
                out.push_str("v:");
                write_go_json(&mut out, &value.0);
            }
            PathElement::Index(index) => {
                let _ = write!(out, "i:{index}");
            }
        }
        out
    }

    /// Parses a `fieldsV1` key; `Ok(None)` for an element type this code does not know (skipped, as the API
    /// server does).
    fn from_fields_v1_key(key: &str) -> Result<Option<PathElement>, FieldsV1Error> {
        let malformed = || FieldsV1Error(format!("malformed path element {key:?}"));
        let (kind, body) = key.split_at_checked(2).filter(|(kind, _)| kind.ends_with(':')).ok_or_else(malformed)?;
        Ok(Some(match kind {
            "f:" => PathElement::Field(body.to_owned()),
            "v:" => PathElement::Value(OrderedValue(serde_json::from_str(body).map_err(|_| malformed())?)),
            "i:" => PathElement::Index(body.parse().map_err(|_| malformed())?),
            "k:" => {
                let Value::Object(fields) = serde_json::from_str(body).map_err(|_| malformed())? else {
                    return Err(malformed());
                };
                let mut fields: Vec<_> = fields.into_iter().map(|(k, v)| (k, OrderedValue(v))).collect();
                fields.sort();
                PathElement::Key(fields)
            }
            _ => return Ok(None),
        }))
    }
}

/// Paths print the way the API server prints them in conflicts: `.spec.template.spec.containers[name="web"].image`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                f.write_str("[")?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{name}={}", display_value(&value.0))?;
                }
                f.write_str("]")
            }
            PathElement::Value(value) => write!(f, "[={}]", display_value(&value.0)),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A scalar as the API server prints it in a path: strings quoted, everything else bare.
fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// Prints a whole path, e.g. `.spec.replicas`.
pub(super) fn display_path(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// JSON as Go's `encoding/json` writes it (the API server's encoder): like serde_json, but `<`, `>`, `&`,
/// U+2028 and U+2029 are escaped, so keys match byte for byte.
fn write_go_json(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => write_go_json_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json_string(out, key);
                out.push(':');
                write_go_json(out, item);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_go_json_string(out: &mut String, s: &str) {
    let encoded = serde_json::to_string(s).unwrap_or_default();
    for c in encoded.chars() {
        match c {
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// A `fieldsV1` document that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldsV1Error(pub(super) String);

/// A set of field paths, stored as a tree shaped like `fieldsV1`. Empty children are never kept, so two sets
/// holding the same paths compare equal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// True when the set holds no path.
    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds one path (a path of length zero is ignored: the root is never a member).
    pub(super) fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// True when `path` is a member.
    pub(super) fn contains(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|child| child.contains(rest)),
        }
    }

    /// True when `element` is a member at this level.
    pub(super) fn has_member(&self, element: &PathElement) -> bool {
        self.members.contains(element)
    }

    /// The paths below `element` (those that start with it, without it), if any.
    pub(super) fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    /// The elements that have paths continuing below them.
    pub(super) fn child_elements(&self) -> impl Iterator<Item = &PathElement> {
        self.children.keys()
    }

    /// Marks `element` as a member at this level.
    pub(super) fn insert_member(&mut self, element: PathElement) {
        self.members.insert(element);
    }

    /// Replaces the paths below `element` (an empty set removes them).
    pub(super) fn set_child(&mut self, element: PathElement, child: FieldSet) {
        if child.is_empty() {
            self.children.remove(&element);
        } else {
            self.children.insert(element, child);
        }
    }

    /// Paths in either set.
    pub(super) fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            let merged = match out.children.get(element) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    /// Paths in `self` but not in `other` (exact paths: a member of `other` does not remove paths below it).
    pub(super) fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out =
            FieldSet { members: self.members.difference(&other.members).cloned().collect(), ..Default::default() };
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            out.set_child(element.clone(), rest);
        }
        out
    }

    /// Paths in both sets.
    pub(super) fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out =
            FieldSet { members: self.members.intersection(&other.members).cloned().collect(), ..Default::default() };
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                out.set_child(element.clone(), child.intersection(theirs));
            }
        }
        out
    }

    /// This set without `element` and every path below it (used to leave out `status`, or everything but it).
    pub(super) fn without_subtree(&self, element: &PathElement) -> FieldSet {
        let mut out = self.clone();
        out.members.remove(element);
        out.children.remove(element);
        out
    }

    /// Only `element` and the paths below it.
    pub(super) fn only_subtree(&self, element: &PathElement) -> FieldSet {
        let mut out = FieldSet::default();
        if self.members.contains(element) {
            out.members.insert(element.clone());
        }
        if let Some(child) = self.children.get(element) {
            out.children.insert(element.clone(), child.clone());
        }
        out
    }

    /// Every member path, in the API server's order (it lists conflicts in this order): at each level the members
    /// first, then the paths below each child.
    pub(super) fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for member in &self.members {
            out.push([prefix.as_slice(), std::slice::from_ref(member)].concat());
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `fieldsV1` form: `{"f:spec": {"f:replicas": {}}}`; a node that is both a member and has children
    /// carries `".": {}`. Keys are emitted in the API server's order.
    pub(super) fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_object(false))
    }

    fn fields_v1_object(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self {
            out.insert(".".to_owned(), Value::Object(Map::new()));
        }
        let elements: BTreeSet<&PathElement> = self.members.iter().chain(self.children.keys()).collect();
        for element in elements {
            let body = match self.children.get(element) {
                Some(child) => child.fields_v1_object(self.members.contains(element)),
                None => Map::new(),
            };
            out.insert(element.to_fields_v1_key(), Value::Object(body));
        }
        out
    }

    /// Reads a `fieldsV1` document.
    pub(super) fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldsV1Error> {
        let Value::Object(map) = value else {
            return Err(FieldsV1Error("fieldsV1 must be an object".to_owned()));
        };
        let mut set = FieldSet::default();
        for (key, body) in map {
            if key == "." {
                continue;
            }
            let Some(element) = PathElement::from_fields_v1_key(key)? else { continue };
            let Value::Object(inner) = body else {
                return Err(FieldsV1Error(format!("the value of {key:?} must be an object")));
            };
            let child = FieldSet::from_fields_v1(body)?;
            // `{}` or a `.` entry makes the element a member; anything else only continues the path.
            if inner.is_empty() || inner.contains_key(".") {
                set.members.insert(element.clone());
            }
            set.set_child(element, child);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    fn key(name: &str, value: Value) -> PathElement {
        PathElement::Key(vec![(name.to_owned(), OrderedValue(value))])
    }

    #[test]
    fn fields_v1_round_trips_with_dot_for_members_that_have_children() {
        let mut set = FieldSet::default();
        let containers = [field("spec"), field("containers")];
        let web = [&containers[..], &[key("name", json!("web"))]].concat();
        set.insert(&web);
        set.insert(&[&web[..], &[field("image")]].concat());
        set.insert(&[field("metadata"), field("finalizers"), PathElement::Value(OrderedValue(json!("a/b")))]);
        let encoded = set.to_fields_v1();
        assert_eq!(
            encoded,
            json!({
                "f:metadata": {"f:finalizers": {"v:\"a/b\"": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&encoded).unwrap(), set);
    }

    #[test]
    fn keys_are_sorted_by_field_name_and_escaped_like_go() {
        let element = PathElement::Key(vec![
            ("containerPort".to_owned(), OrderedValue(json!(80))),
            ("protocol".to_owned(), OrderedValue(json!("TCP"))),
        ]);
        assert_eq!(element.to_fields_v1_key(), r#"k:{"containerPort":80,"protocol":"TCP"}"#);
        assert_eq!(element.to_string(), r#"[containerPort=80,protocol="TCP"]"#);
        assert_eq!(PathElement::Value(OrderedValue(json!("a<b"))).to_fields_v1_key(), r#"v:"a\u003cb""#);
        let parsed = PathElement::from_fields_v1_key(r#"k:{"protocol":"TCP","containerPort":80}"#).unwrap();
        assert_eq!(parsed, Some(element));
    }

    #[test]
    fn set_algebra_keeps_no_empty_nodes() {
        let mut a = FieldSet::default();
        a.insert(&[field("spec"), field("replicas")]);
        a.insert(&[field("spec"), field("paused")]);
        let mut b = FieldSet::default();
        b.insert(&[field("spec"), field("replicas")]);
        assert_eq!(a.intersection(&b), b);
        let rest = a.difference(&b);
        assert_eq!(rest.paths(), vec![vec![field("spec"), field("paused")]]);
        assert!(b.difference(&a).is_empty());
        assert_eq!(rest.union(&b), a);
        // Members of a level come before the paths below its children, as the API server iterates.
        let mut mixed = FieldSet::default();
        mixed.insert(&[field("spec"), field("template"), field("x")]);
        mixed.insert(&[field("spec"), field("zeta")]);
        assert_eq!(
            mixed.paths(),
            vec![vec![field("spec"), field("zeta")], vec![field("spec"), field("template"), field("x")]]
        );
        assert_eq!(
            display_path(&[field("spec"), key("name", json!("web")), field("image")]),
            r#".spec[name="web"].image"#
        );
    }
}
