//! `metadata.managedFields`: one entry per manager identity, read from and written back to an object the way the
//! API server does it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::Operation;
use super::fieldset::{FieldSet, FieldsV1Error};

/// Who owns a set of fields. Appliers are one identity whatever `apiVersion` they apply; updaters are one per
/// `apiVersion` (this is how the API server keys `managedFields`). `subresource` is empty for the object itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ManagerId {
    pub(super) manager: String,
    pub(super) operation: Operation,
    pub(super) api_version: String,
    pub(super) subresource: String,
}

impl ManagerId {
    /// The identity of `manager` applying.
    pub(super) fn applier(manager: &str) -> ManagerId {
        ManagerId {
            manager: manager.to_owned(),
            operation: Operation::Apply,
            api_version: String::new(),
            subresource: String::new(),
        }
    }

    /// The identity of `manager` writing through `api_version` without apply.
    pub(super) fn updater(manager: &str, api_version: &str, subresource: &str) -> ManagerId {
        ManagerId {
            manager: manager.to_owned(),
            operation: Operation::Update,
            api_version: api_version.to_owned(),
            subresource: subresource.to_owned(),
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) id: ManagerId,
    /// The `apiVersion` the fields were last written through.
    pub(super) api_version: String,
    /// When the entry last took fields, as written in the entry (`2024-05-01T10:00:00Z`).
    pub(super) time: Option<String>,
    pub(super) fields: FieldSet,
}

impl Entry {
    fn seconds(&self) -> i64 {
        let parsed = self.time.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        parsed.map_or(0, |t| t.timestamp())
    }
}

/// All the entries of one object, one per identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ManagedFields {
    pub(super) entries: Vec<Entry>,
}

impl ManagedFields {
    /// Reads `metadata.managedFields` from an object (no entries when it has none). Fails on an entry the API
    /// server would refuse: an unknown operation, no apiVersion, a fieldsType other than `FieldsV1`, or a
    /// malformed `fieldsV1`.
    pub(super) fn read(object: &Value) -> Result<ManagedFields, FieldsV1Error> {
        let Some(list) = object.pointer("/metadata/managedFields").filter(|v| !v.is_null()) else {
            return Ok(ManagedFields::default());
        };
        let Value::Array(list) = list else {
            return Err(FieldsV1Error("metadata.managedFields must be a list".to_owned()));
        };
        let mut managed = ManagedFields::default();
        for (i, raw) in list.iter().enumerate() {
            let entry = read_entry(raw).map_err(|FieldsV1Error(why)| FieldsV1Error(format!("entry {i}: {why}")))?;
            managed.entries.retain(|known| known.id != entry.id);
            managed.entries.push(entry);
        }
        Ok(managed)
    }

    /// True when `metadata.managedFields` is `[{}]`: the documented way to clear every entry with a non-apply write.
    pub(super) fn is_reset_request(object: &Value) -> bool {
        object
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .is_some_and(|list| list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty))
    }

    /// The entry of `id`, if any.
    pub(super) fn get(&self, id: &ManagerId) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.id == *id)
    }

    /// Replaces (or adds) the entry of `entry.id`.
    pub(super) fn put(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|known| known.id == entry.id) {
            Some(known) => *known = entry,
            None => self.entries.push(entry),
        }
    }

    /// Drops entries that own nothing (the API server deletes them).
    pub(super) fn drop_empty(&mut self) {
        self.entries.retain(|entry| !entry.fields.is_empty());
    }

    /// Same identities owning the same fields through the same versions (times may differ).
    pub(super) fn same_ownership(&self, other: &ManagedFields) -> bool {
        self.entries.len() == other.entries.len()
            && self.entries.iter().all(|entry| {
                other.get(&entry.id).is_some_and(|o| o.fields == entry.fields && o.api_version == entry.api_version)
            })
    }

    /// Writes the entries into `object.metadata.managedFields`, sorted as the API server sorts them (Apply before
    /// Update, then by time, manager, apiVersion, subresource); no entries removes the field.
    pub(super) fn write(&self, object: &mut Value) {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| {
            (a.id.operation, a.seconds(), &a.id.manager, &a.api_version, &a.id.subresource).cmp(&(
                b.id.operation,
                b.seconds(),
                &b.id.manager,
                &b.api_version,
                &b.id.subresource,
            ))
        });
        let list: Vec<Value> = entries.into_iter().map(entry_json).collect();
        let Some(metadata) = object.as_object_mut().map(|o| o.entry("metadata").or_insert_with(|| Map::new().into()))
        else {
            return;
        };
        let Some(metadata) = metadata.as_object_mut() else { return };
        if list.is_empty() {
            metadata.retain(|name, _| name != "managedFields");
        } else {
            metadata.insert("managedFields".to_owned(), Value::Array(list));
        }
    }
}

/// The `time` of an entry written at `now`: RFC 3339 in UTC with whole seconds, as `metav1.Time` encodes it.
pub(super) fn entry_time(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn entry_json(entry: &Entry) -> Value {
    // Field order follows ManagedFieldsEntry in k8s.io/apimachinery.
    let mut out = Map::new();
    out.insert("manager".to_owned(), entry.id.manager.clone().into());
    out.insert("operation".to_owned(), entry.id.operation.as_str().into());
    out.insert("apiVersion".to_owned(), entry.api_version.clone().into());
    if let Some(time) = &entry.time {
        out.insert("time".to_owned(), time.clone().into());
    }
    out.insert("fieldsType".to_owned(), "FieldsV1".into());
    out.insert("fieldsV1".to_owned(), entry.fields.to_fields_v1());
    if !entry.id.subresource.is_empty() {
        out.insert("subresource".to_owned(), entry.id.subresource.clone().into());
    }
    Value::Object(out)
}

fn read_entry(raw: &Value) -> Result<Entry, FieldsV1Error> {
    let text = |name: &str| raw.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let operation = match text("operation").as_str() {
        "Apply" => Operation::Apply,
        "Update" => Operation::Update,
        _ => return Err(FieldsV1Error("operation must be `Apply` or `Update`".to_owned())),
    };
    let api_version = text("apiVersion");
    if api_version.is_empty() {
        return Err(FieldsV1Error("apiVersion must not be empty".to_owned()));
    }
    if text("fieldsType") != "FieldsV1" {
        return Err(FieldsV1Error(format!("invalid fieldsType {:?}", text("fieldsType"))));
    }
    let fields = match raw.get("fieldsV1") {
        None | Some(Value::Null) => FieldSet::default(),
        Some(fields) => FieldSet::from_fields_v1(fields)?,
    };
    let id = match operation {
        Operation::Apply => ManagerId { subresource: text("subresource"), ..ManagerId::applier(&text("manager")) },
        Operation::Update => ManagerId::updater(&text("manager"), &api_version, &text("subresource")),
    };
    let time = raw.get("time").and_then(Value::as_str).map(str::to_owned);
    Ok(Entry { id, api_version, time, fields })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The multi-manager ConfigMap from https://kubernetes.io/docs/reference/using-api/server-side-apply/ ,
    /// section "Operations in scope for field management" (times normalized to whole seconds).
    fn documented_config_map() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "test-cm",
                "namespace": "default",
                "labels": {"test-label": "test"},
                "managedFields": [
                    {
                        "manager": "kubectl",
                        "operation": "Apply",
                        "apiVersion": "v1",
                        "time": "2019-03-30T15:00:00Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}}
                    },
                    {
                        "manager": "kube-controller-manager",
                        "operation": "Update",
                        "apiVersion": "v1",
                        "time": "2019-03-30T16:00:00Z",
                        "fieldsType": "FieldsV1",
                        "fieldsV1": {"f:data": {"f:key": {}}}
                    }
                ]
            },
            "data": {"key": "new value"}
        })
    }

    #[test]
    fn documented_entries_read_and_write_back_unchanged() {
        let object = documented_config_map();
        let managed = ManagedFields::read(&object).unwrap();
        assert_eq!(managed.entries.len(), 2);
        assert_eq!(managed.entries[1].id, ManagerId::updater("kube-controller-manager", "v1", ""));
        let mut written = object.clone();
        written["metadata"]["managedFields"] = json!("placeholder");
        managed.write(&mut written);
        assert_eq!(written, object);
    }

    #[test]
    fn entries_the_api_server_refuses_are_errors() {
        let mut object = documented_config_map();
        object["metadata"]["managedFields"][0]["operation"] = json!("Patch");
        assert!(ManagedFields::read(&object).is_err());
        let mut object = documented_config_map();
        object["metadata"]["managedFields"][1]["fieldsType"] = json!("FieldsV2");
        assert!(ManagedFields::read(&object).is_err());
        assert!(ManagedFields::is_reset_request(&json!({"metadata": {"managedFields": [{}]}})));
        assert!(!ManagedFields::is_reset_request(&json!({"metadata": {"managedFields": []}})));
    }
}
