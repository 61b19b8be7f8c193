//! Fault hooks (scripted 5xx and 429 answers, added latency) and the request log tests read.

use std::time::Duration;

use axum::http::Method;

use super::status::ApiError;

/// One request as the fake received it, for tests that count or inspect requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The raw query string (empty when there is none).
    pub query: String,
    /// The `Content-Type` header, empty when absent.
    pub content_type: String,
}

/// What a scripted fault answers instead of serving the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultResponse {
    /// A 5xx `Status` (500 InternalError, 503 ServiceUnavailable, 504 Timeout, ...).
    ServerError(u16),
    /// 429 TooManyRequests with a `Retry-After` header of this many seconds.
    TooManyRequests {
        /// The `Retry-After` seconds.
        retry_after_secs: u64,
    },
}

#[derive(Debug, Clone)]
struct FaultRule {
    method: Option<Method>,
    path_prefix: String,
    remaining: usize,
    response: FaultResponse,
}

/// The armed faults and the request log.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Vec<FaultRule>,
    pub(crate) latency: Duration,
    /// Whether the next watch request gets a 410 `Expired` ERROR event.
    pub(crate) expire_next_watch: bool,
    pub(crate) requests: Vec<RecordedRequest>,
}

impl Faults {
    pub(crate) fn arm(&mut self, count: usize, method: Option<Method>, path_prefix: &str, response: FaultResponse) {
        self.rules.push(FaultRule { method, path_prefix: path_prefix.to_string(), remaining: count, response });
    }

    /// The fault this request triggers, if any, counting it down.
    pub(crate) fn take(&mut self, method: &Method, path: &str) -> Option<ApiError> {
        let rule = self.rules.iter_mut().find(|r| {
            r.remaining > 0 && r.method.as_ref().is_none_or(|m| m == method) && path.starts_with(&r.path_prefix)
        })?;
        rule.remaining -= 1;
        let error = match rule.response {
            FaultResponse::ServerError(code) => ApiError::server_error(code),
            FaultResponse::TooManyRequests { retry_after_secs } => ApiError::too_many_requests(retry_after_secs),
        };
        self.rules.retain(|r| r.remaining > 0);
        Some(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_count_down_and_match_method_and_prefix() {
        let mut faults = Faults::default();
        faults.arm(2, Some(Method::PATCH), "/apis/apps", FaultResponse::ServerError(503));
        assert!(faults.take(&Method::GET, "/apis/apps/v1/deployments").is_none());
        assert!(faults.take(&Method::PATCH, "/api/v1/namespaces").is_none());
        assert_eq!(faults.take(&Method::PATCH, "/apis/apps/v1/x").unwrap().code, 503);
        assert_eq!(faults.take(&Method::PATCH, "/apis/apps/v1/x").unwrap().reason, "ServiceUnavailable");
        assert!(faults.take(&Method::PATCH, "/apis/apps/v1/x").is_none());
    }
}
