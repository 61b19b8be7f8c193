//! The file ledger checkpoint's segment digests, on ledgers large enough to have whole 1 MiB segments. An
//! open checks the bytes before the checkpoint against them instead of hashing each line; any change there
//! (damage, an edit, a removed record, digests doctored under a key) still refuses the ledger at the exact
//! line, and a handle's checkpoint vouches only for bytes it checked in the same read.

mod support;

use std::path::{Path, PathBuf};

use promote_core::ledger::{Fence, LedgerSummary, NewEntry};
use promote_core::{Error, FileLedger, FileLedgerOptions, IntegrityKey, Ledger};

const SEGMENT: usize = 1 << 20;

/// About `mib` MiB of entries, each a few tens of KiB long and of varying length (so that the segment
/// boundaries cut lines at different places), each fenced on prd with the next token.
fn big_entries(mib: usize, first: usize) -> Vec<NewEntry> {
    (first..first + mib * 24)
        .map(|n| {
            let mut entry = support::hold_entry(n, "r".repeat(30_000 + (n * 7919) % 25_000));
            entry.fence = Some(Fence { stage: "prd".into(), token: n as u64 + 1 });
            entry
        })
        .collect()
}

fn checkpoint_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.checkpoint", path.display()))
}

/// The checkpoint's header line.
fn header(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(checkpoint_of(path)).unwrap();
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

/// The checkpoint's digests, and the digests of the ledger file's whole segments before its end.
fn digests(path: &Path) -> (Vec<String>, Vec<String>) {
    let header = header(path);
    assert_eq!(header["segment_bytes"], SEGMENT as u64);
    let end = header["end"].as_u64().unwrap() as usize;
    let file = std::fs::read(path).unwrap();
    let recorded = header["segments"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned()).collect();
    let actual = file[..end].chunks_exact(SEGMENT).map(|segment| blake3::hash(segment).to_hex().to_string()).collect();
    (recorded, actual)
}

/// A ledger at `dir/ledger.jsonl` holding about `mib` MiB, with a checkpoint after the last entry.
async fn big_ledger(dir: &Path, mib: usize, options: FileLedgerOptions) -> PathBuf {
    let path = dir.join("ledger.jsonl");
    let ledger = FileLedger::open_with(&path, options.checkpoint_every(None)).await.unwrap();
    ledger.append(big_entries(mib, 0)).await.unwrap();
    ledger.checkpoint().await.unwrap();
    path
}

/// The 1-based number of the line holding byte `offset` of `file`.
fn line_at(file: &[u8], offset: usize) -> u64 {
    file[..offset].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

/// `file` with the reason byte nearest `offset` on the side `after` (or before) it changed from `r` to `s`:
/// the line still parses, but no longer matches its hash. Returns the bytes and the changed line's number.
fn edited_near(file: &[u8], offset: usize, after: bool) -> (Vec<u8>, u64) {
    let at = match after {
        true => offset + file[offset..].iter().position(|&b| b == b'r').unwrap(),
        false => file[..offset].iter().rposition(|&b| b == b'r').unwrap(),
    };
    let mut edited = file.to_vec();
    edited[at] = b's';
    (edited, line_at(file, at))
}

fn folded(entries: &[promote_core::ledger::LedgerEntry]) -> LedgerSummary {
    let mut summary = LedgerSummary::new();
    summary.apply_all(entries);
    summary
}

#[tokio::test]
async fn a_checkpoint_carries_the_digest_of_every_whole_segment_before_it_and_the_next_open_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = big_ledger(dir.path(), 5, FileLedgerOptions::default()).await;
    let (recorded, actual) = digests(&path);
    assert!(actual.len() >= 4, "a ledger of {} bytes", std::fs::metadata(&path).unwrap().len());
    assert_eq!(recorded, actual);

    let ledger = FileLedger::open(&path).await.unwrap();
    let entries = ledger.read_since(0).await.unwrap();
    assert_eq!(*ledger.summary().await.unwrap().unwrap(), folded(&entries));
    // The fences come from every line, digested or not.
    let newest = entries.len() as u64;
    assert_eq!(ledger.summary().await.unwrap().unwrap().fences()["prd"], newest);
    let mut stale = vec![support::hold_entry(9_999, "stale".into())];
    stale[0].fence = Some(Fence { stage: "prd".into(), token: newest - 1 });
    assert!(matches!(ledger.append(stale).await, Err(Error::Fenced { .. })));

    // Appends, then a checkpoint: the digests reach the new end, and the next open agrees.
    ledger.append(big_entries(2, entries.len())).await.unwrap();
    ledger.checkpoint().await.unwrap();
    let (recorded, actual) = digests(&path);
    assert!(actual.len() >= 6);
    assert_eq!(recorded, actual);
    let reopened = FileLedger::open(&path).await.unwrap();
    let entries = reopened.read_since(0).await.unwrap();
    assert_eq!(*reopened.summary().await.unwrap().unwrap(), folded(&entries));
    assert_eq!(reopened.summary().await.unwrap().unwrap().fences()["prd"], entries.len() as u64);
}

#[tokio::test]
async fn damage_inside_the_digested_segments_is_found_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    // Large enough to be checked by two threads on two cores, each taking whole segments (4 MiB and on).
    let path = big_ledger(dir.path(), 9, FileLedgerOptions::default()).await;
    let good = std::fs::read(&path).unwrap();
    let whole = digests(&path).0.len() * SEGMENT;

    let edits = [
        ("inside a segment", edited_near(&good, SEGMENT + SEGMENT / 2, true)),
        ("on a line across a boundary, before it", edited_near(&good, 2 * SEGMENT, false)),
        ("on a line across a boundary, after it", edited_near(&good, 2 * SEGMENT, true)),
        ("across the second thread's first boundary, before it", edited_near(&good, 4 * SEGMENT, false)),
        ("across the second thread's first boundary, after it", edited_near(&good, 4 * SEGMENT, true)),
        ("in the first byte's line", edited_near(&good, 0, true)),
        ("after the last whole segment", edited_near(&good, whole + 10, true)),
    ];
    for (what, (edited, line)) in edits {
        std::fs::write(&path, &edited).unwrap();
        match FileLedger::open(&path).await {
            Err(Error::LedgerCorrupt { line: at, reason, .. }) => {
                assert_eq!(at, line, "{what}: {reason}");
                assert!(reason.contains("hash"), "{what}: {reason}");
            }
            other => panic!("{what}: an edited record must refuse the ledger, got {other:?}"),
        }
    }

    // A record taken out of the middle of a segment.
    let text = String::from_utf8(good.clone()).unwrap();
    let line = line_at(&good, 3 * SEGMENT + SEGMENT / 2);
    let kept: String =
        text.split_inclusive('\n').enumerate().filter(|(n, _)| *n as u64 + 1 != line).map(|(_, l)| l).collect();
    std::fs::write(&path, kept).unwrap();
    support::assert_refused_at(&path, line, &format!("expected record {line}")).await;

    std::fs::write(&path, &good).unwrap();
    FileLedger::open(&path).await.expect("the ledger as it was opens");
}

/// Without a key, whoever can write the checkpoint can make its digests fit edited bytes, as they can
/// re-hash an unkeyed chain: then the open takes them, and the full read (what `promote ledger verify`
/// does) still refuses the line. With a key, the checkpoint's HMAC covers its digests.
#[tokio::test]
async fn doctored_digests_are_refused_under_a_key_and_caught_by_the_full_read_without_one() {
    let key = || IntegrityKey::new(b"s3gment-k3y-0000000000000000000000".to_vec()).unwrap();
    for keyed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let options = || match keyed {
            true => FileLedgerOptions::default().integrity_key(key()),
            false => FileLedgerOptions::default(),
        };
        let path = big_ledger(dir.path(), 3, options()).await;
        let good = std::fs::read(&path).unwrap();
        let (edited, line) = edited_near(&good, SEGMENT + 1000, true);
        std::fs::write(&path, &edited).unwrap();
        let text = std::fs::read_to_string(checkpoint_of(&path)).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        let mut header: serde_json::Value = serde_json::from_str(first).unwrap();
        header["segments"][1] = blake3::hash(&edited[SEGMENT..2 * SEGMENT]).to_hex().to_string().into();
        std::fs::write(checkpoint_of(&path), format!("{header}\n{rest}")).unwrap();

        let refused = |result: &Result<(), Error>| match result {
            Err(Error::LedgerCorrupt { line: at, .. }) => *at == line,
            _ => false,
        };
        if keyed {
            let opened = FileLedger::open_with(&path, options()).await.map(|_| ());
            assert!(refused(&opened), "keyed: {opened:?}");
            // Nor does an unkeyed checkpoint forged beside a keyed ledger let it open without the key.
            let (first, rest) = text.split_once('\n').unwrap();
            let mut forged: serde_json::Value = serde_json::from_str(first).unwrap();
            forged.as_object_mut().unwrap().remove("hmac_sha256");
            let summary = rest.trim_end().as_bytes();
            forged["summary_sha256"] = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(summary)).into();
            std::fs::write(&path, &good).unwrap();
            std::fs::write(checkpoint_of(&path), format!("{forged}\n{rest}")).unwrap();
            match FileLedger::open_with(&path, FileLedgerOptions::default()).await {
                Err(Error::LedgerCorrupt { line: 1, reason, .. }) => assert!(reason.contains("key"), "{reason}"),
                other => panic!("a keyed ledger opened without its key must be refused at line 1, got {other:?}"),
            }
        } else {
            let ledger = FileLedger::open_with(&path, options()).await.expect("unkeyed, the checkpoint is taken");
            let read = ledger.read_since(0).await.map(|_| ());
            assert!(refused(&read), "unkeyed, the full read refuses the line: {read:?}");
        }
    }
}

#[tokio::test]
async fn a_checkpoint_vouches_only_for_bytes_checked_in_the_same_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let never = || FileLedgerOptions::default().checkpoint_every(None);
    FileLedger::open_with(&path, never()).await.unwrap().append(big_entries(3, 0)).await.unwrap();
    let good = std::fs::read(&path).unwrap();
    let (edited, line) = edited_near(&good, SEGMENT / 2, true);

    // A handle that read the file before it was edited is asked for a checkpoint afterwards.
    let before = FileLedger::open_with(&path, never()).await.unwrap();
    std::fs::write(&path, &edited).unwrap();
    match before.checkpoint().await {
        Err(Error::LedgerCorrupt { line: at, .. }) => assert_eq!(at, line),
        other => panic!("the checkpoint must not vouch for the edited line, got {other:?}"),
    }
    assert!(!checkpoint_of(&path).exists());

    // A handle that digested the file when it opened (and wrote a checkpoint then) keeps appending after
    // the edit: the checkpoints due on the way, and the one asked for, re-read the old segments too.
    std::fs::write(&path, &good).unwrap();
    let handle = FileLedger::open(&path).await.unwrap();
    assert!(checkpoint_of(&path).exists(), "the open wrote a checkpoint");
    std::fs::write(&path, &edited).unwrap();
    handle.append(big_entries(2, 100)).await.expect("the entries are recorded; the checkpoint is only a cache");
    match handle.checkpoint().await {
        Err(Error::LedgerCorrupt { line: at, .. }) => assert_eq!(at, line),
        other => panic!("the checkpoint must not vouch for the edited line, got {other:?}"),
    }
    support::assert_refused_at(&path, line, "hash").await;
}
