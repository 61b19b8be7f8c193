//! The promotion attestation: after a promotion to prd guarded by the `signature` gate, promote signs an
//! in-toto statement of it and attaches it to the promoted digest on docker-registry 2.8.2. It is read back
//! with plain HTTP and judged by `@sigstore/verify` (keyed, no log entry) and securesystemslib (the bare
//! DSSE envelope); re-runs attach nothing new, and two promotions attaching to the same digest at once both
//! stay listed, with the signature that was there before.

mod support;
#[path = "sigstore/toolchain.rs"]
mod toolchain;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use promote_core::ledger::{FinalState, Ledger, LedgerEvent};
use promote_core::{BuildRequest, Digest, MemoryLedger, Pipeline, Secret, Stage};
use promote_oci::trust::{PROMOTION_ANNOTATION, PROMOTION_PREDICATE_TYPE, PromotionAttestor};
use promote_oci::{OciRegistryStore, SignatureGate, SignaturePolicy, TrustRoot};
use serde_json::Value;
use support::{Fixture, Registry};
use toolchain::{Judge, Mock};

const SAN: &str = "ci@promote.test";
const ISSUER: &str = "https://issuer.test";

fn get(host: &str, path: &str) -> Option<Vec<u8>> {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H"])
        .arg("accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json")
        .arg(format!("http://{host}/v2/{path}"))
        .output()
        .expect("curl");
    let mut body = output.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap();
    let status = String::from_utf8(body.split_off(split)).unwrap();
    match status.trim() {
        "200" => Some(body),
        "404" => None,
        other => panic!("GET {host}/v2/{path}: HTTP {other}"),
    }
}

/// The referrers listed in the `sha256-<hex>` index of `digest`, with their annotations.
fn index(host: &str, digest: &Digest) -> Vec<Value> {
    let bytes = get(host, &format!("app/manifests/sha256-{}", digest.hex())).expect("a referrers index");
    let index: Value = serde_json::from_slice(&bytes).unwrap();
    index["manifests"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_attestation_is_attached_once_judged_by_third_parties_and_survives_concurrent_writers() {
    if !toolchain::available() {
        return;
    }
    let registry = Registry::start();
    let mock = Mock::start();
    let fixture = Fixture::new(29, 1024);
    registry.push_as(fixture.path(), "single", "app", "v1");
    let digest = fixture.single_digest.clone();
    // The image's revision label: registration checks it against the build's commit.
    let commit = fixture.revision.clone();
    let work = tempfile::tempdir().unwrap();
    let (attest_key, attest_pub) = toolchain::key_pair(work.path(), "promote");

    // CI signs the image (sigstore-js keyless) and attaches the signature: the prd gate requires it.
    let url = mock.url().to_owned();
    let signature = work.path().join("ci.json");
    toolchain::node(
        "sign.mjs",
        &["--out", signature.to_str().unwrap(), "--digest", &digest.to_string(), "--fulcio", &url, "--rekor", &url]
            .into_iter()
            .chain(["--san", SAN, "--issuer", ISSUER])
            .collect::<Vec<_>>(),
    );
    let image = format!("{}/app", registry.host);
    let ci_referrer = toolchain::node(
        "attach.mjs",
        &["--image", &image, "--digest", &digest.to_string(), "--bundle", signature.to_str().unwrap()],
    )["referrer_digest"]
        .as_str()
        .unwrap()
        .to_owned();

    let store = OciRegistryStore::builder().docker_config(false).insecure(registry.host.clone()).build().unwrap();
    let gate = SignatureGate::new(
        "signed",
        store.clone(),
        TrustRoot::from_file(mock.trusted_root()).unwrap(),
        vec![SignaturePolicy::keyless("ci", SAN, ISSUER)],
    )
    .unwrap();
    let pem = std::fs::read_to_string(&attest_key).unwrap();
    let attestor = PromotionAttestor::new(store.clone(), &Secret::new(pem)).unwrap();
    let ledger = MemoryLedger::new();
    let pipeline = Pipeline::builder("shop")
        .store(Arc::new(store.clone()))
        .ledger(Arc::new(ledger.clone()))
        .stage(Stage::new("stg"))
        .stage(Stage::new("prd").entry_gate(gate).attestor(attestor.clone()))
        .build()
        .unwrap();
    let build = pipeline
        .register(
            BuildRequest::new(commit.clone()).artifact("app", format!("{}/app:v1", registry.host).parse().unwrap()),
            "ci",
        )
        .await
        .unwrap();
    let stg = pipeline.promote(&build.id, "stg", "ci").await.unwrap();
    // Two promotions of the same digest attach at once: prd's (the stage option, after its success) and
    // stg's (called directly). Both read the index and write it (2.8.2 ignores If-Match); each re-reads
    // after its write and puts back what the other's write dropped.
    let (prd, stg_report) =
        tokio::join!(pipeline.promote(&build.id, "prd", "release-manager"), attestor.attest(&ledger, &stg.id));
    let (prd, stg_report) = (prd.unwrap(), stg_report.unwrap());
    assert_eq!(prd.artifacts["app"].digest, digest);
    assert!(stg_report.attached[0].attached_now);
    eprintln!("attestation attached: {} registry requests for one artifact (tag-schema registry)", stg_report.requests);
    // The ledger records the attestation the stage published.
    assert_eq!(prd.attestations.len(), 1, "{:?}", prd.attestations);
    let recorded = &prd.attestations[0];
    assert_eq!((recorded.attestor.as_str(), recorded.artifact.as_str()), ("attestation", "app"));
    // Asked again, the attestor finds it: the same referrer, nothing attached.
    let report = attestor.attest(&ledger, &prd.id).await.unwrap();
    assert!(!report.attached[0].attached_now);
    assert_eq!(report.attached[0].referrer, recorded.digest);
    eprintln!("attestation re-check: {} registry requests for one artifact (tag-schema registry)", report.requests);
    let listed: BTreeSet<String> =
        index(&registry.host, &digest).iter().map(|e| e["digest"].as_str().unwrap().to_owned()).collect();
    for wanted in [&ci_referrer, &recorded.digest.to_string(), &stg_report.attached[0].referrer.to_string()] {
        assert!(listed.contains(wanted.as_str()), "{wanted} is listed: {listed:?}");
    }

    // Read back with plain HTTP: the index lists the CI signature and our attestation.
    let listed = index(&registry.host, &digest);
    let ours = listed
        .iter()
        .find(|e| e["annotations"][PROMOTION_ANNOTATION] == prd.id.as_str())
        .expect("the attestation is listed with its promotion id");
    assert!(listed.iter().any(|e| e["digest"] == ci_referrer.as_str()), "the CI signature is still listed");
    let referrer = ours["digest"].as_str().unwrap();
    assert_eq!(referrer, report.attached[0].referrer.as_str());
    let manifest: Value =
        serde_json::from_slice(&get(&registry.host, &format!("app/manifests/{referrer}")).unwrap()).unwrap();
    assert_eq!(manifest["subject"]["digest"], digest.as_str());
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let bundle_bytes = get(&registry.host, &format!("app/blobs/{layer}")).unwrap();
    let bundle_path = work.path().join("attestation.json");
    std::fs::write(&bundle_path, &bundle_bytes).unwrap();
    let bundle: Value = serde_json::from_slice(&bundle_bytes).unwrap();
    let envelope_path = work.path().join("envelope.json");
    std::fs::write(&envelope_path, serde_json::to_vec(&bundle["dsseEnvelope"]).unwrap()).unwrap();

    // The statement: subject = the promoted digest; ledger hash = the ledger's success entry.
    let statement: Value =
        serde_json::from_slice(&STANDARD.decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(statement["predicateType"], PROMOTION_PREDICATE_TYPE);
    assert_eq!(statement["subject"][0]["digest"]["sha256"], digest.hex());
    let success = ledger
        .read_since(0)
        .await
        .unwrap()
        .into_iter()
        .find(|e| matches!(&e.event, LedgerEvent::PromotionFinished { promotion, state: FinalState::Succeeded } if *promotion == prd.id))
        .unwrap();
    let predicate = &statement["predicate"];
    assert_eq!(predicate["ledger"]["hash"], success.hash.as_str());
    assert_eq!(predicate["ledger"]["seq"], success.seq);
    assert_eq!(
        (predicate["stage"].as_str(), predicate["build"]["commit"].as_str()),
        (Some("prd"), Some(commit.as_str()))
    );
    assert_eq!(predicate["promotion"]["id"], prd.id.as_str());
    assert_eq!(predicate["gates"][0]["name"], "signed");
    let evidence = serde_json::to_vec(&prd.gates[0]).unwrap();
    assert_eq!(predicate["gates"][0]["evidenceDigest"], Digest::sha256_of(&evidence).as_str());

    // The judges: @sigstore/verify on the bundle (keyed, no log entry), securesystemslib on the bare DSSE.
    let root = mock.trusted_root().display().to_string();
    let (b, e, k, d) = (
        bundle_path.display().to_string(),
        envelope_path.display().to_string(),
        attest_pub.display().to_string(),
        digest.to_string(),
    );
    let js = toolchain::judge_batch(
        Judge::SigstoreJs,
        &[["--trusted-root", &root, "--bundle", &b, "--digest", &d, "--key", &k, "--no-tlog"]
            .map(String::from)
            .to_vec()],
    );
    assert_eq!(js[0]["verdict"], "valid", "{}", js[0]);
    let py = toolchain::judge_batch(
        Judge::SigstorePython,
        &[["--envelope", &e, "--key", &k, "--digest", &d].map(String::from).to_vec()],
    );
    assert_eq!(py[0]["verdict"], "valid", "{}", py[0]);
    // sigstore-verify (the gate's library) needs a log entry or an RFC 3161 timestamp in every bundle, even
    // with the log check skipped: an offline keyed attestation has neither, so the gate cannot count it.
    let policy = SignaturePolicy::public_key("promote", attestor.public_key_pem()).unwrap().without_tlog();
    let ours_root = TrustRoot::from_file(mock.trusted_root()).unwrap();
    let refused = ours_root.verify_bundle(&bundle_bytes, &policy, &digest).unwrap_err();
    assert!(refused.to_string().contains("at least one tlog entry or timestamp"), "{refused}");

    // A re-run of the promotion attaches nothing new, and the ledger still records the one attestation.
    let before = index(&registry.host, &digest).len();
    let again = pipeline.promote(&build.id, "prd", "release-manager").await.unwrap();
    assert_eq!(again.attestations, prd.attestations);
    assert_eq!(index(&registry.host, &digest).len(), before);
}
