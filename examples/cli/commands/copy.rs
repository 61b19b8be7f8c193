//! `copy SRC DST`: the copy engine, crane-like. Registry credentials come from the docker config.

use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
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
    let options = store.copy_options().clone().with_signatures(args.all_tags_for_signatures);
    let from = endpoint(&source, &store, false).await?;
    let to = endpoint(&target, &store, true).await?;
    // The copy engine reports when it is done; a spinner shows that it is working meanwhile.
    let spinner = (context.progress == ProgressMode::Spinner).then(|| {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}").expect("a valid template"));
        bar.set_message(format!("copying {} → {}", args.source, args.target));
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    if context.progress == ProgressMode::Lines {
        eprintln!("copying {} → {}", args.source, args.target);
    }
    let outcome = copy_image(&from, &to, &options).await;
    if let Some(bar) = spinner {
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
