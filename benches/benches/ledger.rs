//! The file ledger at 100,000 records: open plus `status`, and single-entry append latency with fsync.
//!
//! Prints medians and percentiles of what it measured; run with `cargo bench -p promote-benches --bench ledger`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use promote_benches::pipeline_with;
use promote_core::ledger::{Hold, HoldScope, LedgerEvent, NewEntry, StepDetail, StepOutcome};
use promote_core::{FileLedger, Ledger, MemoryArtifactStore};

const RECORDS: usize = 100_000;
const BATCH: usize = 1_000;
const APPENDS: usize = 2_000;
const OPENS: usize = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.jsonl");
        fill(&path).await;
        let bytes = std::fs::metadata(&path).unwrap().len();
        println!("ledger: {RECORDS} records, {:.1} MiB", bytes as f64 / (1024.0 * 1024.0));

        let mut opens = Vec::new();
        for _ in 0..OPENS {
            let started = Instant::now();
            let ledger = FileLedger::open(&path).await.unwrap();
            let pipeline = pipeline_with(Arc::new(MemoryArtifactStore::new()), Arc::new(ledger));
            let status = pipeline.status().await.unwrap();
            opens.push(started.elapsed());
            assert_eq!(status.stages.len(), 3);
        }
        opens.sort();
        println!(
            "open + status: median {:?}, min {:?}, max {:?} ({OPENS} runs)",
            opens[OPENS / 2],
            opens[0],
            opens[OPENS - 1]
        );

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
        let _: Duration = at(0.5);
    });
}

/// Writes `RECORDS` entries shaped like a real journal: mostly step records, some holds.
async fn fill(path: &std::path::Path) {
    let ledger = FileLedger::open(path).await.unwrap();
    let mut written = 0;
    while written < RECORDS {
        let entries = (0..BATCH)
            .map(|n| {
                let n = written + n;
                if n % 10 == 0 {
                    hold(n)
                } else {
                    NewEntry {
                        at: Utc::now(),
                        actor: "ci".into(),
                        fence: None,
                        event: LedgerEvent::StepFinished {
                            promotion: promote_core::ledger::PromotionId::new(
                                "dev",
                                &promote_core::BuildId::parse("b-0123456789abcdef").unwrap(),
                                (n / 10) as u32,
                            ),
                            step: promote_core::ledger::Step::Deploy,
                            outcome: StepOutcome::Ok(StepDetail::Deployed { summary: "2 objects ready".into() }),
                        },
                    }
                }
            })
            .collect();
        ledger.append(entries).await.unwrap();
        written += BATCH;
    }
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
