//! The `promote` binary on local backends only (no service needed): `init` output that validates and runs,
//! errors with file:line and their exit codes, BUILD by commit and prefix, JSON on every path.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use promote_core::manifest::REVISION_ANNOTATION;
use promote_oci::{OciLayout, image_manifest};
use serde_json::Value;

const COMMIT: &str = "abcdef1234567890abcdef1234567890abcdef12";

fn promote(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_promote"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("PROMOTE_FILE")
        .env_remove("PROMOTE_ACTOR")
        .env_remove("RUST_LOG")
        .output()
        .expect("run promote")
}

/// Runs with `--output json`, checks the exit code and that stdout is one JSON document.
fn json(dir: &Path, expected: i32, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let output = promote(dir, &all);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(expected), "promote {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let document: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not one JSON document ({e}): {stdout}"));
    if expected != 0 {
        assert_eq!(document["exit_code"], expected, "{document}");
    }
    document
}

#[tokio::test]
async fn a_starter_pipeline_from_init_to_prd_pending() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let created = json(dir, 0, &["init"]);
    assert_eq!(created["created"].as_array().unwrap().len(), 5);
    let again = json(dir, 1, &["init"]);
    assert_eq!(again["error"]["kind"], "already_exists", "init never overwrites");
    let validated = json(dir, 0, &["validate"]);
    assert_eq!(validated["stages"].as_array().unwrap().len(), 3);
    assert_eq!(validated["artifacts"], serde_json::json!(["app"]));

    // An image in the layout init's store reads, declaring its commit.
    let config = format!(
        "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Labels\":{{\"{REVISION_ANNOTATION}\":\"{COMMIT}\"}}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}"
    );
    let annotations = BTreeMap::from([(REVISION_ANNOTATION.to_owned(), COMMIT.to_owned())]);
    let manifest = image_manifest(config.as_bytes(), &[b"layer"], &annotations);
    let layout = OciLayout::create(dir.join("images/app")).await.unwrap();
    layout.write_image(Some("abcdef1"), config.as_bytes(), &[b"layer"], &manifest).await.unwrap();

    let registered = json(
        dir,
        0,
        &[
            "register",
            "--as",
            "ci",
            "--commit",
            COMMIT,
            "--version",
            "1.0.0",
            "--author",
            "alice",
            "--artifact",
            "app=oci-layout.local/app:abcdef1",
        ],
    );
    let build = registered["build"]["id"].as_str().unwrap().to_owned();
    let reconciled = json(dir, 0, &["reconcile", "--as", "ci"]);
    assert_eq!(reconciled["stages"][0]["outcome"], "promoted");
    // BUILD by commit, then by a prefix of the id.
    let promoted = json(dir, 0, &["promote", &COMMIT[..10], "--to", "stg", "--as", "ci"]);
    assert_eq!(promoted["promotion"]["outcome"], "succeeded");
    assert!(dir.join("deploy/stg").is_dir(), "the directory deployer wrote stg");
    let pending = json(dir, 3, &["promote", &build[..8], "--to", "prd", "--as", "ci"]);
    assert_eq!(pending["error"]["kind"], "gate_pending");
    let plan = json(dir, 3, &["plan", &build, "--to", "prd", "--as", "ci"]);
    assert_eq!(plan["would_proceed"], false);
    let refused = json(dir, 4, &["approve", &build, "--stage", "prd", "--as", "alice"]);
    assert_eq!(refused["error"]["kind"], "approval_refused");
    let status = json(dir, 0, &["status"]);
    assert_eq!(status["stages"][2]["pending"][0]["build"], build.as_str());
    let held = json(dir, 0, &["hold", "prd", "--reason", "freeze", "--as", "ops"]);
    let refused = json(dir, 4, &["promote", &build, "--to", "prd", "--as", "ci"]);
    assert_eq!(refused["error"]["kind"], "held");
    json(dir, 0, &["unhold", held["hold"]["id"].as_str().unwrap(), "--as", "ops"]);
    let history = json(dir, 0, &["history", "--build", &build]);
    assert_eq!(history["promotions"].as_array().unwrap().len(), 3);
    let verified = json(dir, 0, &["ledger", "verify"]);
    assert_eq!(verified["ok"], true);

    // Human output: a table, and errors on stderr with what to do next.
    let output = promote(dir, &["status"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("STAGE") && text.contains("dev ") && !text.contains('\x1b'), "{text}");
    let output = promote(dir, &["promote", "ffffffff", "--to", "prd", "--as", "ci"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("build not found: ffffffff") && stderr.contains("next:"), "{stderr}");
    assert!(!stderr.contains("NotFound {"), "no Debug output: {stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn spec_errors_name_the_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("promote.yaml"),
        "pipeline: shop\nstore: { kind: memory }\nledger: { kind: memory }\nstages:\n  - name: dev\n    gates:\n      - { kind: aproval }\n",
    )
    .unwrap();
    let document = json(dir.path(), 2, &["validate"]);
    assert_eq!(document["error"]["kind"], "spec");
    let message = document["error"]["message"].as_str().unwrap();
    assert!(message.contains("promote.yaml:7:") && message.contains("aproval"), "{message}");
    let missing = json(dir.path(), 2, &["--file", "nowhere.yaml", "status"]);
    assert!(missing["error"]["next"].as_str().unwrap().contains("promote init"), "{missing}");
    let usage = json(dir.path(), 2, &["promote", "--bogus"]);
    assert_eq!(usage["error"]["kind"], "usage");
}

#[test]
fn help_documents_exit_codes_and_completions_generate() {
    let dir = tempfile::tempdir().unwrap();
    let help = promote(dir.path(), &["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for line in ["0  done", "3  pending", "4  refused", "5  the backend is unavailable", "asserted by the caller"] {
        assert!(text.contains(line), "--help lacks {line:?}:\n{text}");
    }
    let completions = promote(dir.path(), &["completions", "bash"]);
    assert!(completions.status.success());
    assert!(String::from_utf8_lossy(&completions.stdout).contains("_promote"));
}
