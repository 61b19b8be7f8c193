//! One resumable view of a collection (a resource type in a namespace, with an optional label selector):
//! a LIST, then WATCH from the list's resourceVersion. A dropped watch resumes from the last
//! resourceVersion it saw (an event's or a BOOKMARK's); a `410 Gone` (the version was compacted away)
//! relists. Neither ends the view; only a request that keeps failing does.

use std::time::Duration;

use futures::StreamExt as _;
use kube::Client;
use kube::api::{ListParams, WatchEvent, WatchParams};
use promote_core::error::{Error, Result};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::deployer::objects::ResourceType;
use crate::error::from_kube;
use crate::retry::retrying;

/// At most this many watch restarts per feed and wait: a server that drops every watch at once is a fault.
const MAX_RESTARTS: usize = 200;

/// How long the server keeps one watch open before the feed opens the next (the API server caps it anyway).
const WATCH_SECONDS: u32 = 290;

/// What a feed watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FeedSpec {
    pub(crate) rt: ResourceType,
    pub(crate) namespace: Option<String>,
    pub(crate) selector: Option<String>,
}

impl FeedSpec {
    fn describe(&self) -> String {
        let what = self.rt.describe(self.namespace.as_deref());
        match &self.selector {
            Some(selector) => format!("{what} labelled {selector}"),
            None => what,
        }
    }

    fn list_params(&self) -> ListParams {
        let params = ListParams::default();
        match &self.selector {
            Some(selector) => params.labels(selector),
            None => params,
        }
    }

    fn watch_params(&self) -> WatchParams {
        let params = WatchParams::default().timeout(WATCH_SECONDS);
        match &self.selector {
            Some(selector) => params.labels(selector),
            None => params,
        }
    }
}

/// A change a feed reports.
#[derive(Debug)]
pub(crate) enum FeedEvent {
    /// The whole collection as listed (first, and after a relist).
    Listed(usize, Vec<Value>),
    /// An object was added or changed.
    Upsert(usize, Value),
    /// An object was deleted.
    Deleted(usize, Value),
}

/// Lists the collection once: its objects and the resourceVersion to watch from.
pub(crate) async fn list(client: &Client, spec: &FeedSpec) -> Result<(Vec<Value>, String)> {
    let api = spec.rt.api(client, spec.namespace.as_deref());
    let params = spec.list_params();
    let list = retrying(|| api.list(&params)).await.map_err(|e| from_kube(e, &format!("list {}", spec.describe())))?;
    let version = list.metadata.resource_version.clone().unwrap_or_default();
    let items = list.items.into_iter().map(|o| serde_json::to_value(o).unwrap_or_default()).collect();
    Ok((items, version))
}

/// Watches the collection from `version` until the receiver goes away, sending every change to `events`.
/// Returns only on an error that retrying does not cure (sent to `events` too, as `Err`).
pub(crate) async fn follow(
    client: Client,
    index: usize,
    spec: FeedSpec,
    mut version: String,
    events: mpsc::Sender<Result<FeedEvent>>,
) {
    let api = spec.rt.api(&client, spec.namespace.as_deref());
    let params = spec.watch_params();
    let mut quiet_restarts = 0u32;
    for _ in 0..MAX_RESTARTS {
        let stream = match retrying(|| api.watch(&params, &version)).await {
            Ok(stream) => stream,
            Err(error) if error_is_gone(&error) => match relist(&client, index, &spec, &events).await {
                Some(listed) => {
                    version = listed;
                    continue;
                }
                None => return,
            },
            Err(error) => {
                let _ = events.send(Err(from_kube(error, &format!("watch {}", spec.describe())))).await;
                return;
            }
        };
        let mut stream = std::pin::pin!(stream);
        let mut delivered = false;
        let mut gone = false;
        while let Some(event) = stream.next().await {
            let sent = match event {
                Ok(WatchEvent::Added(object) | WatchEvent::Modified(object)) => {
                    version = object.metadata.resource_version.clone().unwrap_or(version);
                    events.send(Ok(FeedEvent::Upsert(index, serde_json::to_value(object).unwrap_or_default()))).await
                }
                Ok(WatchEvent::Deleted(object)) => {
                    version = object.metadata.resource_version.clone().unwrap_or(version);
                    events.send(Ok(FeedEvent::Deleted(index, serde_json::to_value(object).unwrap_or_default()))).await
                }
                Ok(WatchEvent::Bookmark(bookmark)) => {
                    version = bookmark.metadata.resource_version;
                    Ok(())
                }
                Ok(WatchEvent::Error(status)) if status.code == 410 => {
                    gone = true;
                    break;
                }
                // Any other error event, or a broken stream: resume from the last version seen.
                Ok(WatchEvent::Error(status)) => {
                    tracing::debug!(code = status.code, reason = %status.reason, feed = %spec.describe(), "watch error event; resuming");
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, feed = %spec.describe(), "watch stream broke; resuming");
                    break;
                }
            };
            if sent.is_err() {
                return;
            }
            delivered = true;
        }
        if gone {
            tracing::debug!(feed = %spec.describe(), "watch version expired (410); relisting");
            match relist(&client, index, &spec, &events).await {
                Some(listed) => version = listed,
                None => return,
            }
            continue;
        }
        if events.is_closed() {
            return;
        }
        // A server that ends watches at once without any event is not hammered.
        quiet_restarts = if delivered { 0 } else { quiet_restarts + 1 };
        if quiet_restarts > 1 {
            tokio::time::sleep(Duration::from_millis(50 * u64::from(quiet_restarts.min(20)))).await;
        }
        tracing::debug!(feed = %spec.describe(), %version, "watch ended; resuming from the last resourceVersion");
    }
    let _ = events
        .send(Err(crate::error::persistent(format!(
            "the watch on {} was restarted {MAX_RESTARTS} times; giving up",
            spec.describe()
        ))))
        .await;
}

fn error_is_gone(error: &kube::Error) -> bool {
    crate::error::status(error).is_some_and(|s| s.code == 410)
}

/// Lists again after a 410, sending the new state; the version to watch from, or `None` when it failed.
async fn relist(
    client: &Client,
    index: usize,
    spec: &FeedSpec,
    events: &mpsc::Sender<Result<FeedEvent>>,
) -> Option<String> {
    match list(client, spec).await {
        Ok((items, version)) => events.send(Ok(FeedEvent::Listed(index, items))).await.ok().map(|()| version),
        Err(error) => {
            let _ = events.send(Err::<FeedEvent, Error>(error)).await;
            None
        }
    }
}
