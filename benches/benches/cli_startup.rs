//! The `promote` binary's startup: `promote status` on a 100,000-record file ledger with a checkpoint, as a
//! whole process (exec, spec load, ledger open: the bytes before the checkpoint checked against its segment
//! digests, the lines after it hash-checked, the chain walked; status, exit).
//!
//! ```sh
//! cargo build --release -p promote-examples --bin promote
//! cargo bench -p promote-benches --bench cli_startup       # PROMOTE_BIN=… for another binary
//! ```
//! Prints the median, min and max of `CLI_STARTUP_RUNS` runs (default 10), after one warm-up run. With
//! `CLI_STARTUP_DIR=dir`, the ledger and spec are written there (once) and kept, to profile the binary on
//! them: `perf stat target/release/promote --file dir/promote.yaml status`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promote_benches::{fill_file_ledger, pipeline_with};
use promote_core::{FileLedger, MemoryArtifactStore};

const RECORDS: u64 = 100_000;

const SPEC: &str = "pipeline: bench
store: { kind: memory }
ledger: { kind: file, path: ledger.jsonl }
lock: { kind: file, dir: locks }
deployer: { kind: memory }
stages:
  - name: dev
  - name: stg
  - name: prd
";

fn main() {
    let binary = std::env::var_os("PROMOTE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/promote"));
    if !binary.is_file() {
        eprintln!(
            "SKIPPED: {} is missing: build it first with `cargo build --release -p promote-examples --bin promote` \
             (or set PROMOTE_BIN)",
            binary.display()
        );
        return;
    }
    let runs: usize = std::env::var("CLI_STARTUP_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(10);
    let scratch = tempfile::tempdir().unwrap();
    let kept = std::env::var_os("CLI_STARTUP_DIR").map(PathBuf::from);
    let dir = kept.as_deref().unwrap_or(scratch.path());
    std::fs::create_dir_all(dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if !dir.join("ledger.jsonl").exists() {
        runtime.block_on(async {
            let (ledger, _) = fill_file_ledger(&dir.join("ledger.jsonl"), RECORDS).await;
            ledger.checkpoint().await.unwrap();
        });
    }
    let spec = dir.join("promote.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    let bytes = std::fs::metadata(dir.join("ledger.jsonl")).unwrap().len();
    println!("ledger: {RECORDS}+ records, {:.1} MiB, checkpoint present", bytes as f64 / (1024.0 * 1024.0));

    let status = |json: bool| {
        let mut command = Command::new(&binary);
        command.arg("--file").arg(&spec).arg("status").stdin(Stdio::null()).stderr(Stdio::null());
        if json {
            command.args(["--output", "json"]);
        }
        command
    };
    // The warm-up checks the answer, and leaves the files in the page cache as a CI runner's would be.
    let output = status(true).output().unwrap();
    assert!(output.status.success(), "promote status failed: {}", String::from_utf8_lossy(&output.stderr));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(document["stages"].as_array().unwrap().iter().all(|s| s["current"].is_string()), "{document}");

    report("promote status, 100k-record ledger, whole process (target < 50 ms)", runs, || status(false));
    // The same open + status inside this process (the ledger bench's row), measured now, for comparison.
    let mut opens: Vec<Duration> = (0..runs)
        .map(|_| {
            runtime.block_on(async {
                let started = Instant::now();
                let ledger = FileLedger::open(dir.join("ledger.jsonl")).await.unwrap();
                let pipeline = pipeline_with(Arc::new(MemoryArtifactStore::new()), Arc::new(ledger));
                pipeline.status().await.unwrap();
                started.elapsed()
            })
        })
        .collect();
    opens.sort();
    println!(
        "open + status in this process: median {:.1} ms, min {:.1} ms, max {:.1} ms ({runs} runs)",
        ms(opens[runs / 2]),
        ms(opens[0]),
        ms(opens[runs - 1])
    );
    // What the figure holds apart from the ledger: starting the process, and status on an empty ledger.
    report("promote --version (exec and exit)", runs, || {
        let mut command = Command::new(&binary);
        command.arg("--version").stdin(Stdio::null());
        command
    });
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("promote.yaml"), SPEC).unwrap();
    report("promote status, empty ledger", runs, || {
        let mut command = Command::new(&binary);
        command.arg("--file").arg(empty.path().join("promote.yaml")).arg("status").stdin(Stdio::null());
        command
    });
}

/// Runs the command `runs` times and prints the median, min and max wall time.
fn report(what: &str, runs: usize, command: impl Fn() -> Command) {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            let finished = command().stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
            let elapsed = started.elapsed();
            assert!(finished.success(), "{what}: the command failed");
            elapsed
        })
        .collect();
    times.sort();
    println!(
        "{what}: median {:.1} ms, min {:.1} ms, max {:.1} ms ({runs} runs)",
        ms(times[runs / 2]),
        ms(times[0]),
        ms(times[runs - 1])
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
