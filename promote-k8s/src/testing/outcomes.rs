//! Scripted pod outcomes: what the simulated kubelet does with a container image.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What happens to a pod whose container image matches a scripted pattern.
///
/// Each failure outcome shows on the pod as the container's `state.waiting.reason` (and `message`) that a real
/// kubelet reports, from the first controller tick after the pod is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PodOutcome {
    /// Running and ready at once (the default for images nothing matches).
    Ready,
    /// Running and ready once this much (injected) time has passed since the pod was created; pending before.
    Slow(Duration),
    /// The image cannot be pulled; the kubelet backs off (`ImagePullBackOff`).
    ImagePullBackOff,
    /// The image pull fails (`ErrImagePull`).
    ErrImagePull,
    /// The container starts, exits 1, and is restarted with back-off (`CrashLoopBackOff`).
    CrashLoopBackOff,
    /// The container cannot be created from its configuration (`CreateContainerConfigError`).
    CreateContainerConfigError,
    /// The container runs but never passes its readiness probe.
    NeverReady,
}

impl fmt::Display for PodOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodOutcome::Ready => f.write_str("Ready"),
            PodOutcome::Slow(d) => write!(f, "Slow:{}ms", d.as_millis()),
            PodOutcome::ImagePullBackOff => f.write_str("ImagePullBackOff"),
            PodOutcome::ErrImagePull => f.write_str("ErrImagePull"),
            PodOutcome::CrashLoopBackOff => f.write_str("CrashLoopBackOff"),
            PodOutcome::CreateContainerConfigError => f.write_str("CreateContainerConfigError"),
            PodOutcome::NeverReady => f.write_str("NeverReady"),
        }
    }
}

fn parse_duration(input: &str) -> Option<Duration> {
    if let Some(ms) = input.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    if let Some(m) = input.strip_suffix('m') {
        return m.parse::<u64>().ok().map(|m| Duration::from_secs(m * 60));
    }
    input.strip_suffix('s').unwrap_or(input).parse().ok().map(Duration::from_secs)
}

/// Parses `Ready`, `Slow:5s` (also `ms` and `m`), `ImagePullBackOff`, `ErrImagePull`, `CrashLoopBackOff`,
/// `CreateContainerConfigError` or `NeverReady`, case-insensitively.
impl FromStr for PodOutcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        if let Some(delay) = lower.strip_prefix("slow:").or_else(|| lower.strip_prefix("slow=")) {
            return parse_duration(delay)
                .map(PodOutcome::Slow)
                .ok_or_else(|| format!("outcome {s:?}: the delay must look like 5s, 500ms or 2m"));
        }
        Ok(match lower.as_str() {
            "ready" => PodOutcome::Ready,
            "imagepullbackoff" => PodOutcome::ImagePullBackOff,
            "errimagepull" => PodOutcome::ErrImagePull,
            "crashloopbackoff" => PodOutcome::CrashLoopBackOff,
            "createcontainerconfigerror" => PodOutcome::CreateContainerConfigError,
            "neverready" => PodOutcome::NeverReady,
            _ => {
                return Err(format!(
                    "unknown pod outcome {s:?}: expected Ready, Slow:<duration>, ImagePullBackOff, ErrImagePull, \
                     CrashLoopBackOff, CreateContainerConfigError or NeverReady"
                ));
            }
        })
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The scripted outcomes, first match wins.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutcomeScript(Vec<(String, PodOutcome)>);

impl OutcomeScript {
    pub(crate) fn push(&mut self, pattern: String, outcome: PodOutcome) {
        self.0.push((pattern, outcome));
    }

    pub(crate) fn outcome_for(&self, image: &str) -> PodOutcome {
        self.0.iter().find(|(p, _)| glob_matches(p, image)).map(|(_, o)| *o).unwrap_or(PodOutcome::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_parsing() {
        let mut script = OutcomeScript::default();
        script.push("registry.local/bad:*".into(), PodOutcome::ImagePullBackOff);
        script.push("*:slow".into(), "slow:2s".parse().unwrap());
        assert_eq!(script.outcome_for("registry.local/bad:v2"), PodOutcome::ImagePullBackOff);
        assert_eq!(script.outcome_for("x/y:slow"), PodOutcome::Slow(Duration::from_secs(2)));
        assert_eq!(script.outcome_for("nginx:1.27"), PodOutcome::Ready);
        assert!("sometimes".parse::<PodOutcome>().is_err());
        assert_eq!("CrashLoopBackOff".parse::<PodOutcome>().unwrap(), PodOutcome::CrashLoopBackOff);
    }
}
