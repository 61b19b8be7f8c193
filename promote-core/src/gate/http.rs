//! HTTP checks: GET a URL and expect a status, with a timeout and bounded retries. Typically a smoke test
//! among a stage's verification gates.
//!
//! ```yaml
//! verify:
//!   - kind: http
//!     name: smoke                  # default: http
//!     url: "https://web.{stage}.example.com/healthz?build={build}"
//!     expect_status: 200           # default 200
//!     timeout: 10s                 # per attempt; default 10s
//!     retries: 5                   # attempts after the first; default 3, at most 20
//!     retry_delay: 2s              # default 2s
//!     allow_private: false         # default false: see below
//!     keep_body: false             # default false: keep the start of an unexpected answer's body
//!     safe_for_plan: false         # default false
//! ```
//!
//! `{stage}`, `{build}`, `{commit}` and `{version}` in the URL are replaced by their values,
//! percent-encoded (everything but letters, digits and `-._~`), so a value cannot add a path segment, a
//! query or a fragment. Redirects are not followed: the status is the one the URL itself answers. A wrong
//! status, a refused connection or a timeout on every attempt fails the gate; each attempt's outcome is
//! evidence.
//!
//! **Addresses.** Unless `allow_private: true` (builder: [`HttpGate::allow_private_addresses`]), the gate
//! refuses to call loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10, where cloud
//! metadata services live), private (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7), shared
//! (CGNAT, 100.64.0.0/10), unspecified (0.0.0.0/8, ::) and broadcast addresses, IPv4 addresses embedded
//! in IPv6 included. The check is made on the addresses DNS resolved the host to, and the connection goes
//! to exactly those addresses, so a second resolution cannot point it elsewhere. A refused address fails
//! the gate at once, without retries. Proxies from the environment are not used: the check must see the
//! real target.
//!
//! **Evidence.** Each attempt records its status or its error. The response body is not kept unless
//! `keep_body: true`; then the first 256 bytes of an unexpected answer's body are, with every secret the
//! pipeline knows replaced by `[redacted]`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use backon::{ConstantBuilder, Retryable};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GateReport};
use crate::config::Redactor;
use crate::error::{Error, ErrorClass, Result};
use crate::ledger::Verdict;

/// The most retries a gate may ask for.
pub const MAX_RETRIES: usize = 20;

/// How much of an unexpected response's body is kept as evidence, when bodies are kept.
const BODY_EVIDENCE: usize = 256;

/// What a substituted value keeps as it is in a URL: RFC 3986's unreserved characters.
const URL_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A gate that GETs a URL and expects a status.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use promote_core::gate::HttpGate;
/// let gate = HttpGate::new("smoke", "http://web.{stage}.internal/healthz")?
///     .expect_status(204)?
///     .retries(5)?
///     .retry_delay(Duration::from_secs(1))
///     .allow_private_addresses(true); // web.stg.internal resolves to a private address
/// assert!(HttpGate::new("smoke", "ftp://example.com/").is_err());
/// # Ok::<(), promote_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HttpGate {
    name: String,
    url: String,
    expect_status: u16,
    timeout: Duration,
    retries: usize,
    retry_delay: Duration,
    safe_for_plan: bool,
    allow_private: bool,
    keep_body: bool,
    /// Built on first use, with or without the address check.
    client: OnceLock<reqwest::Client>,
}

fn fill(url: &str, stage: &str, build: &str, commit: &str, version: &str) -> String {
    let encode = |value: &str| utf8_percent_encode(value, URL_VALUE).to_string();
    // Encoded values hold no braces, so a value can never be taken for a placeholder.
    url.replace("{stage}", &encode(stage))
        .replace("{build}", &encode(build))
        .replace("{commit}", &encode(commit))
        .replace("{version}", &encode(version))
}

impl HttpGate {
    /// A gate called `name` expecting 200 from `url` (`http` or `https`), with a 10 s timeout and three
    /// retries two seconds apart. It refuses private addresses until
    /// [`allow_private_addresses`](HttpGate::allow_private_addresses) says otherwise.
    pub fn new(name: impl Into<String>, url: &str) -> Result<Self> {
        let sample = fill(url, "stage", "b-0000000000000000", "0000000", "1.0.0");
        let parsed = reqwest::Url::parse(&sample).map_err(|error| Error::invalid("URL", url, error.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid("URL", url, "only http and https are supported"));
        }
        Ok(HttpGate {
            name: name.into(),
            url: url.to_owned(),
            expect_status: 200,
            timeout: Duration::from_secs(10),
            retries: 3,
            retry_delay: Duration::from_secs(2),
            safe_for_plan: false,
            allow_private: false,
            keep_body: false,
            client: OnceLock::new(),
        })
    }

    /// Sets the expected status (100 to 599).
    pub fn expect_status(mut self, status: u16) -> Result<Self> {
        if !(100..=599).contains(&status) {
            return Err(Error::invalid("HTTP status", status.to_string(), "must be between 100 and 599"));
        }
        self.expect_status = status;
        Ok(self)
    }

    /// Sets the timeout of each attempt.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many times a failed attempt is retried (at most [`MAX_RETRIES`]).
    pub fn retries(mut self, retries: usize) -> Result<Self> {
        if retries > MAX_RETRIES {
            return Err(Error::invalid("retries", retries.to_string(), format!("at most {MAX_RETRIES}")));
        }
        self.retries = retries;
        Ok(self)
    }

    /// Sets the pause between attempts.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Declares the URL safe to call from `plan` (a read-only health check).
    pub fn safe_for_plan(mut self, safe: bool) -> Self {
        self.safe_for_plan = safe;
        self
    }

    /// Allows loopback, link-local, private, shared and unspecified addresses (default: refused), for a
    /// service on the runner itself or on an internal network.
    pub fn allow_private_addresses(mut self, allow: bool) -> Self {
        self.allow_private = allow;
        self.client = OnceLock::new();
        self
    }

    /// Keeps the first 256 bytes of an unexpected answer's body as evidence, secrets redacted (default:
    /// no body is kept).
    pub fn keep_body(mut self, keep: bool) -> Self {
        self.keep_body = keep;
        self
    }

    fn client(&self) -> Result<&reqwest::Client> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        // Proxies would connect to the target themselves, past the address check.
        let mut builder = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).no_proxy();
        if !self.allow_private {
            builder = builder.dns_resolver(CheckedResolver);
        }
        let client = builder.build().map_err(|error| {
            Error::backend("http gate", ErrorClass::Persistent, format!("could not build an HTTP client: {error}"))
        })?;
        Ok(self.client.get_or_init(|| client))
    }

    /// One GET: `Ok` with the expected status, else why not (the attempt's record goes to `attempts`).
    async fn attempt(
        &self,
        client: &reqwest::Client,
        url: &reqwest::Url,
        redactor: &Redactor,
        attempts: &Mutex<Vec<serde_json::Value>>,
    ) -> std::result::Result<(), AttemptFailure> {
        let outcome = self.call(client, url, redactor).await;
        let mut log = attempts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match outcome {
            Ok(record) => {
                log.push(record);
                Ok(())
            }
            Err((failure, record)) => {
                log.push(record);
                Err(failure)
            }
        }
    }

    async fn call(
        &self,
        client: &reqwest::Client,
        url: &reqwest::Url,
        redactor: &Redactor,
    ) -> std::result::Result<serde_json::Value, (AttemptFailure, serde_json::Value)> {
        if !self.allow_private
            && let Some(refused) = refused_literal(url)
        {
            let reason = format!("refused: {refused}; set `allow_private: true` to call it");
            return Err((AttemptFailure::Refused(reason.clone()), serde_json::json!({ "refused": reason })));
        }
        match client.get(url.clone()).timeout(self.timeout).send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                if status == self.expect_status {
                    return Ok(serde_json::json!({ "status": status }));
                }
                let reason = format!("answered {status}, expected {}", self.expect_status);
                let mut record = serde_json::json!({ "status": status });
                if self.keep_body {
                    // Read past the kept part by the longest secret, so a secret cut there is still masked.
                    let wanted = BODY_EVIDENCE.saturating_add(redactor.margin());
                    let mut body = Vec::new();
                    while body.len() < wanted {
                        match response.chunk().await {
                            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                            Ok(None) | Err(_) => break,
                        }
                    }
                    body.truncate(wanted);
                    record["body"] = redactor.redact_window(&body, 0..BODY_EVIDENCE).into();
                }
                Err((AttemptFailure::Retry(reason), record))
            }
            Err(error) => {
                let (failure, reason) = if let Some(refused) = refused_in(&error) {
                    let reason = format!("refused: {refused}; set `allow_private: true` to call it");
                    (AttemptFailure::Refused(reason.clone()), reason)
                } else if error.is_timeout() {
                    let reason = format!("no answer within {}", humantime::format_duration(self.timeout));
                    (AttemptFailure::Retry(reason.clone()), reason)
                } else {
                    let reason = redactor.redact(&error_chain(&error));
                    (AttemptFailure::Retry(reason.clone()), reason)
                };
                let key = if matches!(failure, AttemptFailure::Refused(_)) { "refused" } else { "error" };
                Err((failure, serde_json::json!({ key: reason })))
            }
        }
    }
}

/// Why an attempt did not pass.
enum AttemptFailure {
    /// Worth another attempt: a wrong status, a timeout, a connection error.
    Retry(String),
    /// The target's address is refused: another attempt would be refused too.
    Refused(String),
}

impl AttemptFailure {
    fn reason(self) -> String {
        match self {
            AttemptFailure::Retry(reason) | AttemptFailure::Refused(reason) => reason,
        }
    }
}

/// A target address the gate will not call.
#[derive(Debug)]
struct RefusedAddress {
    /// The host name that resolved to it, when the URL named a host.
    host: Option<String>,
    address: IpAddr,
    kind: &'static str,
}

impl fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(host) => write!(f, "{host} resolves to {}, a {} address", self.address, self.kind),
            None => write!(f, "{} is a {} address", self.address, self.kind),
        }
    }
}

impl std::error::Error for RefusedAddress {}

/// Resolves a host once, refuses it if any of its addresses is refused, and hands the connector exactly
/// the addresses it checked.
#[derive(Debug)]
struct CheckedResolver;

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for address in &addresses {
                if let Some(kind) = refused_kind(address.ip()) {
                    let refused = RefusedAddress { host: Some(host), address: address.ip(), kind };
                    // Boxed as the trait object itself (not a box in a box), so `refused_in` can find it.
                    return Err(Box::new(refused) as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The refusal of a URL whose host is an address literal (these never reach the resolver).
fn refused_literal(url: &reqwest::Url) -> Option<RefusedAddress> {
    // `Url` has already normalised IPv4 spellings such as `0x7f.1`; IPv6 comes in brackets.
    let host = url.host_str()?;
    let address: IpAddr = host.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    refused_kind(address).map(|kind| RefusedAddress { host: None, address, kind })
}

/// The resolver's refusal, somewhere in a request error's causes.
fn refused_in(error: &reqwest::Error) -> Option<&RefusedAddress> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<RefusedAddress>() {
            return Some(refused);
        }
        source = cause.source();
    }
    None
}

/// What kind of refused address `address` is, or `None` for an address the gate may call.
fn refused_kind(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => refused_v4(v4),
            None => refused_v6(v6),
        },
    }
}

fn refused_v4(address: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = address.octets();
    if a == 0 {
        Some("unspecified")
    } else if address.is_loopback() {
        Some("loopback")
    } else if address.is_link_local() {
        Some("link-local")
    } else if address.is_private() {
        Some("private")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("shared (CGNAT)")
    } else if address.is_broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

fn refused_v6(address: Ipv6Addr) -> Option<&'static str> {
    let first = address.segments()[0];
    if address.is_unspecified() {
        Some("unspecified")
    } else if address.is_loopback() {
        Some("loopback")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else {
        None
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) or NAT64
/// (`64:ff9b::a.b.c.d`) IPv6 address: each reaches that IPv4 address.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = address.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = address.segments();
    let low = Ipv4Addr::from(((segments[6] as u32) << 16) | segments[7] as u32);
    let compatible = segments[..6].iter().all(|s| *s == 0) && !address.is_unspecified() && !address.is_loopback();
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (compatible || nat64).then_some(low)
}

/// An error and its causes, on one line (reqwest's own message is terse: "error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl Gate for HttpGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "http"
    }

    fn capabilities(&self) -> GateCapabilities {
        if self.safe_for_plan { GateCapabilities::pure() } else { GateCapabilities::acting() }
    }

    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }

    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        let version = context.build.version.as_ref().map(ToString::to_string).unwrap_or_else(|| "unversioned".into());
        let text = fill(&self.url, context.stage, context.build.id.as_str(), &context.build.commit, &version);
        let shown = context.secrets.redact(&text);
        let url = match reqwest::Url::parse(&text) {
            Ok(url) => url,
            Err(error) => {
                return Ok(
                    GateReport::new(Verdict::Fail(format!("GET {shown}: not a valid URL: {error}"))).with("url", shown)
                );
            }
        };
        let client = self.client()?;
        let attempts = Mutex::new(Vec::new());
        let outcome = (|| self.attempt(client, &url, context.secrets, &attempts))
            .retry(ConstantBuilder::default().with_delay(self.retry_delay).with_max_times(self.retries))
            .when(|failure| matches!(failure, AttemptFailure::Retry(_)))
            .await;
        let attempts = attempts.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tries = attempts.len();
        let verdict = match outcome {
            Ok(()) => Verdict::Pass,
            Err(failure) => Verdict::Fail(format!(
                "GET {shown} {} (after {tries} attempt{})",
                failure.reason(),
                if tries == 1 { "" } else { "s" }
            )),
        };
        Ok(GateReport::new(verdict)
            .with("url", shown)
            .with("expect_status", self.expect_status)
            .with("attempts", attempts))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::testing::scene::{Scene, at};

    /// A loopback server answering each request with the next status of `script` (the last one repeats),
    /// or never answering when the status is 0. Returns its address and the request lines it saw.
    async fn serve(script: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        serve_with(script, String::new(), "").await
    }

    /// [`serve`], with extra header lines (each ending in `\r\n`) and a body after the status line.
    async fn serve_with(
        script: Vec<u16>,
        headers: String,
        extra_body: &'static str,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let count = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let status = script[count.fetch_add(1, Ordering::SeqCst).min(script.len() - 1)];
                let (log, headers) = (log.clone(), headers.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request).lines().next().unwrap_or_default().to_owned();
                    log.lock().unwrap().push(line);
                    if status == 0 {
                        // Hold the connection without answering until the client gives up.
                        let _ = socket.read(&mut buffer).await;
                        return;
                    }
                    let body = format!("status {status}{extra_body}");
                    let response = format!(
                        "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\n{headers}connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (format!("http://{address}"), seen)
    }

    async fn check(gate: &HttpGate) -> GateReport {
        let mut scene = Scene::new();
        let build = scene.register("2.0.1", &[]);
        scene.evaluate(gate, &build, "stg", &["dev"], at("2026-03-01T00:00:00Z")).await
    }

    /// A gate on a loopback test server, which needs private addresses allowed.
    fn local(url: &str) -> HttpGate {
        HttpGate::new("smoke", url).unwrap().allow_private_addresses(true)
    }

    #[tokio::test]
    async fn the_expected_status_passes_and_the_url_is_filled_in() {
        let (base, seen) = serve(vec![200]).await;
        let gate = local(&format!("{base}/healthz/{{stage}}?v={{version}}"));
        let report = check(&gate).await;
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(seen.lock().unwrap().as_slice(), ["GET /healthz/stg?v=2.0.1 HTTP/1.1"]);
        assert_eq!(report.evidence["attempts"], serde_json::json!([{ "status": 200 }]));
    }

    #[tokio::test]
    async fn retries_until_the_service_is_up() {
        let (base, seen) = serve(vec![503, 503, 200]).await;
        let gate = local(&base).retries(3).unwrap().retry_delay(Duration::from_millis(5)).keep_body(true);
        let report = check(&gate).await;
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(report.evidence["attempts"][0]["status"], 503);
        assert_eq!(report.evidence["attempts"][0]["body"], "status 503");
    }

    #[tokio::test]
    async fn gives_up_after_the_last_retry() {
        let (base, seen) = serve(vec![500]).await;
        let gate = local(&base).retries(2).unwrap().retry_delay(Duration::from_millis(5));
        let report = check(&gate).await;
        assert_eq!(report.verdict, Verdict::Fail(format!("GET {base} answered 500, expected 200 (after 3 attempts)")));
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (base, _) = serve(vec![0]).await;
        let gate = local(&base).retries(0).unwrap().timeout(Duration::from_millis(200));
        let report = check(&gate).await;
        assert!(
            matches!(&report.verdict, Verdict::Fail(r) if r.contains("no answer within 200ms") && r.contains("after 1 attempt)")),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_fails() {
        // Bind and drop, so the port is (almost certainly) closed.
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let gate = local(&format!("http://127.0.0.1:{port}/")).retries(0).unwrap();
        let report = check(&gate).await;
        assert!(matches!(&report.verdict, Verdict::Fail(r) if r.contains("after 1 attempt")), "{report:?}");
        assert!(report.evidence["attempts"][0]["error"].is_string());
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (base, _) = serve(vec![302]).await;
        let gate = local(&base).expect_status(302).unwrap().retries(0).unwrap();
        assert_eq!(check(&gate).await.verdict, Verdict::Pass);
    }

    #[tokio::test]
    async fn loopback_is_refused_by_default_with_the_reason() {
        let (base, seen) = serve(vec![200]).await;
        let gate = HttpGate::new("smoke", &format!("{base}/healthz")).unwrap().retry_delay(Duration::from_millis(5));
        let report = check(&gate).await;
        let Verdict::Fail(reason) = &report.verdict else { panic!("{report:?}") };
        assert!(reason.contains("is a loopback address") && reason.contains("allow_private: true"), "{reason}");
        assert!(reason.ends_with("(after 1 attempt)"), "a refusal is not retried: {reason}");
        assert!(seen.lock().unwrap().is_empty(), "nothing reached the server");
        assert!(report.evidence["attempts"][0]["refused"].as_str().unwrap().contains("127.0.0.1"));
        // The same server, allowed.
        assert_eq!(check(&gate.allow_private_addresses(true)).await.verdict, Verdict::Pass);
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_host_name_that_resolves_to_loopback_is_refused() {
        let (base, seen) = serve(vec![200]).await;
        let port = base.rsplit(':').next().unwrap();
        let gate = HttpGate::new("smoke", &format!("http://localhost:{port}/")).unwrap().retry_delay(Duration::ZERO);
        let report = check(&gate).await;
        let Verdict::Fail(reason) = &report.verdict else { panic!("{report:?}") };
        assert!(reason.contains("refused: localhost resolves to") && reason.contains("loopback address"), "{reason}");
        assert!(reason.ends_with("(after 1 attempt)"), "a refusal is not retried: {reason}");
        assert!(seen.lock().unwrap().is_empty(), "nothing reached the server");
    }

    #[tokio::test]
    async fn address_literals_in_other_spellings_are_refused() {
        for url in
            ["http://0x7f.1/", "http://[::ffff:169.254.169.254]/latest/", "http://169.254.169.254/", "http://[::1]/"]
        {
            let report = check(&HttpGate::new("smoke", url).unwrap().retries(0).unwrap()).await;
            assert!(
                matches!(&report.verdict, Verdict::Fail(reason) if reason.contains("refused:")),
                "{url}: {report:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_redirect_to_a_private_address_is_not_followed() {
        let (trap, trapped) = serve(vec![200]).await;
        let (base, _) = serve_with(vec![302], format!("location: {trap}/metadata\r\n"), "").await;
        let report = check(&local(&base).retries(0).unwrap()).await;
        assert_eq!(report.verdict, Verdict::Fail(format!("GET {base} answered 302, expected 200 (after 1 attempt)")));
        assert!(trapped.lock().unwrap().is_empty(), "the redirect target was never called");
    }

    #[tokio::test]
    async fn the_body_is_kept_only_when_asked_and_then_redacted() {
        let (base, _) =
            serve_with(vec![500], String::new(), " AccessKeyId=AKIA-EXAMPLE SecretAccessKey=wJalr-example-key").await;
        let report = check(&local(&base).retries(0).unwrap()).await;
        assert_eq!(report.evidence["attempts"], serde_json::json!([{ "status": 500 }]), "no body by default");

        let mut scene = Scene::new();
        scene.secrets = Redactor::new([crate::config::Secret::new("wJalr-example-key")]);
        let build = scene.register("2.0.1", &[]);
        let gate = local(&base).retries(0).unwrap().keep_body(true);
        let report = scene.evaluate(&gate, &build, "stg", &["dev"], at("2026-03-01T00:00:00Z")).await;
        assert_eq!(
            report.evidence["attempts"][0]["body"],
            "status 500 AccessKeyId=AKIA-EXAMPLE SecretAccessKey=[redacted]"
        );
    }

    #[tokio::test]
    async fn substituted_values_are_percent_encoded() {
        let (base, seen) = serve(vec![200]).await;
        let mut scene = Scene::new();
        let mut build = scene.register("2.0.1+meta", &[]);
        build.commit = "abc/../admin?x=1#frag {stage}".into();
        let gate = local(&format!("{base}/check/{{commit}}?v={{version}}&s={{stage}}"));
        let report = scene.evaluate(&gate, &build, "stg", &["dev"], at("2026-03-01T00:00:00Z")).await;
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            ["GET /check/abc%2F..%2Fadmin%3Fx%3D1%23frag%20%7Bstage%7D?v=2.0.1%2Bmeta&s=stg HTTP/1.1"]
        );
    }

    #[test]
    fn private_addresses_are_recognised() {
        let cases = [
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.9", Some("loopback")),
            ("169.254.169.254", Some("link-local")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("100.64.0.1", Some("shared (CGNAT)")),
            ("100.127.255.255", Some("shared (CGNAT)")),
            ("0.0.0.0", Some("unspecified")),
            ("255.255.255.255", Some("broadcast")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fe80::1", Some("link-local")),
            ("fd00:ec2::254", Some("private (unique local)")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("::ffff:10.0.0.1", Some("private")),
            ("::127.0.0.1", Some("loopback")),
            ("64:ff9b::a9fe:a9fe", Some("link-local")),
            ("8.8.8.8", None),
            ("172.15.255.255", None),
            ("172.32.0.1", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("2001:4860:4860::8888", None),
            ("::ffff:8.8.8.8", None),
        ];
        for (address, expected) in cases {
            assert_eq!(refused_kind(address.parse().unwrap()), expected, "{address}");
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(HttpGate::new("h", "not a url").is_err());
        assert!(HttpGate::new("h", "file:///etc/passwd").is_err());
        let gate = HttpGate::new("h", "http://localhost/").unwrap();
        assert!(gate.clone().expect_status(42).is_err());
        assert!(gate.clone().retries(MAX_RETRIES + 1).is_err());
        assert!(!gate.capabilities().side_effect_free);
        assert!(gate.safe_for_plan(true).capabilities().side_effect_free);
    }
}
