//! The `coordination.k8s.io/v1` Lease object as the lock reads and writes it, without `k8s-openapi`'s
//! typed structs (the library picks no Kubernetes version): a `DynamicObject` whose `spec` is read and set
//! field by field.

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

/// The Lease resource.
pub(super) fn lease_resource() -> ApiResource {
    ApiResource {
        group: "coordination.k8s.io".into(),
        version: "v1".into(),
        api_version: "coordination.k8s.io/v1".into(),
        kind: "Lease".into(),
        plural: "leases".into(),
    }
}

/// The Leases of one namespace.
pub(super) fn leases(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &lease_resource())
}

/// A Lease as read from the server.
#[derive(Debug, Clone)]
pub(super) struct ObservedLease {
    /// The object, to write back with its resourceVersion as the precondition.
    pub(super) object: DynamicObject,
}

impl ObservedLease {
    pub(super) fn new(object: DynamicObject) -> Self {
        ObservedLease { object }
    }

    fn spec(&self) -> Option<&Value> {
        self.object.data.get("spec")
    }

    fn text(&self, field: &str) -> Option<&str> {
        self.spec().and_then(|spec| spec.get(field)).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// The object's resourceVersion: it changes with every write, a renewal included.
    pub(super) fn resource_version(&self) -> &str {
        self.object.metadata.resource_version.as_deref().unwrap_or_default()
    }

    /// Who holds it; `None` when it was released.
    pub(super) fn holder(&self) -> Option<&str> {
        self.text("holderIdentity")
    }

    /// When the current holder took it.
    pub(super) fn acquire_time(&self) -> Option<&str> {
        self.text("acquireTime")
    }

    /// When the holder last renewed it.
    pub(super) fn renew_time(&self) -> Option<&str> {
        self.text("renewTime")
    }

    /// How long the holder promised to renew within, in seconds (at least 1).
    pub(super) fn duration_seconds(&self) -> i64 {
        self.spec().and_then(|s| s.get("leaseDurationSeconds")).and_then(Value::as_i64).unwrap_or(1).max(1)
    }

    /// How many times it changed hands: the fencing token of its holder.
    pub(super) fn transitions(&self) -> u64 {
        self.spec().and_then(|s| s.get("leaseTransitions")).and_then(Value::as_u64).unwrap_or(0)
    }

    /// The object taken by `holder` at `now`, one transition later; `None` if the count cannot grow.
    pub(super) fn taken_by(&self, holder: &str, duration_seconds: i64, now: DateTime<Utc>) -> Option<DynamicObject> {
        let transitions = self.transitions().checked_add(1).filter(|t| i64::try_from(*t).is_ok())?;
        let mut object = self.object.clone();
        let time = micro_time(now);
        object.data["spec"] = json!({
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": time,
            "renewTime": time,
            "leaseTransitions": transitions,
        });
        Some(object)
    }

    /// The object renewed at `now`.
    pub(super) fn renewed(&self, now: DateTime<Utc>) -> DynamicObject {
        let mut object = self.object.clone();
        if !object.data["spec"].is_object() {
            object.data["spec"] = json!({});
        }
        object.data["spec"]["renewTime"] = json!(micro_time(now));
        object
    }

    /// The object released: no holder, the transition count kept (so tokens keep growing).
    pub(super) fn released(&self) -> DynamicObject {
        let mut object = self.object.clone();
        let transitions = self.transitions();
        object.data["spec"] = json!({ "leaseTransitions": transitions });
        object
    }
}

/// A new Lease named `name`, held by `holder` from `now`: the first transition.
pub(super) fn new_lease(name: &str, holder: &str, duration_seconds: i64, now: DateTime<Utc>) -> DynamicObject {
    let mut object = DynamicObject::new(name, &lease_resource());
    let time = micro_time(now);
    object.metadata.labels = Some([("app.kubernetes.io/managed-by".to_owned(), "promote".to_owned())].into());
    object.data = json!({
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": time,
            "renewTime": time,
            "leaseTransitions": 1,
        }
    });
    object
}

/// A `MicroTime` as the API writes it.
fn micro_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}
