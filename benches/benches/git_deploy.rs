//! Git deployer benchmark: one promotion of a 20-object bundle to a repository with 1,000 earlier commits,
//! served by `git daemon` on loopback, against the same kind of change done by hand in the same run
//! (`git clone --depth 1`, `git add`, `git commit`, `git push`). Not a criterion bench: each sample is a
//! handful of processes and a network round trip or two, so it prints medians.
//!
//! - "cold": a new deployer and an empty cache directory for every promotion (a fresh CI runner): the clone
//!   is created, the version checked, the branch fetched with `--depth 1`;
//! - "warm": one deployer whose cache persists between promotions (a runner that keeps its state dir);
//! - "by hand": a shallow clone, 20 files changed, `add`, `commit`, `push`.
//!
//! git processes are counted twice: those the deployer starts itself ([`GitStats::git_processes`]), and every
//! git process of the operation, children included (`GIT_TRACE2_EVENT` start events, in a separate run so
//! that tracing does not slow the timed ones).
//!
//! Needs `git`. Environment: `GIT_DEPLOY_RUNS` (default 7), `GIT_DEPLOY_HISTORY` (earlier commits, 1000).
//! Every git here runs under a configuration of the bench's own (its own `HOME`, no system config).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use promote_core::deploy::{GitDeployer, GitStats};
use promote_core::manifest::OCI_MANIFEST;
use promote_core::{BuildRequest, MemoryArtifactStore, MemoryLedger, Pipeline, Stage, Templates};

/// Objects in the promoted bundle.
const OBJECTS: usize = 20;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A directory with a git configuration of its own.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let world = World { dir: tempfile::tempdir().unwrap() };
        std::fs::create_dir_all(world.home().join(".config")).unwrap();
        world.git(world.path(), &["config", "--global", "user.name", "Bench"]);
        world.git(world.path(), &["config", "--global", "user.email", "bench@promote.invalid"]);
        world
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let home = self.home();
        vec![
            ("HOME", home.display().to_string()),
            ("XDG_CONFIG_HOME", home.join(".config").display().to_string()),
            ("GIT_CONFIG_GLOBAL", home.join(".gitconfig").display().to_string()),
            ("GIT_CONFIG_NOSYSTEM", "1".to_owned()),
        ]
    }

    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new("git");
        command.current_dir(dir).envs(self.env()).stdin(Stdio::null());
        command
    }

    fn git(&self, dir: &Path, args: &[&str]) -> String {
        let output = self.command(dir).args(args).output().unwrap();
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }

    fn deployer(&self, url: &str, cache: &Path, trace: Option<&Path>) -> GitDeployer {
        let mut builder = GitDeployer::builder(url, "main", cache).path("{stage}");
        for (name, value) in self.env() {
            builder = builder.env(name, value);
        }
        if let Some(trace) = trace {
            builder = builder.env("GIT_TRACE2_EVENT", trace.display().to_string());
        }
        builder.build().unwrap()
    }
}

/// `git daemon` on a free loopback port, killed on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(world: &World, base: &Path) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The daemon itself, not `git daemon`: git would run it as a child, which killing git leaves behind.
        let program = PathBuf::from(world.git(base, &["--exec-path"]).trim()).join("git-daemon");
        let child = Command::new(program)
            .current_dir(base)
            .envs(world.env())
            .stdin(Stdio::null())
            .args([
                "--reuseaddr",
                &format!("--base-path={}", base.display()),
                "--export-all",
                "--enable=receive-pack",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &base.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, port }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare repository whose `main` has `commits` commits, each changing one of 40 files of other teams.
fn repository_with_history(world: &World, path: &Path, commits: usize) {
    std::fs::create_dir_all(path).unwrap();
    world.git(path, &["init", "--quiet", "--bare", "--initial-branch=main"]);
    let mut stream = Vec::new();
    for n in 1..=commits {
        let message = format!("earlier change {n}\n");
        let content =
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other-{}\ndata:\n  n: \"{n}\"\n", n % 40);
        write!(
            stream,
            "commit refs/heads/main\nmark :{n}\ncommitter Someone <someone@example.invalid> {} +0000\ndata {}\n{message}",
            1_700_000_000 + n,
            message.len()
        )
        .unwrap();
        if n > 1 {
            writeln!(stream, "from :{}", n - 1).unwrap();
        }
        write!(stream, "M 100644 inline other/configmap-other-{}.yaml\ndata {}\n{content}\n", n % 40, content.len())
            .unwrap();
    }
    let mut child = world.command(path).args(["fast-import", "--quiet"]).stdin(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(&stream).unwrap();
    assert!(child.wait().unwrap().success(), "fast-import");
}

/// The bundle's template: `OBJECTS` ConfigMaps naming the build's image by digest.
fn template() -> String {
    (0..OBJECTS)
        .map(|n| {
            format!(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-{n}\ndata:\n  image: {{{{artifacts.web.image}}}}\n  \
                 commit: {{{{build.commit}}}}\n  index: \"{n}\"\n"
            )
        })
        .collect()
}

/// A pipeline with one stage, `prd`, deploying through `deployer`, and a build registered for run `run`.
async fn pipeline_with_build(deployer: &GitDeployer, run: usize) -> (Pipeline, promote_core::Build) {
    let store = MemoryArtifactStore::new();
    let pipeline = Pipeline::builder("bench")
        .store(Arc::new(store.clone()))
        .ledger(Arc::new(MemoryLedger::new()))
        .stage(
            Stage::new("prd")
                .templates(Templates::from_sources([("app.yaml", template())]).unwrap())
                .deployer(Arc::new(deployer.clone())),
        )
        .build()
        .unwrap();
    let commit = format!("{run:08x}{}", "a".repeat(32));
    let reference = format!("memory.local/bench/web:{}", &commit[..8]);
    let body =
        format!("{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"annotations\":{{\"run\":\"{run}\"}}}}");
    store.push(reference.parse().unwrap(), OCI_MANIFEST, body.into_bytes()).unwrap();
    let build =
        pipeline.register(BuildRequest::new(commit).artifact("web", reference.parse().unwrap()), "ci").await.unwrap();
    (pipeline, build)
}

/// Times one promotion of a fresh build; returns the time and the deployer's own process count for it.
async fn promote_once(deployer: &GitDeployer, run: usize) -> (Duration, u64) {
    let (pipeline, build) = pipeline_with_build(deployer, run).await;
    let before: GitStats = deployer.stats();
    let started = Instant::now();
    let record = pipeline.promote(&build.id, "prd", "bench").await.unwrap();
    let elapsed = started.elapsed();
    assert!(record.state.succeeded());
    assert_eq!(deployer.stats().commits_pushed, before.commits_pushed + 1, "one commit pushed");
    (elapsed, deployer.stats().git_processes - before.git_processes)
}

/// The same kind of change by hand: a shallow clone, `OBJECTS` files changed, add, commit, push.
fn by_hand(world: &World, url: &str, run: usize, trace: Option<&Path>) -> Duration {
    let work = world.path().join(format!("by-hand-{run}"));
    let git = |dir: &Path, args: &[&str]| {
        let mut command = world.command(dir);
        if let Some(trace) = trace {
            command.env("GIT_TRACE2_EVENT", trace);
        }
        let output = command.args(args).output().unwrap();
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let started = Instant::now();
    git(world.path(), &["clone", "--quiet", "--depth", "1", "--branch", "main", url, work.to_str().unwrap()]);
    let dir = work.join("by-hand");
    std::fs::create_dir_all(&dir).unwrap();
    for n in 0..OBJECTS {
        let text = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-{n}\ndata:\n  run: \"{run}\"\n");
        std::fs::write(dir.join(format!("configmap-web-{n}.yaml")), text).unwrap();
    }
    git(&work, &["add", "--all"]);
    git(&work, &["commit", "--quiet", "-m", &format!("by hand, run {run}")]);
    git(&work, &["push", "--quiet", "origin", "HEAD:main"]);
    let elapsed = started.elapsed();
    std::fs::remove_dir_all(&work).unwrap();
    elapsed
}

/// git processes a trace file recorded: (started directly by the traced program, all of them).
fn processes(trace: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let starts: Vec<&str> = text.lines().filter(|line| line.contains("\"event\":\"start\"")).collect();
    let top = starts
        .iter()
        .filter(|line| {
            line.split("\"sid\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .is_some_and(|sid| !sid.contains('/'))
        })
        .count();
    let _ = std::fs::remove_file(trace);
    (top, starts.len())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` ask; nothing to list.
    }
    let found = Command::new("git").arg("version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("git is required: apt-get install -y git");
        }
        eprintln!("SKIPPED git_deploy: git is not installed");
        return;
    }
    let runs = env_number("GIT_DEPLOY_RUNS", 7).max(1);
    let history = env_number("GIT_DEPLOY_HISTORY", 1000);
    let world = World::new();
    let served = world.path().join("served");
    repository_with_history(&world, &served.join("deploy.git"), history);
    let daemon = Daemon::start(&world, &served);
    let url = format!("git://127.0.0.1:{}/deploy.git", daemon.port);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let warm = world.deployer(&url, &world.path().join("cache-warm"), None);
    runtime.block_on(promote_once(&warm, 0)); // creates the warm cache
    by_hand(&world, &url, 0, None); // the same for the by-hand path's first connection
    let (mut cold_times, mut warm_times, mut hand_times) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cold_spawned, mut warm_spawned) = (0, 0);
    for run in 1..=runs {
        let cold = world.deployer(&url, &world.path().join(format!("cache-cold-{run}")), None);
        let (time, spawned) = runtime.block_on(promote_once(&cold, 1000 + run));
        cold_times.push(time);
        cold_spawned = spawned;
        let (time, spawned) = runtime.block_on(promote_once(&warm, 2000 + run));
        warm_times.push(time);
        warm_spawned = spawned;
        hand_times.push(by_hand(&world, &url, run, None));
    }

    // One more of each, traced, to count every git process (children included).
    let trace = world.path().join("trace.json");
    let traced_cold = world.deployer(&url, &world.path().join("cache-traced"), Some(&trace));
    runtime.block_on(promote_once(&traced_cold, 3000));
    let cold_processes = processes(&trace);
    let traced_warm = world.deployer(&url, &world.path().join("cache-traced"), Some(&trace));
    runtime.block_on(promote_once(&traced_warm, 3001)); // the cache exists; the deployer checks git once
    let _ = processes(&trace);
    runtime.block_on(promote_once(&traced_warm, 3002));
    let warm_processes = processes(&trace);
    by_hand(&world, &url, 3003, Some(&trace));
    let hand_processes = processes(&trace);

    let (cold, warm, hand) = (median(cold_times), median(warm_times), median(hand_times));
    let commits = world.git(&served.join("deploy.git"), &["rev-list", "--count", "main"]);
    println!(
        "git deploy: a {OBJECTS}-object bundle to a repository with {history} earlier commits ({} now), git daemon on \
         127.0.0.1; median of {runs}",
        commits.trim()
    );
    println!("| what | wall time | git processes: started by it | all, children included |");
    println!("|---|---|---|---|");
    println!("| promotion, cold cache | {} | {cold_spawned} | {} |", ms(cold), cold_processes.1);
    println!("| promotion, warm cache | {} | {warm_spawned} | {} |", ms(warm), warm_processes.1);
    println!(
        "| by hand: clone --depth 1, add, commit, push | {} | {} | {} |",
        ms(hand),
        hand_processes.0,
        hand_processes.1
    );
    println!(
        "ratio to by hand: cold {:.2}, warm {:.2} (target < 2)",
        cold.as_secs_f64() / hand.as_secs_f64(),
        warm.as_secs_f64() / hand.as_secs_f64()
    );
}
