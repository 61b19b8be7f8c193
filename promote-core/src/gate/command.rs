//! Command gates: run a program; exit status 0 passes.
//!
//! ```yaml
//! gates:
//!   - kind: command
//!     name: contract-tests          # default: command
//!     program: ./ci/contract-tests.sh
//!     args: ["--suite", "payments"]
//!     env: { REGION: eu-west-1 }
//!     secrets: { API_TOKEN: "literal, for demos only" }
//!     secrets_from_env: [DEPLOY_TOKEN]   # passed through from promote's environment, as secrets
//!     dir: ci                       # working directory, relative to the spec file
//!     timeout: 10m                  # default 5m
//!     max_output: 4096              # bytes of stdout and of stderr kept as evidence; default 4096,
//!                                   # at most 1 MiB (1048576)
//!     safe_for_plan: false          # default false: `plan` reports it as pending without running it
//! ```
//!
//! The program does not inherit promote's environment. It starts from an empty one and sees only:
//! - `PATH`, `HOME`, `LANG`, `LC_ALL` and `TZ`, each when promote has it set;
//! - `PROMOTE_BUILD`, `PROMOTE_COMMIT`, `PROMOTE_VERSION` (when the build has one), `PROMOTE_STAGE`,
//!   `PROMOTE_PHASE` (`entry` or `verification`) and `PROMOTE_DRY_RUN` (`true` in a plan);
//! - what the gate passes: `env`, `secrets` and `secrets_from_env`.
//!
//! The last `max_output` bytes of stdout and of stderr become evidence, with every secret value replaced
//! by `[redacted]`: the ones passed to the program and every secret the pipeline knows
//! ([`GateContext::secrets`]). The program runs in its own process group. When it outlives its
//! timeout, the whole group is sent SIGTERM, and SIGKILL two seconds later, through the system's `kill`
//! command (`kill -TERM -- -PGID`), because this crate forbids `unsafe` and adds no signal crate. After a
//! normal exit, processes it left behind that still hold its output open are killed the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use super::{ApprovalPolicy, Gate, GateCapabilities, GateContext, GatePhase, GateReport};
use crate::config::{Redactor, Secret};
use crate::error::{Error, ErrorClass, Result};
use crate::ledger::Verdict;

/// How long a terminated process group gets before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// How long output may stay open after the program exited (a background child holding it).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// The variables of promote's own environment a program gets, each when it is set: enough to find
/// programs and to format text, nothing that authenticates.
const PASSED_THROUGH: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

#[derive(Debug, Clone)]
enum EnvValue {
    Plain(String),
    Secret(Secret),
    /// A variable of promote's own environment, passed on as a secret.
    SecretFromEnv(String),
}

/// A gate that runs a program.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use promote_core::Secret;
/// use promote_core::gate::{CommandGate, Gate};
/// let gate = CommandGate::new("smoke", "./smoke.sh")
///     .args(["--quick"])
///     .secret_env("TOKEN", Secret::new("t0k3n"))
///     .timeout(Duration::from_secs(60));
/// assert!(!gate.capabilities().side_effect_free);
/// ```
#[derive(Debug, Clone)]
pub struct CommandGate {
    name: String,
    program: String,
    args: Vec<String>,
    env: BTreeMap<String, EnvValue>,
    dir: Option<PathBuf>,
    timeout: Duration,
    max_output: usize,
    safe_for_plan: bool,
}

impl CommandGate {
    /// The most bytes of stdout, and of stderr, a gate keeps as evidence (1 MiB). Evidence goes into the
    /// ledger, which is no place for whole logs.
    pub const MAX_OUTPUT: usize = 1024 * 1024;

    /// A gate called `name` running `program` (a path, or a name looked up in `PATH`), with a five-minute
    /// timeout.
    pub fn new(name: impl Into<String>, program: impl Into<String>) -> Self {
        CommandGate {
            name: name.into(),
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            dir: None,
            timeout: Duration::from_secs(300),
            max_output: 4096,
            safe_for_plan: false,
        }
    }

    /// Adds arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), EnvValue::Plain(value.into()));
        self
    }

    /// Sets an environment variable to a secret; its value is redacted from the captured output.
    pub fn secret_env(mut self, key: impl Into<String>, value: Secret) -> Self {
        self.env.insert(key.into(), EnvValue::Secret(value));
        self
    }

    /// Passes `variable` from promote's own environment (read at each run) as a secret. The gate fails if
    /// it is not set.
    pub fn secret_from_env(mut self, variable: impl Into<String>) -> Self {
        let variable = variable.into();
        self.env.insert(variable.clone(), EnvValue::SecretFromEnv(variable));
        self
    }

    /// Sets the working directory.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Sets how long the program may run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how many bytes of stdout, and of stderr, are kept as evidence; more than
    /// [`CommandGate::MAX_OUTPUT`] keeps that much.
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes.min(Self::MAX_OUTPUT);
        self
    }

    /// Declares the program free of side effects, so that `plan` runs it.
    pub fn safe_for_plan(mut self, safe: bool) -> Self {
        self.safe_for_plan = safe;
        self
    }

    fn failure(&self, reason: String) -> GateReport {
        GateReport::new(Verdict::Fail(reason)).with("program", self.program.clone())
    }
}

/// The tail of a stream: at most `keep` bytes, and how many bytes there were in all.
struct Captured {
    tail: Vec<u8>,
    total: usize,
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(mut reader: R, keep: usize) -> JoinHandle<Captured> {
    tokio::spawn(async move {
        let mut tail = Vec::new();
        let mut total = 0;
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    total += read;
                    tail.extend_from_slice(&chunk[..read]);
                    if tail.len() > keep.saturating_mul(2).max(chunk.len()) {
                        tail.drain(..tail.len() - keep);
                    }
                }
            }
        }
        if tail.len() > keep {
            tail.drain(..tail.len() - keep);
        }
        Captured { tail, total }
    })
}

/// The last `max` bytes of `captured`, with every secret replaced by `[redacted]`. `captured` holds up to
/// the redactor's margin (the longest secret) bytes more than `max`, so that a secret cut where the capture
/// starts lies in the part that is not shown, and is still recognised where it reaches into the part that is.
fn redacted_tail(captured: &Captured, max: usize, redactor: &Redactor) -> String {
    let bytes = &captured.tail;
    let start = bytes.len().saturating_sub(max);
    let text = redactor.redact_window(bytes, start..bytes.len());
    let shown = bytes.len() - start;
    if captured.total > shown { format!("[{} earlier bytes not kept]\n{text}", captured.total - shown) } else { text }
}

/// Sends `signal` to every process of group `group` with the system's `kill`.
async fn signal_group(group: u32, signal: &str) {
    let sent = tokio::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{group}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(error) = sent {
        tracing::warn!(group, signal, %error, "could not run `kill` for a command gate's process group");
    }
}

fn describe(status: &ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited with code {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            match status.signal() {
                Some(signal) => format!("was killed by signal {signal}"),
                None => format!("ended with {status}"),
            }
        }
    }
}

#[async_trait]
impl Gate for CommandGate {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &str {
        "command"
    }

    fn capabilities(&self) -> GateCapabilities {
        if self.safe_for_plan { GateCapabilities::pure() } else { GateCapabilities::acting() }
    }

    fn approval_policy(&self) -> Option<&ApprovalPolicy> {
        None
    }

    async fn evaluate(&self, context: &GateContext<'_>) -> Result<GateReport> {
        let mut command = tokio::process::Command::new(&self.program);
        command.env_clear();
        for variable in PASSED_THROUGH {
            if let Some(value) = std::env::var_os(variable) {
                command.env(variable, value);
            }
        }
        command
            .args(&self.args)
            .env("PROMOTE_BUILD", context.build.id.as_str())
            .env("PROMOTE_COMMIT", &context.build.commit)
            .env("PROMOTE_STAGE", context.stage)
            .env(
                "PROMOTE_PHASE",
                match context.phase {
                    GatePhase::Entry => "entry",
                    GatePhase::Verification => "verification",
                },
            )
            .env("PROMOTE_DRY_RUN", context.dry_run.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(version) = &context.build.version {
            command.env("PROMOTE_VERSION", version.to_string());
        }
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        let mut secrets = Vec::new();
        for (key, value) in &self.env {
            match value {
                EnvValue::Plain(value) => {
                    command.env(key, value);
                }
                EnvValue::Secret(secret) => {
                    command.env(key, secret.expose());
                    secrets.push(secret.clone());
                }
                EnvValue::SecretFromEnv(variable) => match std::env::var(variable) {
                    Ok(value) => {
                        command.env(key, &value);
                        secrets.push(Secret::new(value));
                    }
                    Err(_) => {
                        return Ok(self.failure(format!(
                            "environment variable {variable} is not set, so `{}` was not run",
                            self.program
                        )));
                    }
                },
            }
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                return Ok(self.failure(format!("could not start `{}`: {error}", self.program)));
            }
        };
        let group = child.id();
        let redactor = context.secrets.merged(&Redactor::new(secrets));
        // Saturating: a margin added to a limit must not wrap around (max_output is capped, the margin is not).
        let keep = self.max_output.saturating_add(redactor.margin());
        let stdout = child.stdout.take().map(|out| capture(out, keep));
        let stderr = child.stderr.take().map(|err| capture(err, keep));

        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        let status = match waited {
            Ok(Ok(status)) => Some(status),
            Ok(Err(error)) => {
                return Err(Error::backend(
                    "command gate",
                    ErrorClass::Temporary,
                    format!("waiting for `{}`: {error}", self.program),
                ));
            }
            Err(_) => {
                if let Some(group) = group {
                    signal_group(group, "TERM").await;
                    if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_err() {
                        signal_group(group, "KILL").await;
                    }
                }
                // Reaps the leader (and kills it, should the group signal have missed it).
                let _ = child.kill().await;
                None
            }
        };
        let mut outputs = Vec::new();
        for handle in [stdout, stderr] {
            let Some(mut handle) = handle else {
                outputs.push(Captured { tail: Vec::new(), total: 0 });
                continue;
            };
            let captured = match tokio::time::timeout(OUTPUT_GRACE, &mut handle).await {
                Ok(joined) => joined,
                Err(_) => {
                    // Something the program started still holds its output open.
                    if let Some(group) = group {
                        signal_group(group, "KILL").await;
                    }
                    handle.await
                }
            };
            outputs.push(captured.map_err(|error| {
                Error::backend(
                    "command gate",
                    ErrorClass::Temporary,
                    format!("capturing the output of `{}`: {error}", self.program),
                )
            })?);
        }
        let stdout = redacted_tail(&outputs[0], self.max_output, &redactor);
        let stderr = redacted_tail(&outputs[1], self.max_output, &redactor);

        let verdict = match &status {
            Some(status) if status.success() => Verdict::Pass,
            Some(status) => {
                let last_line = stderr
                    .lines()
                    .rev()
                    .chain(stdout.lines().rev())
                    .find(|line| !line.trim().is_empty())
                    .map(|line| format!(": {}", line.trim()))
                    .unwrap_or_default();
                Verdict::Fail(format!("`{}` {}{last_line}", self.program, describe(status)))
            }
            None => Verdict::Fail(format!(
                "`{}` did not finish within {}; its process group was killed",
                self.program,
                humantime::format_duration(self.timeout)
            )),
        };
        let mut report = GateReport::new(verdict)
            .with("program", self.program.clone())
            .with("args", self.args.iter().map(|arg| redactor.redact(arg)).collect::<Vec<_>>())
            .with("env", self.env.keys().cloned().collect::<Vec<_>>())
            .with("stdout", stdout)
            .with("stderr", stderr)
            .with("timed_out", status.is_none());
        if let Some(code) = status.as_ref().and_then(ExitStatus::code) {
            report = report.with("exit_code", code);
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::PromotionKind;
    use crate::testing::scene::{Scene, at};

    async fn run(gate: &CommandGate) -> GateReport {
        let mut scene = Scene::new();
        let build = scene.register("1.4.2", &[]);
        scene.evaluate(gate, &build, "stg", &["dev"], at("2026-03-01T00:00:00Z")).await
    }

    fn sh(script: &str) -> CommandGate {
        CommandGate::new("check", "sh").args(["-c", script])
    }

    #[tokio::test]
    async fn exit_zero_passes_and_output_is_evidence() {
        let report = run(&sh("echo \"checking $PROMOTE_STAGE $PROMOTE_VERSION\"; echo warn >&2")).await;
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(report.evidence["stdout"], "checking stg 1.4.2\n");
        assert_eq!(report.evidence["stderr"], "warn\n");
        assert_eq!(report.evidence["exit_code"], 0);
    }

    #[tokio::test]
    async fn a_non_zero_exit_fails_with_the_last_line() {
        let report = run(&sh("echo 'coverage 71%'; echo 'too low' >&2; exit 3")).await;
        assert_eq!(report.verdict, Verdict::Fail("`sh` exited with code 3: too low".into()));
        assert_eq!(report.evidence["exit_code"], 3);
    }

    #[tokio::test]
    async fn a_missing_program_fails() {
        let report = run(&CommandGate::new("check", "/nonexistent/promote-check")).await;
        assert!(
            matches!(&report.verdict, Verdict::Fail(r) if r.contains("could not start `/nonexistent/promote-check`")),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn secrets_reach_the_program_but_not_the_evidence() {
        let gate = sh("echo \"token=$TOKEN\"; echo \"again:$TOKEN!\" >&2; exit 1")
            .secret_env("TOKEN", Secret::new("hunter2-very-secret"))
            .env("PLAIN", "visible");
        let report = run(&gate).await;
        let everything = serde_json::to_string(&report.evidence).unwrap() + &format!("{:?}", report.verdict);
        assert!(!everything.contains("hunter2"), "{everything}");
        assert_eq!(report.evidence["stdout"], "token=[redacted]\n");
        assert_eq!(report.verdict, Verdict::Fail("`sh` exited with code 1: again:[redacted]!".into()));
        assert_eq!(report.evidence["env"], serde_json::json!(["PLAIN", "TOKEN"]));
    }

    #[tokio::test]
    async fn a_missing_secret_variable_fails_without_running() {
        let gate = sh("exit 0").secret_from_env("PROMOTE_TEST_SURELY_UNSET_VARIABLE");
        let report = run(&gate).await;
        assert!(
            matches!(&report.verdict, Verdict::Fail(r) if r.contains("PROMOTE_TEST_SURELY_UNSET_VARIABLE is not set")),
            "{report:?}"
        );
    }

    #[tokio::test]
    async fn long_output_keeps_its_tail_and_never_a_cut_secret() {
        // 10 000 lines, each with the secret; only the last 100 bytes are kept.
        let gate = sh("i=0; while [ $i -lt 10000 ]; do echo \"line $i $TOKEN\"; i=$((i+1)); done")
            .secret_env("TOKEN", Secret::new("abcdefghijklmnopqrstuvwxyz"))
            .max_output(100);
        let report = run(&gate).await;
        let stdout = report.evidence["stdout"].as_str().unwrap();
        assert!(stdout.starts_with('['), "{stdout}");
        assert!(stdout.contains("earlier bytes not kept"), "{stdout}");
        assert!(stdout.ends_with("line 9999 [redacted]\n"), "{stdout}");
        for len in 3..26 {
            // No fragment of the secret (longer than a couple of letters) survives the cut.
            let alphabet = "abcdefghijklmnopqrstuvwxyz";
            for start in 0..=(26 - len) {
                assert!(!stdout.contains(&alphabet[start..start + len]), "{stdout}");
            }
        }
    }

    #[test]
    fn redaction_masks_every_occurrence_and_overlaps() {
        let captured = Captured { tail: b"x=aaaa aaa; y=ab".to_vec(), total: 16 };
        let redactor = Redactor::new([Secret::new("aa"), Secret::new("ab")]);
        assert_eq!(redacted_tail(&captured, 100, &redactor), "x=[redacted] [redacted]; y=[redacted]");
    }

    /// Set in the child process of [`the_program_does_not_inherit_promotes_environment`]: stands for a CI
    /// token that no gate was told about.
    const PLANTED_VARIABLE: &str = "GATE_TEST_UNLISTED_CI_TOKEN";
    const PLANTED_VALUE: &str = "planted-ci-token-5be1f0";

    #[tokio::test]
    async fn the_program_does_not_inherit_promotes_environment() {
        // The workspace forbids `unsafe`, so the test cannot `set_var` in its own process: it runs itself
        // again as a child with the variable planted, and the child does the checking.
        if std::env::var_os(PLANTED_VARIABLE).is_none() {
            let name = "gate::command::tests::the_program_does_not_inherit_promotes_environment";
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--nocapture", "--test-threads=1"])
                .env(PLANTED_VARIABLE, PLANTED_VALUE)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
            assert!(stdout.contains("1 passed"), "the child ran the test: {stdout}");
            return;
        }
        let gate = sh("env").env("REGION", "eu-west-1").secret_env("API_TOKEN", Secret::new("listed-secret-77"));
        let report = run(&gate).await;
        assert_eq!(report.verdict, Verdict::Pass);
        let stdout = report.evidence["stdout"].as_str().unwrap();
        assert!(!stdout.contains(PLANTED_VALUE) && !stdout.contains(PLANTED_VARIABLE), "{stdout}");
        let names: Vec<&str> = stdout.lines().filter_map(|line| line.split_once('=')).map(|(name, _)| name).collect();
        for expected in ["PATH", "PROMOTE_BUILD", "PROMOTE_STAGE", "REGION", "API_TOKEN"] {
            assert!(names.contains(&expected), "{expected} reaches the program: {stdout}");
        }
        assert!(stdout.contains("API_TOKEN=[redacted]"), "{stdout}");
        // Only the passed-through names, the context, and what the gate set (`sh` adds PWD and the like).
        let allowed = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "REGION", "API_TOKEN", "PWD", "SHLVL", "_", "OLDPWD"];
        for name in names {
            assert!(allowed.contains(&name) || name.starts_with("PROMOTE_"), "{name} leaked into the program");
        }
    }

    #[tokio::test]
    async fn the_pipelines_secrets_are_redacted_even_when_not_passed() {
        // A config secret the program found on its own (a file, a service): the gate was never told, the
        // pipeline was.
        let mut scene = Scene::new();
        scene.secrets = Redactor::new([Secret::new("db-password-from-config-91")]);
        let build = scene.register("1.4.2", &[]);
        let gate =
            sh("echo 'connecting with db-password-from-config-91'; echo 'db-password-from-config-91' >&2; exit 2");
        let report = scene.evaluate(&gate, &build, "stg", &["dev"], at("2026-03-01T00:00:00Z")).await;
        let everything = serde_json::to_string(&report.evidence).unwrap() + &format!("{:?}", report.verdict);
        assert!(!everything.contains("db-password"), "{everything}");
        assert_eq!(report.evidence["stdout"], "connecting with [redacted]\n");
        assert_eq!(report.verdict, Verdict::Fail("`sh` exited with code 2: [redacted]".into()));
    }

    #[tokio::test]
    async fn the_largest_max_output_is_capped_and_does_not_overflow() {
        // usize::MAX plus the redaction margin used to overflow.
        let gate = sh("echo \"out $TOKEN\"").secret_env("TOKEN", Secret::new("overflow-secret")).max_output(usize::MAX);
        assert_eq!(gate.max_output, CommandGate::MAX_OUTPUT);
        let report = run(&gate).await;
        assert_eq!(report.verdict, Verdict::Pass);
        assert_eq!(report.evidence["stdout"], "out [redacted]\n");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("background.pid");
        let script = format!("sleep 300 & echo $! > {}; echo started; wait", pid_file.display());
        let gate = sh(&script).timeout(Duration::from_secs(3));
        let report = run(&gate).await;
        assert!(
            matches!(&report.verdict, Verdict::Fail(r) if r.contains("did not finish within 3s; its process group was killed")),
            "{report:?}"
        );
        assert_eq!(report.evidence["timed_out"], true);
        assert_eq!(report.evidence["stdout"], "started\n");
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_owned();
        // The background sleep was in the group: it is gone (or a zombie about to be reaped).
        let gone = (0..200).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let alive = !state.is_empty() && !state.contains(") Z");
            if alive {
                std::thread::sleep(Duration::from_millis(10));
            }
            !alive
        });
        assert!(gone, "the background process {pid} survived the timeout");
    }

    #[tokio::test]
    async fn the_context_reaches_the_program() {
        let mut scene = Scene::new();
        let build = scene.register("", &[]);
        let gate =
            sh("echo \"$PROMOTE_BUILD $PROMOTE_PHASE $PROMOTE_DRY_RUN ${PROMOTE_VERSION:-none}\"").safe_for_plan(true);
        assert!(gate.capabilities().side_effect_free);
        let report = scene
            .evaluate_with(&gate, &build, "prd", &[], at("2026-03-01T00:00:00Z"), PromotionKind::Promote, true)
            .await
            .unwrap();
        assert_eq!(report.evidence["stdout"], format!("{} entry true none\n", build.id));
    }
}
