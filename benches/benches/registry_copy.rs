//! Registry copy benchmark: the `oci-copy` example against `skopeo copy --all --preserve-digests`, whole
//! processes, between local `docker-registry` servers. Not a criterion bench: each sample is a process run
//! of seconds, so it prints a table of medians instead.
//!
//! Scenario: an OCI index of 2 platforms × 3 layers × 48 MiB of random bytes.
//! - retag in the same repository (and the registry's access log counts the requests);
//! - registry → registry with nothing present, then again with everything present;
//! - peak RSS of `oci-copy` while copying one 1 GiB layer.
//!
//! Needs `docker-registry` and `skopeo`. Environment: `REGISTRY_COPY_RUNS` (default 3),
//! `REGISTRY_COPY_LAYER_MIB` (48), `REGISTRY_COPY_BIG_LAYER_MIB` (1024; 0 skips the RSS run),
//! `OCI_COPY_BIN` (relative to the workspace root; default: built with cargo into the target dir).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use promote_core::Digest;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

use promote_testkit::random_bytes;

struct Registry {
    child: Child,
    host: String,
    log: PathBuf,
    _dir: TempDir,
}

/// A temp directory removed on drop (the bench crate has no tempfile dependency).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("registry-copy-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Registry {
    fn start(name: &str) -> Registry {
        let dir = TempDir::new(name);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.0.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.0.join("storage").display()
            ),
        )
        .unwrap();
        let log = dir.0.join("access.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("docker-registry must be installed (apt-get install -y docker-registry)");
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry { child, host, log, _dir: dir }
    }

    /// Request lines ("GET /v2/…") the access log gained since `from` bytes.
    fn requests_since(&self, from: u64) -> Vec<String> {
        let text = std::fs::read(&self.log).unwrap();
        String::from_utf8_lossy(&text[from as usize..])
            .lines()
            .filter_map(|line| {
                let start = line
                    .find("\"GET ")
                    .or(line.find("\"HEAD "))
                    .or(line.find("\"PUT "))
                    .or(line.find("\"POST "))
                    .or(line.find("\"PATCH "))?;
                let request = &line[start + 1..];
                let end = request.find(" HTTP/")?;
                Some(request[..end].to_owned())
            })
            .collect()
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes an OCI layout: one index of `platforms` images with `layers` layers of `layer_bytes` each.
fn write_layout(dir: &Path, platforms: usize, layers: usize, layer_bytes: usize) -> Digest {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let blob = |bytes: &[u8]| {
        let digest = Digest::sha256_of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        digest
    };
    let mut entries = Vec::new();
    for platform in 0..platforms {
        let config = format!(
            "{{\"architecture\":\"arch{platform}\",\"os\":\"linux\",\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}"
        );
        let config_digest = blob(config.as_bytes());
        let layer_entries: Vec<String> = (0..layers)
            .map(|layer| {
                let bytes = random_bytes((platform * 100 + layer) as u64 + 1, layer_bytes);
                let digest = blob(&bytes);
                format!("{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"{digest}\",\"size\":{layer_bytes}}}")
            })
            .collect();
        let manifest = format!(
            "{{\n    \"schemaVersion\": 2,\n    \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\",\n    \"config\": {{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{}}},\n    \"layers\": [\n      {}\n    ]\n}}",
            config.len(),
            layer_entries.join(",\n      ")
        );
        let digest = blob(manifest.as_bytes());
        entries.push(format!(
            "{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{digest}\",\"size\":{},\"platform\":{{\"architecture\":\"arch{platform}\",\"os\":\"linux\"}}}}",
            manifest.len()
        ));
    }
    let index = format!(
        "{{\n \"schemaVersion\": 2,\n \"mediaType\": \"application/vnd.oci.image.index.v1+json\",\n \"manifests\": [\n  {}\n ]\n}}",
        entries.join(",\n  ")
    );
    let digest = blob(index.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!("{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"digest\":\"{digest}\",\"size\":{},\"annotations\":{{\"org.opencontainers.image.ref.name\":\"src\"}}}}]}}", index.len()),
    )
    .unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    digest
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("spawn");
    assert!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command to completion, returning its wall time and its peak RSS (VmHWM, polled from /proc).
fn timed(command: &mut Command) -> (Duration, u64) {
    let started = Instant::now();
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{command:?} failed");
            break;
        }
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
            peak_kib = peak_kib.max(kib);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (started.elapsed(), peak_kib * 1024)
}

fn skopeo_copy(from: &str, to: &str) -> Command {
    let mut command = Command::new("skopeo");
    command.args([
        "--insecure-policy",
        "copy",
        "--all",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        from,
        to,
    ]);
    command
}

fn oci_copy(bin: &Path, from: &str, to: &str) -> Command {
    let mut command = Command::new(bin);
    command.args(["--insecure", from, to]);
    command
}

fn raw(reference: &str) -> String {
    run(Command::new("skopeo").args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")]))
}

fn oci_copy_binary() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Ok(path) = std::env::var("OCI_COPY_BIN") {
        // cargo runs benches from the package's directory; a relative path means the workspace root.
        return manifest_dir.join("..").join(path);
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| manifest_dir.join("../target"));
    run(Command::new(env!("CARGO")).current_dir(manifest_dir.join("..")).args([
        "build",
        "--release",
        "-p",
        "promote-examples",
        "--example",
        "oci-copy",
    ]));
    target.join("release/examples/oci-copy")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` ask; nothing to list.
    }
    for binary in ["docker-registry", "skopeo"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {binary}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            if std::env::var_os("CI").is_some() {
                panic!("{binary} is required: apt-get install -y docker-registry skopeo");
            }
            eprintln!("SKIPPED registry_copy: {binary} is not installed");
            return;
        }
    }
    let runs = env_number("REGISTRY_COPY_RUNS", 3).max(1);
    let layer_mib = env_number("REGISTRY_COPY_LAYER_MIB", 48);
    let big_mib = env_number("REGISTRY_COPY_BIG_LAYER_MIB", 1024);
    let bin = oci_copy_binary();

    let fixture = TempDir::new("layout");
    let digest = write_layout(&fixture.0, 2, 3, layer_mib * 1024 * 1024);
    let source = Registry::start("source");
    run(&mut skopeo_copy(
        &format!("oci:{}:src", fixture.0.display()),
        &format!("docker://{}/bench/app:src", source.host),
    ));
    let source_ref = format!("{}/bench/app", source.host);
    println!("fixture: index {digest}, 2 platforms x 3 layers x {layer_mib} MiB, {runs} runs each, medians\n");

    let mut rows = Vec::new();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut retag_requests = Vec::new();
    for run_no in 0..runs {
        let before = source.log_len();
        ours.push(
            timed(&mut oci_copy(&bin, &format!("{source_ref}@{digest}"), &format!("{source_ref}:ours-{run_no}"))).0,
        );
        // Give the access log a moment to land before reading it.
        std::thread::sleep(Duration::from_millis(50));
        retag_requests = source.requests_since(before);
        theirs.push(
            timed(&mut skopeo_copy(
                &format!("docker://{source_ref}@{digest}"),
                &format!("docker://{source_ref}:skopeo-{run_no}"),
            ))
            .0,
        );
        assert_eq!(raw(&format!("{source_ref}:ours-{run_no}")), raw(&format!("{source_ref}:skopeo-{run_no}")));
    }
    rows.push(("retag, same repository", median(ours), median(theirs)));

    let (mut cold_ours, mut cold_theirs, mut warm_ours, mut warm_theirs) = (vec![], vec![], vec![], vec![]);
    let mut copy_peak = 0;
    for run_no in 0..runs {
        let target = Registry::start(&format!("target-{run_no}"));
        let to_ours = format!("{}/ours/app:v1", target.host);
        let to_theirs = format!("{}/theirs/app:v1", target.host);
        let (time, peak) = timed(&mut oci_copy(&bin, &format!("{source_ref}:src"), &to_ours));
        cold_ours.push(time);
        copy_peak = copy_peak.max(peak);
        cold_theirs
            .push(timed(&mut skopeo_copy(&format!("docker://{source_ref}:src"), &format!("docker://{to_theirs}"))).0);
        warm_ours.push(timed(&mut oci_copy(&bin, &format!("{source_ref}:src"), &to_ours)).0);
        warm_theirs
            .push(timed(&mut skopeo_copy(&format!("docker://{source_ref}:src"), &format!("docker://{to_theirs}"))).0);
        let (a, b) = (raw(&to_ours), raw(&to_theirs));
        assert_eq!(a, b, "both copies must hold identical manifests");
        assert_eq!(Digest::sha256_of(a.as_bytes()), digest, "the digest is preserved");
    }
    rows.push(("registry -> registry, nothing present", median(cold_ours), median(cold_theirs)));
    rows.push(("registry -> registry, everything present", median(warm_ours), median(warm_theirs)));

    println!("{:<42} {:>10} {:>10} {:>7}", "scenario", "oci-copy", "skopeo", "ratio");
    for (name, ours, theirs) in &rows {
        println!(
            "{name:<42} {:>9.3}s {:>9.3}s {:>7.2}",
            ours.as_secs_f64(),
            theirs.as_secs_f64(),
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
    }
    println!("\nretag requests seen by the registry ({}):", retag_requests.len());
    for request in &retag_requests {
        println!("  {request}");
    }
    println!(
        "\npeak RSS of oci-copy, cross-registry copy of {} MiB: {:.1} MiB",
        6 * layer_mib,
        copy_peak as f64 / (1024.0 * 1024.0)
    );

    if big_mib > 0 {
        let big = TempDir::new("big");
        let big_digest = write_layout(&big.0, 1, 1, big_mib * 1024 * 1024);
        run(&mut skopeo_copy(
            &format!("oci:{}:src", big.0.display()),
            &format!("docker://{}/bench/big:src", source.host),
        ));
        let target = Registry::start("big-target");
        let (time, peak) = timed(&mut oci_copy(
            &bin,
            &format!("{}/bench/big:src", source.host),
            &format!("{}/big/app:v1", target.host),
        ));
        assert_eq!(Digest::sha256_of(raw(&format!("{}/big/app:v1", target.host)).as_bytes()), big_digest);
        println!(
            "peak RSS of oci-copy, one {big_mib} MiB layer: {:.1} MiB ({:.2}s)",
            peak as f64 / (1024.0 * 1024.0),
            time.as_secs_f64()
        );
    }
}
