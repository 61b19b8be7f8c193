//! Waiting until a stage's objects are healthy, by WATCH, with a timeout: no polling. Each collection the
//! rules read (the objects, and the ReplicaSets and Pods of workloads) is listed once, then followed by a
//! resumable watch; the rules are evaluated again after every batch of changes. A rollout fails as soon as a
//! rule says it will not recover (a pod of the new revision in `ImagePullBackOff`, a progress deadline
//! exceeded), and on timeout every unhealthy object's state is reported the way kubectl words it.

mod feed;
mod pods;
mod rules;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kube::Client;
use kube::discovery::ApiResource;
use promote_core::error::{Error, Result};
use promote_core::progress::{Progress, ProgressUnit, ProgressUpdate};
use serde_json::Value;
use tokio::sync::mpsc;

use super::objects::{ObjectRef, ResourceType};
use feed::{FeedEvent, FeedSpec};
pub(crate) use rules::{State, needs_waiting};

/// An object to wait for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Its key in the bundle (`Deployment/web`): what progress and errors name.
    pub(crate) key: String,
    pub(crate) rt: ResourceType,
    pub(crate) reference: ObjectRef,
    /// Whether its kind can be anything but healthy once stored (a ConfigMap cannot).
    pub(crate) needs_waiting: bool,
}

fn builtin(group: &str, kind: &str, plural: &str) -> ResourceType {
    let api_version = if group.is_empty() { "v1".to_owned() } else { format!("{group}/v1") };
    ResourceType {
        api: ApiResource {
            group: group.into(),
            version: "v1".into(),
            api_version,
            kind: kind.into(),
            plural: plural.into(),
        },
        namespaced: true,
    }
}

/// `(namespace, name)` of a listed object.
fn object_key(object: &Value) -> (String, String) {
    let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned();
    (text("/metadata/namespace"), text("/metadata/name"))
}

/// What the feeds have seen.
struct World {
    specs: Vec<FeedSpec>,
    index: HashMap<FeedSpec, usize>,
    objects: Vec<BTreeMap<(String, String), Value>>,
}

impl World {
    /// The feeds `targets` need: their own collections (members only), and the ReplicaSets and Pods of the
    /// namespaces whose workloads the rules inspect.
    fn for_targets(targets: &[&Target], member_selector: &str) -> Self {
        let mut specs = Vec::new();
        let mut add = |spec: FeedSpec| {
            if !specs.contains(&spec) {
                specs.push(spec);
            }
        };
        for target in targets {
            let namespace = target.reference.namespace.clone();
            add(FeedSpec {
                rt: target.rt.clone(),
                namespace: namespace.clone(),
                selector: Some(member_selector.to_owned()),
            });
            let group_kind = &target.reference.group_kind;
            if rules::reads_replicasets(group_kind) {
                add(FeedSpec {
                    rt: builtin("apps", "ReplicaSet", "replicasets"),
                    namespace: namespace.clone(),
                    selector: None,
                });
            }
            if rules::reads_pods(group_kind) {
                add(FeedSpec { rt: builtin("", "Pod", "pods"), namespace, selector: None });
            }
        }
        let index = specs.iter().cloned().enumerate().map(|(i, spec)| (spec, i)).collect();
        let objects = vec![BTreeMap::new(); specs.len()];
        World { specs, index, objects }
    }

    fn apply(&mut self, event: FeedEvent) {
        match event {
            FeedEvent::Listed(feed, items) => {
                self.objects[feed] = items.into_iter().map(|o| (object_key(&o), o)).collect();
            }
            FeedEvent::Upsert(feed, object) => {
                self.objects[feed].insert(object_key(&object), object);
            }
            FeedEvent::Deleted(feed, object) => {
                self.objects[feed].remove(&object_key(&object));
            }
        }
    }

    fn in_feed(&self, spec: &FeedSpec) -> Option<&BTreeMap<(String, String), Value>> {
        self.index.get(spec).map(|&i| &self.objects[i])
    }

    fn neighbours(&self, namespace: Option<&str>) -> rules::Neighbours<'_> {
        let of = |rt: ResourceType| {
            self.in_feed(&FeedSpec { rt, namespace: namespace.map(str::to_owned), selector: None })
                .map(|objects| objects.values().collect())
                .unwrap_or_default()
        };
        rules::Neighbours {
            replicasets: of(builtin("apps", "ReplicaSet", "replicasets")),
            pods: of(builtin("", "Pod", "pods")),
        }
    }

    fn state(&self, target: &Target, member_selector: &str) -> State {
        let spec = FeedSpec {
            rt: target.rt.clone(),
            namespace: target.reference.namespace.clone(),
            selector: Some(member_selector.to_owned()),
        };
        let key = (target.reference.namespace.clone().unwrap_or_default(), target.reference.name.clone());
        match self.in_feed(&spec).and_then(|objects| objects.get(&key)) {
            Some(object) => rules::evaluate(
                &target.reference.group_kind,
                object,
                &self.neighbours(target.reference.namespace.as_deref()),
            ),
            None => State::Waiting { message: format!("Waiting for {} to exist", target.reference), counts: None },
        }
    }
}

/// Lists every feed once.
async fn list_all(client: &Client, world: &mut World) -> Result<Vec<String>> {
    let listed = futures::future::try_join_all(world.specs.iter().map(|spec| feed::list(client, spec))).await?;
    let mut versions = Vec::with_capacity(listed.len());
    for (feed, (items, version)) in listed.into_iter().enumerate() {
        world.apply(FeedEvent::Listed(feed, items));
        versions.push(version);
    }
    Ok(versions)
}

/// The states of `targets` now (one LIST per collection, no watch): what `status` reports.
pub(crate) async fn check(client: &Client, member_selector: &str, targets: &[Target]) -> Result<Vec<(String, State)>> {
    let watched: Vec<&Target> = targets.iter().filter(|t| t.needs_waiting).collect();
    let mut world = World::for_targets(&watched, member_selector);
    list_all(client, &mut world).await?;
    Ok(watched.iter().map(|t| (t.key.clone(), world.state(t, member_selector))).collect())
}

/// Reports the targets whose state changed since `reported`; the first failure, if any, and whether all are
/// ready.
fn evaluate(
    world: &World,
    targets: &[&Target],
    member_selector: &str,
    reported: &mut BTreeMap<String, State>,
    progress: &Progress,
) -> (Option<(String, String)>, bool) {
    let mut failure = None;
    let mut all_ready = true;
    for target in targets {
        let state = world.state(target, member_selector);
        if reported.get(&target.key) != Some(&state) {
            let mut update = ProgressUpdate::message(&target.key, state.message());
            if let State::Waiting { counts: Some((done, total)), .. } = &state {
                update = update.counting(*done, Some(*total), ProgressUnit::Items);
            }
            progress.report(update);
        }
        match &state {
            State::Failed(reason) if failure.is_none() => failure = Some((target.key.clone(), reason.clone())),
            State::Ready(_) => {}
            _ => all_ready = false,
        }
        reported.insert(target.key.clone(), state);
    }
    (failure, all_ready)
}

/// Waits until every target is healthy (`Ok` with a summary), one fails ([`Error::DeployFailed`] naming the
/// object and why), or `timeout` passes ([`Error::Timeout`] naming each unhealthy object's state).
pub(crate) async fn wait(
    client: &Client,
    stage: &str,
    member_selector: &str,
    targets: &[Target],
    timeout: Duration,
    progress: &Progress,
) -> Result<String> {
    let watched: Vec<&Target> = targets.iter().filter(|t| t.needs_waiting).collect();
    let settled = targets.len() - watched.len();
    if watched.is_empty() {
        return Ok(format!("{settled} objects applied; none of their kinds has a rollout to wait for"));
    }
    let mut reported = BTreeMap::new();
    let waited =
        tokio::time::timeout(timeout, async {
            let mut world = World::for_targets(&watched, member_selector);
            let versions = list_all(client, &mut world).await?;
            let (failure, ready) = evaluate(&world, &watched, member_selector, &mut reported, progress);
            if let Some((key, reason)) = failure {
                return Err(Error::DeployFailed { stage: stage.to_owned(), reason: format!("{key}: {reason}") });
            }
            if ready {
                return Ok(());
            }
            let (sender, mut events) = mpsc::channel(1024);
            let feeds =
                futures::future::join_all(world.specs.clone().into_iter().zip(versions).enumerate().map(
                    |(index, (spec, version))| feed::follow(client.clone(), index, spec, version, sender.clone()),
                ));
            drop(sender);
            let evaluating = async {
                while let Some(event) = events.recv().await {
                    world.apply(event?);
                    // Take every change already queued before evaluating again.
                    while let Ok(event) = events.try_recv() {
                        world.apply(event?);
                    }
                    let (failure, ready) = evaluate(&world, &watched, member_selector, &mut reported, progress);
                    if let Some((key, reason)) = failure {
                        return Err(Error::DeployFailed {
                            stage: stage.to_owned(),
                            reason: format!("{key}: {reason}"),
                        });
                    }
                    if ready {
                        return Ok(());
                    }
                }
                Err(crate::error::persistent("every watch ended while objects were still unhealthy".into()))
            };
            let mut evaluating = std::pin::pin!(evaluating);
            tokio::select! {
                biased;
                outcome = &mut evaluating => outcome,
                // Every feed ended (each sent its error first): the evaluation reads what is queued, then ends.
                _ = feeds => evaluating.await,
            }
        })
        .await;
    match waited {
        Ok(Ok(())) => {
            let ready: Vec<&str> = watched.iter().filter_map(|t| reported.get(&t.key)).map(State::message).collect();
            let others =
                if settled == 0 { String::new() } else { format!(" ({settled} other objects need no waiting)") };
            Ok(format!("{}{others}", ready.join("; ")))
        }
        Ok(Err(error)) => Err(error),
        Err(_elapsed) => {
            let unhealthy: Vec<String> = watched
                .iter()
                .filter_map(|t| match reported.get(&t.key) {
                    Some(State::Ready(_)) => None,
                    Some(state) => Some(format!("{}: {}", t.key, state.message())),
                    None => Some(format!("{}: not listed yet", t.key)),
                })
                .collect();
            Err(Error::Timeout { what: format!("rollout of stage {stage} ({})", unhealthy.join("; ")), after: timeout })
        }
    }
}
