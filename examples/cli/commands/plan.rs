//! `plan BUILD --to STAGE`: a dry run.

use std::fmt::Write as _;

use promote_core::Result;
use serde_json::json;

use super::Context;
use crate::args::PlanArgs;
use crate::exit::Exit;
use crate::output::{Report, verdict_text};

/// Gate verdicts, artifact actions, config provenance (never values) and the masked diff. Exits 0 when the
/// promotion would go ahead, 3 when a gate is pending, 4 when the build may not enter, 1 when a gate fails.
pub(super) async fn run(context: &Context, args: PlanArgs) -> Result<Report> {
    let actor = context.actor()?;
    let pipeline = context.pipeline().await?;
    let build = context.build(&pipeline, &args.build).await?;
    let plan = pipeline.plan(&build, &args.to, &actor.name).await?;
    let exit = if plan.blocked.is_some() {
        Exit::Refused
    } else if plan.gates.iter().any(|g| matches!(g.verdict, promote_core::Verdict::Fail(_))) {
        Exit::Failed
    } else if plan.would_proceed() {
        Exit::Done
    } else {
        Exit::Pending
    };
    let mut text = String::new();
    let _ = writeln!(text, "plan: {} into {}", plan.build, plan.stage);
    if let Some(blocked) = &plan.blocked {
        let _ = writeln!(text, "blocked: {blocked}");
    }
    let _ = writeln!(text, "gates:");
    for gate in &plan.gates {
        let _ = writeln!(text, "  {} ({}): {}", gate.gate, gate.kind, verdict_text(&gate.verdict));
    }
    let _ = writeln!(text, "artifacts:");
    for (name, artifact) in &plan.artifacts {
        let _ = writeln!(text, "  {name}: {:?} → {}", artifact.action, artifact.target.pinned(&artifact.digest));
    }
    let _ = writeln!(text, "config:");
    for (key, provenance) in &plan.config {
        let secret = if provenance.secret { " (secret)" } else { "" };
        let version = provenance.version.as_deref().map(|v| format!(" version {v}")).unwrap_or_default();
        let _ = writeln!(text, "  {key}: from {}{version}{secret}", provenance.source);
    }
    let _ = writeln!(text, "changes:");
    for change in &plan.changes {
        let _ = writeln!(text, "  {:?} {}", change.action, change.object);
    }
    if !plan.diff.is_empty() {
        let _ = writeln!(text, "\n{}", plan.diff);
    }
    let document = json!({ "plan": plan, "would_proceed": plan.would_proceed() });
    Ok(Report::new(exit, document, text))
}
