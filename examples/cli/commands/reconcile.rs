//! `reconcile`: one auto-promotion pass.

use promote_core::{ReconcileOutcome, Result};
use serde_json::json;

use super::Context;
use crate::exit::Exit;
use crate::output::{Report, Style, cell, styled, table};

/// Promotes into each `auto` stage the newest eligible build whose gates pass. Exits 1 when a promotion
/// was tried and failed, 0 otherwise (nothing to do, pending and held are normal on a schedule).
pub(super) async fn run(context: &Context) -> Result<Report> {
    let actor = context.actor()?;
    let pipeline = context.pipeline().await?;
    let progress = context.follow(&pipeline);
    let outcome = pipeline.reconcile(&actor.name).await;
    progress.finish().await;
    let report = outcome?;
    let mut exit = Exit::Done;
    let rows: Vec<_> = report
        .stages
        .iter()
        .map(|line| {
            let what = match &line.outcome {
                ReconcileOutcome::Promoted { build, promotion } => {
                    styled(format!("promoted {build} ({promotion})"), Style::Good)
                }
                ReconcileOutcome::NothingEligible { reasons } if reasons.is_empty() => cell("nothing to do"),
                ReconcileOutcome::NothingEligible { reasons } => {
                    cell(format!("nothing eligible: {}", reasons.join("; ")))
                }
                ReconcileOutcome::Held { holds } => styled(
                    format!(
                        "held: {}",
                        holds.iter().map(|h| format!("{} ({})", h.id, h.reason)).collect::<Vec<_>>().join(", ")
                    ),
                    Style::Warn,
                ),
                ReconcileOutcome::Pending { reasons } => {
                    styled(format!("pending: {}", reasons.join("; ")), Style::Warn)
                }
                ReconcileOutcome::Failed { build, error } => {
                    exit = Exit::Failed;
                    styled(format!("{build} failed: {}", error.error()), Style::Bad)
                }
                _ => cell("(unknown outcome)"),
            };
            vec![cell(&line.stage), what]
        })
        .collect();
    let text = if rows.is_empty() {
        "no stage is `auto`".to_owned()
    } else {
        table(&context.output, &["STAGE", "OUTCOME"], &rows)
    };
    Ok(Report::new(exit, json!(report), text))
}
