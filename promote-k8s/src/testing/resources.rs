//! The catalogue of resource types the fake serves: the built-in kinds and the ones CRDs register.

use serde_json::{Value, json};

/// One served resource type (a group, version and plural), with what discovery says about it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResourceType {
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) kind: String,
    pub(crate) plural: String,
    pub(crate) singular: String,
    pub(crate) namespaced: bool,
    pub(crate) short_names: Vec<String>,
    pub(crate) categories: Vec<String>,
    /// Has a `status` subresource: the main resource ignores status changes, `/status` ignores the rest.
    pub(crate) status_subresource: bool,
    /// Keeps `metadata.generation`, bumped when anything but metadata and status changes.
    pub(crate) generation: bool,
    /// Top-level fields a strict decoder accepts; `None` accepts any (custom resources).
    pub(crate) top_level_fields: Option<&'static [&'static str]>,
    /// Registered by a CustomResourceDefinition (its name), rather than built in.
    pub(crate) crd: Option<String>,
}

/// Storage identity of a resource, independent of the version it is served at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StorageKey {
    pub(crate) group: String,
    pub(crate) plural: String,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// The URL prefix of the group-version: `/api/v1` or `/apis/apps/v1`.
    pub(crate) fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or `configmaps` for the core group, as Status messages name a resource.
    pub(crate) fn qualified_plural(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    pub(crate) fn storage_key(&self) -> StorageKey {
        StorageKey { group: self.group.clone(), plural: self.plural.clone() }
    }

    pub(crate) fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub(crate) fn verbs(&self) -> Vec<&'static str> {
        vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }

    /// The `{"group","version","kind"}` object discovery and OpenAPI use.
    pub(crate) fn gvk_json(&self) -> Value {
        json!({"group": self.group, "version": self.version, "kind": self.kind})
    }
}

const OBJECT_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
const CONFIGMAP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "data", "binaryData", "immutable"];
const SECRET_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"];
const SERVICEACCOUNT_FIELDS: &[&str] =
    &["apiVersion", "kind", "metadata", "secrets", "imagePullSecrets", "automountServiceAccountToken"];
const EVENT_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "involvedObject",
    "reason",
    "message",
    "source",
    "firstTimestamp",
    "lastTimestamp",
    "count",
    "type",
    "eventTime",
    "series",
    "action",
    "related",
    "reportingComponent",
    "reportingInstance",
];

struct Builtin {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    categories: &'static [&'static str],
    status_subresource: bool,
    generation: bool,
    fields: &'static [&'static str],
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        group: "",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        status_subresource: true,
        generation: false,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        status_subresource: false,
        generation: false,
        fields: CONFIGMAP_FIELDS,
    },
    Builtin {
        group: "",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status_subresource: false,
        generation: false,
        fields: SECRET_FIELDS,
    },
    Builtin {
        group: "",
        kind: "Service",
        plural: "services",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        status_subresource: true,
        generation: false,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        status_subresource: false,
        generation: false,
        fields: SERVICEACCOUNT_FIELDS,
    },
    Builtin {
        group: "",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        status_subresource: true,
        generation: false,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        status_subresource: false,
        generation: false,
        fields: EVENT_FIELDS,
    },
    Builtin {
        group: "",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        namespaced: true,
        short_names: &["pvc"],
        categories: &[],
        status_subresource: true,
        generation: false,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "apps",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        status_subresource: true,
        generation: true,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "apps",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        status_subresource: true,
        generation: true,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "apps",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
        short_names: &["sts"],
        categories: &["all"],
        status_subresource: true,
        generation: true,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "apps",
        kind: "DaemonSet",
        plural: "daemonsets",
        namespaced: true,
        short_names: &["ds"],
        categories: &["all"],
        status_subresource: true,
        generation: true,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "batch",
        kind: "Job",
        plural: "jobs",
        namespaced: true,
        short_names: &[],
        categories: &["all"],
        status_subresource: true,
        generation: true,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "coordination.k8s.io",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
        short_names: &[],
        categories: &[],
        status_subresource: false,
        generation: false,
        fields: OBJECT_FIELDS,
    },
    Builtin {
        group: "apiextensions.k8s.io",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        status_subresource: true,
        generation: true,
        fields: OBJECT_FIELDS,
    },
];

/// The set of served resource types. Discovery, OpenAPI and the REST routes all read it.
#[derive(Debug, Clone)]
pub(crate) struct Catalogue {
    types: Vec<ResourceType>,
}

impl Catalogue {
    pub(crate) fn builtin() -> Self {
        let types = BUILTINS
            .iter()
            .map(|b| ResourceType {
                group: b.group.to_string(),
                version: "v1".to_string(),
                kind: b.kind.to_string(),
                plural: b.plural.to_string(),
                singular: b.kind.to_lowercase(),
                namespaced: b.namespaced,
                short_names: b.short_names.iter().map(|s| s.to_string()).collect(),
                categories: b.categories.iter().map(|s| s.to_string()).collect(),
                status_subresource: b.status_subresource,
                generation: b.generation,
                top_level_fields: Some(b.fields),
                crd: None,
            })
            .collect();
        Catalogue { types }
    }

    pub(crate) fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// The type served at `group/version/plural`.
    pub(crate) fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Any served version of a storage key (for garbage collection, which walks every stored object).
    pub(crate) fn by_storage(&self, key: &StorageKey) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.group == key.group && t.plural == key.plural)
    }

    /// Whether a group-version is served at all (for discovery of `/apis/<g>/<v>`).
    pub(crate) fn serves_group_version(&self, group: &str, version: &str) -> bool {
        self.types.iter().any(|t| t.group == group && t.version == version)
    }

    /// Groups in the order discovery lists them (core first, then by first registration), each with its versions.
    pub(crate) fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) if !versions.contains(&t.version) => versions.push(t.version.clone()),
                Some(_) => {}
                None => groups.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        groups
    }

    /// Registers (or re-registers) the served versions of a CustomResourceDefinition. Returns an error message
    /// when the CRD's names are unusable.
    pub(crate) fn register_crd(&mut self, crd: &Value) -> Result<(), String> {
        let name = crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let spec = crd.get("spec").ok_or("spec: Required value")?;
        let group = spec.get("group").and_then(Value::as_str).ok_or("spec.group: Required value")?;
        let names = spec.get("names").ok_or("spec.names: Required value")?;
        let plural = names.get("plural").and_then(Value::as_str).ok_or("spec.names.plural: Required value")?;
        let kind = names.get("kind").and_then(Value::as_str).ok_or("spec.names.kind: Required value")?;
        if name != format!("{plural}.{group}") {
            return Err(format!(
                "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
            ));
        }
        let strings = |key: &str| -> Vec<String> {
            names
                .get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        let singular = names.get("singular").and_then(Value::as_str).map(str::to_string).unwrap_or(kind.to_lowercase());
        let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
        let versions = spec.get("versions").and_then(Value::as_array).cloned().unwrap_or_default();
        self.unregister_crd(&name);
        for version in versions {
            if version.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let Some(v) = version.get("name").and_then(Value::as_str) else { continue };
            self.types.push(ResourceType {
                group: group.to_string(),
                version: v.to_string(),
                kind: kind.to_string(),
                plural: plural.to_string(),
                singular: singular.clone(),
                namespaced,
                short_names: strings("shortNames"),
                categories: strings("categories"),
                status_subresource: version.pointer("/subresources/status").is_some(),
                generation: true,
                top_level_fields: None,
                crd: Some(name.clone()),
            });
        }
        Ok(())
    }

    /// Removes the types a CRD registered.
    pub(crate) fn unregister_crd(&mut self, crd_name: &str) {
        self.types.retain(|t| t.crd.as_deref() != Some(crd_name));
    }
}
