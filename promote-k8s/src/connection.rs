//! Where the deployer's `kube::Client` comes from: `Config::infer()` (kubeconfig or in-cluster), a kubeconfig
//! file and context, or a client the caller built (the in-process fake API server, a custom transport).
//!
//! A client built here differs from kube's default in two ways (a client the caller built is used as it is):
//! - kube's own retry layer is off: promote retries each request itself, a few times with short delays
//!   (`crate::retry`). Beneath those, kube's layer retried 429, 503 and 504 up to 15 more times with delays
//!   doubling to 1000 s, so one request facing a lasting outage took minutes.
//! - An error answer whose body is not a Kubernetes `Status` (a load balancer's or gateway's JSON) is turned
//!   into one with the HTTP status code. kube parses any JSON object as a `Status`, and one without a `code`
//!   read as code 0: a gateway's 503 was classified persistent and never retried.

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use kube::client::{ClientBuilder, DynBody};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::{Client, Config};
use promote_core::error::{Error, ErrorClass};
use tower::BoxError;

use crate::error::backend;

/// How to reach the cluster.
#[derive(Clone, Default)]
pub(crate) enum Connection {
    /// `Config::infer()`: `$KUBECONFIG` or `~/.kube/config`, else the in-cluster service account, with
    /// `context` instead of the current context when given.
    #[default]
    Infer,
    /// A kubeconfig file, or the default one, with a context override.
    Kubeconfig {
        /// The file (`None`: `$KUBECONFIG` or `~/.kube/config`).
        path: Option<PathBuf>,
        /// The context (`None`: the file's current context).
        context: Option<String>,
    },
    /// A client built by the caller.
    Client(Client),
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Infer => f.write_str("Infer"),
            Connection::Kubeconfig { path, context } => {
                f.debug_struct("Kubeconfig").field("path", path).field("context", context).finish()
            }
            Connection::Client(_) => f.write_str("Client"),
        }
    }
}

impl Connection {
    /// The connection for optional kubeconfig `path` and `context` settings.
    pub(crate) fn from_settings(path: Option<PathBuf>, context: Option<String>) -> Self {
        if path.is_none() && context.is_none() { Connection::Infer } else { Connection::Kubeconfig { path, context } }
    }

    /// A client. Reads configuration files; sends no request.
    pub(crate) async fn connect(self) -> Result<Client, Error> {
        let config = match self {
            Connection::Client(client) => return Ok(client),
            Connection::Infer => Config::infer().await.map_err(|e| {
                backend(
                    "no cluster configuration found: neither a kubeconfig ($KUBECONFIG, ~/.kube/config) nor an \
                     in-cluster service account"
                        .into(),
                    ErrorClass::Persistent,
                    e,
                )
            })?,
            Connection::Kubeconfig { path, context } => {
                let options = KubeConfigOptions { context: context.clone(), ..KubeConfigOptions::default() };
                let shown =
                    path.as_ref().map_or_else(|| "the default kubeconfig".to_owned(), |p| p.display().to_string());
                let loaded = match &path {
                    Some(path) => match Kubeconfig::read_from(path) {
                        Ok(kubeconfig) => Config::from_custom_kubeconfig(kubeconfig, &options).await,
                        Err(error) => Err(error),
                    },
                    None => Config::from_kubeconfig(&options).await,
                };
                loaded.map_err(|error| match error {
                    // The parser's message may quote the file, credentials included: name the file only.
                    kube::config::KubeconfigError::Parse(_) => crate::error::persistent(format!(
                        "{shown} is not a valid kubeconfig (YAML that does not parse)"
                    )),
                    error => {
                        let what = match &context {
                            Some(context) => format!("cannot use context {context:?} of {shown}"),
                            None => format!("cannot use {shown}"),
                        };
                        backend(what, ErrorClass::Persistent, error)
                    }
                })?
            }
        };
        let mut config = config;
        config.default_retry = false;
        let builder =
            ClientBuilder::try_from(config).map_err(|e| crate::error::from_kube(e, "create the Kubernetes client"))?;
        Ok(builder.with_layer(&tower::util::AndThenLayer::new(status_body)).build())
    }
}

/// The `context`, `kubeconfig` and `client` setters every builder of the crate shares, the `connection`
/// setter the spec kinds use, and `take_connection` for `build`. The builder has a `settings` field with
/// `context: Option<String>` and `kubeconfig: Option<PathBuf>`, and a `connection: Option<Connection>` field.
macro_rules! connection_setters {
    ($builder:ty) => {
        impl $builder {
            /// A kubeconfig context instead of the current one.
            pub fn context(mut self, context: impl Into<String>) -> Self {
                self.settings.context = Some(context.into());
                self
            }

            /// A kubeconfig file instead of `$KUBECONFIG` or `~/.kube/config`.
            pub fn kubeconfig(mut self, path: impl Into<std::path::PathBuf>) -> Self {
                self.settings.kubeconfig = Some(path.into());
                self
            }

            /// A client built by the caller (an in-process fake API server, a custom transport) instead of a
            /// kubeconfig.
            pub fn client(mut self, client: kube::Client) -> Self {
                self.connection = Some($crate::connection::Connection::Client(client));
                self
            }

            /// The connection a spec resolved (its kubeconfig relative to the spec file), instead of the
            /// settings' `kubeconfig` and `context`.
            pub(crate) fn connection(mut self, connection: $crate::connection::Connection) -> Self {
                self.connection = Some(connection);
                self
            }

            /// The connection to make the client from: the one given, else the settings' kubeconfig and
            /// context.
            fn take_connection(&mut self) -> $crate::connection::Connection {
                self.connection.take().unwrap_or_else(|| {
                    $crate::connection::Connection::from_settings(
                        self.settings.kubeconfig.clone(),
                        self.settings.context.clone(),
                    )
                })
            }
        }
    };
}

pub(crate) use connection_setters;

/// The most of a gateway's error body kept as the message.
const GATEWAY_MESSAGE_CHARS: usize = 256;

/// An error answer with a body that is not a Kubernetes `Status` (code unset), given one with the HTTP
/// status code, and as the message the body's `message` or else its text (shortened). Other answers pass
/// unchanged.
async fn status_body(response: http::Response<Box<DynBody>>) -> Result<http::Response<Box<DynBody>>, BoxError> {
    let code = response.status();
    if !(code.is_client_error() || code.is_server_error()) {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    let bytes = match serde_json::from_slice::<Status>(&bytes) {
        Ok(status) if status.code != 0 => bytes,
        _ => {
            // A gateway's JSON usually says what happened in `message`; otherwise the body is the message.
            let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
            let text = match json.as_ref().and_then(|v| v.get("message")).and_then(serde_json::Value::as_str) {
                Some(message) => message.to_owned(),
                None => String::from_utf8_lossy(&bytes).into_owned(),
            };
            let text: String = text.trim().chars().take(GATEWAY_MESSAGE_CHARS).collect();
            let reason: String = code.canonical_reason().unwrap_or("Unknown").split_whitespace().collect();
            Bytes::from(serde_json::to_vec(&Status::failure(&text, &reason).with_code(code.as_u16()))?)
        }
    };
    let body: Box<DynBody> = Box::new(Full::new(bytes).map_err(|never| match never {}));
    Ok(http::Response::from_parts(parts, body))
}
