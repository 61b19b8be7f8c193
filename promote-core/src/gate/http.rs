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
//!     safe_for_plan: false         # default false
//! ```
//!
//! `{stage}`, `{build}`, `{commit}` and `{version}` in the URL are replaced. Redirects are not followed:
//! the status is the one the URL itself answers. A wrong status, a refused connection or a timeout on
//! every attempt fails the gate; each attempt's outcome is evidence.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ConstantBuilder, Retryable};

use super::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GateReport};
use crate::error::{Error, ErrorClass, Result};
use crate::ledger::Verdict;

/// The most retries a gate may ask for.
pub const MAX_RETRIES: usize = 20;

/// How much of an unexpected response's body is kept as evidence.
const BODY_EVIDENCE: usize = 256;

/// A gate that GETs a URL and expects a status.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use promote_core::gate::HttpGate;
/// let gate = HttpGate::new("smoke", "http://web.{stage}.internal/healthz")?
///     .expect_status(204)?
///     .retries(5)?
///     .retry_delay(Duration::from_secs(1));
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
    client: reqwest::Client,
}

fn fill(url: &str, stage: &str, build: &str, commit: &str, version: &str) -> String {
    url.replace("{stage}", stage).replace("{build}", build).replace("{commit}", commit).replace("{version}", version)
}

impl HttpGate {
    /// A gate called `name` expecting 200 from `url` (`http` or `https`), with a 10 s timeout and three
    /// retries two seconds apart.
    pub fn new(name: impl Into<String>, url: &str) -> Result<Self> {
        let sample = fill(url, "stage", "b-0000000000000000", "0000000", "1.0.0");
        let parsed = reqwest::Url::parse(&sample).map_err(|error| Error::invalid("URL", url, error.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::invalid("URL", url, "only http and https are supported"));
        }
        let client =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|error| {
                Error::backend("http gate", ErrorClass::Persistent, format!("could not build an HTTP client: {error}"))
            })?;
        Ok(HttpGate {
            name: name.into(),
            url: url.to_owned(),
            expect_status: 200,
            timeout: Duration::from_secs(10),
            retries: 3,
            retry_delay: Duration::from_secs(2),
            safe_for_plan: false,
            client,
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

    /// One GET: `Ok` with the expected status, else why not (also pushed to `attempts`).
    async fn attempt(&self, url: &str, attempts: &Mutex<Vec<serde_json::Value>>) -> std::result::Result<(), String> {
        let outcome = match self.client.get(url).timeout(self.timeout).send().await {
            Ok(mut response) => {
                let status = response.status().as_u16();
                if status == self.expect_status {
                    Ok(serde_json::json!({ "status": status }))
                } else {
                    let mut body = Vec::new();
                    while body.len() < BODY_EVIDENCE {
                        match response.chunk().await {
                            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                            Ok(None) | Err(_) => break,
                        }
                    }
                    body.truncate(BODY_EVIDENCE);
                    let body = String::from_utf8_lossy(&body).into_owned();
                    Err((
                        format!("answered {status}, expected {}", self.expect_status),
                        serde_json::json!({ "status": status, "body": body }),
                    ))
                }
            }
            Err(error) => {
                let reason = if error.is_timeout() {
                    format!("no answer within {}", humantime::format_duration(self.timeout))
                } else {
                    error_chain(&error)
                };
                Err((reason.clone(), serde_json::json!({ "error": reason })))
            }
        };
        let mut log = attempts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match outcome {
            Ok(record) => {
                log.push(record);
                Ok(())
            }
            Err((reason, record)) => {
                log.push(record);
                Err(reason)
            }
        }
    }
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
        let url = fill(&self.url, context.stage, context.build.id.as_str(), &context.build.commit, &version);
        let attempts = Mutex::new(Vec::new());
        let outcome = (|| self.attempt(&url, &attempts))
            .retry(ConstantBuilder::default().with_delay(self.retry_delay).with_max_times(self.retries))
            .await;
        let attempts = attempts.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tries = attempts.len();
        let verdict = match outcome {
            Ok(()) => Verdict::Pass,
            Err(reason) => Verdict::Fail(format!(
                "GET {url} {reason} (after {tries} attempt{})",
                if tries == 1 { "" } else { "s" }
            )),
        };
        Ok(GateReport::new(verdict)
            .with("url", url)
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
    use crate::gate::kinds::fixture::{Scene, at};

    /// A loopback server answering each request with the next status of `script` (the last one repeats),
    /// or never answering when the status is 0. Returns its address and the request paths it saw.
    async fn serve(script: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
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
                let log = log.clone();
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
                    let body = format!("status {status}");
                    let response = format!(
                        "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
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

    #[tokio::test]
    async fn the_expected_status_passes_and_the_url_is_filled_in() {
        let (base, seen) = serve(vec![200]).await;
        let gate = HttpGate::new("smoke", &format!("{base}/healthz/{{stage}}?v={{version}}")).unwrap();
        let report = check(&gate).await;
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(seen.lock().unwrap().as_slice(), ["GET /healthz/stg?v=2.0.1 HTTP/1.1"]);
        assert_eq!(report.evidence["attempts"], serde_json::json!([{ "status": 200 }]));
    }

    #[tokio::test]
    async fn retries_until_the_service_is_up() {
        let (base, seen) = serve(vec![503, 503, 200]).await;
        let gate = HttpGate::new("smoke", &base).unwrap().retries(3).unwrap().retry_delay(Duration::from_millis(5));
        let report = check(&gate).await;
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(report.evidence["attempts"][0]["status"], 503);
        assert_eq!(report.evidence["attempts"][0]["body"], "status 503");
    }

    #[tokio::test]
    async fn gives_up_after_the_last_retry() {
        let (base, seen) = serve(vec![500]).await;
        let gate = HttpGate::new("smoke", &base).unwrap().retries(2).unwrap().retry_delay(Duration::from_millis(5));
        let report = check(&gate).await;
        assert_eq!(report.verdict, Verdict::Fail(format!("GET {base} answered 500, expected 200 (after 3 attempts)")));
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let (base, _) = serve(vec![0]).await;
        let gate = HttpGate::new("smoke", &base).unwrap().retries(0).unwrap().timeout(Duration::from_millis(200));
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
        let gate = HttpGate::new("smoke", &format!("http://127.0.0.1:{port}/")).unwrap().retries(0).unwrap();
        let report = check(&gate).await;
        assert!(matches!(&report.verdict, Verdict::Fail(r) if r.contains("after 1 attempt")), "{report:?}");
        assert!(report.evidence["attempts"][0]["error"].is_string());
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (base, _) = serve(vec![302]).await;
        let gate = HttpGate::new("smoke", &base).unwrap().expect_status(302).unwrap().retries(0).unwrap();
        assert_eq!(check(&gate).await.verdict, Verdict::Pass);
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
