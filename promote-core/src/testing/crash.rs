//! What a crash test needs to know about a promotion's failpoints (feature `failpoints`): their names, what
//! the journal shows after a crash at one, and where each must leave it. The crash matrices of promote-oci
//! (file ledger) and promote-k8s (in-cluster ledger) check every backend against the same table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::ledger::{FinalState, LedgerEntry, LedgerEvent, LedgerView, PromotionRecord, PromotionState, Step};

/// In a crash test's child process: the failpoint to abort at ...
pub const POINT_ENV: &str = "PROMOTE_CRASH_POINT";
/// ... and on which of its passes (1 for the first).
pub const HIT_ENV: &str = "PROMOTE_CRASH_HIT";

/// Sets `command` (a crash test's child) to abort at pass `hit` of `point`, or, with `None`, not at all.
pub fn crash_child(command: &mut std::process::Command, crash: Option<(&str, u32)>) {
    command.env_remove(POINT_ENV).env_remove(HIT_ENV).env_remove("FAILPOINTS");
    if let Some((point, hit)) = crash {
        command.env(POINT_ENV, point).env(HIT_ENV, hit.to_string());
    }
}

/// In a crash test's child: arms the failpoint [`POINT_ENV`] names, if set, to abort the process on pass
/// [`HIT_ENV`]. Returns the count of its passes so far, which the child prints when the promotion ends.
pub fn abort_where_the_parent_says() -> Arc<AtomicU32> {
    let passes = Arc::new(AtomicU32::new(0));
    if let Ok(point) = std::env::var(POINT_ENV) {
        let hit: u32 =
            std::env::var(HIT_ENV).ok().and_then(|hit| hit.parse().ok()).expect("PROMOTE_CRASH_HIT: a number");
        let seen = passes.clone();
        fail::cfg_callback(point, move || {
            if seen.fetch_add(1, Ordering::SeqCst) + 1 == hit {
                std::process::abort();
            }
        })
        .expect("arm the failpoint");
    }
    passes
}

/// Every failpoint of a promotion, in the order a promotion passes them first.
pub const FAILPOINTS: [&str; 9] = [
    "promote::after_lock",
    "promote::after_gate",
    "promote::after_artifact",
    "promote::after_render",
    "promote::after_apply",
    "promote::during_health_wait",
    "promote::after_verify",
    "promote::before_append",
    "promote::after_append",
];

/// What the journal shows of a crash, once the promotion was run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interruption {
    /// Whether the promotion was journalled before the crash, and so resumed.
    pub resumed: bool,
    /// The step the crash cut short (started, never finished); `None` when it fell between steps or before
    /// anything was journalled.
    pub unfinished: Option<Step>,
}

/// Reads `entries` (one promotion's, crashed then run again) up to the resume. Panics, naming `at`, if the
/// crashed run recorded an outcome, resumed a promotion that never started, or a fencing token went back.
pub fn interruption(entries: &[LedgerEntry], at: &str) -> Interruption {
    let resume = entries.iter().position(|entry| matches!(entry.event, LedgerEvent::PromotionResumed { .. }));
    let Some(resume) = resume else { return Interruption { resumed: false, unfinished: None } };
    let before = &entries[..resume];
    assert!(
        before.iter().any(|entry| matches!(entry.event, LedgerEvent::PromotionStarted { .. })),
        "{at}: resumed a promotion that never started"
    );
    assert!(
        !before.iter().any(|entry| matches!(entry.event, LedgerEvent::PromotionFinished { .. })),
        "{at}: the crashed run recorded an outcome"
    );
    let mut unfinished = None;
    for entry in before {
        match &entry.event {
            LedgerEvent::StepStarted { step, .. } => unfinished = Some(*step),
            LedgerEvent::StepFinished { step, .. } if unfinished == Some(*step) => unfinished = None,
            _ => {}
        }
    }
    let tokens: Vec<u64> = entries.iter().filter_map(|e| e.fence.as_ref().map(|f| f.token)).collect();
    assert!(tokens.windows(2).all(|pair| pair[0] <= pair[1]), "{at}: fencing tokens went back: {tokens:?}");
    Interruption { resumed: true, unfinished }
}

/// One crash of a matrix: the `hit`-th pass of `point`, out of the `passes` a whole promotion makes, and
/// what the journal showed.
#[derive(Debug, Clone, Copy)]
pub struct Crash<'a> {
    /// The failpoint.
    pub point: &'a str,
    /// Which pass of it crashed (from 1).
    pub hit: u32,
    /// How many times a whole promotion passes it.
    pub passes: u32,
    /// What the journal showed.
    pub shown: Interruption,
}

/// Checks every crash of one backend's matrix against where its failpoint must leave the journal, for a
/// pipeline with two entry gates, one verification gate and `artifacts` artifacts. Panics naming the crash.
pub fn check_interruptions(crashes: &[Crash<'_>], artifacts: usize) {
    for crash in crashes {
        let at = format!("{} #{}", crash.point, crash.hit);
        let expected = |resumed, unfinished| Some(Interruption { resumed, unfinished });
        let expected = match crash.point {
            // Nothing was journalled: the re-run starts the promotion afresh, and that is all.
            "promote::after_lock" => expected(false, None),
            "promote::after_gate" if crash.hit <= 2 => expected(true, Some(Step::EntryGates)),
            "promote::after_gate" => expected(true, Some(Step::Verify)),
            "promote::after_artifact" => expected(true, Some(Step::Artifacts)),
            "promote::after_render" => expected(true, None),
            "promote::after_apply" | "promote::during_health_wait" => expected(true, Some(Step::Deploy)),
            "promote::after_verify" => expected(true, None),
            // Appends: the first opens the promotion; before it nothing is journalled. The last writes the
            // outcome: after it, the re-run finds the build current and does nothing.
            "promote::before_append" if crash.hit == 1 => expected(false, None),
            "promote::after_append" if crash.hit == crash.passes => expected(false, None),
            _ => None,
        };
        match expected {
            Some(expected) => assert_eq!(crash.shown, expected, "{at}"),
            None => {
                assert!(crash.shown.resumed, "{at}: the promotion was journalled before the crash, so it was resumed")
            }
        }
    }
    let passes = |point: &str| crashes.iter().filter(|crash| crash.point == point).count();
    assert_eq!(passes("promote::after_lock"), 1);
    assert_eq!(passes("promote::after_gate"), 3, "two entry gates and one verification gate");
    assert_eq!(passes("promote::after_artifact"), artifacts, "one pass per artifact");
    assert_eq!(passes("promote::before_append"), passes("promote::after_append"));
}

/// Checks the ledger of a promotion that crashed and was run again: `entries` after the re-run, `crashed`
/// as the crashed run left them. Exactly one promotion, resumed rather than started again, finished as a
/// success with exactly one outcome; a re-run after the outcome was written changed nothing; a resumed
/// promotion ran under two increasing fencing tokens. Returns the promotion's record and what the journal
/// shows of the crash. Panics naming `at`.
pub fn check_recovered(entries: &[LedgerEntry], crashed: &[LedgerEntry], at: &str) -> (PromotionRecord, Interruption) {
    let mut view = LedgerView::new();
    view.apply_all(entries.to_vec());
    let promotions = view.promotions();
    assert_eq!(promotions.len(), 1, "{at}: one promotion, resumed rather than started again: {promotions:#?}");
    let record = promotions[0].clone();
    assert_eq!(record.state, PromotionState::Finished(FinalState::Succeeded), "{at}");
    let finished: Vec<&FinalState> = entries
        .iter()
        .filter_map(|entry| match &entry.event {
            LedgerEvent::PromotionFinished { state, .. } => Some(state),
            _ => None,
        })
        .collect();
    assert_eq!(finished, [&FinalState::Succeeded], "{at}: exactly one outcome, a success");

    let shown = interruption(entries, at);
    let outcome_written = crashed.iter().any(|entry| matches!(entry.event, LedgerEvent::PromotionFinished { .. }));
    if outcome_written {
        // The crash came after the outcome was written: the re-run found the build current and wrote nothing.
        assert_eq!(crashed, entries, "{at}: the re-run of a finished promotion changed the ledger");
    }
    if shown.resumed {
        assert_eq!(record.fencing_tokens.len(), 2, "{at}: one token per run: {:?}", record.fencing_tokens);
        assert!(record.fencing_tokens[0] < record.fencing_tokens[1], "{at}: {:?}", record.fencing_tokens);
    }
    (record, shown)
}
