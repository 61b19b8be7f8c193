//! The bundle's manifests as Kubernetes objects: parsed, typed through discovery, placed in their namespace,
//! labelled as members of the stage's ApplySet, and hashed.

use std::collections::BTreeSet;
use std::fmt;

use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use promote_core::deploy::RenderedObject;
use promote_core::error::{Error, Result};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::diff::canonical_json;
use super::inventory::PART_OF;

/// A group and kind, as the ApplySet annotation lists them: `Deployment.apps`, `Secret`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct GroupKind {
    pub(crate) group: String,
    pub(crate) kind: String,
}

impl GroupKind {
    pub(crate) fn new(group: &str, kind: &str) -> Self {
        GroupKind { group: group.to_owned(), kind: kind.to_owned() }
    }

    /// `Kind.group` (or `Kind` for the core group), as `applyset.kubernetes.io/contains-group-kinds` lists it.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        Some(match text.split_once('.') {
            Some((kind, group)) => GroupKind::new(group, kind),
            None => GroupKind::new("", text),
        })
    }

    pub(crate) fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }

    pub(crate) fn is_namespace(&self) -> bool {
        self.is("", "Namespace")
    }

    pub(crate) fn is_crd(&self) -> bool {
        self.is("apiextensions.k8s.io", "CustomResourceDefinition")
    }

    pub(crate) fn is_secret(&self) -> bool {
        self.is("", "Secret")
    }
}

impl fmt::Display for GroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() { f.write_str(&self.kind) } else { write!(f, "{}.{}", self.kind, self.group) }
    }
}

/// The group and version of an `apiVersion` (`apps/v1` → `apps`, `v1`; `v1` → ``, `v1`).
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// A resource type the cluster serves: its URL path parts and whether its objects live in a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ResourceType {
    pub(crate) api: ApiResource,
    pub(crate) namespaced: bool,
}

impl ResourceType {
    pub(crate) fn group_kind(&self) -> GroupKind {
        GroupKind::new(&self.api.group, &self.api.kind)
    }

    /// The dynamic API for objects of this type in `namespace` (or all namespaces, or cluster-scoped).
    pub(crate) fn api(&self, client: &kube::Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| self.namespaced) {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &self.api),
            None => Api::all_with(client.clone(), &self.api),
        }
    }

    /// `deployments.apps in namespace shop-dev`, for messages.
    pub(crate) fn describe(&self, namespace: Option<&str>) -> String {
        let resource = if self.api.group.is_empty() {
            self.api.plural.clone()
        } else {
            format!("{}.{}", self.api.plural, self.api.group)
        };
        match namespace.filter(|_| self.namespaced) {
            Some(namespace) => format!("{resource} in namespace {namespace}"),
            None => resource,
        }
    }
}

/// An object's identity in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectRef {
    pub(crate) group_kind: GroupKind,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
}

impl ObjectRef {
    /// The identity of a live object of type `rt`.
    pub(crate) fn of_live(rt: &ResourceType, object: &Value) -> Option<Self> {
        let name = object.pointer("/metadata/name")?.as_str()?.to_owned();
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned);
        Some(ObjectRef { group_kind: rt.group_kind(), namespace: namespace.filter(|_| rt.namespaced), name })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {namespace}/{}", self.group_kind, self.name),
            None => write!(f, "{} {}", self.group_kind, self.name),
        }
    }
}

/// Where a stage's objects may go.
#[derive(Debug, Clone)]
pub(crate) struct Namespaces {
    /// The stage's own namespace: namespaced objects without one go here.
    pub(crate) stage: String,
    /// Other namespaces objects may name.
    pub(crate) allowed: BTreeSet<String>,
}

/// A manifest parsed, before its type is known.
pub(crate) struct Parsed<'m> {
    pub(crate) manifest: &'m RenderedObject,
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) kind: String,
    pub(crate) body: Value,
}

impl Parsed<'_> {
    pub(crate) fn group_kind(&self) -> GroupKind {
        GroupKind::new(&self.group, &self.kind)
    }
}

/// Whether the object's content is secret: its rendering holds secret config values, or it is a `Secret`.
pub(crate) fn is_secret(manifest: &RenderedObject) -> bool {
    manifest.holds_secrets() || (manifest.kind == "Secret" && manifest.api_version == "v1")
}

/// A refusal of the bundle: it will not pass on a re-run, so the promotion fails saying why.
pub(crate) fn refused(stage: &str, reason: String) -> Error {
    Error::DeployFailed { stage: stage.to_owned(), reason }
}

/// Parses one manifest. A parser message is shown only for objects without secrets: it may quote the text.
pub(crate) fn parse<'m>(stage: &str, manifest: &'m RenderedObject) -> Result<Parsed<'m>> {
    let key = manifest.object_key();
    let body: Value = serde_saphyr::from_str(manifest.expose_content()).map_err(|error| {
        let detail = if is_secret(manifest) {
            "its parser message is withheld: it may quote a secret".into()
        } else {
            error.to_string()
        };
        refused(stage, format!("{key} (template {}) is not valid YAML: {detail}", manifest.template))
    })?;
    if !body.is_object() {
        return Err(refused(stage, format!("{key} (template {}) is not a YAML mapping", manifest.template)));
    }
    let (group, version) = split_api_version(&manifest.api_version);
    let field = |pointer: &str| body.pointer(pointer).and_then(Value::as_str);
    if field("/apiVersion") != Some(manifest.api_version.as_str())
        || field("/kind") != Some(manifest.kind.as_str())
        || field("/metadata/name") != Some(manifest.name.as_str())
    {
        return Err(refused(
            stage,
            format!(
                "{key} (template {}): apiVersion, kind or metadata.name differ from the rendered identity",
                manifest.template
            ),
        ));
    }
    Ok(Parsed { manifest, group: group.to_owned(), version: version.to_owned(), kind: manifest.kind.clone(), body })
}

/// One object of the bundle, ready to apply. `body` may hold secret values: it is sent, never shown.
#[derive(Clone)]
pub(crate) struct Desired {
    /// The manifest's key in the bundle (`Deployment/web`): what changes and progress name.
    pub(crate) key: String,
    pub(crate) template: String,
    pub(crate) api_version: String,
    /// The namespace the manifest named, if any (part of its key).
    pub(crate) manifest_namespace: Option<String>,
    pub(crate) rt: ResourceType,
    pub(crate) reference: ObjectRef,
    pub(crate) body: Value,
    /// sha256 of what is applied (the body as sent, and the field manager).
    pub(crate) applied_hash: String,
    /// Whether the content is secret (diffs and server messages about it are not shown).
    pub(crate) secret: bool,
    /// The rendering kept in the inventory and shown by `current`: secrets masked, a Secret's data redacted.
    pub(crate) display: String,
}

impl fmt::Debug for Desired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Desired").field("key", &self.key).field("reference", &self.reference).finish()
    }
}

impl Desired {
    /// Places `parsed` (of type `rt`) in its namespace and labels it a member of ApplySet `applyset_id`.
    pub(crate) fn new(
        stage: &str,
        parsed: Parsed<'_>,
        rt: ResourceType,
        namespaces: &Namespaces,
        applyset_id: &str,
        field_manager: &str,
    ) -> Result<Self> {
        let manifest = parsed.manifest;
        let key = manifest.object_key();
        let mut body = parsed.body;
        let metadata = body
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| refused(stage, format!("{key}: metadata is not a mapping")))?;
        let namespace = if rt.namespaced {
            let namespace = match metadata.get("namespace").and_then(Value::as_str) {
                None | Some("") => namespaces.stage.clone(),
                Some(named) if named == namespaces.stage || namespaces.allowed.contains(named) => named.to_owned(),
                Some(named) => {
                    return Err(refused(
                        stage,
                        format!(
                            "{key} names namespace {named}, but stage {stage} deploys to namespace {} (list {named} \
                             under allow_namespaces to let the stage deploy there)",
                            namespaces.stage
                        ),
                    ));
                }
            };
            metadata.insert("namespace".into(), json!(namespace));
            Some(namespace)
        } else {
            // A namespace on a cluster-scoped object means nothing; the API server would ignore it too.
            metadata.remove("namespace");
            None
        };
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        let Some(labels) = labels.as_object_mut() else {
            return Err(refused(stage, format!("{key}: metadata.labels is not a mapping")));
        };
        labels.insert(PART_OF.into(), json!(applyset_id));
        let mut hasher = Sha256::new();
        hasher.update(canonical_json(&body).as_bytes());
        hasher.update([0]);
        hasher.update(field_manager.as_bytes());
        let applied_hash = format!("sha256:{}", hex::encode(hasher.finalize()));
        let reference = ObjectRef { group_kind: rt.group_kind(), namespace, name: manifest.name.clone() };
        Ok(Desired {
            key,
            template: manifest.template.clone(),
            api_version: manifest.api_version.clone(),
            manifest_namespace: manifest.namespace.clone(),
            secret: is_secret(manifest),
            display: display_rendering(manifest),
            rt,
            reference,
            body,
            applied_hash,
        })
    }

    /// What the body would look like once stored, for comparing with the live object: a Secret's write-only
    /// `stringData` becomes base64 `data`, as the API server stores it.
    pub(crate) fn as_stored(&self) -> Value {
        let mut body = self.body.clone();
        if self.reference.group_kind.is_secret()
            && let Some(map) = body.as_object_mut()
            && let Some(Value::Object(string_data)) = map.remove("stringData")
        {
            use base64::Engine as _;
            let data = map.entry("data").or_insert_with(|| json!({}));
            if let Some(data) = data.as_object_mut() {
                for (key, value) in string_data {
                    let text = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                    data.insert(key, json!(base64::engine::general_purpose::STANDARD.encode(text)));
                }
            }
        }
        body
    }
}

/// The rendering shown for an object: the masked rendering, and for a `Secret` also every value of `data`
/// and `stringData` replaced, since a literal value in a template is not masked by the renderer.
pub(crate) fn display_rendering(manifest: &RenderedObject) -> String {
    if !(manifest.kind == "Secret" && manifest.api_version == "v1") {
        return manifest.masked().to_owned();
    }
    let redacted = serde_saphyr::from_str::<Value>(manifest.masked()).ok().and_then(|mut secret| {
        use base64::Engine as _;
        let masked_b64 = base64::engine::general_purpose::STANDARD.encode(promote_core::config::REDACTED);
        for (field, marker) in [("data", masked_b64.as_str()), ("stringData", promote_core::config::REDACTED)] {
            if let Some(values) = secret.get_mut(field).and_then(Value::as_object_mut) {
                for value in values.values_mut() {
                    *value = json!(marker);
                }
            }
        }
        serde_saphyr::to_string(&secret).ok()
    });
    redacted.unwrap_or_else(|| format!("# {}: its rendering is not shown\n", manifest.object_key()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(kind: &str, content: &str) -> RenderedObject {
        let api_version = if kind == "Deployment" { "apps/v1" } else { "v1" };
        RenderedObject::new(
            api_version.into(),
            kind.into(),
            "web".into(),
            None,
            "app.yaml".into(),
            content.into(),
            content.into(),
        )
    }

    #[test]
    fn group_kinds_read_and_print_as_applyset_lists_them() {
        assert_eq!(GroupKind::parse("Deployment.apps").unwrap(), GroupKind::new("apps", "Deployment"));
        assert_eq!(GroupKind::parse("Secret").unwrap().to_string(), "Secret");
        assert_eq!(
            GroupKind::parse("CustomResourceDefinition.apiextensions.k8s.io").unwrap().group,
            "apiextensions.k8s.io"
        );
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }

    #[test]
    fn a_literal_secret_value_is_not_kept_for_display() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web\nstringData:\n  password: hunter2-literal\ndata:\n  token: aHVudGVyMg==\n";
        let shown = display_rendering(&manifest("Secret", text));
        assert!(!shown.contains("hunter2") && !shown.contains("aHVudGVyMg=="), "{shown}");
        assert!(shown.contains("password") && shown.contains("token"), "keys stay: {shown}");
    }

    #[test]
    fn namespaced_objects_go_to_the_stage_namespace_and_others_are_refused() {
        let rt = ResourceType {
            api: ApiResource {
                group: "".into(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
            },
            namespaced: true,
        };
        let namespaces = Namespaces { stage: "shop-dev".into(), allowed: BTreeSet::from(["monitoring".to_owned()]) };
        let plain = manifest("ConfigMap", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n");
        let desired =
            Desired::new("dev", parse("dev", &plain).unwrap(), rt.clone(), &namespaces, "applyset-x-v1", "promote")
                .unwrap();
        assert_eq!(desired.body["metadata"]["namespace"], "shop-dev");
        assert_eq!(desired.body["metadata"]["labels"][PART_OF], "applyset-x-v1");
        let elsewhere = manifest(
            "ConfigMap",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: kube-system\n",
        );
        let error = Desired::new("dev", parse("dev", &elsewhere).unwrap(), rt.clone(), &namespaces, "x", "promote")
            .unwrap_err();
        assert!(error.to_string().contains("allow_namespaces"), "{error}");
        let allowed =
            manifest("ConfigMap", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: monitoring\n");
        let desired = Desired::new("dev", parse("dev", &allowed).unwrap(), rt, &namespaces, "x", "promote").unwrap();
        assert_eq!(desired.reference.namespace.as_deref(), Some("monitoring"));
    }
}
