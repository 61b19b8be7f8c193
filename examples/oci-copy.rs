//! A small crane-like copy tool on `promote-oci`, and the subject of the registry-copy benchmark.
//!
//! ```text
//! cargo run --release --example oci-copy -- [--insecure] [--all-tags-for-signatures] [--force] [--jobs N] SRC DST
//! ```
//! SRC and DST are `registry/repo:tag`, `registry/repo@sha256:…` or `oci:DIR:TAG` (an OCI image layout).
//! It prints the resulting digest, then one summary line. Registry credentials come from the docker config.

use std::process::ExitCode;

use promote_core::{ArtifactRef, Digest, Error};
use promote_oci::{CopyEndpoint, CopyOptions, OciLayout, OciRegistryStore, copy_image};

const USAGE: &str = "usage: oci-copy [--insecure] [--all-tags-for-signatures] [--force] [--jobs N] SRC DST
  SRC, DST: registry/repo:tag | registry/repo@sha256:... | oci:DIR:TAG | oci:DIR@sha256:...";

enum Location {
    Registry(ArtifactRef),
    Layout { dir: String, tag: Option<String>, digest: Option<Digest> },
}

fn parse_location(text: &str) -> Result<Location, String> {
    if let Some(rest) = text.strip_prefix("oci:") {
        if let Some((dir, digest)) = rest.split_once('@') {
            let digest = Digest::parse(digest).map_err(|e| e.to_string())?;
            return Ok(Location::Layout { dir: dir.to_owned(), tag: None, digest: Some(digest) });
        }
        return match rest.rsplit_once(':') {
            Some((dir, tag)) if !dir.is_empty() && !tag.is_empty() && !tag.contains('/') => {
                Ok(Location::Layout { dir: dir.to_owned(), tag: Some(tag.to_owned()), digest: None })
            }
            _ => Err(format!("`{text}`: an OCI layout needs a tag or digest (oci:DIR:TAG)")),
        };
    }
    ArtifactRef::parse(text).map(Location::Registry).map_err(|e| e.to_string())
}

struct Args {
    insecure: bool,
    signatures: bool,
    force: bool,
    jobs: Option<usize>,
    source: Location,
    target: Location,
}

fn parse_args() -> Result<Args, String> {
    let (mut insecure, mut signatures, mut force, mut jobs) = (false, false, false, None);
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--insecure" => insecure = true,
            "--all-tags-for-signatures" => signatures = true,
            "--force" => force = true,
            "--jobs" => {
                let n = args.next().ok_or("--jobs needs a number")?;
                jobs = Some(n.parse().map_err(|_| format!("--jobs: `{n}` is not a number"))?);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}\n{USAGE}")),
            _ => positional.push(arg),
        }
    }
    let [source, target] = <[String; 2]>::try_from(positional).map_err(|_| USAGE.to_owned())?;
    Ok(Args { insecure, signatures, force, jobs, source: parse_location(&source)?, target: parse_location(&target)? })
}

async fn endpoint(location: &Location, store: &OciRegistryStore, create: bool) -> Result<CopyEndpoint, Error> {
    Ok(match location {
        Location::Registry(reference) => CopyEndpoint::registry(store, reference.clone()),
        Location::Layout { dir, tag, digest } => {
            let layout = if create { OciLayout::create(dir).await? } else { OciLayout::open(dir).await? };
            match (tag, digest) {
                (_, Some(digest)) => CopyEndpoint::layout_digest(&layout, digest.clone()),
                (Some(tag), None) => CopyEndpoint::layout_tag(&layout, tag.clone()),
                (None, None) => unreachable!("parse_location always sets one"),
            }
        }
    })
}

async fn run(args: Args) -> Result<(), Error> {
    let mut builder = OciRegistryStore::builder().docker_config(true);
    if args.insecure {
        for location in [&args.source, &args.target] {
            if let Location::Registry(reference) = location {
                builder = builder.insecure(reference.registry());
            }
        }
    }
    if let Some(jobs) = args.jobs {
        builder = builder.max_concurrency(jobs);
    }
    let store = builder.build()?;
    let mut options = store.copy_options().clone().with_signatures(args.signatures).with_force(args.force);
    if let Some(jobs) = args.jobs {
        options = options.with_max_concurrency(jobs);
    }
    let options: CopyOptions = options;
    let source = endpoint(&args.source, &store, false).await?;
    let target = endpoint(&args.target, &store, true).await?;
    let report = copy_image(&source, &target, &options).await?;
    println!("{}", report.digest);
    println!(
        "{source} -> {target}: {} blobs copied, {} mounted, {} skipped; {} manifests written; {:.1} MiB in {:.2}s",
        report.blobs_copied,
        report.blobs_mounted,
        report.blobs_skipped,
        report.manifests_copied,
        report.bytes_copied as f64 / (1024.0 * 1024.0),
        report.duration.as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("oci-copy: {error}");
            ExitCode::FAILURE
        }
    }
}
