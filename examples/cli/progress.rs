//! Progress on stderr while the engine works: a spinner on a terminal (indicatif), plain lines otherwise.
//! Registry copies show bytes and rate; rollout waits show the object waited on.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use promote_core::Event;
use promote_core::ledger::{FinalState, PromotionKind};
use promote_core::progress::{ProgressUnit, ProgressUpdate};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::output::verdict_text;

/// How progress is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressMode {
    /// Nothing (`-q`).
    Off,
    /// One line per event.
    Lines,
    /// A spinner whose message follows the events (stderr is a terminal).
    Spinner,
}

impl ProgressMode {
    /// Spinner on a terminal, lines otherwise, nothing when quiet.
    pub(crate) fn detect(quiet: bool) -> Self {
        match (quiet, std::io::stderr().is_terminal()) {
            (true, _) => ProgressMode::Off,
            (false, true) => ProgressMode::Spinner,
            (false, false) => ProgressMode::Lines,
        }
    }
}

/// A task drawing the engine's events until [`ProgressTask::finish`].
#[derive(Debug)]
pub(crate) struct ProgressTask {
    task: Option<JoinHandle<()>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ProgressTask {
    /// Starts drawing `events` in `mode`.
    pub(crate) fn start(events: broadcast::Receiver<Event>, mode: ProgressMode) -> Self {
        if mode == ProgressMode::Off {
            return ProgressTask { task: None, stop: None };
        }
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(draw(events, mode, stopped));
        ProgressTask { task: Some(task), stop: Some(stop) }
    }

    /// Draws what is left and stops.
    pub(crate) async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

async fn draw(
    mut events: broadcast::Receiver<Event>,
    mode: ProgressMode,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let spinner = (mode == ProgressMode::Spinner).then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("a valid template"));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut rate = RateMeter::default();
    loop {
        let event = tokio::select! {
            biased;
            event = events.recv() => event,
            _ = &mut stopped => {
                // What was sent before the command ended is still shown.
                while let Ok(event) = events.try_recv() {
                    show(&event, spinner.as_ref(), &mut rate);
                }
                break;
            }
        };
        match event {
            Ok(event) => show(&event, spinner.as_ref(), &mut rate),
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    if let Some(bar) = spinner {
        bar.finish_and_clear();
    }
}

/// Bytes per second over one subject's reports.
#[derive(Debug, Default)]
struct RateMeter {
    subject: String,
    started: Option<Instant>,
}

impl RateMeter {
    fn rate(&mut self, subject: &str, done: u64) -> Option<u64> {
        if self.subject != subject || self.started.is_none() {
            self.subject = subject.to_owned();
            self.started = Some(Instant::now());
            return None;
        }
        let seconds = self.started?.elapsed().as_secs_f64();
        (seconds > 0.2).then(|| (done as f64 / seconds) as u64)
    }
}

/// One line for a progress report: counts in bytes with a rate, or items.
fn describe(update: &ProgressUpdate, rate: &mut RateMeter) -> String {
    let count = match (update.unit, update.done) {
        (Some(ProgressUnit::Bytes), Some(done)) => {
            let total = update.total.map(|t| format!(" of {}", HumanBytes(t))).unwrap_or_default();
            let speed = rate.rate(&update.subject, done).map(|r| format!(", {}/s", HumanBytes(r))).unwrap_or_default();
            format!(" [{}{total}{speed}]", HumanBytes(done))
        }
        (_, Some(done)) => match update.total {
            Some(total) => format!(" [{done}/{total}]"),
            None => format!(" [{done}]"),
        },
        _ => String::new(),
    };
    format!("{}: {}{count}", update.subject, update.message)
}

/// The line for an event, or `None` for events not worth a line.
fn line(event: &Event, rate: &mut RateMeter) -> Option<String> {
    Some(match event {
        Event::StageStarted { promotion, kind, resumed, .. } => {
            let verb = if *resumed { "resuming" } else { "starting" };
            let what = match kind {
                PromotionKind::Promote => "promotion",
                _ => "rollback",
            };
            format!("{promotion}: {verb} {what}")
        }
        Event::StepStarted { promotion, step } => format!("{promotion}: {step}"),
        Event::GateEvaluated { evidence, .. } => format!("gate {}: {}", evidence.gate, verdict_text(&evidence.verdict)),
        Event::ArtifactPromoted { name, target, already_present, .. } => {
            let how = if *already_present { "already at" } else { "now at" };
            format!("artifact {name} {how} {target}")
        }
        Event::Deployed { promotion, .. } => format!("{promotion}: deployed and healthy"),
        Event::Verified { promotion } => format!("{promotion}: verified"),
        Event::StepFailed { promotion, step, error } => format!("{promotion}: step {step} failed: {error}"),
        Event::Finished { promotion, state } => match state {
            FinalState::Succeeded => format!("{promotion}: succeeded"),
            FinalState::Pending { reasons } => format!("{promotion}: pending: {}", reasons.join("; ")),
            FinalState::Failed { step, reason } => format!("{promotion}: failed at {step}: {reason}"),
        },
        Event::RolledBack { stage, to, .. } => format!("{stage}: rolled back to {to}"),
        Event::Progress { update, .. } => describe(update, rate),
        _ => return None,
    })
}

fn show(event: &Event, spinner: Option<&ProgressBar>, rate: &mut RateMeter) {
    let Some(text) = line(event, rate) else { return };
    match spinner {
        // Progress reports move the spinner; everything else is kept above it.
        Some(bar) if matches!(event, Event::Progress { .. }) => bar.set_message(text),
        Some(bar) => bar.println(text),
        None => {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_reports_show_sizes_and_item_reports_counts() {
        let mut rate = RateMeter::default();
        let bytes = ProgressUpdate::message("r/web@sha256:ab", "copying blob").counting(
            3 * 1024 * 1024,
            Some(48 * 1024 * 1024),
            ProgressUnit::Bytes,
        );
        assert_eq!(describe(&bytes, &mut rate), "r/web@sha256:ab: copying blob [3.00 MiB of 48.00 MiB]");
        let items = ProgressUpdate::message("Deployment/web", "1 of 3 updated replicas are available").counting(
            1,
            Some(3),
            ProgressUnit::Items,
        );
        assert_eq!(describe(&items, &mut rate), "Deployment/web: 1 of 3 updated replicas are available [1/3]");
    }
}
