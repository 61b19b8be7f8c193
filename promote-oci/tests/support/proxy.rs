//! The registry tests' faults on the shared proxy skeleton (`promote_testkit::proxy`): the first
//! `status_faults` requests get 500 and 429 (alternating, `Retry-After: 1` on the 429s), and the first
//! `cut_blob_gets` blob downloads are cut halfway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use hyper::{Method, StatusCode};
use promote_testkit::proxy::{self, Action};

/// The faults still to serve.
#[derive(Default)]
pub struct Faults {
    pub status_faults: AtomicU32,
    pub cut_blob_gets: AtomicU32,
}

pub struct Proxy {
    pub host: String,
    pub faults: Arc<Faults>,
    inner: proxy::Proxy,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let faults = Arc::new(Faults::default());
        let shared = faults.clone();
        let inner = proxy::Proxy::start(upstream, move |head| {
            if let Some(left) = take(&shared.status_faults) {
                return if left % 2 == 0 {
                    Action::status(StatusCode::INTERNAL_SERVER_ERROR, &[])
                } else {
                    Action::status(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "1")])
                };
            }
            if head.method == Method::GET
                && head.path.contains("/blobs/sha256:")
                && take(&shared.cut_blob_gets).is_some()
            {
                return Action::CutHalfway;
            }
            Action::Forward
        })
        .await;
        Proxy { host: inner.host.clone(), faults, inner }
    }

    /// Requests seen, as (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.inner.requests().into_iter().map(|(method, path)| (method.to_string(), path)).collect()
    }
}

fn take(counter: &AtomicU32) -> Option<u32> {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).ok()
}
