//! The file ledger on disk: torn writes, tampering, and several writers.

mod support;

use std::io::Write;
use std::sync::Arc;

use promote_core::ledger::LedgerExt;
use promote_core::{Error, FileLedger, Ledger, MemoryArtifactStore, Pipeline, Stage};
use support::oci_manifest;

const COMMIT: &str = "3333333ccccccccccccccccccccccccccccccccc";

async fn pipeline_on(path: &std::path::Path) -> (Pipeline, MemoryArtifactStore) {
    pipeline_with(path, MemoryArtifactStore::new()).await
}

async fn pipeline_with(path: &std::path::Path, store: MemoryArtifactStore) -> (Pipeline, MemoryArtifactStore) {
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store.clone()))
        .ledger(Arc::new(FileLedger::open(path).await.unwrap()))
        .stage(Stage::new("dev"))
        .stage(Stage::new("prd"))
        .build()
        .unwrap();
    (pipeline, store)
}

async fn promote_one(pipeline: &Pipeline, store: &MemoryArtifactStore) {
    let reference: promote_core::ArtifactRef = "memory.local/shop/web:3333333".parse().unwrap();
    store.push(reference.clone(), promote_core::manifest::OCI_MANIFEST, oci_manifest(COMMIT, "x")).unwrap();
    let build =
        pipeline.register(promote_core::BuildRequest::new(COMMIT).artifact("web", reference), "ci").await.unwrap();
    pipeline.promote(&build.id, "dev", "dana").await.unwrap();
}

#[tokio::test]
async fn a_torn_last_record_is_reported_and_recovery_keeps_every_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let (pipeline, store) = pipeline_on(&path).await;
    promote_one(&pipeline, &store).await;
    let whole = pipeline.history(None).await.unwrap();
    let records = FileLedger::open(&path).await.unwrap().read_since(0).await.unwrap().len() as u64;

    // A crash in the middle of an append leaves half a line.
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(br#"{"seq":99,"prev":"ab"#).unwrap();
    support::assert_refused_at(&path, records + 1, "torn").await;
    let recovery = FileLedger::recover(&path).await.unwrap();
    assert_eq!(recovery.entries, records);
    assert_eq!(recovery.torn_bytes, 20);
    assert!(recovery.saved_to.as_ref().is_some_and(|p| p.exists()), "the torn bytes are kept aside");

    let (reopened, _) = pipeline_on(&path).await;
    assert_eq!(reopened.history(None).await.unwrap(), whole, "the ledger still tells the truth");
}

#[tokio::test]
async fn tampering_with_an_earlier_record_is_detected_where_it_happened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let (pipeline, store) = pipeline_on(&path).await;
    promote_one(&pipeline, &store).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let tampered = text.replacen("\"actor\":\"dana\"", "\"actor\":\"eve\"", 1);
    assert_ne!(text, tampered);
    let line = text.lines().position(|l| l.contains("\"actor\":\"dana\"")).unwrap() as u64 + 1;
    std::fs::write(&path, tampered).unwrap();
    support::assert_refused_at(&path, line, "hash").await;
    // Recovery repairs only a torn tail, never a broken chain.
    assert!(matches!(FileLedger::recover(&path).await, Err(Error::LedgerCorrupt { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_append_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let (first, store) = pipeline_on(&path).await;
    let (second, _) = pipeline_with(&path, store.clone()).await;
    promote_one(&first, &store).await;
    // The second handle (another process, as far as the file is concerned) sees and extends the chain.
    let status = second.status().await.unwrap();
    assert!(status.stage("dev").unwrap().current.is_some());
    let build = status.stage("dev").unwrap().current.clone().unwrap();
    second.promote(&build, "prd", "erin").await.unwrap();
    assert!(first.status().await.unwrap().stage("prd").unwrap().current.is_some());
    let ledger = FileLedger::open(&path).await.unwrap();
    let entries = ledger.read_since(0).await.unwrap();
    promote_core::ledger::verify_chain("ledger", (0, promote_core::ledger::GENESIS_HASH), &entries).unwrap();
    assert_eq!(ledger.view().await.unwrap().promotions().len(), 2);
}

/// Large files are verified on several threads; damage must still be reported at its exact line.
#[tokio::test]
async fn a_large_ledger_opens_in_order_and_damage_deep_inside_is_named_by_line() {
    const RECORDS: u64 = 30_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let ledger = FileLedger::open(&path).await.unwrap();
    for batch in 0..RECORDS / 5_000 {
        let holds = (0..5_000).map(|n| (batch * 5_000 + n) as usize);
        let reason = "a reason long enough to make the file a few megabytes in size";
        ledger.append(holds.map(|n| support::hold_entry(n, reason.into())).collect()).await.unwrap();
    }
    assert!(std::fs::metadata(&path).unwrap().len() > 8 << 20, "large enough to be split across threads");

    let entries = FileLedger::open(&path).await.unwrap().read_since(0).await.unwrap();
    assert_eq!(entries.len() as u64, RECORDS);
    assert!(entries.iter().enumerate().all(|(index, entry)| entry.seq == index as u64 + 1), "in order");

    // Damage on either side of where the file splits between threads, and at both ends. The edits keep
    // each line's length, so the checkpoint still fits and the lines before it are checked, not parsed.
    assert!(std::path::Path::new(&format!("{}.checkpoint", path.display())).exists());
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let middle = text[..text.len() / 2].matches('\n').count() + 1;
    for line in [1, 2, middle - 1, middle, middle + 1, RECORDS as usize * 3 / 4, RECORDS as usize] {
        let edited = lines[line - 1].replacen("\"a reason", "\"A reason", 1);
        let mut damaged = lines.clone();
        damaged[line - 1] = &edited;
        std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
        support::assert_refused_at(&path, line as u64, "hash").await;
    }
    for line in [middle, middle + 1] {
        let mut removed = lines.clone();
        removed.remove(line - 1);
        std::fs::write(&path, removed.join("\n") + "\n").unwrap();
        support::assert_refused_at(&path, line as u64, &format!("expected record {line}, found {}", line + 1)).await;
    }
}

/// Records longer than the reader's buffer (a build of thousands of artifacts is one long line), some of
/// them straddling the point where the file is split between threads, read back exactly.
#[tokio::test]
async fn records_longer_than_the_read_buffer_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let ledger = FileLedger::open(&path).await.unwrap();
    let sizes = [10, 3 << 20, 10, 1 << 20, (1 << 20) + 1, 10, 5 << 20, 10];
    for (n, size) in sizes.into_iter().enumerate() {
        ledger.append(vec![support::hold_entry(n, "r".repeat(size))]).await.unwrap();
    }
    let written = ledger.read_since(0).await.unwrap();
    assert!(std::fs::metadata(&path).unwrap().len() > 8 << 20, "large enough to be split across threads");

    for without_checkpoint in [false, true] {
        if without_checkpoint {
            std::fs::remove_file(format!("{}.checkpoint", path.display())).unwrap();
        }
        let reopened = FileLedger::open(&path).await.unwrap();
        assert_eq!(reopened.read_since(0).await.unwrap(), written);
        assert_eq!(reopened.read_since(5).await.unwrap(), written[5..]);
    }
}
