//! Serving the fake on a loopback socket, and the kubeconfig that points at it.

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use promote_core::{Error, ErrorClass};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};

use super::WatchSignal;

/// The fake served over plain HTTP. Dropping it stops the server.
#[derive(Debug)]
pub struct ServedApiServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    watch_signals: broadcast::Sender<WatchSignal>,
}

impl ServedApiServer {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The kubeconfig that points at the server: cluster, user and context named `fake`, with `namespace`
    /// as the context's namespace and `token` as the user's bearer token.
    pub fn kubeconfig(&self, namespace: &str, token: &str) -> String {
        format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: fake\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: fake\n  user:\n    token: {token}\n\
             contexts:\n\
             - name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: {namespace}\n\
             current-context: fake\n",
            url = self.url(),
        )
    }

    /// Writes [`ServedApiServer::kubeconfig`] for namespace `default` and token `fake-token` to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> promote_core::Result<()> {
        std::fs::write(path, self.kubeconfig("default", "fake-token")).map_err(|e| Error::io(path, e))
    }
}

impl Drop for ServedApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Open watches would keep their connections (and so the server task) alive.
        let _ = self.watch_signals.send(WatchSignal::Drop);
    }
}

pub(crate) async fn serve(
    router: Router,
    addr: SocketAddr,
    watch_signals: broadcast::Sender<WatchSignal>,
) -> promote_core::Result<ServedApiServer> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::backend("fake-apiserver", ErrorClass::Persistent, format!("cannot listen on {addr}: {e}"))
    })?;
    let addr = listener.local_addr().map_err(|e| {
        Error::backend("fake-apiserver", ErrorClass::Persistent, format!("no local address for {addr}: {e}"))
    })?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(ServedApiServer { addr, shutdown: Some(shutdown), watch_signals })
}
