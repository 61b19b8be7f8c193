//! The little schema server-side apply needs: which lists are list-maps (and by which keys), which are sets,
//! which maps and structs are atomic. Everything not in the table follows the rules the API server applies to a
//! custom resource whose schema has no `x-kubernetes-*` markers: objects are structs merged field by field, lists
//! are atomic.
//!
//! The rows below are taken from the Kubernetes OpenAPI (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`, and `patchMergeKey` where no list type is given). Paths are relative to a pod spec
//! (in a Pod, in every workload's pod template, in a CronJob's job template), to object metadata (the object's
//! and every pod template's), or to the object itself:
//!
//! | Where | Field | Semantics | Keys |
//! |-------|-------|-----------|------|
//! | metadata | `labels`, `annotations` | granular map | |
//! | metadata | `ownerReferences` | list-map | `uid` |
//! | metadata | `finalizers` | set | |
//! | pod spec | `containers`, `initContainers`, `ephemeralContainers` | list-map | `name` |
//! | pod spec | `…containers.ports` | list-map | `containerPort`, `protocol` (default `TCP`) |
//! | pod spec | `…containers.env` | list-map | `name` |
//! | pod spec | `…containers.env.valueFrom.*KeyRef`, `….fieldRef`, `….resourceFieldRef` | atomic struct | |
//! | pod spec | `…containers.volumeMounts` | list-map | `mountPath` |
//! | pod spec | `…containers.volumeDevices` | list-map | `devicePath` |
//! | pod spec | `…containers.resources.{limits,requests}` | granular map | |
//! | pod spec | `…containers.resources.claims` | list-map | `name` |
//! | pod spec | `volumes`, `imagePullSecrets`, `resourceClaims`, `schedulingGates` | list-map | `name` |
//! | pod spec | `imagePullSecrets[]` (each item) | atomic struct | |
//! | pod spec | `hostAliases` | list-map | `ip` |
//! | pod spec | `topologySpreadConstraints` | list-map | `topologyKey`, `whenUnsatisfiable` |
//! | pod spec | `topologySpreadConstraints.labelSelector` | atomic struct | |
//! | pod spec | `nodeSelector` | atomic map | |
//! | pod spec | `affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution` | atomic struct | |
//! | pod spec | `tolerations` and every other list (`args`, `command`, `envFrom`, …) | atomic list | |
//! | Deployment, ReplicaSet, StatefulSet, DaemonSet, Job | `spec.selector` | atomic struct | |
//! | CronJob | `spec.jobTemplate.spec.selector` | atomic struct | |
//! | ReplicationController | `spec.selector` | atomic map | |
//! | Service | `spec.ports` | list-map | `port`, `protocol` (default `TCP`) |
//! | Service | `spec.selector` | atomic map | |
//! | ConfigMap, Secret | `data`, `binaryData`, `stringData` | granular map | |
//! | built-in kinds (API groups `""`, without a dot, or `*.k8s.io`) | `status.conditions` | list-map | `type` |
//!
//! Built-in kinds with a status subresource (workloads, Pod, Service, Namespace, PersistentVolumeClaim, Node,
//! CustomResourceDefinition, …) never take `status` from a write to the main resource.

use serde_json::{Value, json};

use super::fieldset::{OrderedValue, PathElement};

/// One key field of a list-map, with the default the API server assumes when an item omits it.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyField {
    pub(super) name: &'static str,
    pub(super) default: Option<&'static str>,
}

const fn key(name: &'static str) -> KeyField {
    KeyField { name, default: None }
}

const fn key_or(name: &'static str, default: &'static str) -> KeyField {
    KeyField { name, default: Some(default) }
}

/// How the value at one path merges and is owned.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rule {
    /// `x-kubernetes-list-type: map`: items merge by their key fields, each item has its own owners.
    ListMap(&'static [KeyField]),
    /// `x-kubernetes-list-type: set`: scalar items, each owned on its own.
    ListSet,
    /// `x-kubernetes-map-type: atomic` (on a map or a struct): replaced and owned as a whole.
    Atomic,
    /// A `map[string]…` (labels, data): keys are not named fields of a struct.
    GranularMap,
}

const NAME: &[KeyField] = &[key("name")];
const PORT_AND_PROTOCOL: &[KeyField] = &[key("port"), key_or("protocol", "TCP")];
const TYPE: &[KeyField] = &[key("type")];

/// Rules below a pod spec.
const POD_SPEC: &[(&str, Rule)] = &[
    ("containers", Rule::ListMap(NAME)),
    ("initContainers", Rule::ListMap(NAME)),
    ("ephemeralContainers", Rule::ListMap(NAME)),
    ("volumes", Rule::ListMap(NAME)),
    ("imagePullSecrets", Rule::ListMap(NAME)),
    ("imagePullSecrets[]", Rule::Atomic),
    ("resourceClaims", Rule::ListMap(NAME)),
    ("schedulingGates", Rule::ListMap(NAME)),
    ("hostAliases", Rule::ListMap(&[key("ip")])),
    ("topologySpreadConstraints", Rule::ListMap(&[key("topologyKey"), key("whenUnsatisfiable")])),
    ("topologySpreadConstraints.labelSelector", Rule::Atomic),
    ("nodeSelector", Rule::Atomic),
    ("affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution", Rule::Atomic),
];

/// Rules below each of `containers`, `initContainers`, `ephemeralContainers`.
const CONTAINER: &[(&str, Rule)] = &[
    ("ports", Rule::ListMap(&[key("containerPort"), key_or("protocol", "TCP")])),
    ("env", Rule::ListMap(NAME)),
    ("env.valueFrom.configMapKeyRef", Rule::Atomic),
    ("env.valueFrom.secretKeyRef", Rule::Atomic),
    ("env.valueFrom.fieldRef", Rule::Atomic),
    ("env.valueFrom.resourceFieldRef", Rule::Atomic),
    ("env.valueFrom.fileKeyRef", Rule::Atomic),
    ("volumeMounts", Rule::ListMap(&[key("mountPath")])),
    ("volumeDevices", Rule::ListMap(&[key("devicePath")])),
    ("resources.limits", Rule::GranularMap),
    ("resources.requests", Rule::GranularMap),
    ("resources.claims", Rule::ListMap(NAME)),
];

/// Rules below object metadata.
const METADATA: &[(&str, Rule)] = &[
    ("labels", Rule::GranularMap),
    ("annotations", Rule::GranularMap),
    ("ownerReferences", Rule::ListMap(&[key("uid")])),
    ("finalizers", Rule::ListSet),
];

/// Where the built-in kinds keep their pod template (`""` for a Pod itself), if they have one.
fn pod_template_prefix(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("", "Pod") => Some(""),
        ("", "PodTemplate") => Some("template"),
        ("", "ReplicationController")
        | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => Some("spec.template"),
        ("batch", "CronJob") => Some("spec.jobTemplate.spec.template"),
        _ => None,
    }
}

/// True for the built-in kinds whose `status` is written only through the `/status` subresource.
fn has_status_subresource(group: &str, kind: &str) -> bool {
    matches!(
        (group, kind),
        ("", "Pod" | "Service" | "Namespace" | "Node" | "PersistentVolume" | "PersistentVolumeClaim")
            | ("", "ReplicationController" | "ResourceQuota")
            | ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
            | ("batch", "Job" | "CronJob")
            | ("autoscaling", "HorizontalPodAutoscaler")
            | ("policy", "PodDisruptionBudget")
            | ("networking.k8s.io", "Ingress")
            | ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("apiregistration.k8s.io", "APIService")
            | ("certificates.k8s.io", "CertificateSigningRequest")
    )
}

fn is_built_in(group: &str) -> bool {
    !group.contains('.') || group.ends_with(".k8s.io")
}

/// The merge rules for one kind, resolved from its `apiVersion` and `kind`.
#[derive(Debug, Clone)]
pub(super) struct Schema {
    rules: Vec<(String, Rule)>,
    status_subresource: bool,
    empty_object: Value,
}

impl Schema {
    /// The rules for objects of this `apiVersion` (`apps/v1`, `v1`, `example.com/v1`) and `kind`.
    pub(super) fn for_kind(api_version: &str, kind: &str) -> Schema {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let mut rules = Vec::new();
        let mut add = |prefix: &str, table: &[(&str, Rule)]| {
            for (path, rule) in table {
                rules.push((join(prefix, path), *rule));
            }
        };
        add("metadata", METADATA);
        let pod_template = pod_template_prefix(group, kind);
        if let Some(template) = pod_template {
            if !template.is_empty() {
                add(&join(template, "metadata"), METADATA);
            }
            add(&join(template, "spec"), POD_SPEC);
            for containers in ["containers", "initContainers", "ephemeralContainers"] {
                add(&join(template, &format!("spec.{containers}")), CONTAINER);
            }
        }
        match (group, kind) {
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
                add("spec", &[("selector", Rule::Atomic)]);
            }
            ("batch", "CronJob") => {
                add("spec.jobTemplate.metadata", METADATA);
                add("spec.jobTemplate.spec", &[("selector", Rule::Atomic)]);
            }
            ("", "ReplicationController") => add("spec", &[("selector", Rule::Atomic)]),
            ("", "Service") => add("spec", &[("ports", Rule::ListMap(PORT_AND_PROTOCOL)), ("selector", Rule::Atomic)]),
            ("", "ConfigMap" | "Secret") => add(
                "",
                &[("data", Rule::GranularMap), ("binaryData", Rule::GranularMap), ("stringData", Rule::GranularMap)],
            ),
            _ => {}
        }
        if is_built_in(group) {
            add("status", &[("conditions", Rule::ListMap(TYPE))]);
        }
        Schema {
            rules,
            status_subresource: has_status_subresource(group, kind),
            empty_object: empty_object(group, kind, pod_template),
        }
    }

    /// True when `status` belongs to the `/status` subresource, so writes to the object itself leave it alone.
    pub(super) fn has_status_subresource(&self) -> bool {
        self.status_subresource
    }

    /// The location of the object's root.
    pub(super) fn root(&self) -> Location<'_> {
        Location { schema: self, path: String::new(), item: false }
    }

    /// What a create is compared against (see [`empty_object`]).
    pub(super) fn empty_object(&self) -> &Value {
        &self.empty_object
    }

    fn rule_at(&self, path: &str) -> Option<Rule> {
        self.rules.iter().find(|(rule_path, _)| rule_path == path).map(|(_, rule)| *rule)
    }
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}.{path}"),
    }
}

/// Stands in for the empty typed object the API server compares a create with: struct fields that Go always
/// serializes (value structs, slices and pointers without `omitempty`) exist, so a create does not mark them as
/// added (`f:spec` has no `.`, `f:containers` has none either), while `f:labels` and `f:ports` do.
fn empty_object(group: &str, kind: &str, pod_template: Option<&str>) -> Value {
    let mut object = json!({ "metadata": {} });
    let Some(template) = pod_template.filter(|_| kind != "ReplicationController") else {
        // A ReplicationController's template is a pointer: absent from its empty object.
        if kind == "ReplicationController" {
            object["spec"] = json!({});
        }
        return object;
    };
    let pod = json!({ "metadata": { "creationTimestamp": null }, "spec": { "containers": null } });
    if template.is_empty() {
        object["spec"] = pod["spec"].clone();
        return object;
    }
    let mut node = &mut object;
    for segment in template.split('.') {
        node = &mut node[segment];
    }
    *node = pod;
    match (group, kind) {
        ("apps", "Deployment") => {
            object["spec"]["selector"] = Value::Null;
            object["spec"]["strategy"] = json!({});
        }
        ("apps", "StatefulSet" | "DaemonSet") => {
            object["spec"]["selector"] = Value::Null;
            object["spec"]["updateStrategy"] = json!({});
        }
        ("apps", "ReplicaSet") => object["spec"]["selector"] = Value::Null,
        ("batch", "CronJob") => object["spec"]["jobTemplate"]["metadata"] = json!({ "creationTimestamp": null }),
        _ => {}
    }
    object
}

/// A place in an object, as the schema sees it: the dotted field names leading there (list items add nothing to
/// the path, but the rule of a list applies to the list, not to its items).
#[derive(Debug, Clone)]
pub(super) struct Location<'s> {
    schema: &'s Schema,
    path: String,
    item: bool,
}

/// How a value is treated at a location, given the rule there and the value's JSON type.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    /// Compared and owned as one value: scalars, atomic lists, atomic maps, and values whose JSON type does
    /// not fit the rule.
    Leaf,
    /// An object whose keys are named fields (a struct).
    Struct,
    /// An object whose keys are data (a `map[string]…`).
    Map,
    /// A list whose items are owned one by one, identified by these keys (empty for a set).
    Associative(&'static [KeyField]),
}

impl<'s> Location<'s> {
    /// The location of a field below this one.
    pub(super) fn field(&self, name: &str) -> Location<'s> {
        Location { schema: self.schema, path: join(&self.path, name), item: false }
    }

    /// The location of an item of the list here.
    pub(super) fn item(&self) -> Location<'s> {
        Location { schema: self.schema, path: self.path.clone(), item: true }
    }

    /// The rule here: a list's items have their own (rare) rule, written `<list>[]` in the table.
    fn rule(&self) -> Option<Rule> {
        if self.item { self.schema.rule_at(&format!("{}[]", self.path)) } else { self.schema.rule_at(&self.path) }
    }

    /// How `value` is treated here.
    pub(super) fn shape_of(&self, value: &Value) -> Shape {
        match (value, self.rule()) {
            (Value::Object(_), None) => Shape::Struct,
            (Value::Object(_), Some(Rule::GranularMap)) => Shape::Map,
            (Value::Array(_), Some(Rule::ListMap(keys))) => Shape::Associative(keys),
            (Value::Array(_), Some(Rule::ListSet)) => Shape::Associative(&[]),
            _ => Shape::Leaf,
        }
    }

    /// The shape used when one side of a comparison or merge is absent or null: that of the other side.
    pub(super) fn shape_of_pair(&self, lhs: Option<&Value>, rhs: Option<&Value>) -> Shape {
        fn present(value: Option<&Value>) -> Option<&Value> {
            value.filter(|v| !v.is_null())
        }
        match (present(lhs), present(rhs)) {
            (Some(l), Some(r)) => match (self.shape_of(l), self.shape_of(r)) {
                (Shape::Struct, Shape::Struct) => Shape::Struct,
                (Shape::Map, Shape::Map) => Shape::Map,
                (Shape::Associative(keys), Shape::Associative(_)) => Shape::Associative(keys),
                _ => Shape::Leaf,
            },
            (Some(only), None) | (None, Some(only)) => self.shape_of(only),
            (None, None) => Shape::Leaf,
        }
    }

    /// True when a key of an object here is a named struct field (not map data), which the API server treats
    /// as owned when anything below it is owned.
    pub(super) fn keys_are_named_fields(&self) -> bool {
        !matches!(self.rule(), Some(Rule::GranularMap | Rule::Atomic))
    }
}

/// The path element of a list item, or `None` when the item cannot be identified (a list-map item without any key
/// field, or a set item that is not a scalar): such lists are then treated as atomic.
pub(super) fn item_element(keys: &[KeyField], item: &Value) -> Option<PathElement> {
    if keys.is_empty() {
        return match item {
            Value::Null | Value::Array(_) | Value::Object(_) => None,
            scalar => Some(PathElement::Value(OrderedValue(scalar.clone()))),
        };
    }
    let Value::Object(fields) = item else { return None };
    let mut key_values = Vec::new();
    for key in keys {
        match (fields.get(key.name), key.default) {
            (Some(value), _) => key_values.push((key.name.to_owned(), OrderedValue(value.clone()))),
            (None, Some(default)) => {
                key_values.push((key.name.to_owned(), OrderedValue(Value::String(default.to_owned()))));
            }
            (None, None) => {}
        }
    }
    if key_values.is_empty() {
        return None;
    }
    key_values.sort();
    Some(PathElement::Key(key_values))
}

/// The path elements of a list's items, or `None` when the list must be treated as atomic (an item that cannot
/// be identified, or two items with the same identity, which the API server refuses in an applied configuration).
pub(super) fn item_elements(keys: &[KeyField], items: &[Value]) -> Option<Vec<PathElement>> {
    let mut elements = Vec::with_capacity(items.len());
    for item in items {
        let element = item_element(keys, item)?;
        if elements.contains(&element) {
            return None;
        }
        elements.push(element);
    }
    Some(elements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_containers_are_keyed_by_name_and_ports_default_their_protocol() {
        let schema = Schema::for_kind("apps/v1", "Deployment");
        let containers = schema.root().field("spec").field("template").field("spec").field("containers");
        let Shape::Associative(keys) = containers.shape_of(&json!([])) else { panic!("containers are a list-map") };
        assert_eq!(item_element(keys, &json!({"name": "web"})).unwrap().to_string(), r#"[name="web"]"#);
        let Shape::Associative(keys) = containers.field("ports").shape_of(&json!([])) else { panic!("ports") };
        let port = item_element(keys, &json!({"containerPort": 8080})).unwrap();
        assert_eq!(port.to_string(), r#"[containerPort=8080,protocol="TCP"]"#);
        assert!(matches!(schema.root().field("spec").field("selector").shape_of(&json!({})), Shape::Leaf));
        assert!(schema.has_status_subresource());
        let pull_secrets = schema.root().field("spec").field("template").field("spec").field("imagePullSecrets");
        assert!(matches!(pull_secrets.shape_of(&json!([])), Shape::Associative(_)));
        assert!(matches!(pull_secrets.item().shape_of(&json!({"name": "a"})), Shape::Leaf), "items are atomic");
    }

    #[test]
    fn unknown_kinds_have_struct_objects_and_atomic_lists() {
        let schema = Schema::for_kind("example.com/v1", "Widget");
        let spec = schema.root().field("spec");
        assert!(matches!(spec.shape_of(&json!({"a": 1})), Shape::Struct));
        assert!(matches!(spec.field("items").shape_of(&json!([{"name": "a"}])), Shape::Leaf));
        assert!(matches!(schema.root().field("status").field("conditions").shape_of(&json!([])), Shape::Leaf));
        let finalizers = schema.root().field("metadata").field("finalizers");
        assert!(matches!(finalizers.shape_of(&json!(["a"])), Shape::Associative([])));
        assert!(!schema.has_status_subresource());
    }

    #[test]
    fn empty_deployment_has_the_go_zero_structs() {
        let schema = Schema::for_kind("apps/v1", "Deployment");
        assert_eq!(
            schema.empty_object(),
            &json!({
                "metadata": {},
                "spec": {
                    "selector": null,
                    "strategy": {},
                    "template": { "metadata": { "creationTimestamp": null }, "spec": { "containers": null } }
                }
            })
        );
        assert_eq!(Schema::for_kind("v1", "ConfigMap").empty_object(), &json!({ "metadata": {} }));
    }

    #[test]
    fn duplicate_or_unkeyed_items_make_a_list_atomic() {
        let keys = &[key("name")];
        assert!(item_elements(keys, &[json!({"name": "a"}), json!({"name": "a"})]).is_none());
        assert!(item_elements(keys, &[json!({"image": "a"})]).is_none());
        assert_eq!(item_elements(keys, &[json!({"name": "a"}), json!({"name": "b"})]).unwrap().len(), 2);
    }
}
