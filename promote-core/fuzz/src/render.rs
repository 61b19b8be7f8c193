//! What the `documents` and `templates` targets share: a build, fuzzed config values (some secret), and the
//! checks on a render's outcome.

use std::collections::BTreeMap;
use std::path::Component;
use std::sync::OnceLock;

use promote_core::config::{ConfigEntry, ConfigValue};
use promote_core::deploy::diff_objects;
use promote_core::{Build, ConfigSet, DirectoryDeployer, Secret, Templates};

use crate::common::{CANARY, assert_no_secret, not_secret};

/// Reads config lines: `KEY=value` is a plain value, `!KEY=value` a secret whose value is the canary followed
/// by `value`. `\n` in a value stands for a line break. Keys and plain values lose any [`SECRET_MARK`].
///
/// [`SECRET_MARK`]: crate::common::SECRET_MARK
pub(crate) fn config(text: &str) -> ConfigSet {
    let mut set = ConfigSet::new();
    for line in text.lines().take(32) {
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = not_secret(&value.replace("\\n", "\n"));
        let (key, value) = match key.strip_prefix('!') {
            Some(key) => (key, ConfigValue::Secret(Secret::new(format!("{CANARY}{value}")))),
            None => (key, ConfigValue::Plain(value)),
        };
        set.insert(not_secret(key), ConfigEntry { value, source: "fuzz".into(), version: None });
    }
    set
}

/// A registered build with one artifact, `web`, as a template sees it.
pub(crate) fn build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        let digest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        serde_json::from_value(serde_json::json!({
            "id": "b-3f2c1a9d00000000",
            "commit": "3f2c1a9d00000000000000000000000000000000",
            "version": "1.4.0",
            "artifacts": { "web": {
                "reference": format!("ghcr.io/acme/web@{digest}"),
                "digest": digest,
                "media_type": "application/vnd.oci.image.manifest.v1+json",
                "size": 512,
            }},
            "registered_at": "2026-01-01T00:00:00Z",
        }))
        .expect("the fixture build reads")
    })
}

/// Loads `sources` (with any [`SECRET_MARK`] removed), renders them for stage `prd` with `config`, and checks
/// the outcome.
///
/// [`SECRET_MARK`]: crate::common::SECRET_MARK
pub(crate) fn check(sources: &[(String, String)], config: &ConfigSet) {
    let sources: Vec<(String, String)> =
        sources.iter().map(|(name, text)| (not_secret(name), not_secret(text))).collect();
    let templates = match Templates::from_sources(sources.iter().map(|(name, text)| (name.as_str(), text.as_str()))) {
        Ok(templates) => templates,
        Err(error) => {
            assert_no_secret(&error.to_string(), "a template load error");
            return;
        }
    };
    match templates.render("prd", build(), &BTreeMap::new(), config) {
        Ok(bundle) => {
            assert_no_secret(&format!("{bundle:?}"), "a bundle's Debug");
            assert_no_secret(&bundle.masked_text(), "the masked rendering");
            assert_no_secret(&format!("{:?}", diff_objects(None, &bundle)), "a diff");
            for manifest in bundle.objects() {
                assert_no_secret(manifest.masked(), "a masked manifest");
                assert_no_secret(&manifest.object_key(), "an object's key");
                if !manifest.holds_secrets() {
                    assert_no_secret(manifest.expose_content(), "a manifest without secrets");
                }
                // The directory deployer's file for the object stays inside the stage's directory.
                if let Ok(file) = DirectoryDeployer::object_file(manifest) {
                    assert!(
                        file.components().all(|c| matches!(c, Component::Normal(_))),
                        "object {} maps to file {file:?}",
                        manifest.object_key()
                    );
                }
            }
        }
        Err(error) => {
            assert_no_secret(&error.to_string(), "a render error");
            assert_no_secret(&format!("{error:?}"), "a render error's Debug");
        }
    }
}
