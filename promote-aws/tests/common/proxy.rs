//! A loopback HTTP proxy in front of moto that counts AWS API calls and injects error responses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    calls: Vec<String>,
    /// Per operation: how many more calls get the error, and its code.
    faults: HashMap<String, (usize, String)>,
}

/// The proxy; it stops when dropped.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`, to use as the SDK's endpoint.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The operation name of an AWS JSON-protocol request (`X-Amz-Target: Service.Operation`).
fn operation<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .and_then(|target| target.rsplit('.').next())
        .unwrap_or("?")
        .to_owned()
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Proxy {
        let upstream: SocketAddr = upstream.trim_start_matches("http://").parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| forward(state.clone(), upstream, request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Proxy { endpoint, state, task }
    }

    /// The operations called so far, in order (retries included: each is one HTTP request).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many times `operation` was called.
    pub fn count(&self, operation: &str) -> usize {
        self.state.lock().unwrap().calls.iter().filter(|call| *call == operation).count()
    }

    /// Forgets the calls counted so far.
    pub fn reset(&self) {
        self.state.lock().unwrap().calls.clear();
    }

    /// Answers the next `times` calls of `operation` with the AWS JSON error `code` (HTTP 400), as AWS
    /// does for throttling.
    pub fn fail_next(&self, operation: &str, times: usize, code: &str) {
        self.state.lock().unwrap().faults.insert(operation.to_owned(), (times, code.to_owned()));
    }
}

async fn forward(
    state: Arc<Mutex<State>>,
    upstream: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let operation = operation(&request);
    let fault = {
        let mut state = state.lock().unwrap();
        state.calls.push(operation.clone());
        match state.faults.get_mut(&operation) {
            Some((remaining, code)) if *remaining > 0 => {
                *remaining -= 1;
                Some(code.clone())
            }
            _ => None,
        }
    };
    if let Some(code) = fault {
        let body = format!(r#"{{"__type":"{code}","message":"Rate exceeded"}}"#);
        return Ok(Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amzn-errortype", code)
            .body(Full::new(Bytes::from(body)))?);
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(TcpStream::connect(upstream).await?)).await?;
    tokio::spawn(connection);
    let response = sender.send_request(Request::from_parts(parts, Full::new(body))).await?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    parts.headers.remove("content-length");
    parts.headers.remove("transfer-encoding");
    Ok(Response::from_parts(parts, Full::new(body)))
}
