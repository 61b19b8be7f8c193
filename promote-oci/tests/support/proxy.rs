//! A fault-injecting HTTP/1.1 proxy on loopback, in front of a real registry. It answers the first
//! `status_faults` requests with 500 and 429 (alternating, with `Retry-After: 1` on the 429s), cuts the
//! connection in the middle of the first `cut_blob_gets` blob downloads, and logs every request.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

pub type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Default)]
pub struct Faults {
    pub status_faults: AtomicU32,
    pub cut_blob_gets: AtomicU32,
    pub log: Mutex<Vec<(String, String)>>,
}

pub struct Proxy {
    pub host: String,
    pub faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let faults = Arc::new(Faults::default());
        let upstream = upstream.to_owned();
        let shared = faults.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let faults = shared.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(request, upstream.clone(), faults.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy { host, faults, task }
    }

    /// Requests seen, as (method, path).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.faults.log.lock().unwrap().clone()
    }
}

fn take(counter: &AtomicU32) -> Option<u32> {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).ok()
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).map_err(|never: Infallible| match never {}).boxed());
    *response.status_mut() = status;
    response
}

async fn handle(
    request: Request<Incoming>,
    upstream: String,
    faults: Arc<Faults>,
) -> Result<Response<Body>, Infallible> {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    faults.log.lock().unwrap().push((method.clone(), path.clone()));
    if let Some(left) = take(&faults.status_faults) {
        return Ok(if left % 2 == 0 {
            empty(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            let mut response = empty(StatusCode::TOO_MANY_REQUESTS);
            response.headers_mut().insert("retry-after", "1".parse().unwrap());
            response
        });
    }
    let cut = method == "GET" && path.contains("/blobs/sha256:") && take(&faults.cut_blob_gets).is_some();
    let response = forward(request, &upstream).await;
    let (parts, body) = response.into_parts();
    let body: Body = if cut {
        // Pass about half the blob, then break the connection.
        let limit = parts
            .headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
            / 2;
        let mut sent = 0usize;
        let frames = futures::stream::unfold((body, false), move |(mut body, done)| async move {
            if done {
                return None;
            }
            match body.frame().await {
                Some(Ok(frame)) => Some((Ok::<_, std::io::Error>(frame), (body, false))),
                Some(Err(error)) => Some((Err(std::io::Error::other(error)), (body, true))),
                None => None,
            }
        });
        let frames = futures::StreamExt::map(frames, move |frame: Result<Frame<Bytes>, std::io::Error>| {
            let frame = frame?;
            if let Some(data) = frame.data_ref() {
                sent += data.len();
                if sent > limit {
                    return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut by the test proxy"));
                }
            }
            Ok(frame)
        });
        StreamBody::new(frames).boxed()
    } else {
        body.map_err(std::io::Error::other).boxed()
    };
    Ok(Response::from_parts(parts, body))
}

/// Sends `request` on to `upstream` (host:port) and returns its answer, or 502 when it cannot.
pub async fn forward(request: Request<Incoming>, upstream: &str) -> Response<Body> {
    let Ok(stream) = TcpStream::connect(upstream).await else { return empty(StatusCode::BAD_GATEWAY) };
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        return empty(StatusCode::BAD_GATEWAY);
    };
    tokio::spawn(connection);
    let (parts, body) = request.into_parts();
    let forwarded = Request::from_parts(parts, body.map_err(std::io::Error::other).boxed());
    let Ok(response) = sender.send_request(forwarded).await else { return empty(StatusCode::BAD_GATEWAY) };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.map_err(std::io::Error::other).boxed())
}
