//! WATCH: a chunked stream of JSON events (one per line, flushed one by one), replayed from a resourceVersion
//! out of the retained history, with selectors, BOOKMARKs, `timeoutSeconds`, and 410 Gone as an ERROR event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::rest::{ApiRequest, ResourcePath, present};
use super::selectors::Selectors;
use super::status::ApiError;
use super::store::{EventType, StoredEvent};
use super::{Shared, WatchSignal, lock};

/// The real server's default watch timeout is a random 30 to 60 minutes; this fake uses the low end.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// Decides what one store event means for one watch (selector transitions become ADDED or DELETED).
struct WatchFilter {
    path: ResourcePath,
    selectors: Selectors,
}

impl WatchFilter {
    fn matches(&self, object: &Value) -> bool {
        let in_namespace = self
            .path
            .namespace
            .as_deref()
            .is_none_or(|ns| object.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns));
        in_namespace && self.selectors.matches(object)
    }

    fn event(&self, event: &StoredEvent) -> Option<Bytes> {
        if event.key != self.path.rt.storage_key() {
            return None;
        }
        let now = self.matches(&event.object);
        let before = event.previous.as_ref().is_some_and(|p| self.matches(p));
        let kind = match event.kind {
            EventType::Added if now => EventType::Added,
            EventType::Modified if now && before => EventType::Modified,
            EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            EventType::Deleted if before || now => EventType::Deleted,
            _ => return None,
        };
        Some(line(kind.as_str(), &present(&self.path.rt, &event.object)))
    }

    fn bookmark(&self, rv: u64) -> Bytes {
        line(
            "BOOKMARK",
            &json!({"kind": self.path.rt.kind, "apiVersion": self.path.rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}}),
        )
    }
}

/// Where the stream starts: events to send first, the live feed (none when the stream ends after them) and the
/// resourceVersion the first events bring the client to.
struct Start {
    first: Vec<Bytes>,
    live: Option<broadcast::Receiver<Arc<StoredEvent>>>,
    rv: u64,
}

fn start(shared: &Shared, req: &ApiRequest, filter: &WatchFilter) -> Result<Start, ApiError> {
    let from = match req.param("resourceVersion") {
        None | Some("") | Some("0") => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?),
    };
    let expire = std::mem::take(&mut lock(&shared.faults).expire_next_watch);
    let store = shared.store();
    let rv = store.resource_version();
    if expire {
        let error = ApiError::expired(from.unwrap_or(rv), rv);
        return Ok(Start { first: vec![line("ERROR", &error.to_status())], live: None, rv });
    }
    match from {
        // No resourceVersion: the current objects as ADDED, then changes.
        None => {
            let first = store
                .list(&filter.path.rt.storage_key(), filter.path.namespace.as_deref())
                .into_iter()
                .filter(|o| filter.selectors.matches(o))
                .map(|o| line("ADDED", &present(&filter.path.rt, o)))
                .collect();
            Ok(Start { first, live: Some(store.subscribe_now()), rv })
        }
        Some(from) => match store.subscribe(from) {
            Ok(subscription) => {
                let first = subscription.replay.iter().filter_map(|e| filter.event(e)).collect();
                Ok(Start { first, live: Some(subscription.live), rv })
            }
            // The real server answers 200 and sends the 410 as an ERROR event.
            Err(error) => Ok(Start { first: vec![line("ERROR", &error.to_status())], live: None, rv }),
        },
    }
}

pub(crate) fn watch(shared: &Arc<Shared>, req: &ApiRequest, path: &ResourcePath) -> Result<Response, ApiError> {
    let filter = WatchFilter { path: path.clone(), selectors: req.selectors(&path.rt)? };
    let bookmarks = req.param("allowWatchBookmarks") == Some("true");
    let timeout = req
        .param("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let mut signals = shared.watch_signals.subscribe();
    let Start { first, live, rv } = start(shared, req, &filter)?;
    let bookmark_interval = shared.bookmark_interval;
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        for bytes in first {
            if tx.send(bytes).await.is_err() {
                return;
            }
        }
        let Some(mut live) = live else { return };
        let mut last_rv = rv;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut bookmark_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + bookmark_interval, bookmark_interval);
        loop {
            let out = tokio::select! {
                _ = &mut deadline => break,
                _ = tx.closed() => break,
                signal = signals.recv() => match signal {
                    Ok(WatchSignal::Drop) | Err(broadcast::error::RecvError::Closed) => break,
                    Ok(WatchSignal::Bookmark) if bookmarks => Some(filter.bookmark(last_rv)),
                    Ok(WatchSignal::Bookmark) | Err(broadcast::error::RecvError::Lagged(_)) => None,
                },
                _ = bookmark_tick.tick() => bookmarks.then(|| filter.bookmark(last_rv)),
                event = live.recv() => match event {
                    Ok(event) => {
                        last_rv = event.rv;
                        filter.event(&event)
                    }
                    // A watcher too slow for the feed is cut off; it resumes from its last resourceVersion.
                    Err(_) => break,
                },
            };
            if let Some(bytes) = out
                && tx.send(bytes).await.is_err()
            {
                break;
            }
        }
    });
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
