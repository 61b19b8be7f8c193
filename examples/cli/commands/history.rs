//! `history [--stage S] [--build B]`.

use promote_core::Result;
use promote_core::ledger::{FinalState, PromotionKind, PromotionState};
use serde_json::json;

use super::Context;
use crate::args::HistoryArgs;
use crate::output::{Report, Style, cell, record_json, styled, table};

/// Every promotion record, oldest first, filtered.
pub(super) async fn run(context: &Context, args: HistoryArgs) -> Result<Report> {
    let pipeline = context.pipeline().await?;
    let build = match &args.build {
        Some(text) => Some(context.build(&pipeline, text).await?),
        None => None,
    };
    let records: Vec<_> = pipeline
        .history(args.stage.as_deref())
        .await?
        .into_iter()
        .filter(|record| build.as_ref().is_none_or(|b| &record.build == b))
        .collect();
    let rows: Vec<_> = records
        .iter()
        .map(|record| {
            let kind = match &record.kind {
                PromotionKind::Promote => "promote".to_owned(),
                PromotionKind::Rollback { replacing: Some(from) } => format!("rollback from {from}"),
                PromotionKind::Rollback { replacing: None } => "rollback".to_owned(),
            };
            let state = match &record.state {
                PromotionState::Finished(FinalState::Succeeded) => styled("succeeded", Style::Good),
                PromotionState::Finished(FinalState::Pending { .. }) => styled("pending", Style::Warn),
                PromotionState::Finished(FinalState::Failed { step, reason }) => {
                    styled(format!("failed at {step}: {reason}"), Style::Bad)
                }
                PromotionState::InProgress { .. } => styled("in progress", Style::Warn),
            };
            vec![
                cell(record.started_at.format("%Y-%m-%d %H:%M:%S").to_string()),
                cell(record.id.to_string()),
                cell(kind),
                cell(&record.actor),
                state,
            ]
        })
        .collect();
    let text = if rows.is_empty() {
        "no promotions".to_owned()
    } else {
        table(&context.output, &["STARTED", "PROMOTION", "KIND", "ACTOR", "STATE"], &rows)
    };
    Ok(Report::done(json!({ "promotions": records.iter().map(record_json).collect::<Vec<_>>() }), text))
}
