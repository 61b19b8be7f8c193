//! Pruning: after a successful apply, members of the stage's ApplySet that left the bundle are deleted,
//! in reverse install order. Only objects that still carry this stage's `part-of` label are candidates (they
//! were found by that label), each is deleted with a uid precondition (an object recreated since by someone
//! else is left alone), and Namespaces and CRDs are kept unless the stage opts in: deleting them deletes
//! everything in them.

use kube::Client;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use promote_core::error::Result;
use serde_json::Value;

use super::builder::Settings;
use super::objects::{ObjectRef, ResourceType};
use crate::error::{from_kube, is_not_found, status};
use crate::retry::retrying;

/// A live member of the ApplySet.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) rt: ResourceType,
    pub(crate) reference: ObjectRef,
    pub(crate) object: Value,
}

impl Member {
    pub(crate) fn uid(&self) -> &str {
        self.object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
    }
}

/// Whether the stage lets `member` be pruned.
pub(crate) fn may_prune(settings: &Settings, member: &Member) -> bool {
    let group_kind = &member.reference.group_kind;
    if group_kind.is_namespace() {
        return settings.prune_namespaces;
    }
    if group_kind.is_crd() {
        return settings.prune_crds;
    }
    true
}

/// Deletes `member` (background propagation: its dependents go after it). `false` when it was already gone
/// or is another object now.
pub(crate) async fn delete(client: &Client, member: &Member) -> Result<bool> {
    let api = member.rt.api(client, member.reference.namespace.as_deref());
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions { uid: Some(member.uid().to_owned()), resource_version: None }),
        ..DeleteParams::default()
    };
    match retrying(|| api.delete(&member.reference.name, &params)).await {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) => Ok(false),
        // The uid precondition failed: the name belongs to a new object now.
        Err(error) if status(&error).is_some_and(|s| s.code == 409) => Ok(false),
        Err(error) => Err(from_kube(error, &format!("prune {}", member.reference))),
    }
}
