//! Target `ledger`: ledger lines, whole ledger files and their checkpoints.
//!
//! Input: a mode byte, then a ledger text and a checkpoint, separated by a line `#checkpoint`.
//! - mode 0 (raw): both are written as they are;
//! - mode 1 (resealed): each line is read as an entry's JSON and the entries are sealed into a valid chain,
//!   the ledger writes its own checkpoint, and the checkpoint part, as a JSON object, is merged into that
//!   checkpoint's summary, whose hash is then recomputed (the doctored checkpoint issue 12 describes);
//! - mode 2 (rehashed): each line's `prev` and `hash` are recomputed from the line before and its own bytes,
//!   so that lines a fuzzer could never hash reach the parser behind the hash check.
//!
//! Every line written goes through `LedgerEntry::parse_line` (an entry that parses survives a serde round
//! trip); the file through `FileLedger::open`. A ledger that opens
//! reads back whole, its summary agrees with its entries (its fencing tokens always do, whatever the
//! checkpoint says), it takes a fenced append, and it opens again. One that does not open is corrupt, and
//! `FileLedger::recover` either refuses it or leaves a ledger that opens.

use std::path::Path;

use chrono::{DateTime, Utc};
use promote_core::ledger::{Fence, FileLedgerOptions, GENESIS_HASH, LedgerEntry, LedgerEvent, LedgerSummary, NewEntry};
use promote_core::{Digest, Error, FileLedger, Ledger};
use serde_json::Value;

use crate::common::{block_on, split};

const SEPARATOR: &[u8] = b"\n#checkpoint\n";
const HASH_MARK: &str = ",\"hash\":\"";
const PREV_MARK: &str = ",\"prev\":\"";

/// Runs one input.
pub(crate) fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let parts = split(rest, SEPARATOR, 2);
    let (ledger, checkpoint) = (parts[0], parts.get(1).copied().unwrap_or_default());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("ledger.jsonl");
    match mode % 3 {
        0 => raw(&path, ledger, checkpoint),
        1 => resealed(&path, ledger, checkpoint),
        _ => raw(&path, &rehash(ledger), checkpoint),
    }
}

/// Every line of `ledger` through `LedgerEntry::parse_line`.
fn parse_lines(ledger: &[u8]) {
    for line in ledger.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let Ok(entry) = LedgerEntry::parse_line(&line) else { continue };
        // Not asserted: that the entry re-serialises to a line that verifies. A line with an unknown field or
        // extra whitespace verifies by its exact bytes, and its entry then does not (see notes-fuzz.md).
        let json = serde_json::to_string(&entry).expect("an entry serialises");
        let back: LedgerEntry =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json:?} does not read back: {e}"));
        assert_eq!(back, entry, "{line:?} reads back as another entry");
    }
}

fn raw(path: &Path, ledger: &[u8], checkpoint: &[u8]) {
    parse_lines(ledger);
    std::fs::write(path, ledger).expect("write the ledger");
    if !checkpoint.is_empty() {
        std::fs::write(checkpoint_path(path), checkpoint).expect("write the checkpoint");
    }
    block_on(async {
        match open(path).await {
            Ok(ledger) => exercise(path, &ledger, true).await,
            Err(error) => {
                assert_corrupt(&error);
                if FileLedger::recover_with(path, FileLedgerOptions::default()).await.is_ok() {
                    let ledger = open(path).await.unwrap_or_else(|e| panic!("recovered, but does not open: {e}"));
                    exercise(path, &ledger, true).await;
                }
            }
        }
    });
}

fn resealed(path: &Path, ledger: &[u8], patch: &[u8]) {
    let mut prev = GENESIS_HASH.to_owned();
    let mut lines = String::new();
    let mut seq = 0;
    for line in ledger.split(|&b| b == b'\n') {
        let Ok(entry) = serde_json::from_slice::<LedgerEntry>(line) else { continue };
        seq += 1;
        let new = NewEntry { at: entry.at, actor: entry.actor, fence: entry.fence, event: entry.event };
        let (sealed, text) = LedgerEntry::seal(seq, &prev, new);
        let parsed = LedgerEntry::parse_line(&text).unwrap_or_else(|e| panic!("a sealed line does not parse: {e}"));
        assert_eq!(parsed, sealed, "a sealed line reads back as another entry");
        prev = sealed.hash;
        lines.push_str(&text);
        lines.push('\n');
    }
    std::fs::write(path, &lines).expect("write the ledger");
    block_on(async {
        let ledger = match open(path).await {
            Ok(ledger) => ledger,
            Err(error) => {
                // A chain promote sealed is refused only for what its entries say (a fencing token going back).
                assert_corrupt(&error);
                return;
            }
        };
        ledger.checkpoint().await.unwrap_or_else(|e| panic!("checkpoint: {e}"));
        if let Ok(Value::Object(patch)) = serde_json::from_slice::<Value>(patch) {
            doctor_checkpoint(&checkpoint_path(path), patch);
        }
        let ledger = open(path).await.unwrap_or_else(|e| panic!("a doctored checkpoint stops the ledger opening: {e}"));
        exercise(path, &ledger, false).await;
    });
}

/// Merges `patch` into the checkpoint's summary and recomputes the summary's sha256, as someone editing the
/// state directory could.
fn doctor_checkpoint(path: &Path, patch: serde_json::Map<String, Value>) {
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let Some((header, summary)) = text.split_once('\n') else { return };
    let (Ok(Value::Object(mut header)), Ok(Value::Object(mut summary))) =
        (serde_json::from_str::<Value>(header), serde_json::from_str::<Value>(summary.trim_end()))
    else {
        return;
    };
    for (key, value) in patch {
        summary.insert(key, value);
    }
    let summary = Value::Object(summary).to_string();
    header.insert("summary_sha256".into(), Value::String(Digest::sha256_of(summary.as_bytes()).hex().to_owned()));
    std::fs::write(path, format!("{}\n{summary}\n", Value::Object(header))).expect("write the checkpoint");
}

/// Recomputes every line's `prev` (from the line before) and `hash` (from its own bytes) where the line has
/// those fields in their places.
fn rehash(ledger: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(ledger);
    let mut prev = GENESIS_HASH.to_owned();
    let mut out = String::new();
    for (index, line) in text.split('\n').enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let mut line = line.to_owned();
        if let Some(at) = line.find(PREV_MARK).map(|at| at + PREV_MARK.len())
            && line.get(at..at + 64).is_some()
        {
            line.replace_range(at..at + 64, &prev);
        }
        let tail = HASH_MARK.len() + 64 + 2;
        if line.len() >= tail
            && line.is_char_boundary(line.len() - tail)
            && line[line.len() - tail..].starts_with(HASH_MARK)
            && line.ends_with("\"}")
        {
            let body = format!("{}}}", &line[..line.len() - tail]);
            let hash = Digest::sha256_of(body.as_bytes()).hex().to_owned();
            let at = line.len() - 66;
            line.replace_range(at..at + 64, &hash);
            prev = hash;
        }
        out.push_str(&line);
    }
    out.into_bytes()
}

async fn open(path: &Path) -> promote_core::Result<FileLedger> {
    FileLedger::open_with(path, FileLedgerOptions::default()).await
}

/// Reads, summarises, appends to and reopens a ledger that opened.
async fn exercise(path: &Path, ledger: &FileLedger, checkpoint_is_genuine: bool) {
    let entries = ledger.read_since(0).await.unwrap_or_else(|e| panic!("opened, but does not read: {e}"));
    for (index, entry) in entries.iter().enumerate() {
        assert_eq!(entry.seq, index as u64 + 1, "sequence numbers follow each other");
    }
    let mut folded = LedgerSummary::new();
    folded.apply_all(&entries);
    if let Some(summary) = ledger.summary().await.unwrap_or_else(|e| panic!("summary: {e}")) {
        assert_eq!(summary.head_seq(), folded.head_seq());
        assert_eq!(summary.head_hash(), folded.head_hash());
        assert_eq!(summary.fences(), folded.fences(), "the fencing tokens come from the lines");
        if checkpoint_is_genuine {
            let stored = serde_json::to_value(&*summary).expect("a summary serialises");
            let expected = serde_json::to_value(&folded).expect("a summary serialises");
            assert_eq!(stored, expected, "the summary differs from the one its entries fold to");
        }
    }
    let stage = "fuzz";
    let Some(token) = folded.newest_fence(stage).unwrap_or(0).checked_add(1) else { return };
    let at: DateTime<Utc> = entries.last().map_or(DateTime::UNIX_EPOCH, |entry| entry.at);
    let entry = NewEntry {
        at,
        actor: "fuzz".into(),
        fence: Some(Fence { stage: stage.into(), token }),
        event: LedgerEvent::HoldLifted { hold: "h".into(), stage: stage.into() },
    };
    ledger.append(vec![entry]).await.unwrap_or_else(|e| panic!("a fenced append with a newer token fails: {e}"));
    let reopened = open(path).await.unwrap_or_else(|e| panic!("does not reopen after an append: {e}"));
    let again = reopened.read_since(0).await.unwrap_or_else(|e| panic!("does not read after an append: {e}"));
    assert_eq!(again.len(), entries.len() + 1);
}

fn assert_corrupt(error: &Error) {
    let _ = (error.to_string(), error.is_retryable());
    assert!(
        matches!(error.root(), Error::LedgerCorrupt { .. } | Error::Fenced { .. }),
        "a ledger that does not open is corrupt, not {error:?}"
    );
}

fn checkpoint_path(ledger: &Path) -> std::path::PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".checkpoint");
    name.into()
}
