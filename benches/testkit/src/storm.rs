//! A fault-storm proxy: HTTP/1.1 on loopback in front of a real server (docker-registry, moto, promote-k8s's
//! fake API server), which answers some of the requests it forwards with one kind of fault, on a fixed
//! schedule, so that a run is repeatable. Every fault is bounded: a plan injects at most `budget` faults, and a
//! stalled body resumes after `STALL`. The proxy stops on drop.
//!
//! It knows three protocols: the OCI distribution API (a manifest GET is `GET /v2/<repo>/manifests/<ref>`),
//! AWS JSON (`POST /` with `X-Amz-Target`; ECR's manifests come in `BatchGetImage` answers), and the
//! Kubernetes API (`/api`, `/apis`, `/version`, `/openapi`: errors are `Status` objects, and a body fault
//! hits the answer of a write too, after the server took it). Shared by promote-oci's, promote-aws's and
//! promote-k8s's storm tests. [`crate::proxy`] is the general skeleton; this is the storm.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The body type the proxy answers with.
pub use crate::proxy::Body;
use crate::proxy::{bad_gateway, forward};

/// How long a stalled body waits before it goes on.
pub const STALL: Duration = Duration::from_secs(2);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 Internal Server Error`.
    Status500,
    /// `503 Service Unavailable`.
    Status503,
    /// `429 Too Many Requests` with `Retry-After: 1`.
    RetryAfterSeconds,
    /// `429 Too Many Requests` with `Retry-After` as an HTTP date one second ahead.
    RetryAfterDate,
    /// Half the body, then a TCP reset (`SO_LINGER` 0).
    ResetMidBody,
    /// Half the body, then the connection closes cleanly, short of the `Content-Length` it announced.
    TruncatedBody,
    /// Half the body, a stall of [`STALL`], then the rest (slow-loris, bounded).
    StalledBody,
    /// A manifest GET answered with other bytes than the digest the client asked for or was told.
    WrongManifestBytes,
}

impl Fault {
    /// Every kind, in the order the storms run them.
    pub const ALL: [Fault; 8] = [
        Fault::Status500,
        Fault::Status503,
        Fault::RetryAfterSeconds,
        Fault::RetryAfterDate,
        Fault::ResetMidBody,
        Fault::TruncatedBody,
        Fault::StalledBody,
        Fault::WrongManifestBytes,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Status500 => "500",
            Fault::Status503 => "503",
            Fault::RetryAfterSeconds => "429 Retry-After: seconds",
            Fault::RetryAfterDate => "429 Retry-After: HTTP-date",
            Fault::ResetMidBody => "reset mid-body (down and up)",
            Fault::TruncatedBody => "body short of Content-Length",
            Fault::StalledBody => "stalled body",
            Fault::WrongManifestBytes => "manifest bytes not the digest",
        }
    }

    /// Whether this fault can hit a request: a status anywhere; a body fault on a GET (its answer has a
    /// body), and a reset on a blob upload too (in the middle of the request's body); wrong bytes on a
    /// manifest GET. Every AWS call (`amz_target`) answers with a body, and ECR's
    /// manifests come from `BatchGetImage`. Every Kubernetes request answers with a body, a write's after the
    /// server applied it, except a WATCH, whose stream the proxy does not hold back (a status still hits
    /// it); the Kubernetes API has no manifests.
    fn applies(self, method: &str, path: &str, query: Option<&str>, dialect: &Dialect) -> bool {
        match dialect {
            Dialect::Aws(target) => return self != Fault::WrongManifestBytes || target.ends_with(".BatchGetImage"),
            Dialect::Kubernetes => {
                let watch = query.is_some_and(|q| q.split('&').any(|pair| pair == "watch=true" || pair == "watch=1"));
                return match self {
                    Fault::Status500 | Fault::Status503 | Fault::RetryAfterSeconds | Fault::RetryAfterDate => true,
                    Fault::ResetMidBody | Fault::TruncatedBody | Fault::StalledBody => !watch,
                    Fault::WrongManifestBytes => false,
                };
            }
            Dialect::Oci => {}
        }
        match self {
            Fault::Status500 | Fault::Status503 | Fault::RetryAfterSeconds | Fault::RetryAfterDate => path != "/v2/",
            Fault::ResetMidBody if method == "PUT" || method == "PATCH" => path.contains("/blobs/uploads/"),
            Fault::ResetMidBody | Fault::TruncatedBody | Fault::StalledBody => method == "GET" && path != "/v2/",
            Fault::WrongManifestBytes => method == "GET" && path.contains("/manifests/"),
        }
    }
}

/// Which requests get the fault: every `every`-th one it applies to, `budget` times at most.
#[derive(Debug)]
pub struct Plan {
    /// The fault injected.
    pub fault: Fault,
    /// Every how many applicable requests one gets it.
    pub every: u32,
    /// Faults still to inject.
    pub budget: AtomicU32,
    seen: AtomicU32,
    /// Faults injected so far.
    pub injected: AtomicU32,
    /// Requests seen, as (method, path, fault injected).
    pub log: Mutex<Vec<(String, String, bool)>>,
}

impl Plan {
    /// `fault` on every `every`-th applicable request, `budget` times at most.
    pub fn new(fault: Fault, every: u32, budget: u32) -> Plan {
        Plan {
            fault,
            every: every.max(1),
            budget: AtomicU32::new(budget),
            seen: AtomicU32::new(0),
            injected: AtomicU32::new(0),
            log: Mutex::new(Vec::new()),
        }
    }

    /// Stops injecting.
    pub fn calm(&self) {
        self.budget.store(0, Ordering::SeqCst);
    }

    fn decide(&self, method: &str, path: &str, query: Option<&str>, dialect: &Dialect) -> bool {
        let hit = self.fault.applies(method, path, query, dialect)
            && (self.seen.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(self.every)
            && self.budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if hit {
            self.injected.fetch_add(1, Ordering::SeqCst);
        }
        self.log.lock().unwrap().push((method.to_owned(), path.to_owned(), hit));
        hit
    }
}

/// The protocol a request speaks, which decides where faults apply and how an error answer looks.
#[derive(Debug)]
enum Dialect {
    /// The OCI distribution API.
    Oci,
    /// AWS JSON, with the request's `X-Amz-Target`.
    Aws(String),
    /// The Kubernetes API.
    Kubernetes,
}

impl Dialect {
    fn of(path: &str, amz_target: Option<&str>) -> Dialect {
        if let Some(target) = amz_target {
            return Dialect::Aws(target.to_owned());
        }
        let kubernetes = ["/api", "/apis", "/version", "/openapi"]
            .iter()
            .any(|root| path == *root || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/')));
        if kubernetes { Dialect::Kubernetes } else { Dialect::Oci }
    }
}

/// The storm proxy; it stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The plan in force (swap it to change the weather).
    pub plan: Arc<Mutex<Arc<Plan>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (host:port) that injects nothing until [`FaultProxy::storm`].
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let plan = Arc::new(Mutex::new(Arc::new(Plan::new(Fault::Status500, 1, 0))));
        let upstream = upstream.to_owned();
        let shared = plan.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let plan = shared.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let reset = Arc::new(AtomicBool::new(false));
                    let io = Resettable { stream, reset: reset.clone() };
                    let service = service_fn(move |request| {
                        let plan = plan.lock().unwrap().clone();
                        handle(request, upstream.clone(), plan, reset.clone())
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service).await;
                });
            }
        });
        FaultProxy { host, plan, task }
    }

    /// Starts a storm of `fault` on every `every`-th request it applies to, `budget` faults at most.
    pub fn storm(&self, fault: Fault, every: u32, budget: u32) -> Arc<Plan> {
        let plan = Arc::new(Plan::new(fault, every, budget));
        *self.plan.lock().unwrap() = plan.clone();
        plan
    }

    /// Ends the storm.
    pub fn calm(&self) {
        self.plan.lock().unwrap().calm();
    }
}

/// A connection that ends with a TCP reset instead of a clean close once `reset` is set.
struct Resettable {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Resettable {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Resettable {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resettable {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// An error answer in the protocol's own shape: the distribution API's `errors` list, an AWS JSON error
/// whose `__type` the SDK classifies, or a Kubernetes `Status` (as real services send them).
fn status(code: StatusCode, retry_after: Option<String>, dialect: &Dialect) -> Response<Body> {
    let (body, content_type) = match dialect {
        Dialect::Aws(_) => {
            let kind = match code {
                StatusCode::TOO_MANY_REQUESTS => "ThrottlingException",
                StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailableException",
                _ => "ServerException",
            };
            (format!("{{\"__type\":\"{kind}\",\"message\":\"storm\"}}"), "application/x-amz-json-1.1")
        }
        Dialect::Kubernetes => {
            let reason = match code {
                StatusCode::TOO_MANY_REQUESTS => "TooManyRequests",
                StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
                _ => "InternalError",
            };
            let status = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "storm", "reason": reason, "code": code.as_u16(),
            });
            (status.to_string(), "application/json")
        }
        Dialect::Oci => {
            ("{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"storm\"}]}".to_owned(), "application/json")
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never: Infallible| match never {}).boxed());
    *response.status_mut() = code;
    response.headers_mut().insert("content-type", content_type.parse().unwrap());
    if let Some(value) = retry_after {
        response.headers_mut().insert("retry-after", value.parse().unwrap());
    }
    response
}

async fn handle(
    request: Request<Incoming>,
    upstream: String,
    plan: Arc<Plan>,
    reset: Arc<AtomicBool>,
) -> Result<Response<Body>, std::io::Error> {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let amz_target = request.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let dialect = Dialect::of(&path, amz_target.as_deref());
    if !plan.decide(&method, &path, request.uri().query(), &dialect) {
        return Ok(forward(request, &upstream).await);
    }
    let fault = plan.fault;
    match fault {
        Fault::Status500 => return Ok(status(StatusCode::INTERNAL_SERVER_ERROR, None, &dialect)),
        Fault::Status503 => return Ok(status(StatusCode::SERVICE_UNAVAILABLE, None, &dialect)),
        Fault::RetryAfterSeconds => return Ok(status(StatusCode::TOO_MANY_REQUESTS, Some("1".into()), &dialect)),
        Fault::RetryAfterDate => {
            let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(1));
            return Ok(status(StatusCode::TOO_MANY_REQUESTS, Some(date), &dialect));
        }
        Fault::ResetMidBody if method != "GET" && matches!(dialect, Dialect::Oci) => {
            // An upload cut off: take the first part of what the client sends, then reset the connection.
            let mut body = request.into_body();
            let _ = body.frame().await;
            reset.store(true, Ordering::SeqCst);
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "storm: upload cut"));
        }
        _ => {}
    }
    let response = forward(request, &upstream).await;
    let (mut parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else { return Ok(bad_gateway()) };
    let bytes = collected.to_bytes();
    if fault == Fault::WrongManifestBytes {
        // The same JSON with one more space: a client that trusts it without hashing is fooled.
        let lie = match amz_target {
            Some(_) => lie_in_batch_get_image(&bytes),
            None => [bytes.as_ref(), b" "].concat(),
        };
        parts.headers.remove("content-length");
        let body = Full::new(Bytes::from(lie)).map_err(|never: Infallible| match never {}).boxed();
        return Ok(Response::from_parts(parts, body));
    }
    let half = bytes.len() / 2;
    let (head, tail) = (bytes.slice(..half), bytes.slice(half..));
    // The announced length stays the whole body's.
    parts.headers.insert("content-length", bytes.len().to_string().parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = match fault {
        Fault::ResetMidBody => {
            reset.store(true, Ordering::SeqCst);
            vec![Ok(Frame::data(head)), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "storm"))]
        }
        Fault::TruncatedBody => {
            vec![Ok(Frame::data(head))]
        }
        _ => vec![Ok(Frame::data(head)), Ok(Frame::data(tail))],
    };
    let stall = fault == Fault::StalledBody;
    let frames = futures::stream::iter(frames.into_iter().enumerate()).then(move |(i, frame)| async move {
        if stall && i == 1 {
            tokio::time::sleep(STALL).await;
        }
        frame
    });
    Ok(Response::from_parts(parts, http_body_util::BodyExt::boxed(StreamBody::new(frames))))
}

/// An ECR `BatchGetImage` answer whose manifests each have one more space than their `imageDigest` says.
fn lie_in_batch_get_image(bytes: &[u8]) -> Vec<u8> {
    let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(bytes) else { return bytes.to_vec() };
    for image in answer["images"].as_array_mut().into_iter().flatten() {
        if let Some(manifest) = image["imageManifest"].as_str() {
            image["imageManifest"] = serde_json::Value::String(format!("{manifest} "));
        }
    }
    serde_json::to_vec(&answer).unwrap()
}
