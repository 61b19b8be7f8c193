//! A loopback HTTP server standing in for the S3 object behind an ECR download URL: it answers every GET
//! with one body (or one that never ends), logs each request, and stops on drop.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A body that "never ends" stops after this much, so that even a client that never gives up ends.
const ENDLESS_LIMIT: usize = 64 * 1024 * 1024;
const ENDLESS_CHUNK: usize = 64 * 1024;

/// What the server sends.
#[derive(Clone)]
pub enum Blob {
    /// These bytes, with their `Content-Length`.
    Bytes(Vec<u8>),
    /// Chunks with no `Content-Length`, as long as the client keeps reading (up to 64 MiB).
    Endless,
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: String,
    pub authorization: bool,
}

pub struct BlobServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BlobServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BlobServer {
    pub async fn start(blob: Blob) -> BlobServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (log, blob) = (log.clone(), blob.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        log.lock().unwrap().push(Seen {
                            path: request.uri().path().to_owned(),
                            query: request.uri().query().unwrap_or_default().to_owned(),
                            authorization: request.headers().contains_key("authorization"),
                        });
                        let body: BoxBody<Bytes, Infallible> = match &blob {
                            Blob::Bytes(bytes) => Full::new(Bytes::from(bytes.clone())).boxed(),
                            Blob::Endless => {
                                let chunks =
                                    futures::stream::iter((0..ENDLESS_LIMIT / ENDLESS_CHUNK).map(|_| {
                                        Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; ENDLESS_CHUNK])))
                                    }));
                                StreamBody::new(chunks).boxed()
                            }
                        };
                        async move { Ok::<_, Infallible>(Response::new(body)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        BlobServer { base, seen, task }
    }

    /// The requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}
