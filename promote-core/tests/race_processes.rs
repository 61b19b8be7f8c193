//! Racing OS processes: several processes promote builds into one stage at once, through the file lock
//! and the file ledger, round after round.
//!
//! The test binary is its own child: run with `PROMOTE_RACE_CHILD` set, it is one racing process. Each
//! process appends to a side file (`O_APPEND`, one `write` per line) when it starts to hold the stage's
//! lock, when it deploys and just before it lets go, so the file's order is the order in which processes
//! believed they held the lock, independent of what the lock itself reports. The parent then checks:
//! - no two holdings overlap, and every deploy happens inside its own process's holding;
//! - fencing tokens strictly increase, in the side file and in the ledger;
//! - every promotion a process reported as succeeded is in the ledger exactly once as succeeded, and the
//!   ledger holds no success nobody reported;
//! - the ledger reopens with its chain verified, and the stage's directory holds the bundle of the
//!   stage's current promotion.
//!
//! 8 processes × 50 rounds by default; `RELIABILITY_LONG=1` runs 8 × 200.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use promote_core::deploy::{ApplyMode, Change, DeployStatus, DeployerCapabilities};
use promote_core::ledger::{FinalState, LedgerEvent, LedgerView};
use promote_core::lock::Lease;
use promote_core::manifest::{OCI_MANIFEST, REVISION_ANNOTATION};
use promote_core::progress::Progress;
use promote_core::{
    ArtifactRef, BuildRequest, Bundle, Deployer, DirectoryDeployer, EnvironmentLock, FileLedger, FileLock, Ledger,
    LockWait, MemoryArtifactStore, MemoryConfigSource, Pipeline, Result, Stage, Templates,
};
use promote_testkit::process::{Spawned, child_mode, self_command};

const STAGE: &str = "dev";
const TEMPLATE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{config.REPLICAS}}
  template:
    spec:
      containers:
        - name: web
          image: {{artifacts.web.image}}
";
/// How long the whole race may take before the parent kills it and fails.
const RACE_DEADLINE: Duration = Duration::from_secs(900);
/// The variable that makes the test binary one racing process (its index).
const CHILD: &str = "PROMOTE_RACE_CHILD";

fn main() {
    if !promote_testkit::process::harness_less("race_processes") {
        return;
    }
    match child_mode(CHILD) {
        Some(index) => child(index.parse().expect("child index")),
        None => race(),
    }
}

fn long() -> bool {
    std::env::var_os("RELIABILITY_LONG").is_some_and(|v| v == "1")
}

/// A line in the side file, written with one `write` on an `O_APPEND` file so lines never interleave.
fn observe(side: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(side).expect("open the side file");
    file.write_all(format!("{line}\n").as_bytes()).expect("write the side file");
}

/// The file lock, with each holding written to the side file: `enter` once the lock is held, `leave`
/// before it is released.
#[derive(Debug)]
struct ObservedLock {
    inner: FileLock,
    side: PathBuf,
    who: String,
}

/// Written to the side file when dropped, before the inner lease (declared after it) releases the lock.
struct Leave {
    side: PathBuf,
    line: String,
}

impl Drop for Leave {
    fn drop(&mut self) {
        observe(&self.side, &self.line);
    }
}

/// What the outer lease releases: `leave` first, then the file lock.
struct Holding {
    _leave: Leave,
    _inner: Arc<Lease>,
}

#[async_trait]
impl EnvironmentLock for ObservedLock {
    async fn acquire(&self, stage: &str, holder: &str, wait: LockWait) -> Result<Lease> {
        let inner = Arc::new(self.inner.acquire(stage, holder, wait).await?);
        let token = inner.token();
        observe(&self.side, &format!("enter {} {token}", self.who));
        let probe = inner.clone();
        let holding = Holding {
            _leave: Leave { side: self.side.clone(), line: format!("leave {} {token}", self.who) },
            _inner: inner,
        };
        Ok(Lease::new(stage, holder, token, Box::new(holding)).lost_if(move || probe.is_lost()))
    }
}

/// The directory deployer, with each apply written to the side file.
#[derive(Debug)]
struct ObservedDeployer {
    inner: DirectoryDeployer,
    side: PathBuf,
    who: String,
}

#[async_trait]
impl Deployer for ObservedDeployer {
    fn capabilities(&self) -> DeployerCapabilities {
        self.inner.capabilities()
    }
    async fn apply(&self, bundle: &Bundle, mode: ApplyMode) -> Result<Vec<Change>> {
        let promotion = bundle.context().map_or_else(|| "-".to_owned(), |c| c.promotion.to_string());
        observe(&self.side, &format!("deploy {} {promotion}", self.who));
        self.inner.apply(bundle, mode).await
    }
    async fn wait_healthy(&self, bundle: &Bundle, timeout: Duration, progress: &Progress) -> Result<String> {
        self.inner.wait_healthy(bundle, timeout, progress).await
    }
    async fn current(&self, stage: &str) -> Result<Option<Bundle>> {
        self.inner.current(stage).await
    }
    async fn status(&self, stage: &str) -> Result<DeployStatus> {
        self.inner.status(stage).await
    }
}

/// One racing process: `rounds` builds of its own, each registered and promoted into the stage. Prints
/// `ok <promotion> <token>` for each success and `err <round> <error>` for each failure.
fn child(index: usize) {
    let dir = PathBuf::from(std::env::var("PROMOTE_RACE_DIR").expect("PROMOTE_RACE_DIR"));
    let rounds: usize = std::env::var("PROMOTE_RACE_ROUNDS").expect("PROMOTE_RACE_ROUNDS").parse().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let who = format!("{index}:{}", std::process::id());
        let side = dir.join("observer.log");
        let store = MemoryArtifactStore::new();
        let config = MemoryConfigSource::new("inline");
        config.set(STAGE, "REPLICAS", "2");
        let stage = Stage::new(STAGE)
            .lock_wait(LockWait::Wait(Duration::from_secs(600)))
            .templates(Templates::from_sources([("app.yaml", TEMPLATE)]).unwrap())
            .config_source(config)
            .deployer(ObservedDeployer {
                inner: DirectoryDeployer::new(dir.join("deploy")),
                side: side.clone(),
                who: who.clone(),
            });
        let pipeline = Pipeline::builder("race")
            .store(store.clone())
            .ledger(FileLedger::open(dir.join("ledger.jsonl")).await.expect("open the ledger"))
            .lock(ObservedLock { inner: FileLock::new(dir.join("locks")), side, who: who.clone() })
            .stage(stage)
            .build()
            .unwrap();
        let mut out = std::io::stdout().lock();
        for round in 0..rounds {
            let commit = format!("{index:08x}{round:032x}");
            let reference: ArtifactRef = format!("memory.local/race/web:p{index}-r{round}").parse().unwrap();
            let manifest = format!(
                "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"{REVISION_ANNOTATION}\":\"{commit}\"}}}}"
            );
            store.push(reference.clone(), OCI_MANIFEST, manifest.into_bytes()).unwrap();
            let request = BuildRequest::new(&commit).artifact("web", reference);
            let outcome = match pipeline.register(request, &who).await {
                Ok(build) => pipeline.promote(&build.id, STAGE, &who).await,
                Err(error) => Err(error),
            };
            match outcome {
                Ok(record) => {
                    let token = record.fencing_tokens.last().copied().unwrap_or_default();
                    writeln!(out, "ok {} {token}", record.id).unwrap();
                }
                Err(error) => writeln!(out, "err {round} {error}").unwrap(),
            }
        }
    });
}

fn race() {
    let (processes, rounds) = if long() { (8, 200) } else { (8, 50) };
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let racers: Vec<Spawned> = (0..processes)
        .map(|index| {
            let mut command = self_command(CHILD, index.to_string());
            command.env("PROMOTE_RACE_DIR", dir.path()).env("PROMOTE_RACE_ROUNDS", rounds.to_string());
            Spawned::start(command)
        })
        .collect();
    let deadline = started + RACE_DEADLINE;
    let mut reported = BTreeMap::new();
    let mut failures = Vec::new();
    for (index, racer) in racers.into_iter().enumerate() {
        let (status, out, err) = racer.wait(deadline, &format!("racing process {index}"));
        assert!(status.success(), "racing process {index} failed: {status}: {err}");
        for line in out.lines() {
            match line.split_once(' ') {
                Some(("ok", rest)) => {
                    let (id, token) = rest.split_once(' ').unwrap();
                    let previous = reported.insert(id.to_owned(), token.parse::<u64>().unwrap());
                    assert!(previous.is_none(), "promotion {id} reported twice");
                }
                _ => failures.push(format!("process {index}: {line} ({err})")),
            }
        }
    }
    // The observer first: a broken lock shows there as two holders at once.
    let holdings = check_observer(&dir.path().join("observer.log"));
    assert!(failures.is_empty(), "promotions failed: {failures:#?}");
    assert_eq!(reported.len(), processes * rounds, "every round reported");
    assert_eq!(holdings.len(), processes * rounds, "one holding per promotion: {holdings:?}");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(check_ledger(dir.path(), &reported, &holdings));
    println!(
        "race_processes: {processes} processes x {rounds} rounds: {} promotions, no overlap, in {:.1?}",
        reported.len(),
        started.elapsed()
    );
    println!("\ntest result: ok. 1 passed; 0 failed");
}

/// Reads the side file and checks the holdings in it: each `enter` is followed by its own process's
/// `leave` before any other `enter`, deploys happen inside their process's holding, tokens strictly
/// increase. Returns the tokens held, in order.
fn check_observer(side: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(side).unwrap();
    let mut holder: Option<(String, u64)> = None;
    let mut tokens: Vec<u64> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = number + 1;
        let mut fields = line.split(' ');
        let (what, who, value) = (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
        match what {
            "enter" => {
                assert!(holder.is_none(), "line {at}: {who} entered while {holder:?} held the lock");
                let token: u64 = value.parse().unwrap();
                if let Some(last) = tokens.last() {
                    assert!(token > *last, "line {at}: token {token} after {last}");
                }
                tokens.push(token);
                holder = Some((who.to_owned(), token));
            }
            "deploy" => {
                let held = holder.as_ref().is_some_and(|(holding, _)| holding == who);
                assert!(held, "line {at}: {who} deployed while {holder:?} held the lock");
            }
            "leave" => {
                let token: u64 = value.parse().unwrap();
                assert_eq!(holder.take(), Some((who.to_owned(), token)), "line {at}: a leave without its enter");
            }
            other => panic!("line {at}: unknown record {other}"),
        }
    }
    assert!(holder.is_none(), "the lock is still held at the end: {holder:?}");
    tokens
}

async fn check_ledger(dir: &Path, reported: &BTreeMap<String, u64>, holdings: &[u64]) {
    // Opening verifies every line's hash and the whole chain.
    let ledger = FileLedger::open(dir.join("ledger.jsonl")).await.expect("the ledger reopens with its chain verified");
    let entries = ledger.read_since(0).await.unwrap();
    let mut last_token = 0;
    let mut succeeded: BTreeMap<String, usize> = BTreeMap::new();
    for entry in &entries {
        if let Some(fence) = entry.fence.as_ref().filter(|fence| fence.stage == STAGE) {
            assert!(fence.token >= last_token, "entry {}: token {} after {last_token}", entry.seq, fence.token);
            assert!(holdings.contains(&fence.token), "entry {}: token {} was never held", entry.seq, fence.token);
            last_token = fence.token;
        }
        if let LedgerEvent::PromotionFinished { promotion, state: FinalState::Succeeded } = &entry.event {
            *succeeded.entry(promotion.to_string()).or_default() += 1;
        }
    }
    for (id, token) in reported {
        assert_eq!(succeeded.get(id), Some(&1), "promotion {id} succeeded once in the ledger");
        assert!(holdings.contains(token), "promotion {id} reported token {token}, never held");
    }
    let invented: BTreeSet<_> = succeeded.keys().filter(|id| !reported.contains_key(*id)).collect();
    assert!(invented.is_empty(), "successes nobody reported: {invented:?}");

    let mut view = LedgerView::new();
    view.apply_all(entries);
    let current = view.current(STAGE).expect("the stage has a current promotion");
    let deployed = DirectoryDeployer::new(dir.join("deploy")).current(STAGE).await.unwrap().expect("a deployed bundle");
    assert_eq!(Some(deployed.hash()), current.bundle_hash.as_deref(), "the directory holds the current bundle");
}
