//! Scripted HTTP servers on loopback for the hostile-registry tests: each request is logged (method, path,
//! query, `Authorization` header and body) and answered by the test's own function, which may send a body
//! that never ends. A server stops on drop.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use promote_testkit::proxy::Body;

/// The most request body a server reads (a blob upload in these tests is a few bytes).
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// A body that "never ends" stops after this much, so that even a client that never gives up ends.
const ENDLESS_LIMIT: usize = 256 * 1024 * 1024;
const ENDLESS_CHUNK: usize = 64 * 1024;

/// One request a server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// What a server answers.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
}

#[derive(Clone)]
pub enum ReplyBody {
    /// These bytes, with their `Content-Length` (unless a header sets another).
    Bytes(Vec<u8>),
    /// Chunks of `x` with no `Content-Length`, as long as the client keeps reading (up to 256 MiB).
    Endless,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: ReplyBody::Bytes(Vec::new()) }
    }

    pub fn bytes(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply { status, headers: Vec::new(), body: ReplyBody::Bytes(body.into()) }
    }

    pub fn endless(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: ReplyBody::Endless }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

type Respond = dyn Fn(&Seen) -> Reply + Send + Sync;

pub struct Server {
    pub host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Starts a server on a free 127.0.0.1 port that answers every request with `respond`.
    pub async fn start(respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Respond> = Arc::new(respond);
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (log, respond) = (log.clone(), respond.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(request, log.clone(), respond.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server { host, seen, task }
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    request: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
    respond: Arc<Respond>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_REQUEST_BODY).collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        authorization: parts.headers.get(hyper::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or("?").to_owned()),
        body,
    };
    log.lock().unwrap().push(seen.clone());
    let reply = respond(&seen);
    let body: Body = match reply.body {
        ReplyBody::Bytes(bytes) => Full::new(Bytes::from(bytes)).map_err(|never: Infallible| match never {}).boxed(),
        ReplyBody::Endless => {
            let chunks = futures::stream::iter(0..ENDLESS_LIMIT / ENDLESS_CHUNK)
                .map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'x'; ENDLESS_CHUNK]))));
            BodyExt::boxed(StreamBody::new(chunks))
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = hyper::StatusCode::from_u16(reply.status).unwrap();
    for (name, value) in reply.headers {
        response.headers_mut().insert(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            hyper::header::HeaderValue::from_str(&value).unwrap(),
        );
    }
    Ok(response)
}
