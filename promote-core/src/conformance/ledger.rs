//! The [`Ledger`] conformance suite.

use std::sync::Arc;

use chrono::{TimeZone, Utc};

use crate::error::Error;
use crate::ledger::{Fence, GENESIS_HASH, Hold, HoldScope, Ledger, LedgerEvent, LedgerSummary, NewEntry, verify_chain};

fn entry(n: u32, fence: Option<(&str, u64)>) -> NewEntry {
    NewEntry {
        at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(i64::from(n)),
        actor: format!("actor-{n}"),
        fence: fence.map(|(stage, token)| Fence { stage: stage.to_owned(), token }),
        event: LedgerEvent::HoldPlaced {
            hold: Hold {
                id: format!("hold-{n}"),
                stage: "dev".into(),
                scope: HoldScope::Auto,
                reason: format!("conformance entry {n}"),
                placed_by: "conformance".into(),
                at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            },
        },
    }
}

/// Runs every clause, in order, against an empty ledger. The clauses build on one another: each expects the
/// entries the ones before appended.
pub async fn ledger(ledger: Arc<dyn Ledger>) {
    a_new_ledger_is_empty(ledger.as_ref()).await;
    appends_are_numbered_chained_and_read_back(ledger.as_ref()).await;
    a_stale_fence_is_refused_whole(ledger.as_ref()).await;
    concurrent_appends_keep_one_chain(ledger.clone()).await;
    a_summary_is_the_fold(ledger.as_ref()).await;
}

/// A new ledger reads back nothing.
pub async fn a_new_ledger_is_empty(ledger: &dyn Ledger) {
    let entries = ledger.read_since(0).await.expect("reading an empty ledger must succeed");
    assert!(entries.is_empty(), "a new ledger must be empty");
}

/// Appends are numbered from 1, chained to the entry before, and read back exactly; `read_since(n)` returns
/// what follows `n`. (Three entries.)
pub async fn appends_are_numbered_chained_and_read_back(ledger: &dyn Ledger) {
    let first = ledger.append(vec![entry(1, None), entry(2, None)]).await.expect("append must succeed");
    assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2], "append must number entries from 1");
    assert_eq!(first[0].prev, GENESIS_HASH, "the first entry must follow the genesis hash");
    assert_eq!(first[1].prev, first[0].hash, "each entry must chain to the one before");
    let third = ledger.append(vec![entry(3, None)]).await.unwrap();
    assert_eq!(third[0].seq, 3);
    let all = ledger.read_since(0).await.unwrap();
    assert_eq!(all.len(), 3, "read_since(0) must return every entry");
    assert_eq!(&all[..2], &first[..], "entries must read back exactly as appended");
    verify_chain("conformance", (0, GENESIS_HASH), &all).expect("the chain must verify");
    let tail = ledger.read_since(2).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [3], "read_since(n) must return entries after n");
    assert!(ledger.read_since(3).await.unwrap().is_empty(), "read_since(head) must be empty");
}

/// An append under a fencing token older than one seen for its stage is refused with [`Error::Fenced`],
/// the whole batch, writing nothing; fences are per stage. (Three more entries.)
pub async fn a_stale_fence_is_refused_whole(ledger: &dyn Ledger) {
    let before = ledger.read_since(0).await.unwrap().len();
    ledger.append(vec![entry(4, Some(("prd", 5)))]).await.expect("a first fence must be accepted");
    match ledger.append(vec![entry(5, Some(("prd", 4)))]).await {
        Err(Error::Fenced { stage, token: 4, newest: 5 }) => assert_eq!(stage, "prd"),
        other => panic!("a stale fencing token must be refused with Fenced, got {other:?}"),
    }
    let refused_batch = ledger.append(vec![entry(6, None), entry(7, Some(("prd", 3)))]).await;
    assert!(matches!(refused_batch, Err(Error::Fenced { .. })), "a batch with a stale fence must be refused");
    assert_eq!(ledger.read_since(0).await.unwrap().len(), before + 1, "a refused append must write nothing");
    ledger.append(vec![entry(8, Some(("prd", 5)))]).await.expect("the current token must still be accepted");
    ledger.append(vec![entry(9, Some(("stg", 1)))]).await.expect("fences are per stage");
}

/// Eight writers appending at once lose nothing and keep one unbroken chain. (Eighty more entries.)
pub async fn concurrent_appends_keep_one_chain(ledger: Arc<dyn Ledger>) {
    let before = ledger.read_since(0).await.unwrap().len();
    let writers = (0..8u32).map(|writer| {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            for n in 0..10 {
                ledger.append(vec![entry(100 + writer * 10 + n, None)]).await.expect("concurrent append must succeed");
            }
        })
    });
    for writer in writers {
        writer.await.expect("writer task");
    }
    let all = ledger.read_since(0).await.unwrap();
    assert_eq!(all.len(), before + 80, "no concurrent append may be lost");
    verify_chain("conformance", (0, GENESIS_HASH), &all).expect("concurrent appends must keep the chain unbroken");
}

/// A summary, if the ledger keeps one, equals the fold of every entry, holds lifted included.
pub async fn a_summary_is_the_fold(ledger: &dyn Ledger) {
    let lifted =
        NewEntry { event: LedgerEvent::HoldLifted { hold: "hold-1".into(), stage: "dev".into() }, ..entry(200, None) };
    ledger.append(vec![lifted]).await.expect("append must succeed");
    if let Some(summary) = ledger.summary().await.expect("summary must succeed") {
        let entries = ledger.read_since(0).await.unwrap();
        let mut folded = LedgerSummary::new();
        folded.apply_all(&entries);
        assert_eq!(*summary, folded, "summary() must equal the fold of every entry");
        let placed = entries.iter().filter(|e| matches!(e.event, LedgerEvent::HoldPlaced { .. })).count();
        assert_eq!(summary.holds("dev").count(), placed - 1, "the summary must keep the holds not lifted");
    }
}
