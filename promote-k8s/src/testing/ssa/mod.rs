//! Server-side apply field ownership for the fake API server, following
//! <https://kubernetes.io/docs/reference/using-api/server-side-apply/> and the structured-merge-diff rules the real
//! API server uses.
//!
//! - **Field sets.** Each manager owns a set of field paths, kept in `metadata.managedFields` in the `FieldsV1`
//!   format the API returns (`f:spec`, `k:{"name":"web"}`, `v:"value"`, `.`), one entry per identity: an applier
//!   is one identity (`manager`, `Apply`), an updater one per `apiVersion` (`manager`, `Update`, `apiVersion`).
//!   Entries are sorted as the API server sorts them and carry `time` at whole seconds.
//! - **Apply** ([`apply`]). The applier's new set is the set of fields its configuration sets. Merging favours the
//!   configuration: objects merge field by field, list-maps and sets item by item, atomic lists and scalars are
//!   replaced. Fields the applier applied last time and no longer applies are removed when nobody else owns them,
//!   and released (kept, unowned by it) otherwise. Setting a field another manager owns to a different value is a
//!   conflict, unless `force` moves the field to the applier; setting it to the same value shares it.
//! - **Other writes** ([`record_update`], [`record_status_update`]). Fields a write adds or changes move to its
//!   manager (operation `Update`); other managers lose them, and every manager loses the fields the write removes.
//!   A write never conflicts.
//! - `apiVersion`, `kind`, `metadata.name`, `metadata.namespace`, `metadata.uid`, `metadata.resourceVersion`,
//!   `metadata.generation`, `metadata.creationTimestamp` and `metadata.managedFields` are never owned. For the
//!   built-in kinds with a status subresource, writes to the object itself neither take nor change `status`.
//! - Which lists are list-maps or sets and which maps are atomic comes from the table in the `schema` module;
//!   every other list is atomic and every other object a struct, as for a custom resource without
//!   `x-kubernetes-*` markers.
//!
//! Not emulated: conversion between API versions (each manager's set is kept as written), defaulting (the caller
//! defaults; removed fields are not reset to defaults here), the `ancient-changes` cap of ten Update entries, the
//! `kubectl.kubernetes.io/last-applied-configuration` upgrade path from client-side apply, and validation of the
//! applied configuration: where the API server would refuse a list (an item without any key field, duplicate
//! keys), that list is treated as atomic, and unreadable `managedFields` are treated as empty. `null` values in a
//! configuration are stored as sent (the typed API server would drop and default them for built-in kinds).

mod fieldset;
mod managed;
mod merge;
mod schema;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use fieldset::{FieldSet, PathElement, display_path};
use managed::{Entry, ManagedFields, ManagerId, entry_time};
use schema::Schema;

/// Which kind of write a manager made (managedFields `operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Operation {
    /// A server-side apply (`PATCH` with `application/apply-patch+yaml`).
    Apply,
    /// Any other write: create, update (`PUT`), or a non-apply patch.
    Update,
}

impl Operation {
    /// The name used in `managedFields[].operation`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// A field-ownership conflict: another manager owns a field this apply sets to a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The manager that owns the field (`managedFields[].manager`).
    pub(crate) manager: String,
    /// The field, as the API server prints it: `.spec.replicas`,
    /// `.spec.template.spec.containers[name="web"].image`.
    pub(crate) field: String,
    /// How the owner wrote the field: an `Update` owner is named with its `apiVersion` in messages.
    pub(crate) operation: Operation,
    /// The `apiVersion` of an `Update` owner (empty for an applier).
    pub(crate) api_version: String,
    /// The subresource the owner wrote through (`status`), empty for the object itself.
    pub(crate) subresource: String,
}

impl Conflict {
    /// The owner as the API server names it: `"kubectl"`, `"kubectl-edit" using apps/v1`,
    /// `"kube-controller-manager" with subresource "status" using apps/v1`.
    pub(crate) fn owner(&self) -> String {
        let mut owner = quote(&self.manager);
        if !self.subresource.is_empty() {
            owner = format!("{owner} with subresource {}", quote(&self.subresource));
        }
        if self.operation == Operation::Update {
            owner = format!("{owner} using {}", self.api_version);
        }
        owner
    }

    /// The `message` of this conflict's `FieldManagerConflict` cause in the 409 Status:
    /// `conflict with "kubectl-edit" using apps/v1` (the cause's `field` is [`Conflict::field`]).
    pub(crate) fn cause_message(&self) -> String {
        format!("conflict with {}", self.owner())
    }
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

/// The `message` of the 409 Status the API server returns for these conflicts, e.g.
/// `Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas`.
pub(crate) fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!("Apply failed with 1 conflict: {}: {}", only.cause_message(), only.field);
    }
    let mut lines = Vec::new();
    let mut current_owner = None;
    for conflict in conflicts {
        let owner = conflict.owner();
        if current_owner.as_ref() != Some(&owner) {
            lines.push(format!("conflicts with {owner}:"));
            current_owner = Some(owner);
        }
        lines.push(format!("- {}", conflict.field));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

/// Server-side apply of `config` (the applied configuration, as JSON) by `manager` onto `live` (None when the
/// object does not exist yet). `live` holds `metadata.managedFields` (fieldsV1 format, as the real API returns
/// it). Returns the new object, with metadata.managedFields updated, or the conflicts when `force` is false.
/// Follows <https://kubernetes.io/docs/reference/using-api/server-side-apply/>: merge by field, lists merged by
/// their key (`x-kubernetes-list-map-keys`) where the schema says so, fields the manager applied before and no
/// longer applies are removed unless another manager owns them (then they are released, not deleted).
///
/// Conflicts come sorted by owner, then by field. An apply that changes nothing (same object, same ownership)
/// returns `live` with its `managedFields` untouched, times included, as the API server does.
pub(crate) fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: DateTime<Utc>,
) -> Result<Value, Vec<Conflict>> {
    apply_to(Target::Object, live, config, manager, force, now)
}

/// Server-side apply through the `/status` subresource: like [`apply`], but only `config.status` is applied and
/// owned, and the applier's entry carries `subresource: status`.
pub(crate) fn apply_status(
    live: &Value,
    config: &Value,
    manager: &str,
    force: bool,
    now: DateTime<Utc>,
) -> Result<Value, Vec<Conflict>> {
    apply_to(Target::Status, Some(live), config, manager, force, now)
}

fn apply_to(
    target: Target,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: DateTime<Utc>,
) -> Result<Value, Vec<Conflict>> {
    let api_version = text_field(config, live, "apiVersion");
    let schema = Schema::for_kind(&api_version, &text_field(config, live, "kind"));
    let config = target.applicable_config(config, &schema);
    let before = live.and_then(|live| ManagedFields::read(live).ok()).unwrap_or_default();
    let live_object = live.map_or_else(|| json!({}), without_managed_fields);
    let mut merged = merge::merge(&live_object, &config, &schema);

    let applier = ManagerId { subresource: target.subresource().to_owned(), ..ManagerId::applier(manager) };
    let applied = target.tracked(&schema, &merge::applied_fields(&config, &schema));
    if let Some(previous) = before.get(&applier) {
        // Fields applied last time and not now go, unless someone (this apply included) still owns them.
        let owned =
            before.entries.iter().filter(|e| e.id != applier).fold(applied.clone(), |all, e| all.union(&e.fields));
        let abandoned =
            merge::with_named_fields(&previous.fields, &schema).difference(&merge::with_named_fields(&owned, &schema));
        merge::remove(&mut merged, &abandoned, &schema);
    }

    let comparison = merge::compare(&live_object, &merged, &schema).filtered(|set| target.tracked(&schema, set));
    let changed = comparison.changed();
    let mut conflicts: Vec<(ManagerId, Vec<PathElement>)> = Vec::new();
    for entry in before.entries.iter().filter(|e| e.id != applier) {
        conflicts.extend(entry.fields.intersection(&changed).paths().into_iter().map(|path| (entry.id.clone(), path)));
    }
    if !force && !conflicts.is_empty() {
        conflicts.sort();
        return Err(conflicts.into_iter().map(|(owner, path)| conflict(owner, &path)).collect());
    }

    let mut after = before.clone();
    for entry in after.entries.iter_mut().filter(|e| e.id != applier) {
        entry.fields = entry.fields.difference(&changed).difference(&comparison.removed);
    }
    after.put(Entry { id: applier, api_version, time: Some(entry_time(now)), fields: without_identity(&applied) });
    after.drop_empty();
    Ok(finish(&live_object, merged, &before, after))
}

/// Ownership bookkeeping for a non-apply write (POST, PUT, merge patch) by `manager`: `new` is the object
/// after the write; fields whose value changed (or were added) relative to `old` move to `manager` with
/// operation Update (and are removed from other managers' sets). Returns `new` with managedFields set.
///
/// As on the API server: `managedFields` sent in `new` replace the stored ones when they are non-empty and valid,
/// `[{}]` clears them before the write is recorded, and anything else keeps those of `old`. A create is compared
/// with the kind's empty object, so the creator owns every field it set.
pub(crate) fn record_update(old: Option<&Value>, new: Value, manager: &str, now: DateTime<Utc>) -> Value {
    let sent = match ManagedFields::read(&new) {
        _ if ManagedFields::is_reset_request(&new) => Some(ManagedFields::default()),
        Ok(sent) if !sent.entries.is_empty() => Some(sent),
        _ => None,
    };
    record(Target::Object, old, new, sent, manager, now)
}

/// Ownership bookkeeping for a write through the `/status` subresource by `manager`: like [`record_update`], but
/// only `status` is tracked, the entry carries `subresource: status`, and `managedFields` sent in `new` are
/// ignored (the API server keeps those of `old` for subresources).
pub(crate) fn record_status_update(old: &Value, new: Value, manager: &str, now: DateTime<Utc>) -> Value {
    record(Target::Status, Some(old), new, None, manager, now)
}

fn record(
    target: Target,
    old: Option<&Value>,
    new: Value,
    sent: Option<ManagedFields>,
    manager: &str,
    now: DateTime<Utc>,
) -> Value {
    let api_version = text_field(&new, old, "apiVersion");
    let schema = Schema::for_kind(&api_version, &text_field(&new, old, "kind"));
    let before = old.and_then(|old| ManagedFields::read(old).ok()).unwrap_or_default();
    let old_object = old.map_or_else(|| schema.empty_object().clone(), without_managed_fields);
    let new_object = without_managed_fields(&new);
    let comparison = merge::compare(&old_object, &new_object, &schema).filtered(|set| target.tracked(&schema, set));
    let updater = ManagerId::updater(manager, &api_version, target.subresource());
    let after = record_write(sent.unwrap_or_else(|| before.clone()), &comparison, updater, &api_version, now);
    finish(&old_object, new_object, &before, after)
}

/// What a write goes to: the object itself, or its `/status` subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Object,
    Status,
}

impl Target {
    /// `managedFields[].subresource` of the writer's entry.
    fn subresource(self) -> &'static str {
        match self {
            Target::Object => "",
            Target::Status => "status",
        }
    }

    /// The part of `set` a write to this target can own or change: everything but `status` for a kind that keeps
    /// it in the subresource, only `status` through the subresource.
    fn tracked(self, schema: &Schema, set: &FieldSet) -> FieldSet {
        let status = PathElement::Field("status".to_owned());
        match self {
            Target::Object if schema.has_status_subresource() => set.without_subtree(&status),
            Target::Object => set.clone(),
            Target::Status => set.only_subtree(&status),
        }
    }

    /// The configuration without what apply ignores: server-set metadata; for the object, `status` of kinds that
    /// keep it in a subresource; for the subresource, everything but the object's identity and `status`.
    fn applicable_config(self, config: &Value, schema: &Schema) -> Value {
        let mut config = config.clone();
        if let Some(metadata) = config.get_mut("metadata").and_then(Value::as_object_mut) {
            let server_set = ["managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"];
            metadata.retain(|name, _| !server_set.contains(&name.as_str()));
        }
        let Some(fields) = config.as_object_mut() else { return config };
        match self {
            Target::Object if schema.has_status_subresource() => {
                fields.retain(|name, _| name != "status");
            }
            Target::Object => {}
            Target::Status => {
                fields.retain(|name, _| matches!(name.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
                if let Some(metadata) = fields.get_mut("metadata").and_then(Value::as_object_mut) {
                    metadata.retain(|name, _| matches!(name.as_str(), "name" | "namespace"));
                }
            }
        }
        config
    }
}

/// Moves what a non-apply write changed to `updater`, and takes what it removed from everyone.
fn record_write(
    mut managed: ManagedFields,
    comparison: &merge::Comparison,
    updater: ManagerId,
    api_version: &str,
    now: DateTime<Utc>,
) -> ManagedFields {
    let changed = comparison.changed();
    for entry in &mut managed.entries {
        entry.fields = entry.fields.difference(&changed).difference(&comparison.removed);
    }
    let taken = without_identity(&changed);
    // An entry is created or touched only when the write took fields, so its time says when it last did.
    if !taken.is_empty() {
        let previous = managed.get(&updater).map(|entry| entry.fields.clone()).unwrap_or_default();
        let fields = previous.union(&taken);
        managed.put(Entry { id: updater, api_version: api_version.to_owned(), time: Some(entry_time(now)), fields });
    }
    managed.drop_empty();
    managed
}

/// Writes `after` into the new object, or keeps `before` (times included) when neither the object nor the
/// ownership changed, so a no-op write leaves the object as it was.
fn finish(old_object: &Value, mut new_object: Value, before: &ManagedFields, after: ManagedFields) -> Value {
    let unchanged = new_object == *old_object && after.same_ownership(before);
    if unchanged { before } else { &after }.write(&mut new_object);
    new_object
}

fn conflict(owner: ManagerId, path: &[PathElement]) -> Conflict {
    Conflict {
        manager: owner.manager,
        field: display_path(path),
        operation: owner.operation,
        api_version: owner.api_version,
        subresource: owner.subresource,
    }
}

/// `name` from `primary`, else from `fallback` (an apply configuration should carry `apiVersion` and `kind`, but the
/// live object knows them too).
fn text_field(primary: &Value, fallback: Option<&Value>, name: &str) -> String {
    let from = |object: &Value| object.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    from(primary).or_else(|| fallback.and_then(from)).unwrap_or_default()
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.retain(|name, _| name != "managedFields");
    }
    object
}

/// A set without the fields nobody owns: the object's identity and server-set metadata.
fn without_identity(set: &FieldSet) -> FieldSet {
    let field = |name: &str| PathElement::Field(name.to_owned());
    let mut identity = FieldSet::default();
    for top in ["apiVersion", "kind", "metadata"] {
        identity.insert(&[field(top)]);
    }
    let metadata = [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ];
    for name in metadata {
        identity.insert(&[field("metadata"), field(name)]);
    }
    set.difference(&identity)
}
