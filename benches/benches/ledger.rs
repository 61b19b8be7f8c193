//! The file ledger at 100,000 records: open plus `status` with and without a checkpoint, the first full
//! read, writing a checkpoint, and single-entry append latency with fsync.
//!
//! Prints medians and percentiles of what it measured; run with `cargo bench -p promote-benches --bench ledger`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use promote_benches::{fill_file_ledger, pipeline_with};
use promote_core::ledger::{Hold, HoldScope, LedgerEvent, NewEntry};
use promote_core::{FileLedger, Ledger, MemoryArtifactStore};

const RECORDS: u64 = 100_000;
const APPENDS: usize = 2_000;
const OPENS: usize = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        let (_, builds) = fill_file_ledger(&path, RECORDS).await;
        println!("filled by promoting {builds} builds through 3 stages");
        let bytes = std::fs::metadata(&path).unwrap().len();
        let records = FileLedger::open(&path).await.unwrap().read_since(0).await.unwrap().len();
        println!("ledger: {records} records, {:.1} MiB", bytes as f64 / (1024.0 * 1024.0));

        let checkpoint = path.with_extension("jsonl.checkpoint");
        let warm = time_opens(&path, || ()).await;
        report("open + status, checkpoint present", &warm);
        let cold = time_opens(&path, || std::fs::remove_file(&checkpoint).unwrap()).await;
        report("open + status, no checkpoint (folds every entry, writes one)", &cold);
        let ledger = FileLedger::open(&path).await.unwrap();
        let started = Instant::now();
        let history = ledger.read_since(0).await.unwrap();
        println!("first full read after open: {:?} ({} entries)", started.elapsed(), history.len());
        let started = Instant::now();
        ledger.checkpoint().await.unwrap();
        let size = std::fs::metadata(&checkpoint).unwrap().len();
        println!("write a checkpoint: {:?} ({:.2} MiB)", started.elapsed(), size as f64 / (1024.0 * 1024.0));

        let ledger = FileLedger::open(&path).await.unwrap();
        let mut latencies = Vec::with_capacity(APPENDS);
        for n in 0..APPENDS {
            let entry = hold(n);
            let started = Instant::now();
            ledger.append(vec![entry]).await.unwrap();
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let at = |p: f64| latencies[((APPENDS as f64 * p) as usize).min(APPENDS - 1)];
        println!(
            "append (fsync each): p50 {:?}, p99 {:?}, max {:?} ({APPENDS} appends)",
            at(0.50),
            at(0.99),
            latencies[APPENDS - 1]
        );
    });
}

/// Opens the ledger and asks a pipeline on it for `status`, `OPENS` times, running `before` ahead of each.
async fn time_opens(path: &std::path::Path, before: impl Fn()) -> Vec<Duration> {
    let mut opens = Vec::new();
    for _ in 0..OPENS {
        before();
        let started = Instant::now();
        let ledger = FileLedger::open(path).await.unwrap();
        let pipeline = pipeline_with(Arc::new(MemoryArtifactStore::new()), Arc::new(ledger));
        let status = pipeline.status().await.unwrap();
        opens.push(started.elapsed());
        assert_eq!(status.stages.len(), 3);
        assert!(status.stages.iter().all(|stage| stage.current.is_some()));
    }
    opens.sort();
    opens
}

fn report(what: &str, times: &[Duration]) {
    let n = times.len();
    println!("{what}: median {:?}, min {:?}, max {:?} ({n} runs)", times[n / 2], times[0], times[n - 1]);
}

fn hold(n: usize) -> NewEntry {
    NewEntry {
        at: Utc::now(),
        actor: "bench".into(),
        fence: None,
        event: LedgerEvent::HoldPlaced {
            hold: Hold {
                id: format!("hold-{n}"),
                stage: "prd".into(),
                scope: HoldScope::Auto,
                reason: "benchmark".into(),
                placed_by: "bench".into(),
                at: Utc::now(),
            },
        },
    }
}
