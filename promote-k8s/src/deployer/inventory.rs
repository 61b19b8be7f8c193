//! The stage's inventory, kept the way kubectl's ApplySet (KEP-3659) keeps it, so that kubectl and other
//! tools can see who owns what: a parent `Secret` in the stage's namespace, labelled
//! `applyset.kubernetes.io/id`, annotated with the tooling (`promote/v1`), the group-kinds and the extra
//! namespaces its members may be in; every member labelled `applyset.kubernetes.io/part-of: <id>`.
//!
//! The parent also holds (in its data, as JSON) what the last successful apply applied: the bundle's hash,
//! and per object its identity, uid, the hash of what was applied, and its rendering with secrets masked.
//! No secret value is stored there: a `Secret` member's data is redacted in its rendering. The parent is a
//! Secret rather than a ConfigMap so that the hashes of secret-holding objects are readable only by those
//! who may read Secrets.

use std::collections::BTreeSet;

use base64::Engine as _;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use promote_core::error::{Error, Resource, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::objects::{GroupKind, ObjectRef};
use crate::error::{from_kube, persistent};
use crate::retry::retrying;

/// The label every member carries: the ApplySet's id.
pub(crate) const PART_OF: &str = "applyset.kubernetes.io/part-of";
/// The label the parent carries: its id.
const ID: &str = "applyset.kubernetes.io/id";
/// Which tool manages the ApplySet.
const TOOLING: &str = "applyset.kubernetes.io/tooling";
/// What `TOOLING` says for promote's ApplySets.
pub(crate) const TOOLING_VALUE: &str = "promote/v1";
/// The group-kinds members may be of.
const CONTAINS_GROUP_KINDS: &str = "applyset.kubernetes.io/contains-group-kinds";
/// Namespaces other than the parent's that members may be in.
const ADDITIONAL_NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";
/// The stage the parent belongs to (promote's own annotation).
const STAGE: &str = "promote/stage";
/// The key of the parent's data that holds the inventory.
const INVENTORY_KEY: &str = "inventory";

/// The ApplySet of one stage: its parent Secret and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApplySet {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) id: String,
}

impl ApplySet {
    /// The ApplySet of `stage`, whose parent lives in `namespace`. Stage names are DNS labels, so the name is
    /// a valid Secret name.
    pub(crate) fn for_stage(stage: &str, namespace: &str) -> Self {
        let name = format!("promote-{stage}-applyset");
        // KEP-3659: base64url(sha256("<name>.<namespace>.<kind>.<group>")), the group of Secret being empty.
        let digest = Sha256::digest(format!("{name}.{namespace}.Secret.").as_bytes());
        let id = format!("applyset-{}-v1", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest));
        ApplySet { namespace: namespace.to_owned(), name, id }
    }

    /// `the ApplySet parent Secret shop-dev/promote-dev-applyset`, for messages.
    pub(crate) fn describe(&self) -> String {
        format!("the ApplySet parent Secret {}/{}", self.namespace, self.name)
    }

    /// The label selector for members.
    pub(crate) fn member_selector(&self) -> String {
        format!("{PART_OF}={}", self.id)
    }

    fn api(&self, client: &Client) -> Api<kube::api::DynamicObject> {
        let secret = kube::discovery::ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Secret".into(),
            plural: "secrets".into(),
        };
        Api::namespaced_with(client.clone(), &self.namespace, &secret)
    }
}

/// What the last successful apply applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Inventory {
    pub(crate) format: u32,
    pub(crate) stage: String,
    pub(crate) bundle_hash: String,
    pub(crate) objects: Vec<Record>,
}

/// One applied object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Record {
    /// Its key in the bundle (`Deployment/web`).
    pub(crate) key: String,
    pub(crate) template: String,
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) name: String,
    /// The namespace the manifest named (for its key), not where it went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) manifest_namespace: Option<String>,
    /// Where it went (`None` when cluster-scoped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<String>,
    pub(crate) uid: String,
    /// The hash of what was applied.
    pub(crate) applied_hash: String,
    /// Whether its content is secret.
    pub(crate) secret: bool,
    /// Its rendering with secrets masked.
    pub(crate) display: String,
}

impl Record {
    pub(crate) fn reference(&self) -> ObjectRef {
        let (group, _) = super::objects::split_api_version(&self.api_version);
        ObjectRef {
            group_kind: GroupKind::new(group, &self.kind),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// The parent's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Parent {
    /// The group-kinds members may be of.
    pub(crate) group_kinds: BTreeSet<GroupKind>,
    /// Namespaces other than the parent's that members may be in.
    pub(crate) additional_namespaces: BTreeSet<String>,
    /// What the last successful apply applied (absent while the first apply runs).
    pub(crate) inventory: Option<Inventory>,
}

impl Parent {
    /// Every namespace members may be in.
    pub(crate) fn namespaces(&self, applyset: &ApplySet) -> BTreeSet<String> {
        let mut namespaces = self.additional_namespaces.clone();
        namespaces.insert(applyset.namespace.clone());
        namespaces
    }
}

/// Reads the parent; `None` when the stage has none yet.
pub(crate) async fn read(client: &Client, applyset: &ApplySet, stage: &str) -> Result<Option<Parent>> {
    let api = applyset.api(client);
    let found = retrying(|| api.get_opt(&applyset.name))
        .await
        .map_err(|e| from_kube(e, &format!("read {}", applyset.describe())))?;
    let Some(secret) = found else { return Ok(None) };
    let object = serde_json::to_value(&secret).unwrap_or_default();
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
    let labels = object.pointer("/metadata/labels");
    let tooling = object.pointer("/metadata/annotations").and_then(|a| a.get(TOOLING)).and_then(Value::as_str);
    if labels.and_then(|l| l.get(ID)).and_then(Value::as_str) != Some(applyset.id.as_str())
        || tooling != Some(TOOLING_VALUE)
    {
        return Err(Error::AlreadyExists {
            resource: Resource::Object,
            name: format!("Secret {}/{}", applyset.namespace, applyset.name),
            detail: format!(
                "it is not promote's ApplySet parent for stage {stage} (its {TOOLING} is {}); promote will not take it over",
                tooling.unwrap_or("not set")
            ),
        });
    }
    let annotation = |key: &str| {
        object.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str).unwrap_or_default()
    };
    let group_kinds = annotation(CONTAINS_GROUP_KINDS).split(',').filter_map(GroupKind::parse).collect();
    let additional_namespaces = annotation(ADDITIONAL_NAMESPACES)
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    let inventory = match text(&format!("/data/{INVENTORY_KEY}")) {
        None => None,
        Some(encoded) => {
            let damaged = |what: &str| {
                persistent(format!(
                    "{} holds a damaged inventory ({what}); delete its data.{INVENTORY_KEY} key and apply again",
                    applyset.describe()
                ))
            };
            let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| damaged("not base64"))?;
            let inventory: Inventory =
                serde_json::from_slice(&bytes).map_err(|e| damaged(&format!("not the expected JSON: {e}")))?;
            if inventory.stage != stage {
                return Err(damaged(&format!("it belongs to stage {}", inventory.stage)));
            }
            Some(inventory)
        }
    };
    Ok(Some(Parent { group_kinds, additional_namespaces, inventory }))
}

/// Writes the parent (server-side apply, forcing: promote owns it whole).
pub(crate) async fn write(
    client: &Client,
    applyset: &ApplySet,
    stage: &str,
    field_manager: &str,
    parent: &Parent,
) -> Result<()> {
    let mut group_kinds: Vec<String> = parent.group_kinds.iter().map(ToString::to_string).collect();
    group_kinds.sort();
    let mut annotations = json!({
        TOOLING: TOOLING_VALUE,
        CONTAINS_GROUP_KINDS: group_kinds.join(","),
        STAGE: stage,
    });
    if !parent.additional_namespaces.is_empty() {
        annotations[ADDITIONAL_NAMESPACES] =
            json!(parent.additional_namespaces.iter().cloned().collect::<Vec<_>>().join(","));
    }
    let mut body = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": applyset.name, "namespace": applyset.namespace, "labels": {ID: applyset.id}, "annotations": annotations},
        "type": "Opaque",
    });
    if let Some(inventory) = &parent.inventory {
        let json =
            serde_json::to_vec(inventory).map_err(|e| persistent(format!("cannot encode the inventory: {e}")))?;
        body["data"] = json!({INVENTORY_KEY: base64::engine::general_purpose::STANDARD.encode(json)});
    }
    let api = applyset.api(client);
    let params = PatchParams::apply(field_manager).force();
    let patch = Patch::Apply(&body);
    retrying(|| api.patch(&applyset.name, &params, &patch)).await.map(|_| ()).map_err(|error| {
        if crate::error::is_missing_namespace(&error) {
            Error::DeployFailed {
                stage: stage.to_owned(),
                reason: format!(
                    "namespace {} does not exist: create it, add a Namespace object to the bundle, or set \
                         create_namespace: true on the stage's deployer",
                    applyset.namespace
                ),
            }
        } else {
            from_kube(error, &format!("write {}", applyset.describe()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applyset_id_follows_kep_3659() {
        let set = ApplySet::for_stage("dev", "shop-dev");
        assert_eq!(set.name, "promote-dev-applyset");
        let digest = Sha256::digest(b"promote-dev-applyset.shop-dev.Secret.");
        let expected = format!("applyset-{}-v1", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest));
        assert_eq!(set.id, expected);
        assert!(set.id.len() <= 63, "a label value: {}", set.id);
    }
}
