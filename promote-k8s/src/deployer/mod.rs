//! The Kubernetes deployer: server-side apply of a stage's bundle, inventory and prune in a KEP-3659
//! ApplySet, health by watch, dry runs with diffs.

mod apply;
mod builder;
mod diff;
mod discovery;
mod health;
mod inventory;
mod objects;
mod order;
mod prune;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kube::Client;
use kube::api::{ListParams, Patch, PatchParams, TypeMeta};
use kube::discovery::ApiResource;
use promote_core::deploy::{
    ApplyMode, Bundle, Change, ChangeAction, DeployStatus, Deployer, DeployerCapabilities, RenderedObject,
};
use promote_core::error::{Error, Result};
use promote_core::progress::Progress;
use serde_json::{Value, json};

pub use builder::KubernetesDeployerBuilder;
pub(crate) use builder::Settings;

use apply::{ApplyFailure, apply, into_result};
use discovery::{Discovered, KindCache};
use health::Target;
use inventory::{ApplySet, Inventory, Parent, Record};
use objects::{Desired, GroupKind, Namespaces, ObjectRef, ResourceType, refused, split_api_version};
use prune::Member;

use crate::connection::Connection;
use crate::error::from_kube;
use crate::retry::retrying;

/// How long Namespaces and CRDs of a bundle may take to become active and established before the rest of
/// the bundle is applied.
const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Deploys a stage's bundle to a Kubernetes namespace.
///
/// # Behaviour
/// - **Apply.** Each manifest is an object; its kind is resolved through API discovery (cached, refreshed
///   once when a kind is unknown; a kind defined by a CustomResourceDefinition of the same bundle is known
///   from it). Objects are sent with server-side apply, field manager `promote` (configurable), `force`
///   only when the stage sets `force_conflicts`: a conflict with another manager fails the deploy naming
///   each field and manager. Namespaced objects go to the stage's namespace (`namespace: "shop-{stage}"`);
///   a manifest naming another namespace is refused unless the stage allows it. Namespaces and CRDs go
///   first and are waited for (active, established), then the rest in the usual install order.
/// - **Unchanged objects are not re-sent.** The inventory keeps a hash of what was applied to each object;
///   an object whose hash is unchanged, whose uid is the one applied, and whose live state still holds every
///   field that was applied is reported unchanged without a request. An unchanged re-deploy sends no PATCH.
/// - **Inventory and prune** follow kubectl's ApplySet convention (KEP-3659): a parent Secret
///   `promote-<stage>-applyset` in the stage's namespace, members labelled `applyset.kubernetes.io/part-of`.
///   After a successful apply, members that left the bundle are deleted in reverse order (Namespaces and
///   CRDs only when the stage opts in).
/// - **Dry run** (`ApplyMode::DryRun`) sends each changed object with `dryRun=All` and compares the answer
///   with the live object (without `managedFields`, `status` and the server's bookkeeping):
///   [`KubernetesDeployer::dry_run`] also returns the diff, which for an object holding secret values names
///   only the fields that change.
/// - **Health** is waited for by WATCH (see [`Deployer::wait_healthy`]): rollouts as `kubectl rollout status`
///   reads them, failing fast on a pod of the new revision that cannot start.
/// - **Secrets** are applied like any object, but their values never reach a diff, an error, a log line, a
///   progress report or the inventory.
/// - [`Deployer::current`] returns the last applied bundle as the inventory keeps it: each object's rendering
///   with secrets masked (and a Secret's data redacted). For a bundle without secrets it is the applied
///   bundle exactly (same hash); with secrets its hash differs, and [`Deployer::status`] reports the hash of
///   the bundle that was applied.
#[derive(Clone)]
pub struct KubernetesDeployer {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    settings: Arc<Settings>,
    kinds: KindCache,
    /// One apply at a time per deployer: the inventory is read, then written.
    applying: tokio::sync::Mutex<()>,
}

impl fmt::Debug for KubernetesDeployer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.inner.settings;
        f.debug_struct("KubernetesDeployer")
            .field("namespace", &settings.namespace)
            .field("field_manager", &settings.field_manager)
            .field("force_conflicts", &settings.force_conflicts)
            .finish()
    }
}

/// One object's change in a dry run, with what changes in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    /// The object and what happens to it.
    pub change: Change,
    /// For an update, a unified diff of the live object and what the apply would make of it; for an object
    /// holding secret values, only the paths of the fields that change.
    pub diff: Option<String>,
}

/// A stage's bundle as objects, ready to apply.
struct Prepared {
    stage: String,
    applyset: ApplySet,
    objects: Vec<Desired>,
    /// Objects whose kind only a CRD of this bundle defines: the cluster cannot dry-run them yet.
    unserved: HashSet<ObjectRef>,
}

impl Prepared {
    fn group_kinds(&self) -> BTreeSet<GroupKind> {
        self.objects.iter().map(|o| o.reference.group_kind.clone()).collect()
    }

    fn additional_namespaces(&self) -> BTreeSet<String> {
        self.objects
            .iter()
            .filter_map(|o| o.reference.namespace.clone())
            .filter(|n| *n != self.applyset.namespace)
            .collect()
    }

    fn targets(&self) -> Vec<Target> {
        self.objects.iter().map(target_of).collect()
    }
}

fn target_of(object: &Desired) -> Target {
    let service_type = object.body.pointer("/spec/type").and_then(Value::as_str);
    Target {
        key: object.key.clone(),
        rt: object.rt.clone(),
        reference: object.reference.clone(),
        needs_waiting: health::needs_waiting(&object.reference.group_kind, service_type),
    }
}

fn uid_of(object: &Value) -> &str {
    object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default()
}

fn resource_version_of(object: &Value) -> &str {
    object.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default()
}

/// The resource types a bundle's CustomResourceDefinitions define, by (group, version, kind).
fn types_defined_by(crds: &[&Value]) -> HashMap<(String, String, String), ResourceType> {
    let mut defined = HashMap::new();
    for crd in crds {
        let text = |pointer: &str| crd.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (group, kind, plural) = (text("/spec/group"), text("/spec/names/kind"), text("/spec/names/plural"));
        let namespaced = text("/spec/scope") != "Cluster";
        for version in crd.pointer("/spec/versions").and_then(Value::as_array).into_iter().flatten() {
            let Some(version) = version.get("name").and_then(Value::as_str) else { continue };
            let api = ApiResource {
                group: group.clone(),
                version: version.to_owned(),
                api_version: format!("{group}/{version}"),
                kind: kind.clone(),
                plural: plural.clone(),
            };
            defined.insert((group.clone(), version.to_owned(), kind.clone()), ResourceType { api, namespaced });
        }
    }
    defined
}

impl KubernetesDeployer {
    /// A builder: namespace pattern, kubeconfig context or client, conflicts, prune opt-ins.
    pub fn builder() -> KubernetesDeployerBuilder {
        KubernetesDeployerBuilder::default()
    }

    pub(crate) async fn connect(settings: Arc<Settings>, connection: Connection) -> Result<Self> {
        let client = connection.connect().await?;
        Ok(KubernetesDeployer {
            inner: Arc::new(Inner {
                kinds: KindCache::new(client.clone()),
                client,
                settings,
                applying: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The namespace `stage` deploys to.
    pub fn namespace_for(&self, stage: &str) -> String {
        builder::expand(&self.inner.settings.namespace, stage)
    }

    fn client(&self) -> &Client {
        &self.inner.client
    }

    fn applyset(&self, stage: &str) -> Result<ApplySet> {
        let namespace = self.namespace_for(stage);
        crate::label::check_label(&namespace).map_err(|why| {
            refused(
                stage,
                format!(
                    "the stage's namespace {namespace:?} (from pattern {:?}) is not a namespace name: {why}",
                    self.inner.settings.namespace
                ),
            )
        })?;
        Ok(ApplySet::for_stage(stage, &namespace))
    }

    /// Parses, types, places and labels the bundle's objects.
    async fn prepare(&self, bundle: &Bundle) -> Result<Prepared> {
        let stage = bundle.stage();
        let settings = &self.inner.settings;
        let applyset = self.applyset(stage)?;
        let namespaces = Namespaces {
            stage: applyset.namespace.clone(),
            allowed: settings.allow_namespaces.iter().map(|p| builder::expand(p, stage)).collect(),
        };
        let parsed = bundle.objects().iter().map(|m| objects::parse(stage, m)).collect::<Result<Vec<_>>>()?;
        let mut discovered = self.inner.kinds.current().await?;
        if parsed.iter().any(|p| discovered.resolve(&p.group, &p.version, &p.kind).is_none()) {
            // A kind the cache does not know: a CRD may have been created since it was filled.
            discovered = self.inner.kinds.refresh().await?;
        }
        let crds: Vec<&Value> = parsed.iter().filter(|p| p.group_kind().is_crd()).map(|p| &p.body).collect();
        let defined = types_defined_by(&crds);
        let mut prepared =
            Prepared { stage: stage.to_owned(), objects: Vec::new(), unserved: HashSet::new(), applyset };
        let mut seen = HashSet::new();
        for parsed in parsed {
            let key = (parsed.group.clone(), parsed.version.clone(), parsed.kind.clone());
            let (rt, served) = match discovered.resolve(&key.0, &key.1, &key.2) {
                Some(rt) => (rt.clone(), true),
                None => match defined.get(&key) {
                    Some(rt) => (rt.clone(), false),
                    None => {
                        return Err(refused(
                            stage,
                            format!(
                                "{}: the cluster serves no kind {} in {} (is its CustomResourceDefinition installed?)",
                                parsed.manifest.object_key(),
                                parsed.kind,
                                parsed.manifest.api_version
                            ),
                        ));
                    }
                },
            };
            let desired = Desired::new(stage, parsed, rt, &namespaces, &prepared.applyset.id, &settings.field_manager)?;
            if !seen.insert(desired.reference.clone()) {
                return Err(refused(
                    stage,
                    format!("{} is in the bundle twice (as {})", desired.reference, desired.key),
                ));
            }
            if !served {
                prepared.unserved.insert(desired.reference.clone());
            }
            prepared.objects.push(desired);
        }
        Ok(prepared)
    }

    /// The live members of the stage's ApplySet: every object labelled with its id, in the collections the
    /// bundle and the parent name.
    async fn members(
        &self,
        prepared: &Prepared,
        parent: Option<&Parent>,
        discovered: &Discovered,
    ) -> Result<Vec<Member>> {
        let applyset = &prepared.applyset;
        let mut collections: Vec<(ResourceType, Option<String>)> = Vec::new();
        let mut add = |rt: ResourceType, namespace: Option<String>| {
            let namespace = namespace.filter(|_| rt.namespaced);
            if !collections.iter().any(|(r, n)| *r == rt && *n == namespace) {
                collections.push((rt, namespace));
            }
        };
        for object in prepared.objects.iter().filter(|o| !prepared.unserved.contains(&o.reference)) {
            add(object.rt.clone(), object.reference.namespace.clone());
        }
        if let Some(parent) = parent {
            let mut namespaces = parent.namespaces(applyset);
            namespaces.extend(prepared.additional_namespaces());
            for group_kind in &parent.group_kinds {
                let Some(rt) = discovered.preferred(group_kind) else {
                    tracing::debug!(%group_kind, "a kind the ApplySet lists is no longer served; its objects are gone");
                    continue;
                };
                if rt.namespaced {
                    for namespace in &namespaces {
                        add(rt.clone(), Some(namespace.clone()));
                    }
                } else {
                    add(rt.clone(), None);
                }
            }
        }
        let selector = applyset.member_selector();
        let params = ListParams::default().labels(&selector);
        let lists = futures::future::try_join_all(collections.iter().map(|(rt, namespace)| {
            let api = rt.api(self.client(), namespace.as_deref());
            let params = params.clone();
            async move {
                retrying(|| api.list(&params)).await.map(|list| (rt, list.items)).map_err(|e| {
                    from_kube(e, &format!("list the stage's objects ({})", rt.describe(namespace.as_deref())))
                })
            }
        }))
        .await?;
        let mut members = Vec::new();
        for (rt, items) in lists {
            for mut item in items {
                // A list's items carry no type of their own for built-in kinds: the list says it once.
                item.types.get_or_insert_with(|| TypeMeta {
                    api_version: rt.api.api_version.clone(),
                    kind: rt.api.kind.clone(),
                });
                let object = serde_json::to_value(item).unwrap_or_default();
                if let Some(reference) = ObjectRef::of_live(rt, &object) {
                    members.push(Member { rt: rt.clone(), reference, object });
                }
            }
        }
        Ok(members)
    }

    /// Whether `object` needs no apply: what was applied to it is unchanged, it is the object it was applied
    /// to, and it still holds every field that was applied.
    fn unchanged(object: &Desired, record: Option<&Record>, live: Option<&Member>) -> bool {
        match (record, live) {
            (Some(record), Some(live)) => {
                record.applied_hash == object.applied_hash
                    && record.uid == live.uid()
                    && diff::contains(&live.object, &object.as_stored())
            }
            _ => false,
        }
    }

    /// The object as it is now: the member listed, or a GET for objects that are not members (yet).
    async fn live_object(&self, object: &Desired, members: &HashMap<&ObjectRef, &Member>) -> Result<Option<Value>> {
        if let Some(member) = members.get(&object.reference) {
            return Ok(Some(member.object.clone()));
        }
        let api = object.rt.api(self.client(), object.reference.namespace.as_deref());
        let found = retrying(|| api.get_opt(&object.reference.name))
            .await
            .map_err(|e| from_kube(e, &format!("read {}", object.reference)))?;
        Ok(found.map(|o| serde_json::to_value(o).unwrap_or_default()))
    }

    /// Creates the stage's namespace (not a member: it is never pruned).
    async fn create_namespace(&self, stage: &str, namespace: &str) -> Result<()> {
        let api: kube::Api<kube::api::DynamicObject> = kube::Api::all_with(
            self.client().clone(),
            &ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: "Namespace".into(),
                plural: "namespaces".into(),
            },
        );
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        let params = PatchParams::apply(&self.inner.settings.field_manager);
        let patch = Patch::Apply(&body);
        retrying(|| api.patch(namespace, &params, &patch))
            .await
            .map_err(|e| from_kube(e, &format!("create namespace {namespace} for stage {stage}")))?;
        tracing::info!(stage, namespace, "created the stage's namespace");
        Ok(())
    }

    /// Applies one object for real: its change, and its record for the inventory.
    async fn apply_object(
        &self,
        prepared: &Prepared,
        object: &Desired,
        records: &HashMap<ObjectRef, &Record>,
        members: &HashMap<&ObjectRef, &Member>,
        namespace_created: &mut bool,
    ) -> Result<(ChangeAction, Record)> {
        let settings = &self.inner.settings;
        let stage = &prepared.stage;
        let member = members.get(&object.reference).copied();
        let record_with = |uid: &str| Record {
            key: object.key.clone(),
            template: object.template.clone(),
            api_version: object.api_version.clone(),
            kind: object.reference.group_kind.kind.clone(),
            name: object.reference.name.clone(),
            manifest_namespace: object.manifest_namespace.clone(),
            namespace: object.reference.namespace.clone(),
            uid: uid.to_owned(),
            applied_hash: object.applied_hash.clone(),
            secret: object.secret,
            display: object.display.clone(),
        };
        if Self::unchanged(object, records.get(&object.reference).copied(), member) {
            return Ok((ChangeAction::Unchanged, record_with(member.map(Member::uid).unwrap_or_default())));
        }
        let before = self.live_object(object, members).await?;
        let mut result =
            apply(self.client(), stage, object, &settings.field_manager, settings.force_conflicts, false).await;
        if matches!(result, Err(ApplyFailure::MissingNamespace))
            && settings.create_namespace
            && !*namespace_created
            && object.reference.namespace.as_deref() == Some(prepared.applyset.namespace.as_str())
        {
            self.create_namespace(stage, &prepared.applyset.namespace).await?;
            *namespace_created = true;
            result =
                apply(self.client(), stage, object, &settings.field_manager, settings.force_conflicts, false).await;
        }
        let applied = into_result(result, stage, object)?;
        let action = match &before {
            None => ChangeAction::Create,
            Some(before) if resource_version_of(before) == resource_version_of(&applied) => ChangeAction::Unchanged,
            Some(_) => ChangeAction::Update,
        };
        tracing::debug!(stage = %stage, object = %object.reference, ?action, "applied");
        Ok((action, record_with(uid_of(&applied))))
    }

    /// Writes the parent, creating the stage's namespace first if it is missing and the stage allows it.
    async fn write_parent(&self, prepared: &Prepared, parent: &Parent, namespace_created: &mut bool) -> Result<()> {
        let settings = &self.inner.settings;
        let write =
            || inventory::write(self.client(), &prepared.applyset, &prepared.stage, &settings.field_manager, parent);
        match write().await {
            Err(Error::DeployFailed { .. }) if settings.create_namespace && !*namespace_created => {
                self.create_namespace(&prepared.stage, &prepared.applyset.namespace).await?;
                *namespace_created = true;
                write().await
            }
            other => other,
        }
    }

    async fn apply_for_real(&self, bundle: &Bundle) -> Result<Vec<Change>> {
        let _applying = self.inner.applying.lock().await;
        let prepared = self.prepare(bundle).await?;
        let stage = prepared.stage.as_str();
        let client = self.client();
        let parent = inventory::read(client, &prepared.applyset, stage).await?;
        let discovered = self.inner.kinds.current().await?;
        let members = self.members(&prepared, parent.as_ref(), &discovered).await?;
        let by_reference: HashMap<&ObjectRef, &Member> = members.iter().map(|m| (&m.reference, m)).collect();
        let records: HashMap<ObjectRef, &Record> = parent
            .iter()
            .filter_map(|p| p.inventory.as_ref())
            .flat_map(|i| i.objects.iter())
            .map(|r| (r.reference(), r))
            .collect();

        let mut order: Vec<usize> = (0..prepared.objects.len()).collect();
        order.sort_by_key(|&i| order::rank(&prepared.objects[i].reference.group_kind));
        let (first, rest): (Vec<usize>, Vec<usize>) =
            order.into_iter().partition(|&i| order::goes_first(&prepared.objects[i].reference.group_kind));

        let mut results: Vec<Option<(ChangeAction, Record)>> = vec![None; prepared.objects.len()];
        let mut namespace_created = false;
        for &i in &first {
            results[i] = Some(
                self.apply_object(&prepared, &prepared.objects[i], &records, &by_reference, &mut namespace_created)
                    .await?,
            );
        }
        let changed_first: Vec<Target> = first
            .iter()
            .filter(|&&i| results[i].as_ref().is_some_and(|(action, _)| *action != ChangeAction::Unchanged))
            .map(|&i| target_of(&prepared.objects[i]))
            .collect();
        if !changed_first.is_empty() {
            health::wait(
                client,
                stage,
                &prepared.applyset.member_selector(),
                &changed_first,
                ESTABLISH_TIMEOUT,
                &Progress::none(),
            )
            .await?;
        }

        // Before members of new kinds or namespaces exist, the parent says where to find them (KEP-3659), so
        // that an apply interrupted from here on still knows what it may have created.
        let mut intent = parent.clone().unwrap_or_default();
        let bundle_kinds = prepared.group_kinds();
        let bundle_namespaces = prepared.additional_namespaces();
        if parent.is_none()
            || !intent.group_kinds.is_superset(&bundle_kinds)
            || !intent.additional_namespaces.is_superset(&bundle_namespaces)
        {
            intent.group_kinds.extend(bundle_kinds.iter().cloned());
            intent.additional_namespaces.extend(bundle_namespaces.iter().cloned());
            self.write_parent(&prepared, &intent, &mut namespace_created).await?;
        }

        for &i in &rest {
            results[i] = Some(
                self.apply_object(&prepared, &prepared.objects[i], &records, &by_reference, &mut namespace_created)
                    .await?,
            );
        }

        let mut changes: Vec<Change> = Vec::new();
        let mut applied_records = Vec::new();
        for (object, result) in prepared.objects.iter().zip(results) {
            let (action, record) = result.expect("every object was applied");
            changes.push(Change { object: object.key.clone(), action });
            applied_records.push(record);
        }

        let mut stale: Vec<&Member> = members
            .iter()
            .filter(|m| !prepared.objects.iter().any(|o| o.reference == m.reference))
            .filter(|m| prune::may_prune(&self.inner.settings, m))
            .collect();
        stale.sort_by_key(|m| std::cmp::Reverse(order::rank(&m.reference.group_kind)));
        for member in stale {
            if prune::delete(client, member).await? {
                tracing::debug!(stage, object = %member.reference, "pruned");
                let key =
                    records.get(&member.reference).map_or_else(|| member.reference.to_string(), |r| r.key.clone());
                changes.push(Change { object: key, action: ChangeAction::Delete });
            }
        }

        let done = Parent {
            group_kinds: bundle_kinds,
            additional_namespaces: bundle_namespaces,
            inventory: Some(Inventory {
                format: 1,
                stage: stage.to_owned(),
                bundle_hash: bundle.hash().to_owned(),
                objects: applied_records,
            }),
        };
        if Some(&done) != parent.as_ref() {
            self.write_parent(&prepared, &done, &mut namespace_created).await?;
        }
        Ok(changes)
    }

    /// What applying `bundle` would change, object by object, with a diff for each update. Changes nothing:
    /// changed objects are sent with `dryRun=All`.
    pub async fn dry_run(&self, bundle: &Bundle) -> Result<Vec<PlannedChange>> {
        let prepared = self.prepare(bundle).await?;
        let stage = prepared.stage.as_str();
        let client = self.client();
        let settings = &self.inner.settings;
        let parent = inventory::read(client, &prepared.applyset, stage).await?;
        let discovered = self.inner.kinds.current().await?;
        let members = self.members(&prepared, parent.as_ref(), &discovered).await?;
        let by_reference: HashMap<&ObjectRef, &Member> = members.iter().map(|m| (&m.reference, m)).collect();
        let records: HashMap<ObjectRef, &Record> = parent
            .iter()
            .filter_map(|p| p.inventory.as_ref())
            .flat_map(|i| i.objects.iter())
            .map(|r| (r.reference(), r))
            .collect();
        let mut planned = Vec::new();
        for object in &prepared.objects {
            let record = records.get(&object.reference).copied();
            let change = |action| Change { object: object.key.clone(), action };
            if Self::unchanged(object, record, by_reference.get(&object.reference).copied()) {
                planned.push(PlannedChange { change: change(ChangeAction::Unchanged), diff: None });
                continue;
            }
            if prepared.unserved.contains(&object.reference) {
                planned.push(PlannedChange { change: change(ChangeAction::Create), diff: None });
                continue;
            }
            let Some(before) = self.live_object(object, &by_reference).await? else {
                // Sent all the same: the server checks it (and refuses what it would refuse for real).
                match apply(client, stage, object, &settings.field_manager, settings.force_conflicts, true).await {
                    Ok(_) | Err(ApplyFailure::MissingNamespace) => {}
                    Err(ApplyFailure::Failed(error)) => return Err(error),
                }
                planned.push(PlannedChange { change: change(ChangeAction::Create), diff: None });
                continue;
            };
            let after = into_result(
                apply(client, stage, object, &settings.field_manager, settings.force_conflicts, true).await,
                stage,
                object,
            )?;
            let secret = object.secret || record.is_some_and(|r| r.secret);
            match diff::describe(&before, &after, secret) {
                None => planned.push(PlannedChange { change: change(ChangeAction::Unchanged), diff: None }),
                Some(diff) => planned.push(PlannedChange { change: change(ChangeAction::Update), diff: Some(diff) }),
            }
        }
        for member in members.iter().filter(|m| !prepared.objects.iter().any(|o| o.reference == m.reference)) {
            if prune::may_prune(settings, member) {
                let key =
                    records.get(&member.reference).map_or_else(|| member.reference.to_string(), |r| r.key.clone());
                planned
                    .push(PlannedChange { change: Change { object: key, action: ChangeAction::Delete }, diff: None });
            }
        }
        Ok(planned)
    }

    /// The inventory of `stage`, if it has one.
    async fn inventory(&self, stage: &str) -> Result<Option<Inventory>> {
        let applyset = self.applyset(stage)?;
        Ok(inventory::read(self.client(), &applyset, stage).await?.and_then(|p| p.inventory))
    }
}

#[async_trait]
impl Deployer for KubernetesDeployer {
    fn capabilities(&self) -> DeployerCapabilities {
        let mut capabilities = DeployerCapabilities::default();
        capabilities.dry_run = true;
        capabilities.health = true;
        capabilities.prune = true;
        capabilities
    }

    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        match mode {
            ApplyMode::Apply => self.apply_for_real(bundle).await,
            ApplyMode::DryRun => Ok(self.dry_run(bundle).await?.into_iter().map(|p| p.change).collect()),
        }
    }

    /// Waits by WATCH until every object of `bundle` is healthy. Deployments, StatefulSets and DaemonSets
    /// follow `kubectl rollout status`; Jobs complete, PVCs bind, CRDs are established, LoadBalancer Services
    /// get an ingress, other objects with conditions become `Ready`. A pod of the new revision waiting with
    /// `ImagePullBackOff`, `ErrImagePull`, `CrashLoopBackOff`, `CreateContainerConfigError` or another
    /// `*Error`/`*BackOff` reason, `ProgressDeadlineExceeded` and `ReplicaFailure` fail at once
    /// ([`Error::DeployFailed`] naming the object, pod, container, reason and message). After `timeout`,
    /// [`Error::Timeout`] names each unhealthy object's state as kubectl words it. Progress reports each
    /// object waited on as its state changes, with replica counts.
    async fn wait_healthy(&self, bundle: &Bundle, timeout: Duration, progress: &Progress) -> Result<String> {
        let prepared = self.prepare(bundle).await?;
        let recorded = self.inventory(bundle.stage()).await?.map(|i| i.bundle_hash);
        if recorded.as_deref() != Some(bundle.hash()) {
            return Err(refused(
                bundle.stage(),
                format!(
                    "the stage's inventory records {} rather than this bundle ({}): was it applied by someone else since?",
                    recorded.as_deref().unwrap_or("no bundle"),
                    bundle.hash()
                ),
            ));
        }
        health::wait(
            self.client(),
            bundle.stage(),
            &prepared.applyset.member_selector(),
            &prepared.targets(),
            timeout,
            progress,
        )
        .await
    }

    async fn current(&self, stage: &str) -> Result<Option<Bundle>> {
        let Some(inventory) = self.inventory(stage).await? else { return Ok(None) };
        let manifests = inventory
            .objects
            .into_iter()
            .map(|r| {
                RenderedObject::new(
                    r.api_version,
                    r.kind,
                    r.name,
                    r.manifest_namespace,
                    r.template,
                    r.display.clone(),
                    r.display,
                )
            })
            .collect();
        Ok(Some(Bundle::new(stage, manifests)))
    }

    async fn status(&self, stage: &str) -> Result<DeployStatus> {
        let applyset = self.applyset(stage)?;
        let Some(inventory) = self.inventory(stage).await? else {
            return Ok(DeployStatus { bundle_hash: None, objects: Vec::new(), healthy: None });
        };
        let mut discovered = self.inner.kinds.current().await?;
        let resolve = |discovered: &Discovered, record: &Record| {
            let (group, version) = split_api_version(&record.api_version);
            discovered.resolve(group, version, &record.kind).cloned()
        };
        if inventory.objects.iter().any(|r| resolve(&discovered, r).is_none()) {
            discovered = self.inner.kinds.refresh().await?;
        }
        let targets: Vec<Target> = inventory
            .objects
            .iter()
            .filter_map(|record| {
                let rt = resolve(&discovered, record)?;
                let reference = record.reference();
                let needs_waiting = health::needs_waiting(&reference.group_kind, None);
                Some(Target { key: record.key.clone(), rt, reference, needs_waiting })
            })
            .collect();
        let all_known = targets.len() == inventory.objects.len();
        let states = health::check(self.client(), &applyset.member_selector(), &targets).await?;
        let healthy = all_known && states.iter().all(|(_, state)| matches!(state, health::State::Ready(_)));
        Ok(DeployStatus {
            bundle_hash: Some(inventory.bundle_hash),
            objects: inventory.objects.into_iter().map(|r| r.key).collect(),
            healthy: Some(healthy),
        })
    }
}
