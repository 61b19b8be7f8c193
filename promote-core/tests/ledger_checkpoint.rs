//! The file ledger's checkpoint. A summary taken at any entry and brought forward over the entries after
//! it equals the fold of every entry; a checkpoint that does not fit its ledger is ignored; damage before a
//! checkpoint is still found when the ledger opens.

mod support;

use std::path::Path;
use std::sync::Arc;

use promote_core::ledger::{Fence, HoldScope, LedgerEntry, LedgerExt, LedgerSummary, LedgerView, NewEntry, Verdict};
use promote_core::{
    ApprovalGate, ApprovalPolicy, Error, FileLedger, FileLedgerOptions, Identity, Ledger, MemoryArtifactStore,
    OnFailure, Pipeline, Stage, Status,
};
use promote_core::{ApprovalOptions, HoldRequest};
use support::{Harness, Mode, Point};

const COMMITS: [&str; 6] = [
    "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    "3333333ccccccccccccccccccccccccccccccccc",
    "4444444ddddddddddddddddddddddddddddddddd",
    "5555555eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
    "6666666fffffffffffffffffffffffffffffffff",
];

/// A history with every kind of entry the engine writes: promotions that succeed, are approved, stop at
/// a pending or failing entry gate, fail after deploying (and roll back, or stay), are interrupted and
/// resumed, or are left unfinished; a manual rollback; holds placed and lifted. Returns the engine's entries
/// and the status it reports.
async fn eventful_history() -> (Vec<LedgerEntry>, Status) {
    let h = Harness::with_stages(|stage| match stage.name() {
        "prd" => stage.entry_gate(ApprovalGate::new("release", ApprovalPolicy::promoters(["alice", "bob"]))),
        "stg" => stage.on_failure(OnFailure::Rollback),
        _ => stage,
    });
    let mut builds = Vec::new();
    for commit in COMMITS {
        builds.push(h.build(commit).await);
    }
    let [b1, b2, b3, b4, b5, b6] = &builds[..] else { unreachable!() };
    let p = &h.pipeline;

    for stage in ["dev", "stg"] {
        p.promote(&b1.id, stage, "dana").await.unwrap();
    }
    p.approve(&b1.id, "prd", &Identity::new("alice"), ApprovalOptions::new().comment("ok")).await.unwrap();
    p.promote(&b1.id, "prd", "dana").await.unwrap();

    // b2 fails verification in stg, which rolls back to b1 and holds automation.
    p.promote(&b2.id, "dev", "dana").await.unwrap();
    *h.verify_gate.verdict.lock().unwrap() = Verdict::Fail("smoke test returned 500".into());
    *h.verify_gate.only_for.lock().unwrap() = Some(b2.id.clone());
    assert!(p.promote(&b2.id, "stg", "dana").await.is_err());

    // b3 waits at dev's entry gate, then fails it, then passes.
    *h.entry_gate.verdict.lock().unwrap() = Verdict::Pending("nightly run".into());
    assert!(p.promote(&b3.id, "dev", "dana").await.is_err());
    *h.entry_gate.verdict.lock().unwrap() = Verdict::Fail("3 tests failed".into());
    assert!(p.promote(&b3.id, "dev", "dana").await.is_err());
    *h.entry_gate.verdict.lock().unwrap() = Verdict::Pass;

    // b4's deploy to dev breaks once; the re-run resumes it.
    h.faults.set(Point::DeployApply, Mode::Error);
    assert!(p.promote(&b4.id, "dev", "dana").await.is_err());
    h.faults.clear();
    p.promote(&b4.id, "dev", "dana").await.unwrap();
    let holds = p.status().await.unwrap().stage("stg").unwrap().holds.clone();
    for hold in holds {
        p.lift_hold(&hold.id, "oncall").await.unwrap();
    }
    p.promote(&b4.id, "stg", "dana").await.unwrap();

    // b5 fails verification in dev, where the stage keeps it.
    *h.verify_gate.only_for.lock().unwrap() = Some(b5.id.clone());
    assert!(p.promote(&b5.id, "dev", "dana").await.is_err());

    // A freeze on prd, lifted; a rollback of dev to b1; an Auto hold left in place.
    let freeze =
        p.hold(HoldRequest::new("prd", HoldScope::All).reason("change freeze").placed_by("cab")).await.unwrap();
    p.lift_hold(&freeze.id, "cab").await.unwrap();
    p.rollback(Some(&b1.id), "dev", "oncall").await.unwrap();
    p.hold(HoldRequest::new("stg", HoldScope::Auto).reason("investigating").placed_by("oncall")).await.unwrap();

    // b6 is left half-promoted into dev.
    h.faults.set(Point::DeployWait, Mode::Error);
    assert!(p.promote(&b6.id, "dev", "dana").await.is_err());
    h.faults.clear();

    (h.ledger.read_since(0).await.unwrap(), p.status().await.unwrap())
}

fn fold(entries: &[LedgerEntry]) -> LedgerSummary {
    let mut summary = LedgerSummary::new();
    summary.apply_all(entries);
    summary
}

fn unsealed(entries: &[LedgerEntry]) -> Vec<NewEntry> {
    entries
        .iter()
        .map(|e| NewEntry { at: e.at, actor: e.actor.clone(), fence: e.fence.clone(), event: e.event.clone() })
        .collect()
}

fn pipeline_on(ledger: FileLedger) -> Pipeline {
    let mut builder = Pipeline::builder("shop").store(Arc::new(MemoryArtifactStore::new())).ledger(Arc::new(ledger));
    for stage in ["dev", "stg", "prd"] {
        builder = builder.stage(Stage::new(stage));
    }
    builder.build().unwrap()
}

/// A file ledger in `dir` holding `entries`, with a checkpoint taken after the last of them.
async fn checkpointed_ledger(dir: &Path, entries: &[LedgerEntry]) -> std::path::PathBuf {
    let path = dir.join("ledger.jsonl");
    let ledger = FileLedger::open(&path).await.unwrap();
    ledger.append(unsealed(entries)).await.unwrap();
    ledger.checkpoint().await.unwrap();
    path
}

fn checkpoint_of(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".checkpoint");
    name.into()
}

#[tokio::test]
async fn a_summary_taken_at_any_entry_and_brought_forward_equals_the_whole_fold() {
    let (entries, _) = eventful_history().await;
    let whole = fold(&entries);
    let mut view = LedgerView::new();
    view.apply_all(entries.clone());
    assert_eq!(view.summary(), &whole, "the view folds through the same summary");
    assert!(whole.open_promotions("dev").count() == 1, "the history ends with a promotion in progress");

    for taken_at in 0..=entries.len() {
        // What a checkpoint stores and reads back, then the entries after it.
        let stored = serde_json::to_string(&fold(&entries[..taken_at])).unwrap();
        let mut summary: LedgerSummary = serde_json::from_str(&stored).unwrap();
        summary.apply_all(&entries[taken_at..]);
        assert_eq!(summary, whole, "checkpoint after entry {taken_at}");
        assert_same_answers(&summary, &whole, taken_at);
    }
}

/// Every lookup `status` and the engine make gives the same answer on both (their indexes agree).
fn assert_same_answers(a: &LedgerSummary, b: &LedgerSummary, taken_at: usize) {
    let ids = |records: Vec<&promote_core::ledger::PromotionSummary>| -> Vec<String> {
        records.into_iter().map(|record| record.id.to_string()).collect()
    };
    for stage in ["dev", "stg", "prd"] {
        let at = format!("{stage}, checkpoint after entry {taken_at}");
        assert_eq!(a.current(stage).map(|r| &r.id), b.current(stage).map(|r| &r.id), "{at}");
        assert_eq!(ids(a.open_promotions(stage).collect()), ids(b.open_promotions(stage).collect()), "{at}");
        assert_eq!(a.holds(stage).collect::<Vec<_>>(), b.holds(stage).collect::<Vec<_>>(), "{at}");
        for build in b.builds() {
            let id = &build.id;
            assert_eq!(ids(a.passes(stage, id).collect()), ids(b.passes(stage, id).collect()), "{at}, {id}");
            assert_eq!(ids(a.promotions_of(stage, id).collect()), ids(b.promotions_of(stage, id).collect()), "{at}");
            assert_eq!(a.build(id), b.build(id), "{at}");
        }
    }
    for record in b.promotions() {
        assert_eq!(a.promotion(&record.id), Some(record), "checkpoint after entry {taken_at}");
    }
}

#[tokio::test]
async fn status_from_a_checkpoint_and_the_entries_after_it_is_the_engines_status() {
    let (entries, engine_status) = eventful_history().await;
    let dir = tempfile::tempdir().unwrap();
    for taken_at in [1, 7, entries.len() / 3, entries.len() / 2, entries.len() - 1, entries.len()] {
        let path = dir.path().join(format!("ledger-{taken_at}.jsonl"));
        let never = FileLedgerOptions::default().checkpoint_every(None);
        let ledger = FileLedger::open_with(&path, never.clone()).await.unwrap();
        ledger.append(unsealed(&entries[..taken_at])).await.unwrap();
        ledger.checkpoint().await.unwrap();
        if taken_at < entries.len() {
            ledger.append(unsealed(&entries[taken_at..])).await.unwrap();
        }
        assert!(checkpoint_of(&path).exists());

        let reopened = FileLedger::open_with(&path, never).await.unwrap();
        let summary = reopened.summary().await.unwrap().expect("the file ledger keeps a summary");
        assert_eq!(*summary, fold(&reopened.read_since(0).await.unwrap()), "checkpoint after entry {taken_at}");
        let status = pipeline_on(FileLedger::open(&path).await.unwrap()).status().await.unwrap();
        assert_eq!(status, engine_status, "checkpoint after entry {taken_at}");
    }
}

#[tokio::test]
async fn appends_keep_writing_checkpoints_that_the_next_open_uses() {
    let (entries, engine_status) = eventful_history().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let often = FileLedgerOptions::default().checkpoint_every(Some(1));
    let ledger = FileLedger::open_with(&path, often).await.unwrap();
    let mut sizes = std::collections::BTreeSet::new();
    for entry in unsealed(&entries) {
        ledger.append(vec![entry]).await.unwrap();
        if let Ok(meta) = std::fs::metadata(checkpoint_of(&path)) {
            sizes.insert(meta.len());
        }
    }
    assert!(sizes.len() > 3, "checkpoints were rewritten as the ledger grew: {sizes:?}");
    let status = pipeline_on(FileLedger::open(&path).await.unwrap()).status().await.unwrap();
    assert_eq!(status, engine_status);
}

/// A checkpoint is a cache of what the ledger said when it was taken. This one is doctored (a hold added,
/// its hash recomputed) to show that a checkpoint which fits the file is what `status` reads, and that
/// without it the ledger is folded again.
#[tokio::test]
async fn a_matching_checkpoint_is_what_status_reads_and_deleting_it_is_safe() {
    let (entries, engine_status) = eventful_history().await;
    let dir = tempfile::tempdir().unwrap();
    let path = checkpointed_ledger(dir.path(), &entries).await;

    let good = std::fs::read(checkpoint_of(&path)).unwrap();
    std::fs::write(checkpoint_of(&path), doctored(&good, |_| {})).unwrap();

    let status = pipeline_on(FileLedger::open(&path).await.unwrap()).status().await.unwrap();
    assert!(status.stage("prd").unwrap().holds.iter().any(|hold| hold.id == "hold-doctored"), "{status:?}");

    std::fs::remove_file(checkpoint_of(&path)).unwrap();
    let status = pipeline_on(FileLedger::open(&path).await.unwrap()).status().await.unwrap();
    assert_eq!(status, engine_status);
}

/// `checkpoint` with a hold on prd that the ledger never recorded, its header edited by `edit` and its
/// hash recomputed: if `status` shows that hold, the checkpoint was used.
fn doctored(checkpoint: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    use sha2::Digest as _;
    let text = std::str::from_utf8(checkpoint).unwrap();
    let (header, body) = text.trim_end().split_once('\n').unwrap();
    let mut summary: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut extra = summary["holds"][0].clone();
    extra["id"] = "hold-doctored".into();
    extra["stage"] = "prd".into();
    summary["holds"].as_array_mut().unwrap().push(extra);
    let body = serde_json::to_string(&summary).unwrap();
    let mut header: serde_json::Value = serde_json::from_str(header).unwrap();
    header["summary_sha256"] = hex::encode(sha2::Sha256::digest(body.as_bytes())).into();
    edit(&mut header);
    format!("{header}\n{body}\n").into_bytes()
}

/// `checkpoint` with its summary replaced by `edit` of it and its hash recomputed, the header otherwise kept.
fn rehashed(checkpoint: &[u8], edit: impl Fn(serde_json::Value) -> serde_json::Value) -> Vec<u8> {
    use sha2::Digest as _;
    let text = std::str::from_utf8(checkpoint).unwrap();
    let (header, body) = text.trim_end().split_once('\n').unwrap();
    let body = edit(serde_json::from_str(body).unwrap()).to_string();
    let mut header: serde_json::Value = serde_json::from_str(header).unwrap();
    header["summary_sha256"] = hex::encode(sha2::Sha256::digest(body.as_bytes())).into();
    format!("{header}\n{body}\n").into_bytes()
}

/// Issue 12's doctored checkpoint: fences raised far past any real token, its hash recomputed, made every
/// later promotion fail with `Fenced` until the checkpoint was deleted. The fences the ledger enforces (and
/// reports) come from walking its lines, which it does on every open anyway.
#[tokio::test]
async fn a_doctored_checkpoint_cannot_raise_the_fences_the_ledger_enforces() {
    use sha2::Digest as _;
    let (entries, _) = eventful_history().await;
    let dir = tempfile::tempdir().unwrap();
    let path = checkpointed_ledger(dir.path(), &entries).await;
    let real = fold(&entries).fences().clone();
    assert!(real.contains_key("prd") && real.contains_key("dev"), "{real:?}");

    let good = std::fs::read_to_string(checkpoint_of(&path)).unwrap();
    let (header, body) = good.trim_end().split_once('\n').unwrap();
    let mut summary: serde_json::Value = serde_json::from_str(body).unwrap();
    for stage in ["dev", "stg", "prd"] {
        summary["fences"][stage] = 1_000_000.into();
    }
    let body = serde_json::to_string(&summary).unwrap();
    let mut header: serde_json::Value = serde_json::from_str(header).unwrap();
    header["summary_sha256"] = hex::encode(sha2::Sha256::digest(body.as_bytes())).into();
    std::fs::write(checkpoint_of(&path), format!("{header}\n{body}\n")).unwrap();

    let ledger = FileLedger::open(&path).await.unwrap();
    assert_eq!(ledger.summary().await.unwrap().unwrap().fences(), &real);
    let mut next = unsealed(&entries[entries.len() - 1..]);
    next[0].fence = Some(Fence { stage: "prd".into(), token: real["prd"] + 1 });
    ledger.append(next).await.expect("the newest prd token is the ledger's, not the checkpoint's");
    let mut stale = unsealed(&entries[entries.len() - 1..]);
    stale[0].fence = Some(Fence { stage: "prd".into(), token: real["prd"] });
    assert!(matches!(ledger.append(stale).await, Err(Error::Fenced { .. })), "fences are still enforced");
}

#[tokio::test]
async fn a_checkpoint_that_does_not_fit_its_ledger_is_ignored() {
    let (entries, engine_status) = eventful_history().await;
    let dir = tempfile::tempdir().unwrap();
    let path = checkpointed_ledger(dir.path(), &entries).await;
    let good = std::fs::read(checkpoint_of(&path)).unwrap();

    // Each of these carries a hold the ledger never recorded (see `doctored`), which must not show.
    let ledger_end = std::fs::metadata(&path).unwrap().len();
    let mut flipped = doctored(&good, |_| {});
    let middle = flipped.len() * 3 / 4;
    flipped[middle] ^= 0x01;
    let cut = doctored(&good, |_| {});
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("an empty", Vec::new()),
        ("a garbage", b"not a checkpoint\n{}\n".to_vec()),
        ("a cut short", cut[..cut.len() - 10].to_vec()),
        ("a flipped bit's", flipped),
        ("an anchor past the end's", doctored(&good, |header| header["end"] = (ledger_end + 100).into())),
        ("an anchor on the wrong line's", doctored(&good, |header| header["end"] = (ledger_end / 2).into())),
        ("an anchor with another hash's", doctored(&good, |header| header["hash"] = "00".repeat(32).into())),
        ("another format's", doctored(&good, |header| header["format"] = "promote-ledger-checkpoint/9".into())),
        // Found only once the summary is parsed, which happens while the ledger's lines are checked.
        ("a hashed unparseable summary's", rehashed(&good, |_| serde_json::json!({"not": "a summary"}))),
        (
            "a hashed summary at another entry's",
            rehashed(&good, |mut summary| {
                summary["head"][0] = 1.into();
                summary
            }),
        ),
    ];
    for (what, bytes) in damaged {
        std::fs::write(checkpoint_of(&path), &bytes).unwrap();
        let ledger = FileLedger::open(&path).await.unwrap_or_else(|e| panic!("{what} checkpoint: {e}"));
        let summary = ledger.summary().await.unwrap().unwrap();
        assert_eq!(*summary, fold(&entries), "{what} checkpoint");
        let status = pipeline_on(ledger).status().await.unwrap();
        assert_eq!(status, engine_status, "{what} checkpoint");
    }

    // The checkpoint beside a ledger whose last entry was written again, differently but at the same
    // length: the anchor's offset and number fit, its hash does not.
    let mut rewritten = unsealed(&entries);
    let last = rewritten.last_mut().unwrap();
    last.actor = "x".repeat(last.actor.len());
    let rewritten_path = dir.path().join("rewritten.jsonl");
    let ledger = FileLedger::open(&rewritten_path).await.unwrap();
    let rewritten = ledger.append(rewritten).await.unwrap();
    assert_eq!(std::fs::metadata(&rewritten_path).unwrap().len(), ledger_end);
    std::fs::write(checkpoint_of(&rewritten_path), doctored(&good, |_| {})).unwrap();
    let ledger = FileLedger::open(&rewritten_path).await.unwrap();
    assert_eq!(*ledger.summary().await.unwrap().unwrap(), fold(&rewritten));
    assert_eq!(pipeline_on(ledger).status().await.unwrap(), engine_status);

    // A ledger cut back before its checkpoint (restored from a backup, say) is folded from its start.
    std::fs::write(checkpoint_of(&path), doctored(&good, |_| {})).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let first_half: String = text.split_inclusive('\n').take(entries.len() / 2).collect();
    std::fs::write(&path, first_half).unwrap();
    let ledger = FileLedger::open(&path).await.unwrap();
    assert_eq!(*ledger.summary().await.unwrap().unwrap(), fold(&entries[..entries.len() / 2]));
}

#[tokio::test]
async fn damage_before_the_checkpoint_is_still_found_when_the_ledger_opens() {
    let (entries, _) = eventful_history().await;
    let dir = tempfile::tempdir().unwrap();
    let path = checkpointed_ledger(dir.path(), &entries).await;
    let text = std::fs::read_to_string(&path).unwrap();

    // An edited record.
    let line = 3;
    let lines: Vec<&str> = text.lines().collect();
    let edited = lines[line - 1].replacen("\"actor\":\"", "\"actor\":\"x", 1);
    assert_ne!(edited, lines[line - 1]);
    let mut tampered = lines.clone();
    tampered[line - 1] = &edited;
    std::fs::write(&path, tampered.join("\n") + "\n").unwrap();
    support::assert_refused_at(&path, line as u64, "hash").await;

    // A removed record.
    let mut removed = lines.clone();
    removed.remove(line - 1);
    std::fs::write(&path, removed.join("\n") + "\n").unwrap();
    support::assert_refused_at(&path, line as u64, &format!("expected record {line}")).await;

    // A torn write after the checkpoint.
    std::fs::write(&path, format!("{text}{{\"seq\":")).unwrap();
    support::assert_refused_at(&path, entries.len() as u64 + 1, "torn").await;
}

#[tokio::test]
async fn a_checkpoint_that_cannot_be_written_does_not_fail_the_append() {
    let (entries, engine_status) = eventful_history().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    // A directory where the checkpoint would go: every rename onto it fails.
    std::fs::create_dir(checkpoint_of(&path)).unwrap();
    std::fs::write(checkpoint_of(&path).join("keep"), "").unwrap();
    let often = FileLedgerOptions::default().checkpoint_every(Some(1));
    let ledger = FileLedger::open_with(&path, often).await.unwrap();
    for entry in unsealed(&entries) {
        ledger.append(vec![entry]).await.unwrap();
    }
    assert!(matches!(ledger.checkpoint().await, Err(Error::Io { .. })), "asking for one says why it failed");
    let status = pipeline_on(FileLedger::open(&path).await.unwrap()).status().await.unwrap();
    assert_eq!(status, engine_status);
    assert_eq!(ledger.view().await.unwrap().summary(), &fold(&entries));
}

/// Two handles on one file (two processes, as far as the file is concerned) append at once and both write
/// checkpoints; whichever checkpoint lands last, the next open agrees with the fold of every entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handles_appending_at_once_leave_a_checkpoint_the_next_open_agrees_with() {
    let (entries, _) = eventful_history().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let often = FileLedgerOptions::default().checkpoint_every(Some(1));
    let handles = [
        FileLedger::open_with(&path, often.clone()).await.unwrap(),
        FileLedger::open_with(&path, often).await.unwrap(),
    ];
    let writers = (0..8).map(|writer| {
        let ledger = handles[writer % 2].clone();
        // Interleaved, the entries' fencing tokens would be refused as stale; this is about the checkpoint.
        let batch = unsealed(&entries).into_iter().map(|entry| NewEntry { fence: None, ..entry });
        tokio::spawn(async move {
            for entry in batch.skip(writer).step_by(8) {
                ledger.append(vec![entry]).await.unwrap();
            }
        })
    });
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(checkpoint_of(&path).exists());
    let reopened = FileLedger::open(&path).await.unwrap();
    let all = reopened.read_since(0).await.unwrap();
    assert_eq!(all.len(), entries.len(), "no append is lost");
    assert_eq!(*reopened.summary().await.unwrap().unwrap(), fold(&all));
    for handle in &handles {
        assert_eq!(*handle.summary().await.unwrap().unwrap(), fold(&all), "each handle sees the other's entries");
    }
}

/// Found by the `ledger` fuzz target (`fuzz/artifacts/ledger/`): the checkpoint stored promotion times as
/// nanoseconds since the epoch, which end in 2262, so a ledger holding a later (or pre-1677) promotion could
/// never be checkpointed again.
#[tokio::test]
async fn promotions_dated_past_2262_checkpoint_and_read_back() {
    use chrono::Datelike as _;
    let (entries, _) = eventful_history().await;
    let shifted: Vec<LedgerEntry> =
        entries.into_iter().map(|e| LedgerEntry { at: e.at + chrono::TimeDelta::days(400 * 365), ..e }).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = checkpointed_ledger(dir.path(), &shifted).await;
    let checkpoint = std::fs::read_to_string(checkpoint_of(&path)).unwrap();
    assert!(checkpoint.contains("\"started_at\":\"24"), "times past 2262 are stored as text: {checkpoint}");

    let reopened = FileLedger::open(&path).await.unwrap();
    let summary = reopened.summary().await.unwrap().expect("the file ledger keeps a summary");
    assert_eq!(*summary, fold(&reopened.read_since(0).await.unwrap()));
    assert!(!summary.promotions().is_empty());
    assert!(summary.promotions().iter().all(|p| p.started_at.year() > 2262));
}
