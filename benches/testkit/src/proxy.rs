//! A fault-injecting HTTP/1.1 proxy on loopback, in front of a real server. Each request's head goes to a
//! rule that decides: pass it on, answer it in the upstream's place, or pass it on and cut the answer's body
//! part-way. Every request is logged, so that tests can count what a client sent.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The body type the proxy answers with.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// What a rule sees of a request.
#[derive(Debug, Clone)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The query, if any.
    pub query: Option<String>,
    /// The request's headers.
    pub headers: HeaderMap,
}

/// What the proxy does with one request.
#[derive(Debug, Clone)]
pub enum Action {
    /// Passes it on and returns the upstream's answer unchanged.
    Forward,
    /// Answers in the upstream's place.
    Respond {
        /// The status.
        status: StatusCode,
        /// Headers, as (name, value).
        headers: Vec<(String, String)>,
        /// The body.
        body: Bytes,
    },
    /// Passes it on, then breaks the connection once more than `after` bytes of the answer's body went out.
    CutBody {
        /// Bytes let through before the cut.
        after: usize,
    },
    /// Passes it on, then breaks the connection past half of the answer's declared `Content-Length`.
    CutHalfway,
}

impl Action {
    /// An answer with `status`, the given headers and no body.
    pub fn status(status: StatusCode, headers: &[(&str, &str)]) -> Action {
        Action::Respond {
            status,
            headers: headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
            body: Bytes::new(),
        }
    }
}

/// The rule the proxy asks for each request.
pub type Rule = dyn Fn(&Head) -> Action + Send + Sync;

/// The proxy; it stops when dropped.
pub struct Proxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    log: Arc<Mutex<Vec<(Method, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("host", &self.host).finish_non_exhaustive()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (`host:port`), asking `rule` about each request.
    pub async fn start(upstream: &str, rule: impl Fn(&Head) -> Action + Send + Sync + 'static) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let host = listener.local_addr().expect("the proxy's address").to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let rule: Arc<Rule> = Arc::new(rule);
        let upstream = upstream.to_owned();
        let shared = log.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (log, rule, upstream) = (shared.clone(), rule.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request| handle(request, upstream.clone(), rule.clone(), log.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy { host, log, task }
    }

    /// Requests seen so far, as (method, path).
    pub fn requests(&self) -> Vec<(Method, String)> {
        self.log.lock().expect("the request log").clone()
    }
}

async fn handle(
    request: Request<Incoming>,
    upstream: String,
    rule: Arc<Rule>,
    log: Arc<Mutex<Vec<(Method, String)>>>,
) -> Result<Response<Body>, Infallible> {
    let head = Head {
        method: request.method().clone(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().map(str::to_owned),
        headers: request.headers().clone(),
    };
    log.lock().expect("the request log").push((head.method.clone(), head.path.clone()));
    Ok(match rule(&head) {
        Action::Forward => forward(request, &upstream).await,
        Action::Respond { status, headers, body } => {
            let mut response = Response::new(Full::new(body).map_err(|never: Infallible| match never {}).boxed());
            *response.status_mut() = status;
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) =
                    (name.parse::<hyper::header::HeaderName>(), value.parse::<hyper::header::HeaderValue>())
                {
                    response.headers_mut().insert(name, value);
                }
            }
            response
        }
        Action::CutBody { after } => {
            let (parts, body) = forward(request, &upstream).await.into_parts();
            Response::from_parts(parts, cut_after(body, after))
        }
        Action::CutHalfway => {
            let (parts, body) = forward(request, &upstream).await.into_parts();
            let after = content_length(&parts.headers).unwrap_or(0) / 2;
            Response::from_parts(parts, cut_after(body, after))
        }
    })
}

/// `body`, broken with a connection reset once more than `limit` bytes went through.
fn cut_after(body: Body, limit: usize) -> Body {
    let mut sent = 0usize;
    let frames = futures::stream::unfold((body, false), |(mut body, done)| async move {
        if done {
            return None;
        }
        match body.frame().await {
            Some(Ok(frame)) => Some((Ok::<_, std::io::Error>(frame), (body, false))),
            Some(Err(error)) => Some((Err(error), (body, true))),
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
}

/// An empty 502 answer: what a proxy says when it cannot reach its upstream.
pub(crate) fn bad_gateway() -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).map_err(|never: Infallible| match never {}).boxed());
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// Sends `request` on to `upstream` (`host:port`) on a new connection and returns its answer, or 502 when it
/// cannot.
pub async fn forward(request: Request<Incoming>, upstream: &str) -> Response<Body> {
    let Ok(stream) = TcpStream::connect(upstream).await else { return bad_gateway() };
    let Ok((mut sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await else {
        return bad_gateway();
    };
    tokio::spawn(connection);
    let (parts, body) = request.into_parts();
    let forwarded = Request::from_parts(parts, body.map_err(std::io::Error::other).boxed());
    let Ok(response) = sender.send_request(forwarded).await else { return bad_gateway() };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.map_err(std::io::Error::other).boxed())
}

/// The `Content-Length` a response's headers declare, if any.
pub fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers.get("content-length")?.to_str().ok()?.parse().ok()
}
