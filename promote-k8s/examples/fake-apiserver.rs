//! Serves promote-k8s's fake Kubernetes API server on loopback until killed, for people and for other tools'
//! tests (kubectl, client libraries), and writes a kubeconfig that points at it.
//!
//! ```text
//! cargo run -p promote-k8s --features testing --example fake-apiserver -- \
//!     --addr 127.0.0.1:8080 --kubeconfig /tmp/fake.kubeconfig \
//!     --outcome 'registry.local/broken:*=ImagePullBackOff' --outcome '*:slow=Slow:5s'
//! kubectl --kubeconfig /tmp/fake.kubeconfig get namespaces
//! ```
//!
//! It is a simulated cluster: objects live in memory, pods never run, and their outcome is scripted per image
//! (`PATTERN=OUTCOME`, where OUTCOME is Ready, Slow:<duration>, ImagePullBackOff, ErrImagePull,
//! CrashLoopBackOff, CreateContainerConfigError or NeverReady). The controllers follow the system clock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use promote_k8s::testing::{FakeApiServer, PodOutcome};

struct Args {
    addr: SocketAddr,
    kubeconfig: Option<PathBuf>,
    outcomes: Vec<(String, PodOutcome)>,
}

const USAGE: &str = "usage: fake-apiserver [--addr 127.0.0.1:PORT] [--kubeconfig FILE] [--outcome PATTERN=OUTCOME]...";

fn parse_args() -> Result<Args, String> {
    let mut args = Args { addr: SocketAddr::from(([127, 0, 0, 1], 0)), kubeconfig: None, outcomes: Vec::new() };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--addr" => {
                let addr: SocketAddr = value()?.parse().map_err(|e| format!("--addr: {e}"))?;
                if !addr.ip().is_loopback() {
                    return Err(format!("--addr {addr}: the fake serves loopback addresses only"));
                }
                args.addr = addr;
            }
            "--kubeconfig" => args.kubeconfig = Some(PathBuf::from(value()?)),
            "--outcome" => {
                let spec = value()?;
                let (pattern, outcome) =
                    spec.rsplit_once('=').ok_or_else(|| format!("--outcome {spec:?}: expected PATTERN=OUTCOME"))?;
                args.outcomes.push((pattern.to_string(), outcome.parse()?));
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut builder = FakeApiServer::builder();
    for (pattern, outcome) in &args.outcomes {
        builder = builder.pod_outcome(pattern, *outcome);
    }
    let fake = builder.build();
    let served = match fake.serve(args.addr).await {
        Ok(served) => served,
        Err(e) => {
            eprintln!("fake-apiserver: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.kubeconfig {
        if let Err(e) = served.write_kubeconfig(path) {
            eprintln!("fake-apiserver: {e}");
            return ExitCode::FAILURE;
        }
        println!("kubeconfig written to {}", path.display());
    }
    println!("fake Kubernetes API server (simulated cluster) listening on {}", served.url());
    for (pattern, outcome) in &args.outcomes {
        println!("pods with images matching {pattern:?} will be {outcome}");
    }
    // Serves until the process is killed.
    std::future::pending::<ExitCode>().await
}
