//! Server-side apply as the Kubernetes documentation describes it: each test cites the section of
//! <https://kubernetes.io/docs/reference/using-api/server-side-apply/> it follows, and quotes it where it can.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Value, json};

use super::*;

fn at(hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, hour, 0, 0).single().expect("valid time")
}

fn deployment(spec: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": spec
    })
}

fn container_spec(containers: Value) -> Value {
    json!({"template": {"spec": {"containers": containers}}})
}

/// The `fieldsV1` of `manager`'s entry (any operation), or None.
fn fields_of(object: &Value, manager: &str) -> Option<Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|entry| entry["manager"] == manager)
        .map(|entry| entry["fieldsV1"].clone())
}

fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"].as_array().map_or_else(Vec::new, |entries| {
        entries
            .iter()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap_or_default().to_owned(),
                    e["operation"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    })
}

fn applied(live: Option<&Value>, config: &Value, manager: &str, hour: u32) -> Value {
    match apply(live, config, manager, false, at(hour)) {
        Ok(object) => object,
        Err(conflicts) => panic!("{manager}'s apply conflicted: {}", conflict_message(&conflicts)),
    }
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>
/// Section "Field management": multiple appliers collaborate on one object, each managing the fields it applies.
#[test]
fn two_appliers_of_disjoint_fields_each_own_theirs() {
    let object = applied(None, &deployment(json!({"replicas": 2})), "alice", 1);
    let object = applied(Some(&object), &deployment(json!({"paused": true})), "bob", 2);
    assert_eq!(object["spec"], json!({"replicas": 2, "paused": true}));
    assert_eq!(fields_of(&object, "alice"), Some(json!({"f:spec": {"f:replicas": {}}})));
    assert_eq!(fields_of(&object, "bob"), Some(json!({"f:spec": {"f:paused": {}}})));
    assert_eq!(managers(&object), [("alice".into(), "Apply".into()), ("bob".into(), "Apply".into())]);
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>
/// Section "Field management": "When two or more appliers set a field to the same value, they share ownership of
/// that field." (and "Conflicts", option "Don't overwrite value, become shared manager").
#[test]
fn a_field_applied_with_the_same_value_is_shared() {
    let object = applied(None, &deployment(json!({"replicas": 2})), "alice", 1);
    let object = applied(Some(&object), &deployment(json!({"replicas": 2})), "bob", 2);
    assert_eq!(fields_of(&object, "alice"), Some(json!({"f:spec": {"f:replicas": {}}})));
    assert_eq!(fields_of(&object, "bob"), Some(json!({"f:spec": {"f:replicas": {}}})));
    // "Any subsequent attempt to change the value of the shared field, by any of the appliers, results in a
    // conflict."
    let conflicts = apply(Some(&object), &deployment(json!({"replicas": 3})), "alice", false, at(3)).unwrap_err();
    assert_eq!(conflicts.iter().map(|c| c.manager.as_str()).collect::<Vec<_>>(), ["bob"]);
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts>
/// Section "Conflicts": "A conflict is a special status error that occurs when an Apply operation tries to change a
/// field that another manager also claims to manage."
#[test]
fn applying_a_different_value_to_another_managers_field_conflicts() {
    let spec = json!({"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}});
    let object = applied(None, &deployment(spec), "alice", 1);
    let change = container_spec(json!([{"name": "web", "image": "nginx:2"}]));
    let conflicts = apply(Some(&object), &deployment(change), "bob", false, at(2)).unwrap_err();
    assert_eq!(
        conflicts,
        [Conflict {
            manager: "alice".into(),
            field: r#".spec.template.spec.containers[name="web"].image"#.into(),
            operation: Operation::Apply,
            api_version: String::new(),
            subresource: String::new(),
        }]
    );
    assert_eq!(
        conflict_message(&conflicts),
        r#"Apply failed with 1 conflict: conflict with "alice": .spec.template.spec.containers[name="web"].image"#
    );
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts>
/// Section "Conflicts", option "Overwrite value, become sole manager": forcing "changes the value of the field, and
/// removes the field from all other managers' entries in managedFields".
#[test]
fn force_moves_the_field_to_the_applier() {
    let object = applied(None, &deployment(json!({"replicas": 2, "paused": false})), "alice", 1);
    let object = apply(Some(&object), &deployment(json!({"replicas": 5})), "bob", true, at(2)).unwrap();
    assert_eq!(object["spec"]["replicas"], 5);
    assert_eq!(fields_of(&object, "alice"), Some(json!({"f:spec": {"f:paused": {}}})));
    assert_eq!(fields_of(&object, "bob"), Some(json!({"f:spec": {"f:replicas": {}}})));
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>
/// Section "Field management": "If you remove a field from a manifest and apply that manifest, Server-Side Apply
/// checks if there are any other field managers that also own the field. If the field is not owned by any other
/// field managers, it is either deleted from the live object or reset to its default value".
#[test]
fn a_field_dropped_from_the_only_owners_apply_is_deleted() {
    let object = applied(None, &deployment(json!({"replicas": 2, "paused": true})), "alice", 1);
    let object = applied(Some(&object), &deployment(json!({"replicas": 2})), "alice", 2);
    assert_eq!(object["spec"], json!({"replicas": 2}));
    assert_eq!(fields_of(&object, "alice"), Some(json!({"f:spec": {"f:replicas": {}}})));
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts>
/// Section "Conflicts", option "Don't overwrite value, give up management claim": applying without the field
/// "leaves the value unchanged, and causes the field to be removed from the applier's entry in managedFields" (see
/// also "Transferring ownership between managers").
#[test]
fn a_field_dropped_from_one_of_two_owners_apply_is_released_not_deleted() {
    let object = applied(None, &deployment(json!({"replicas": 2, "paused": true})), "alice", 1);
    let object = applied(Some(&object), &deployment(json!({"replicas": 2})), "bob", 2);
    let object = applied(Some(&object), &deployment(json!({"paused": true})), "alice", 3);
    assert_eq!(object["spec"], json!({"replicas": 2, "paused": true}));
    assert_eq!(fields_of(&object, "alice"), Some(json!({"f:spec": {"f:paused": {}}})));
    assert_eq!(fields_of(&object, "bob"), Some(json!({"f:spec": {"f:replicas": {}}})));
    // bob is now the sole owner, so alice can no longer change it without a conflict, and bob can remove it.
    assert!(apply(Some(&object), &deployment(json!({"replicas": 3})), "alice", false, at(4)).is_err());
    let without_spec =
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}});
    let object = applied(Some(&object), &without_spec, "bob", 5);
    assert_eq!(object["spec"], json!({"paused": true}));
    assert_eq!(fields_of(&object, "bob"), None, "bob owns nothing, so its entry is gone");
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy>
/// Section "Merge strategy": with `x-kubernetes-list-type: map` "different managers can manage entries separately";
/// containers are a list-map keyed by `name`.
#[test]
fn containers_merge_by_name_and_each_manager_owns_its_own() {
    let app = container_spec(json!([{"name": "web", "image": "nginx:1"}]));
    let object = applied(None, &deployment(app.clone()), "app-team", 1);
    let sidecar = container_spec(json!([{"name": "proxy", "image": "envoy:1"}]));
    let object = applied(Some(&object), &deployment(sidecar), "mesh-injector", 2);
    assert_eq!(
        object["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "nginx:1"}, {"name": "proxy", "image": "envoy:1"}])
    );
    let containers = |name: &str| {
        let key = format!("k:{{\"name\":\"{name}\"}}");
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {key: {".": {}, "f:image": {}, "f:name": {}}}}}}})
    };
    assert_eq!(fields_of(&object, "app-team"), Some(containers("web")));
    assert_eq!(fields_of(&object, "mesh-injector"), Some(containers("proxy")));
    // Each manager changes its own container freely, and the other's container stays.
    let upgrade = container_spec(json!([{"name": "web", "image": "nginx:2"}]));
    let object = applied(Some(&object), &deployment(upgrade), "app-team", 3);
    assert_eq!(
        object["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "nginx:2"}, {"name": "proxy", "image": "envoy:1"}])
    );
    // Dropping its container from its apply removes it (only the injector owned it); the app stays.
    let object = applied(Some(&object), &deployment(json!({})), "mesh-injector", 4);
    assert_eq!(object["spec"]["template"]["spec"]["containers"], json!([{"name": "web", "image": "nginx:2"}]));
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#apply-and-update>
/// Section "Operations in scope for field management": an update "changed a value in the data field, which caused
/// that field's management to change"; "If this update has instead been attempted using Server-Side Apply, the
/// request would have failed due to conflicting ownership." Section "Upgrading from client-side apply to
/// server-side apply" gives the same case for `kubectl scale` and `replicas`, and "Transferring ownership" for an
/// autoscaler taking `.spec.replicas`.
#[test]
fn an_update_takes_replicas_and_the_appliers_next_apply_conflicts() {
    let manifest =
        deployment(json!({"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}));
    let object = applied(None, &manifest, "kubectl", 1);
    let mut scaled = object.clone();
    scaled["spec"]["replicas"] = json!(5);
    let object = record_update(Some(&object), scaled, "kubectl-edit", at(2));
    assert_eq!(object["spec"]["replicas"], 5);
    assert_eq!(fields_of(&object, "kubectl-edit"), Some(json!({"f:spec": {"f:replicas": {}}})));
    let applier = fields_of(&object, "kubectl").expect("kubectl still owns the rest");
    assert!(applier["f:spec"].get("f:replicas").is_none(), "the update took replicas: {applier}");
    assert_eq!(managers(&object), [("kubectl".into(), "Apply".into()), ("kubectl-edit".into(), "Update".into())]);

    let conflicts = apply(Some(&object), &manifest, "kubectl", false, at(3)).unwrap_err();
    assert_eq!(conflicts.len(), 1);
    assert_eq!((conflicts[0].manager.as_str(), conflicts[0].field.as_str()), ("kubectl-edit", ".spec.replicas"));
    assert_eq!(
        conflict_message(&conflicts),
        r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: .spec.replicas"#
    );
    assert_eq!(conflicts[0].cause_message(), r#"conflict with "kubectl-edit" using apps/v1"#);

    // The applier becomes a shared owner by applying the live value ("Conflicts", third option).
    let mut agreeing = manifest.clone();
    agreeing["spec"]["replicas"] = json!(5);
    let object = applied(Some(&object), &agreeing, "kubectl", 4);
    assert_eq!(fields_of(&object, "kubectl-edit"), Some(json!({"f:spec": {"f:replicas": {}}})));
    assert!(fields_of(&object, "kubectl").unwrap()["f:spec"].get("f:replicas").is_some());
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#ssa-example-configmap>
/// Section "Field management", subsection "Example": the ConfigMap applied by `kubectl` carries exactly this
/// managedFields entry; and section "Operations in scope for field management": after an update of `data.key` by
/// `kube-controller-manager`, the two entries are exactly the documented ones.
#[test]
fn managed_fields_have_the_documented_shape() {
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
        "data": {"key": "some value"}
    });
    let doc_time = Utc.with_ymd_and_hms(2010, 10, 10, 0, 0, 0).single().expect("valid time");
    let object = apply(None, &config_map, "kubectl", false, doc_time).unwrap();
    assert_eq!(
        object["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "v1",
            "time": "2010-10-10T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}}
        }])
    );

    let applied_at = Utc.with_ymd_and_hms(2019, 3, 30, 15, 0, 0).single().expect("valid time");
    let updated_at = Utc.with_ymd_and_hms(2019, 3, 30, 16, 0, 0).single().expect("valid time");
    let object = apply(None, &config_map, "kubectl", false, applied_at).unwrap();
    let mut changed = object.clone();
    changed["data"]["key"] = json!("new value");
    let object = record_update(Some(&object), changed, "kube-controller-manager", updated_at);
    assert_eq!(
        object["metadata"]["managedFields"],
        json!([
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
        ])
    );
    assert_eq!(object["data"], json!({"key": "new value"}));
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy>
/// Section "Merge strategy"; list-maps keyed by `containerPort` and `protocol`, `protocol` defaulting to TCP: the
/// Apply entry of a Deployment looks like the API server's.
#[test]
fn a_deployment_apply_entry_has_the_api_server_shape() {
    let manifest = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}
            }
        },
        "status": {"replicas": 99}
    });
    let object = applied(None, &manifest, "promote", 1);
    assert_eq!(object.get("status"), None, "status belongs to the status subresource");
    assert_eq!(
        fields_of(&object, "promote"),
        Some(json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {},
                        "f:image": {},
                        "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}
                }
            }
        }))
    );
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>
/// Section "Field management": the API server tracks the fields a create sets for its manager (operation Update),
/// and objects and items new to the object carry their own `.` entry.
#[test]
fn a_create_is_owned_by_its_creator() {
    let created = deployment(json!({
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}
        }
    }));
    let object = record_update(None, created, "kubectl-create", at(1));
    assert_eq!(
        fields_of(&object, "kubectl-create"),
        Some(json!({"f:spec": {
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                    ".": {},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {
                        ".": {},
                        "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}
                    }
                }}}
            }
        }}))
    );
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy>
/// Section "Merge strategy": "the server merges it with the live object favoring the value from the request body";
/// an apply that changes nothing leaves the object (and its managedFields times) as it was.
#[test]
fn reapplying_the_same_configuration_changes_nothing() {
    let manifest = deployment(json!({"replicas": 2}));
    let first = applied(None, &manifest, "promote", 1);
    let again = applied(Some(&first), &manifest, "promote", 2);
    assert_eq!(again, first);
    // An update that writes the same values takes nothing either.
    assert_eq!(record_update(Some(&first), first.clone(), "kubectl-edit", at(3)), first);
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#clearing-managedfields>
/// Section "Clearing managedFields": `[{}]` strips every entry, and the write's own changes are then recorded.
#[test]
fn an_update_with_an_empty_entry_clears_managed_fields() {
    let object = applied(None, &deployment(json!({"replicas": 2})), "promote", 1);
    let mut cleared = object.clone();
    cleared["metadata"]["managedFields"] = json!([{}]);
    let result = record_update(Some(&object), cleared, "kubectl-patch", at(2));
    assert_eq!(result["metadata"].get("managedFields"), None);
    let mut cleared = object.clone();
    cleared["metadata"]["managedFields"] = json!([{}]);
    cleared["spec"]["paused"] = json!(true);
    let result = record_update(Some(&object), cleared, "kubectl-patch", at(2));
    assert_eq!(managers(&result), [("kubectl-patch".into(), "Update".into())]);
    // An empty list is not a reset: the stored entries stay.
    let mut emptied = object.clone();
    emptied["metadata"]["managedFields"] = json!([]);
    assert_eq!(record_update(Some(&object), emptied, "kubectl-patch", at(3)), object);
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>
/// Section "Field management"; managers record the fields they write: a controller's status write is tracked under
/// the status subresource and never conflicts with the applier, who does not own status.
#[test]
fn status_writes_are_owned_through_the_subresource() {
    let object = applied(None, &deployment(json!({"replicas": 2})), "promote", 1);
    let mut with_status = object.clone();
    with_status["status"] = json!({"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]});
    let object = record_status_update(&object, with_status, "kube-controller-manager", at(2));
    let entry = object["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["manager"] == "kube-controller-manager"))
        .cloned()
        .expect("controller entry");
    assert_eq!(entry["subresource"], "status");
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:status": {
            ".": {},
            "f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}},
            "f:replicas": {}
        }})
    );
    let again = applied(Some(&object), &deployment(json!({"replicas": 3})), "promote", 3);
    assert_eq!(again["status"]["replicas"], 2);
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts>
/// Section "Conflicts": several conflicts are listed per manager, as the API server words them.
#[test]
fn several_conflicts_are_grouped_by_manager() {
    let object = applied(None, &deployment(json!({"replicas": 2, "paused": false})), "alice", 1);
    let object = applied(Some(&object), &deployment(json!({"minReadySeconds": 5})), "bob", 2);
    let wanted = deployment(json!({"replicas": 3, "paused": true, "minReadySeconds": 10}));
    let conflicts = apply(Some(&object), &wanted, "carol", false, at(3)).unwrap_err();
    assert_eq!(
        conflict_message(&conflicts),
        "Apply failed with 3 conflicts: conflicts with \"alice\":\n- .spec.paused\n- .spec.replicas\n\
         conflicts with \"bob\":\n- .spec.minReadySeconds"
    );
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management>
/// Section "Field management"; managers record the fields they apply: an apply through `/status` owns only
/// `status`, under an entry with `subresource: status`, and never touches the spec.
#[test]
fn a_status_apply_owns_only_status() {
    let object = applied(None, &deployment(json!({"replicas": 2})), "promote", 1);
    let report = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 9},
        "status": {"readyReplicas": 2}
    });
    let object = apply_status(&object, &report, "health-reporter", false, at(2)).unwrap();
    assert_eq!(object["spec"], json!({"replicas": 2}));
    assert_eq!(object["status"], json!({"readyReplicas": 2}));
    let entry = object["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["manager"] == "health-reporter"))
        .cloned()
        .expect("status applier entry");
    assert_eq!((entry["operation"].as_str(), entry["subresource"].as_str()), (Some("Apply"), Some("status")));
    assert_eq!(entry["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}}}));
    // Another status applier setting a different value conflicts with it, named with its subresource.
    let other = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "status": {"readyReplicas": 0}
    });
    let conflicts = apply_status(&object, &other, "other-reporter", false, at(3)).unwrap_err();
    assert_eq!(conflicts[0].cause_message(), r#"conflict with "health-reporter" with subresource "status""#);
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#merge-strategy>
/// Section "Merge strategy": with `x-kubernetes-list-type: set` "different managers can manage entries
/// separately"; `metadata.finalizers` is a set.
#[test]
fn finalizers_are_a_set_each_manager_owning_its_own() {
    let with_finalizers = |finalizers: Value| {
        let metadata = json!({"name": "c", "finalizers": finalizers});
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata})
    };
    let object = applied(None, &with_finalizers(json!(["a.example.com/keep"])), "alice", 1);
    let object = applied(Some(&object), &with_finalizers(json!(["b.example.com/keep"])), "bob", 2);
    assert_eq!(object["metadata"]["finalizers"], json!(["a.example.com/keep", "b.example.com/keep"]));
    assert_eq!(
        fields_of(&object, "bob"),
        Some(json!({"f:metadata": {"f:finalizers": {"v:\"b.example.com/keep\"": {}}}}))
    );
    let object = applied(Some(&object), &with_finalizers(json!([])), "alice", 3);
    assert_eq!(object["metadata"]["finalizers"], json!(["b.example.com/keep"]));
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#custom-resources-and-server-side-apply>
/// Section "Custom resources and Server-Side Apply": "By default, Server-Side Apply treats custom resources as
/// unstructured data. All keys are treated the same as struct fields, and all lists are considered atomic."
#[test]
fn custom_resource_lists_are_atomic_and_their_objects_merge_by_field() {
    let widget = |spec: Value| {
        let mut widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
        widget["spec"] = spec;
        widget
    };
    let object = applied(None, &widget(json!({"ports": [{"name": "http", "port": 80}], "size": 1})), "alice", 1);
    assert_eq!(fields_of(&object, "alice"), Some(json!({"f:spec": {"f:ports": {}, "f:size": {}}})));
    let object = applied(Some(&object), &widget(json!({"color": "blue"})), "bob", 2);
    assert_eq!(object["spec"], json!({"ports": [{"name": "http", "port": 80}], "size": 1, "color": "blue"}));
    // Adding an item replaces the whole list, which alice owns.
    let more_ports = widget(json!({"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}));
    let conflicts = apply(Some(&object), &more_ports, "bob", false, at(3)).unwrap_err();
    assert_eq!((conflicts[0].manager.as_str(), conflicts[0].field.as_str()), ("alice", ".spec.ports"));
}

/// <https://kubernetes.io/docs/reference/using-api/server-side-apply/#transferring-ownership>
/// Section "Transferring ownership": the user hands `.spec.replicas` to a private `handover-to-hpa` manager, drops
/// it from its own manifest, and "whenever the HPA controller sets the replicas field to a new value, the temporary
/// field manager will no longer own any fields and will be automatically deleted."
#[test]
fn replicas_are_handed_over_to_the_autoscaler() {
    let template = json!({"spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2"}]}});
    let object = applied(None, &deployment(json!({"replicas": 3, "template": template})), "kubectl", 1);
    let object = applied(Some(&object), &deployment(json!({"replicas": 3})), "handover-to-hpa", 2);
    let object = applied(Some(&object), &deployment(json!({"template": template})), "kubectl", 3);
    assert_eq!(object["spec"]["replicas"], 3, "released to the handover manager, not deleted");
    assert_eq!(fields_of(&object, "handover-to-hpa"), Some(json!({"f:spec": {"f:replicas": {}}})));

    let mut scaled = object.clone();
    scaled["spec"]["replicas"] = json!(7);
    let object = record_update(Some(&object), scaled, "horizontal-pod-autoscaler", at(4));
    assert_eq!(fields_of(&object, "handover-to-hpa"), None);
    assert_eq!(
        managers(&object),
        [("kubectl".into(), "Apply".into()), ("horizontal-pod-autoscaler".into(), "Update".into())]
    );
}
