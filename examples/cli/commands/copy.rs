//! `copy SRC DST`: the copy engine, crane-like. Registry credentials come from the docker config.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use promote_core::progress::{Progress, ProgressUpdate};
use promote_core::{ArtifactRef, Digest, Error, Result};
use promote_oci::{CopyEndpoint, OciLayout, OciRegistryStore, copy_image};
use serde_json::json;

use super::Context;
use crate::args::CopyArgs;
use crate::output::Report;
use crate::progress::ProgressMode;

/// Where an image is: a registry reference, or a tag or digest in an OCI layout directory.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Registry(ArtifactRef),
    Layout { dir: String, tag: Option<String>, digest: Option<Digest> },
}

fn parse_location(text: &str) -> Result<Location> {
    if let Some(rest) = text.strip_prefix("oci:") {
        if let Some((dir, digest)) = rest.split_once('@') {
            return Ok(Location::Layout { dir: dir.to_owned(), tag: None, digest: Some(Digest::parse(digest)?) });
        }
        return match rest.rsplit_once(':') {
            Some((dir, tag)) if !dir.is_empty() && !tag.is_empty() && !tag.contains('/') => {
                Ok(Location::Layout { dir: dir.to_owned(), tag: Some(tag.to_owned()), digest: None })
            }
            _ => Err(Error::invalid(
                "location",
                text,
                "an OCI layout needs a tag or digest: oci:DIR:TAG or oci:DIR@sha256:…",
            )),
        };
    }
    ArtifactRef::parse(text).map(Location::Registry)
}

async fn endpoint(location: &Location, store: &OciRegistryStore, create: bool) -> Result<CopyEndpoint> {
    Ok(match location {
        Location::Registry(reference) => CopyEndpoint::registry(store, reference.clone()),
        Location::Layout { dir, tag, digest } => {
            let layout = if create { OciLayout::create(dir).await? } else { OciLayout::open(dir).await? };
            match (tag, digest) {
                (_, Some(digest)) => CopyEndpoint::layout_digest(&layout, digest.clone()),
                (Some(tag), None) => CopyEndpoint::layout_tag(&layout, tag.clone()),
                (None, None) => return Err(Error::invalid("location", dir.as_str(), "needs a tag or a digest")),
            }
        }
    })
}

/// How often a copy prints a progress line when stderr is not a terminal.
const LINE_INTERVAL: Duration = Duration::from_secs(2);

/// Progress as plain lines on stderr, `[moved of total, rate]`, at most one per `interval`.
fn lines_every(interval: Duration) -> Progress {
    let started = Instant::now();
    let last = Mutex::new(started);
    Progress::new(move |update: ProgressUpdate| {
        let (Some(done), Some(total)) = (update.done, update.total) else { return };
        let mut last = last.lock().expect("not poisoned");
        if last.elapsed() < interval {
            return;
        }
        *last = Instant::now();
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "copied {} of {} ({}/s)",
            HumanBytes(done),
            HumanBytes(total),
            HumanBytes((done as f64 / seconds) as u64)
        );
    })
}

/// Copies, then reports the digest, what moved, the bytes and the rate.
pub(super) async fn run(context: &Context, args: CopyArgs) -> Result<Report> {
    let (source, target) = (parse_location(&args.source)?, parse_location(&args.target)?);
    let mut builder = OciRegistryStore::builder().docker_config(true);
    if args.insecure {
        for location in [&source, &target] {
            if let Location::Registry(reference) = location {
                builder = builder.insecure(reference.registry());
            }
        }
    }
    let store = builder.build()?;
    let from = endpoint(&source, &store, false).await?;
    let to = endpoint(&target, &store, true).await?;
    if context.progress == ProgressMode::Lines {
        eprintln!("copying {} → {}", args.source, args.target);
    }
    let bar = (context.progress == ProgressMode::Spinner).then(|| {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = "{spinner} {elapsed:>4} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}";
        bar.set_style(ProgressStyle::with_template(style).expect("a valid template"));
        bar.set_message(format!("{} → {}", args.source, args.target));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let progress = match (&bar, context.progress) {
        (Some(bar), _) => {
            let bar = bar.clone();
            Progress::new(move |update: ProgressUpdate| {
                bar.set_length(update.total.unwrap_or(0));
                bar.set_position(update.done.unwrap_or(0));
            })
        }
        (None, ProgressMode::Lines) => lines_every(LINE_INTERVAL),
        _ => Progress::none(),
    };
    let options = store.copy_options().clone().with_signatures(args.all_tags_for_signatures).with_progress(progress);
    let outcome = copy_image(&from, &to, &options).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = outcome?;
    let seconds = report.duration.as_secs_f64();
    let rate = if seconds > 0.0 { (report.bytes_copied as f64 / seconds) as u64 } else { 0 };
    if context.progress != ProgressMode::Off {
        eprintln!(
            "copied {} in {seconds:.2}s ({}/s): {} blobs copied, {} mounted, {} skipped; {} manifests written",
            HumanBytes(report.bytes_copied),
            HumanBytes(rate),
            report.blobs_copied,
            report.blobs_mounted,
            report.blobs_skipped,
            report.manifests_copied,
        );
    }
    let document = json!({
        "digest": report.digest,
        "source": args.source,
        "target": args.target,
        "media_type": report.media_type,
        "blobs_copied": report.blobs_copied,
        "blobs_mounted": report.blobs_mounted,
        "blobs_skipped": report.blobs_skipped,
        "manifests_copied": report.manifests_copied,
        "manifests_skipped": report.manifests_skipped,
        "bytes_copied": report.bytes_copied,
        "seconds": seconds,
        "bytes_per_second": rate,
    });
    Ok(Report::done(document, report.digest.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("oci:images/web:v1").unwrap(),
            Location::Layout { dir: "images/web".into(), tag: Some("v1".into()), digest: None }
        );
        assert!(matches!(parse_location("127.0.0.1:5000/shop/web:1").unwrap(), Location::Registry(_)));
        assert!(parse_location("oci:images").is_err());
    }
}
