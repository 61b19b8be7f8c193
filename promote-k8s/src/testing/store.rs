//! The object store: one global resourceVersion counter, uid and timestamps, generation rules, and the bounded
//! event history that watches replay from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources::{Catalogue, ResourceType, StorageKey};
use super::status::ApiError;

/// `(namespace, name)`, with an empty namespace for cluster-scoped objects.
pub(crate) type ObjectKey = (String, String);

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the store, kept in the history and broadcast to open watches.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    pub(crate) rv: u64,
    pub(crate) kind: EventType,
    pub(crate) key: StorageKey,
    /// The object after the change (for DELETED: its last state, carrying the deletion's resourceVersion).
    pub(crate) object: Value,
    /// The object before the change, so that selector watches can turn "stopped matching" into DELETED.
    pub(crate) previous: Option<Value>,
}

/// A watch's starting point: the retained events after its resourceVersion and a receiver for what follows.
pub(crate) struct Subscription {
    pub(crate) replay: Vec<Arc<StoredEvent>>,
    pub(crate) live: broadcast::Receiver<Arc<StoredEvent>>,
}

/// Deterministic ids (uids, generated-name suffixes): a splitmix64 sequence, so runs are reproducible.
#[derive(Debug)]
struct IdSource(u64);

impl IdSource {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The alphabet the API server uses for generated names (no vowels, no confusable digits).
const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Everything but metadata and status: what a generation bump is about. Keyed by field name, so that two
/// objects compare equal whatever order their maps keep (serde_json's `preserve_order` keeps insertion order).
fn desired_state(object: &Value) -> BTreeMap<&String, &Value> {
    object
        .as_object()
        .map(|m| m.iter().filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status")).collect())
        .unwrap_or_default()
}

/// The objects of every type, the resourceVersion counter and the watch history.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) catalogue: Catalogue,
    objects: HashMap<StorageKey, BTreeMap<ObjectKey, Value>>,
    rv: u64,
    history: VecDeque<Arc<StoredEvent>>,
    history_limit: usize,
    /// The newest resourceVersion that has left the history; watches from before it get 410 Gone.
    compacted: u64,
    events: broadcast::Sender<Arc<StoredEvent>>,
    ids: IdSource,
}

impl Store {
    pub(crate) fn new(history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(4096);
        Store {
            catalogue: Catalogue::builtin(),
            objects: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            events,
            ids: IdSource(0x5eed),
        }
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(crate) fn new_uid(&mut self) -> String {
        let (a, b) = (self.ids.next(), self.ids.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    /// `n` characters from the generated-name alphabet (5 for `generateName`, like the API server).
    pub(crate) fn random_suffix(&mut self, n: usize) -> String {
        let mut x = self.ids.next();
        (0..n)
            .map(|_| {
                let c = NAME_ALPHABET[(x % NAME_ALPHABET.len() as u64) as usize] as char;
                x /= NAME_ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    pub(crate) fn get(&self, key: &StorageKey, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(key)?.get(&(namespace.to_string(), name.to_string()))
    }

    /// Objects of a type, in one namespace or (with `None`) in all of them, ordered by namespace and name.
    pub(crate) fn list(&self, key: &StorageKey, namespace: Option<&str>) -> Vec<&Value> {
        let Some(objects) = self.objects.get(key) else { return Vec::new() };
        match namespace {
            Some(ns) => objects
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v)
                .collect(),
            None => objects.values().collect(),
        }
    }

    /// Every stored type key (for garbage collection and namespace deletion).
    pub(crate) fn storage_keys(&self) -> Vec<StorageKey> {
        let mut keys: Vec<StorageKey> = self.objects.keys().cloned().collect();
        keys.sort();
        keys
    }

    pub(crate) fn namespace_exists(&self, namespace: &str) -> bool {
        self.get(&namespaces_key(), "", namespace).is_some()
    }

    /// Fills what the server sets on create (uid, creationTimestamp, generation) without storing anything;
    /// used for dry runs and by [`Store::create`].
    pub(crate) fn stamp_new(&mut self, rt: &ResourceType, object: &mut Value, now: DateTime<Utc>) {
        let uid = self.new_uid();
        let meta = object["metadata"].as_object_mut().expect("metadata is an object");
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(timestamp(now)));
        meta.remove("resourceVersion");
        meta.remove("deletionTimestamp");
        if rt.generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
    }

    /// Stores a new object. The caller has validated it and set its name and namespace.
    pub(crate) fn create(
        &mut self,
        rt: &ResourceType,
        mut object: Value,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let (namespace, name) = object_key(&object);
        if rt.namespaced && !self.namespace_exists(&namespace) {
            return Err(ApiError::namespace_not_found(&namespace));
        }
        if self.get(&rt.storage_key(), &namespace, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        self.stamp_new(rt, &mut object, now);
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.entry(rt.storage_key()).or_default().insert((namespace, name), object.clone());
        self.record(rv, EventType::Added, rt.storage_key(), object.clone(), None);
        Ok(object)
    }

    /// The generation `new` gets when it replaces `old`: bumped when anything but metadata and status changed.
    pub(crate) fn next_generation(rt: &ResourceType, old: &Value, new: &mut Value) {
        if !rt.generation {
            return;
        }
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
        let bumped = if desired_state(old) != desired_state(new) { generation + 1 } else { generation };
        new["metadata"]["generation"] = json!(bumped);
    }

    /// Replaces a stored object. Fields the client may not change (uid, creationTimestamp) are kept, the
    /// generation follows the spec, and nothing is written (no new resourceVersion, no event) when the object
    /// is unchanged.
    pub(crate) fn update(&mut self, rt: &ResourceType, mut object: Value) -> Value {
        let (namespace, name) = object_key(&object);
        let key = rt.storage_key();
        let Some(old) = self.get(&key, &namespace, &name).cloned() else {
            return object;
        };
        for field in ["uid", "creationTimestamp", "resourceVersion"] {
            match old["metadata"].get(field) {
                Some(v) => object["metadata"][field] = v.clone(),
                None => {
                    object["metadata"].as_object_mut().map(|m| m.remove(field));
                }
            }
        }
        if let Some(deleted) = old["metadata"].get("deletionTimestamp") {
            object["metadata"]["deletionTimestamp"] = deleted.clone();
        }
        Self::next_generation(rt, &old, &mut object);
        if object == old {
            return old;
        }
        let rv = self.next_rv();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.entry(key.clone()).or_default().insert((namespace, name), object.clone());
        self.record(rv, EventType::Modified, key, object.clone(), Some(old));
        object
    }

    /// Removes an object; the DELETED event carries the deletion's resourceVersion.
    pub(crate) fn remove(&mut self, key: &StorageKey, namespace: &str, name: &str) -> Option<Value> {
        let mut object = self.objects.get_mut(key)?.remove(&(namespace.to_string(), name.to_string()))?;
        let rv = self.next_rv();
        let previous = object.clone();
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.record(rv, EventType::Deleted, key.clone(), object.clone(), Some(previous));
        Some(object)
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, rv: u64, kind: EventType, key: StorageKey, object: Value, previous: Option<Value>) {
        let event = Arc::new(StoredEvent { rv, kind, key, object, previous });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(evicted) = self.history.pop_front() {
                self.compacted = evicted.rv;
            }
        }
        // No receivers is fine: nobody watches.
        let _ = self.events.send(event);
    }

    /// Starts a watch after `from` (a resourceVersion): the retained events newer than it, then live events.
    /// Errors with the oldest retained version when `from` has been compacted away (410 Gone).
    pub(crate) fn subscribe(&self, from: u64) -> Result<Subscription, ApiError> {
        if from < self.compacted {
            return Err(ApiError::expired(from, self.compacted + 1));
        }
        let replay = self.history.iter().filter(|e| e.rv > from).cloned().collect();
        Ok(Subscription { replay, live: self.events.subscribe() })
    }

    /// Live events only, for watches that start with a synthetic listing of current objects.
    pub(crate) fn subscribe_now(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.events.subscribe()
    }
}

pub(crate) fn namespaces_key() -> StorageKey {
    StorageKey { group: String::new(), plural: "namespaces".into() }
}

/// `(namespace, name)` of an object.
pub(crate) fn object_key(object: &Value) -> ObjectKey {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
    (s("/metadata/namespace"), s("/metadata/name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str, data: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns"}, "data": {"k": data}})
    }

    fn setup() -> (Store, ResourceType, ResourceType) {
        let mut store = Store::new(3);
        let ns_type = store.catalogue.by_plural("", "v1", "namespaces").unwrap().clone();
        let cm_type = store.catalogue.by_plural("", "v1", "configmaps").unwrap().clone();
        store.create(&ns_type, json!({"metadata": {"name": "ns"}}), Utc::now()).unwrap();
        (store, ns_type, cm_type)
    }

    #[test]
    fn unchanged_update_writes_nothing_and_history_is_bounded() {
        let (mut store, _, cm_type) = setup();
        let created = store.create(&cm_type, cm("a", "1"), Utc::now()).unwrap();
        let rv = store.resource_version();
        let same = store.update(&cm_type, cm("a", "1"));
        assert_eq!(same, created);
        assert_eq!(store.resource_version(), rv);
        for v in 0..5 {
            store.update(&cm_type, cm("a", &v.to_string()));
        }
        assert!(store.subscribe(rv).is_err(), "compacted versions are gone");
        let sub = store.subscribe(store.resource_version() - 2).unwrap();
        assert_eq!(sub.replay.len(), 2);
    }

    #[test]
    fn missing_namespace_is_not_found() {
        let (mut store, _, cm_type) = setup();
        let mut obj = cm("a", "1");
        obj["metadata"]["namespace"] = json!("nope");
        let err = store.create(&cm_type, obj, Utc::now()).unwrap_err();
        assert_eq!(err.message, "namespaces \"nope\" not found");
        assert_eq!(err.code, 404);
    }
}
