//! A `docker-registry` configured for token auth, with a tiny token server on loopback in front of it.
//! The front serves `/token` itself and passes every other request on to the registry, so the token
//! service is on the registry's origin, as with many registries (GHCR, Harbor, GitLab): the store sends
//! credentials only to a token service there (or to one trusted for the registry).
//!
//! The token server follows the distribution token spec: `GET /token?service=…&scope=…` with HTTP basic
//! credentials answers `{"token", "access_token", "expires_in"}`, where the token is an RS256 JWT whose
//! `x5c` header carries a self-signed certificate the registry trusts (`rootcertbundle`). The key and the
//! certificate are made with the `openssl` command line, which also signs each token. Good credentials
//! get every action they ask for; no credentials get a token with no access (as public registries hand
//! out); wrong credentials get 401.
//!
//! It also speaks the OAuth2 form of the spec (`POST /token` with `grant_type=refresh_token`, used for the
//! identity tokens `docker login` stores): [`IDENTITY_TOKEN`] stands for the user; any other refresh token
//! gets 401.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

use super::Registry;
use promote_testkit::proxy::{Body, forward};

pub const SERVICE: &str = "promote-test";
pub const ISSUER: &str = "promote-test-issuer";
/// The refresh token the server accepts for its user.
pub const IDENTITY_TOKEN: &str = "idt-3f9a-refresh-for-ci";

/// One request the token server answered: who asked (`None` for anonymous), the scopes, and the status.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub user: Option<String>,
    pub scopes: Vec<String>,
    pub status: u16,
    /// Whether it was the OAuth2 refresh-token POST (else the GET with basic credentials).
    pub oauth: bool,
}

struct Issuer {
    key: PathBuf,
    /// Base64 DER of the certificate, for the `x5c` header.
    certificate: String,
    username: String,
    password: String,
    counter: AtomicU64,
    log: Mutex<Vec<TokenRequest>>,
}

/// A token server and the registry that trusts it. Both stop on drop.
pub struct TokenRegistry {
    /// The registry itself (skopeo talks to it directly).
    pub registry: Registry,
    /// The front, host:port: the token service and the registry behind it, on one origin.
    front: String,
    pub realm: String,
    issuer: Arc<Issuer>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenRegistry {
    /// Starts the token server (accepting `username`/`password`) and a registry that sends clients to it.
    pub async fn start(username: &str, password: &str) -> TokenRegistry {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        let certificate = dir.path().join("root.crt");
        let mut command = Command::new("openssl");
        command
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=promote-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate);
        super::run(command);
        let pem = std::fs::read_to_string(&certificate).unwrap();
        // A PEM body is the base64 of the DER bytes.
        let der_base64: String =
            pem.lines().filter(|line| !line.starts_with("-----")).map(str::trim).collect::<Vec<_>>().concat();
        assert!(STANDARD.decode(&der_base64).is_ok(), "the certificate PEM holds base64 DER");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = listener.local_addr().unwrap().to_string();
        let realm = format!("http://{front}/token");
        let port = super::free_port();
        let upstream = format!("127.0.0.1:{port}");
        let issuer = Arc::new(Issuer {
            key,
            certificate: der_base64,
            username: username.to_owned(),
            password: password.to_owned(),
            counter: AtomicU64::new(0),
            log: Mutex::new(Vec::new()),
        });
        let shared = issuer.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (issuer, upstream) = (shared.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| front_handle(request, issuer.clone(), upstream.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });

        let auth = format!(
            "auth:\n  token:\n    realm: \"{realm}\"\n    service: \"{SERVICE}\"\n    issuer: \"{ISSUER}\"\n    rootcertbundle: \"{}\"\n",
            certificate.display()
        );
        let registry = Registry::spawn(dir, port, &auth, Some((username.to_owned(), password.to_owned())));
        TokenRegistry { registry, front, realm, issuer, task }
    }

    /// The host a store talks to: the front, where the registry and its token service share one origin.
    pub fn host(&self) -> &str {
        &self.front
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.issuer.log.lock().unwrap().clone()
    }

    /// Forgets the requests answered so far.
    pub fn clear_requests(&self) {
        self.issuer.log.lock().unwrap().clear();
    }
}

fn respond(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, "application/json".parse().unwrap());
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(hyper::header::WWW_AUTHENTICATE, format!("Basic realm=\"{SERVICE}\"").parse().unwrap());
    }
    response
}

/// The query's values for `name`, percent-decoded.
fn query_values(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| percent_decode(value))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// `repository:NAME:pull,push` as a JWT access entry. Several scopes may also share one parameter,
/// separated by spaces.
fn access_entries(scopes: &[String]) -> Vec<serde_json::Value> {
    scopes
        .iter()
        .flat_map(|scope| scope.split(' '))
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').filter(|a| !a.is_empty()).collect::<Vec<_>>(),
            }))
        })
        .collect()
}

/// `/token` is the token service; anything else goes to the registry.
async fn front_handle(
    request: Request<Incoming>,
    issuer: Arc<Issuer>,
    upstream: String,
) -> Result<Response<Body>, Infallible> {
    if request.uri().path() == "/token" {
        let response = handle(request, issuer).await?;
        return Ok(response.map(|body| body.map_err(|never: Infallible| match never {}).boxed()));
    }
    Ok(forward(request, &upstream).await)
}

async fn handle(request: Request<Incoming>, issuer: Arc<Issuer>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == hyper::Method::POST {
        return Ok(handle_oauth(request, &issuer).await);
    }
    let query = request.uri().query().unwrap_or("").to_owned();
    let scopes = query_values(&query, "scope");
    let service = query_values(&query, "service").into_iter().next().unwrap_or_default();
    let credentials = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|pair| pair.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let log = |user: Option<String>, status: StatusCode| {
        let status = status.as_u16();
        issuer.log.lock().unwrap().push(TokenRequest { user, scopes: scopes.clone(), status, oauth: false });
    };
    if request.uri().path() != "/token" || service != SERVICE {
        log(credentials.map(|(u, _)| u), StatusCode::BAD_REQUEST);
        return Ok(respond(StatusCode::BAD_REQUEST, r#"{"details":"unknown service"}"#.into()));
    }
    let (subject, access) = match credentials {
        Some((user, password)) if user == issuer.username && password == issuer.password => {
            (user, access_entries(&scopes))
        }
        Some((user, _)) => {
            log(Some(user), StatusCode::UNAUTHORIZED);
            return Ok(respond(StatusCode::UNAUTHORIZED, r#"{"details":"incorrect username or password"}"#.into()));
        }
        None => (String::new(), Vec::new()),
    };
    let token = issue(&issuer, &subject, access).await;
    log((!subject.is_empty()).then_some(subject), StatusCode::OK);
    let body = serde_json::json!({ "token": token, "access_token": token, "expires_in": 300 });
    Ok(respond(StatusCode::OK, body.to_string()))
}

/// The OAuth2 token request: a form with `grant_type=refresh_token`, `refresh_token`, `client_id`,
/// `service` and `scope` (space-separated). Answers `{"access_token", "expires_in", "scope"}`.
async fn handle_oauth(request: Request<Incoming>, issuer: &Issuer) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt as _;
    let path_ok = request.uri().path() == "/token";
    let form = String::from_utf8(request.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let field = |name: &str| query_values(&form, name).into_iter().next().unwrap_or_default();
    let scopes: Vec<String> = field("scope").split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let well_formed = path_ok
        && field("grant_type") == "refresh_token"
        && field("service") == SERVICE
        && !field("client_id").is_empty();
    let (status, body) = if !well_formed {
        (StatusCode::BAD_REQUEST, r#"{"error":"invalid_request"}"#.to_owned())
    } else if field("refresh_token") != IDENTITY_TOKEN {
        (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_grant"}"#.to_owned())
    } else {
        let token = issue(issuer, &issuer.username, access_entries(&scopes)).await;
        let body = serde_json::json!({ "access_token": token, "expires_in": 300, "scope": scopes.join(" ") });
        (StatusCode::OK, body.to_string())
    };
    let user = (status == StatusCode::OK).then(|| issuer.username.clone());
    issuer.log.lock().unwrap().push(TokenRequest { user, scopes, status: status.as_u16(), oauth: true });
    respond(status, body)
}

/// An RS256 JWT for `subject` with `access`, signed by `openssl dgst -sha256 -sign` (raw PKCS#1 v1.5).
async fn issue(issuer: &Issuer, subject: &str, access: Vec<serde_json::Value>) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5c": [issuer.certificate] });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now - 60,
        "iat": now - 60,
        "jti": format!("promote-test-{}", issuer.counter.fetch_add(1, Ordering::Relaxed)),
        "access": access,
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = sign(&issuer.key, signing_input.as_bytes()).await;
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

async fn sign(key: &Path, input: &[u8]) -> Vec<u8> {
    let mut child = tokio::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openssl dgst");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success(), "openssl dgst failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}
