//! `status`: stages × builds.

use promote_core::ledger::{FinalState, LedgerSummary};
use promote_core::{BuildId, Result};
use serde_json::json;

use super::Context;
use crate::args::OutputFormat;
use crate::args::StatusArgs;
use crate::output::verdict_text;
use crate::output::{Report, Style, cell, styled, table};

/// What runs where, which builds may enter each stage (and what the last attempt waited for), holds, and
/// open promotions. Reads the ledger's summary (the checkpoint), not the whole history.
pub(super) async fn run(context: &Context, args: StatusArgs) -> Result<Report> {
    let pipeline = context.pipeline().await?;
    let status = pipeline.status().await?;
    let summary = match pipeline.ledger().summary().await? {
        Some(summary) => summary,
        None => std::sync::Arc::new(pipeline.view().await?.summary().clone()),
    };
    let label = |build: &BuildId| summary.build(build).map(|b| b.label.clone()).unwrap_or_default();
    let wants_json = context.output.format == OutputFormat::Json;
    let mut stages = Vec::new();
    let mut rows = Vec::new();
    for stage in &status.stages {
        let mut notes_now: Vec<(String, Style)> = Vec::new();
        let pending: Vec<_> = stage
            .eligible
            .iter()
            .filter_map(|build| pending_reasons(&summary, &stage.stage, build).map(|reasons| (build, reasons)))
            .collect();
        let mut gates = Vec::new();
        if args.gates
            && let Some(newest) = stage.eligible.first()
        {
            let actor = context.actor().map(|a| a.name).unwrap_or_else(|_| "status".into());
            match pipeline.plan(newest, &stage.stage, &actor).await {
                Ok(plan) => {
                    for gate in plan.gates.iter().filter(|g| !g.verdict.is_pass()) {
                        gates.push(json!({ "build": newest, "gate": gate.gate, "verdict": gate.verdict }));
                        let style = if matches!(gate.verdict, promote_core::Verdict::Fail(_)) {
                            Style::Bad
                        } else {
                            Style::Warn
                        };
                        notes_now
                            .push((format!("{newest} gate {}: {}", gate.gate, verdict_text(&gate.verdict)), style));
                    }
                }
                Err(error) => {
                    gates.push(json!({ "build": newest, "error": error }));
                    notes_now.push((format!("{newest}: gates not evaluated: {error}"), Style::Bad));
                }
            }
        }
        // Listing every eligible build costs time on a large ledger: only a JSON reader gets the list.
        if wants_json {
            stages.push(json!({
                "stage": stage.stage,
                "current": stage.current,
                "current_label": stage.current_label,
                "current_promotion": stage.current_promotion,
                "eligible": stage.eligible.iter().map(|b| json!({ "build": b, "label": label(b) })).collect::<Vec<_>>(),
                "pending": pending.iter().map(|(b, reasons)| json!({ "build": b, "reasons": reasons })).collect::<Vec<_>>(),
                "holds": stage.holds,
                "gates": gates,
                "in_progress": stage.in_progress,
                "failed_since_current": stage.failed_since_current,
            }));
        }
        let current = match (&stage.current, &stage.current_label) {
            (Some(build), Some(label)) => styled(format!("{build} ({label})"), Style::Good),
            (Some(build), None) => styled(build.to_string(), Style::Good),
            _ => styled("—", Style::Dim),
        };
        let eligible = match stage.eligible.as_slice() {
            [] => cell("—"),
            [newest] => cell(format!("{newest} ({})", label(newest))),
            [newest, rest @ ..] => cell(format!("{newest} ({}) +{} older", label(newest), rest.len())),
        };
        let mut notes: Vec<(String, Style)> = std::mem::take(&mut notes_now);
        for (build, reasons) in &pending {
            notes.push((format!("{build} last try pending: {}", reasons.join("; ")), Style::Warn));
        }
        for hold in &stage.holds {
            let scope = super::hold::scope_text(hold.scope);
            notes.push((format!("{} holds {scope} (by {}): {}", hold.id, hold.placed_by, hold.reason), Style::Warn));
        }
        for promotion in &stage.in_progress {
            notes.push((format!("{promotion} in progress"), Style::Warn));
        }
        if let Some(failed) = &stage.failed_since_current {
            notes.push((format!("{failed} failed"), Style::Bad));
        }
        let first = notes.first().map_or_else(|| cell(""), |(text, style)| styled(text.clone(), *style));
        rows.push(vec![cell(&stage.stage), current, eligible, first]);
        for (text, style) in notes.iter().skip(1) {
            rows.push(vec![cell(""), cell(""), cell(""), styled(text.clone(), *style)]);
        }
    }
    let text = table(&context.output, &["STAGE", "CURRENT", "ELIGIBLE", "WAITING / HOLDS"], &rows);
    Ok(Report::done(json!({ "pipeline": pipeline.name(), "stages": stages }), text))
}

/// What the last attempt to promote `build` into `stage` waited for, when it ended pending.
fn pending_reasons(summary: &LedgerSummary, stage: &str, build: &BuildId) -> Option<Vec<String>> {
    match summary.promotions_of(stage, build).next_back()?.outcome.as_ref()? {
        FinalState::Pending { reasons } => Some(reasons.clone()),
        _ => None,
    }
}
