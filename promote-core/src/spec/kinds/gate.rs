//! The gate library's YAML kinds: `soak`, `semver`, `window`, `metric`, `command`, `http`, and the
//! composites `all`, `any` and `not`.
//!
//! Every kind takes an optional `name` (default: the kind) and rejects unknown keys. Invalid values (a
//! duration, a version constraint, a time zone, a metric check) are [`Error::Spec`] at load, naming the
//! file, the gate's line and the key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::config::Secret;
use crate::error::{Error, Result};
#[cfg(feature = "http-gate")]
use crate::gate::HttpGate;
use crate::gate::{CommandGate, Composite, Freeze, Gate, MetricGate, SemverGate, SoakCount, SoakGate, WindowGate};
use crate::spec::{BackendSpec, SpecRegistry};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SoakSettings {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stage: Option<String>,
    duration: String,
    #[serde(default)]
    count: Option<SoakCount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SemverSettings {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    require: Option<String>,
    #[serde(default)]
    allow_downgrade: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowSettings {
    #[serde(default)]
    name: Option<String>,
    timezone: String,
    #[serde(default)]
    days: Option<Vec<String>>,
    #[serde(default)]
    hours: Option<Vec<String>>,
    #[serde(default)]
    freezes: Vec<FreezeSettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FreezeSettings {
    from: String,
    until: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricSettings {
    #[serde(default)]
    name: Option<String>,
    check: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandSettings {
    #[serde(default)]
    name: Option<String>,
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    secrets: BTreeMap<String, String>,
    #[serde(default)]
    secrets_from_env: Vec<String>,
    #[serde(default)]
    dir: Option<PathBuf>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    max_output: Option<usize>,
    #[serde(default)]
    safe_for_plan: bool,
}

#[cfg(feature = "http-gate")]
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSettings {
    #[serde(default)]
    name: Option<String>,
    url: String,
    #[serde(default)]
    expect_status: Option<u16>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    retries: Option<usize>,
    #[serde(default)]
    retry_delay: Option<String>,
    #[serde(default)]
    allow_private: bool,
    #[serde(default)]
    keep_body: bool,
    #[serde(default)]
    safe_for_plan: bool,
}

/// `all`/`any`: the children are built through the registry, so only `name` is read here.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListSettings {
    #[serde(default)]
    name: Option<String>,
    #[allow(dead_code)]
    gates: serde::de::IgnoredAny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotSettings {
    #[serde(default)]
    name: Option<String>,
    #[allow(dead_code)]
    gate: serde::de::IgnoredAny,
}

fn duration(spec: &BackendSpec, key: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text)
        .map_err(|error| spec.error_at(key, format!("`{text}` is not a duration like 30s, 5m or 24h: {error}")))
}

/// Turns a constructor's [`Error::InvalidInput`] into a spec error at `key`.
fn at_key<T>(spec: &BackendSpec, key: &str, result: Result<T>) -> Result<T> {
    result.map_err(|error| match error {
        Error::InvalidInput { .. } => spec.error_at(key, error.to_string()),
        other => other,
    })
}

/// Registers the gate library's kinds.
pub(crate) fn register(registry: &mut SpecRegistry) {
    registry.register_gate("soak", |spec| async move {
        let settings: SoakSettings = spec.parse()?;
        let required = duration(&spec, "duration", &settings.duration)?;
        if required.is_zero() {
            return Err(spec.error_at("duration", "a soak must last longer than 0s"));
        }
        let mut gate = SoakGate::new(settings.name.unwrap_or_else(|| "soak".into()), required)
            .count(settings.count.unwrap_or_default());
        if let Some(stage) = settings.stage {
            gate = gate.in_stage(stage);
        }
        Ok(Arc::new(gate) as Arc<dyn Gate>)
    });
    registry.register_gate("semver", |spec| async move {
        let settings: SemverSettings = spec.parse()?;
        let mut gate =
            SemverGate::new(settings.name.unwrap_or_else(|| "semver".into())).allow_downgrade(settings.allow_downgrade);
        if let Some(text) = settings.require {
            gate = at_key(&spec, "require", gate.require(&text))?;
        }
        Ok(Arc::new(gate) as Arc<dyn Gate>)
    });
    registry.register_gate("window", |spec| async move {
        let settings: WindowSettings = spec.parse()?;
        let name = settings.name.unwrap_or_else(|| "window".into());
        let mut gate = at_key(&spec, "timezone", WindowGate::new(name, &settings.timezone))?;
        if let Some(days) = settings.days {
            gate = at_key(&spec, "days", gate.days(&days))?;
        }
        if let Some(hours) = settings.hours {
            for range in hours {
                gate = at_key(&spec, "hours", gate.hours(&range))?;
            }
        }
        for (index, freeze) in settings.freezes.into_iter().enumerate() {
            let key = format!("freezes[{index}]");
            let parsed = at_key(
                &spec,
                &key,
                Freeze::parse(gate.timezone(), &freeze.from, &freeze.until, freeze.reason.as_deref()),
            )?;
            gate = gate.freeze(parsed);
        }
        Ok(Arc::new(gate) as Arc<dyn Gate>)
    });
    registry.register_gate("metric", |spec| async move {
        let settings: MetricSettings = spec.parse()?;
        let name = settings.name.unwrap_or_else(|| "metric".into());
        let gate = at_key(&spec, "check", MetricGate::parse(name, &settings.check))?;
        Ok(Arc::new(gate) as Arc<dyn Gate>)
    });
    registry.register_gate("command", |spec| async move {
        spec.refuse_if_untrusted("runs programs")?;
        let settings: CommandSettings = spec.parse()?;
        if settings.program.trim().is_empty() {
            return Err(spec.error_at("program", "must name a program"));
        }
        let name = settings.name.unwrap_or_else(|| "command".into());
        let mut gate =
            CommandGate::new(name, settings.program).args(settings.args).safe_for_plan(settings.safe_for_plan);
        for (key, value) in settings.env {
            gate = gate.env(key, value);
        }
        for (key, value) in settings.secrets {
            gate = gate.secret_env(key, Secret::new(value));
        }
        for variable in settings.secrets_from_env {
            gate = gate.secret_from_env(variable);
        }
        if let Some(dir) = settings.dir {
            gate = gate.dir(spec.resolve_path("dir", &dir)?);
        }
        if let Some(text) = settings.timeout {
            let timeout = duration(&spec, "timeout", &text)?;
            if timeout.is_zero() {
                return Err(spec.error_at("timeout", "must be longer than 0s"));
            }
            gate = gate.timeout(timeout);
        }
        if let Some(max) = settings.max_output {
            if max > CommandGate::MAX_OUTPUT {
                return Err(spec.error_at(
                    "max_output",
                    format!("at most {} bytes (1 MiB) of output are kept as evidence", CommandGate::MAX_OUTPUT),
                ));
            }
            gate = gate.max_output(max);
        }
        Ok(Arc::new(gate) as Arc<dyn Gate>)
    });
    register_http(registry);
    type ListComposite = fn(String, Vec<Arc<dyn Gate>>) -> Composite;
    let lists: [(&'static str, ListComposite); 2] = [("all", Composite::all), ("any", Composite::any)];
    for (kind, composite) in lists {
        registry.register_gate(kind, move |spec| async move {
            let settings: ListSettings = spec.parse()?;
            let children = spec.registry().build_nested_gates(&spec, "gates").await?;
            if children.is_empty() {
                return Err(spec.error_at("gates", "needs at least one gate"));
            }
            let name = settings.name.unwrap_or_else(|| kind.into());
            Ok(Arc::new(composite(name, children)) as Arc<dyn Gate>)
        });
    }
    registry.register_gate("not", |spec| async move {
        let settings: NotSettings = spec.parse()?;
        let mut children = spec.registry().build_nested_gates(&spec, "gate").await?;
        if children.len() != 1 {
            return Err(spec.error_at("gate", "`not` takes one gate, not a list"));
        }
        let name = settings.name.unwrap_or_else(|| "not".into());
        let child = children.remove(0);
        Ok(Arc::new(Composite::not(name, child)) as Arc<dyn Gate>)
    });
}

/// `http`: calls a URL (feature `http-gate`).
#[cfg(feature = "http-gate")]
fn register_http(registry: &mut SpecRegistry) {
    registry.register_gate("http", |spec| async move {
        spec.refuse_if_untrusted("calls URLs")?;
        let settings: HttpSettings = spec.parse()?;
        let name = settings.name.unwrap_or_else(|| "http".into());
        let mut gate = at_key(&spec, "url", HttpGate::new(name, &settings.url))?
            .safe_for_plan(settings.safe_for_plan)
            .allow_private_addresses(settings.allow_private)
            .keep_body(settings.keep_body);
        if let Some(status) = settings.expect_status {
            gate = at_key(&spec, "expect_status", gate.expect_status(status))?;
        }
        if let Some(text) = settings.timeout {
            let timeout = duration(&spec, "timeout", &text)?;
            if timeout.is_zero() {
                return Err(spec.error_at("timeout", "must be longer than 0s"));
            }
            gate = gate.timeout(timeout);
        }
        if let Some(retries) = settings.retries {
            gate = at_key(&spec, "retries", gate.retries(retries))?;
        }
        if let Some(text) = settings.retry_delay {
            gate = gate.retry_delay(duration(&spec, "retry_delay", &text)?);
        }
        Ok(Arc::new(gate) as Arc<dyn Gate>)
    });
}

/// Without feature `http-gate`, a spec naming `http` is told what is missing instead of "unknown kind".
#[cfg(not(feature = "http-gate"))]
fn register_http(registry: &mut SpecRegistry) {
    registry.register_gate("http", |spec| async move {
        Err(spec.error("gate kind `http` needs promote-core's feature `http-gate`, which this build leaves out"))
    });
}
