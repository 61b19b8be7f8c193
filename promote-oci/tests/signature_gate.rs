//! The `signature` gate against bundles signed by third-party tools (sigstore-js keyless and keyed,
//! sigstore-python keyless) on a loopback mock Fulcio/Rekor, attached with `@sigstore/oci` to
//! docker-registry 2.8.2, and judged by `@sigstore/verify` and sigstore-python too: on every case the gate's
//! verdict must be both judges' verdict.
//!
//! Setup: `scripts/sigstore-fixtures.sh` (apt, npm ci, a venv); skipped with the reason when it has not run,
//! failed when `CI` is set.

mod support;
#[path = "sigstore/toolchain.rs"]
mod toolchain;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use promote_core::Digest;
use promote_core::gate::{Gate, GateContext, GateReport};
use promote_core::ledger::{LedgerView, Verdict};
use promote_core::spec::SpecRegistry;
use promote_oci::trust::Match;
use promote_oci::{OciRegistryStore, SignatureGate, SignaturePolicy, TrustRoot};
use serde_json::{Value, json};
use support::{Fixture, Registry};
use toolchain::{Judge, Mock};

const SAN: &str = "ci@promote.test";
const ISSUER: &str = "https://issuer.test";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER_REVISION: &str = "fedcba9876543210fedcba9876543210fedcba98";

/// The services, the keys and the signed image.
struct World {
    registry: Registry,
    mock: Mock,
    fixture: Fixture,
    work: tempfile::TempDir,
    digest: Digest,
    other_digest: Digest,
    manifest: PathBuf,
    ci_key: PathBuf,
    ci_pub: PathBuf,
    intruder_pub: PathBuf,
    root: PathBuf,
    other_root: PathBuf,
    /// What each signer printed, by fixture name.
    signed: std::collections::BTreeMap<String, Value>,
    /// What each attach printed, by repository.
    attached: std::collections::BTreeMap<String, Vec<Value>>,
}

impl World {
    fn start() -> World {
        let registry = Registry::start();
        let mock = Mock::start();
        let fixture = Fixture::new(19, 1024);
        let work = tempfile::tempdir().unwrap();
        let manifest = work.path().join("app.manifest.json");
        std::fs::write(&manifest, &fixture.children[0].1).unwrap();
        let (ci_key, ci_pub) = toolchain::key_pair(work.path(), "ci");
        let (_, intruder_pub) = toolchain::key_pair(work.path(), "intruder");
        let root = mock.trusted_root();
        let other_root = mock.other_root();
        World {
            digest: fixture.single_digest.clone(),
            other_digest: fixture.other_digest.clone(),
            registry,
            mock,
            fixture,
            work,
            manifest,
            ci_key,
            ci_pub,
            intruder_pub,
            root,
            other_root,
            signed: Default::default(),
            attached: Default::default(),
        }
    }

    fn bundle(&self, name: &str) -> PathBuf {
        self.work.path().join(format!("{name}.json"))
    }

    /// Signs with sigstore-js (`sign.mjs`) into `<name>.json`.
    fn sign_js(&mut self, name: &str, args: &[&str]) {
        let out = self.bundle(name);
        let mut all = vec!["--out", out.to_str().unwrap()];
        all.extend_from_slice(args);
        let printed = toolchain::node("sign.mjs", &all);
        self.signed.insert(name.to_owned(), printed);
    }

    fn keyless_args(&self) -> Vec<String> {
        let url = self.mock.url().to_owned();
        vec![
            "--fulcio".into(),
            url.clone(),
            "--rekor".into(),
            url,
            "--san".into(),
            SAN.into(),
            "--issuer".into(),
            ISSUER.into(),
        ]
    }

    /// Signs with sigstore-python (`sign_py.py`, keyless) into `<name>.json`.
    fn sign_py(&mut self, name: &str, extra: &[&str]) {
        let out = self.bundle(name);
        let trust_config = self.mock.trust_config();
        let digest = self.digest.to_string();
        let mut args = vec![
            "--trust-config",
            trust_config.to_str().unwrap(),
            "--san",
            SAN,
            "--issuer",
            ISSUER,
            "--digest",
            &digest,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let printed = toolchain::py("sign_py.py", &args);
        self.signed.insert(name.to_owned(), printed);
    }

    /// A copy of `name` whose signed statement was changed after signing.
    fn tamper(&mut self, name: &str, tampered: &str) {
        let mut bundle: Value = serde_json::from_slice(&std::fs::read(self.bundle(name)).unwrap()).unwrap();
        let payload = bundle["dsseEnvelope"]["payload"].as_str().unwrap();
        let mut statement: Value = serde_json::from_slice(&STANDARD.decode(payload).unwrap()).unwrap();
        statement["predicate"]["tampered"] = json!(true);
        bundle["dsseEnvelope"]["payload"] = json!(STANDARD.encode(serde_json::to_vec(&statement).unwrap()));
        std::fs::write(self.bundle(tampered), serde_json::to_vec(&bundle).unwrap()).unwrap();
    }

    /// Pushes the image to `repo` and attaches these bundles to its digest with `@sigstore/oci`.
    fn repo(&mut self, repo: &str, bundles: &[&str]) {
        self.registry.push_as(self.fixture.path(), "single", repo, "v1");
        let image = format!("{}/{repo}", self.registry.host);
        let digest = self.digest.to_string();
        for bundle in bundles {
            let path = self.bundle(bundle);
            let printed = toolchain::node(
                "attach.mjs",
                &["--image", &image, "--digest", &digest, "--bundle", path.to_str().unwrap()],
            );
            self.attached.entry(repo.to_owned()).or_default().push(printed);
        }
    }

    fn store(&self) -> OciRegistryStore {
        OciRegistryStore::builder().docker_config(false).insecure(self.registry.host.clone()).build().unwrap()
    }
}

fn build(reference: &str, digest: &Digest, commit: &str) -> promote_core::Build {
    serde_json::from_value(json!({
        "id": "b-0000000000000019",
        "commit": commit,
        "artifacts": {"app": {
            "reference": reference,
            "digest": digest.to_string(),
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "size": 1
        }},
        "registered_at": "2026-11-30T12:00:00Z"
    }))
    .unwrap()
}

async fn evaluate(gate: &SignatureGate, world: &World, repo: &str, commit: &str) -> GateReport {
    let reference = format!("{}/{repo}@{}", world.registry.host, world.digest);
    let build = build(&reference, &world.digest, commit);
    let view = LedgerView::new();
    let now = "2026-11-30T12:00:00Z".parse().unwrap();
    gate.evaluate(&GateContext::new(&build, "prd", &view, now)).await.unwrap()
}

/// One case: the gate's policies, and the judges' arguments for each policy (a case passes with the judges
/// when at least `require` of them are valid).
struct Case {
    name: &'static str,
    repo: &'static str,
    root: PathBuf,
    policies: Vec<SignaturePolicy>,
    require: usize,
    provenance: bool,
    commit: &'static str,
    /// Per policy, the judges' arguments; empty when there is no bundle to judge.
    judged: Vec<Vec<String>>,
    expected: bool,
    /// The reason code a failure must name.
    reason: Option<&'static str>,
}

fn args(root: &Path, bundle: &Path, rest: &[&str]) -> Vec<String> {
    let mut out =
        vec!["--trusted-root".to_owned(), root.display().to_string(), "--bundle".into(), bundle.display().to_string()];
    out.extend(rest.iter().map(|s| (*s).to_owned()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signature_gate_agrees_with_sigstore_js_and_sigstore_python_on_every_case() {
    if !toolchain::available() {
        return;
    }
    let mut world = World::start();
    let digest = world.digest.to_string();
    let other = world.other_digest.to_string();
    let mock_url = world.mock.url().to_owned();
    let keyless = world.keyless_args();
    let keyless: Vec<&str> = keyless.iter().map(String::as_str).collect();
    let image = format!("{}/app", world.registry.host);
    let ci_key = world.ci_key.display().to_string();
    let manifest = world.manifest.display().to_string();

    world.sign_js("js-keyless", &[&["--digest", &digest, "--image", &image], keyless.as_slice()].concat());
    world.sign_js("js-keyed", &["--digest", &digest, "--key", &ci_key, "--rekor", &mock_url]);
    world.sign_js(
        "js-message",
        &["--artifact", &manifest, "--format", "message", "--key", &ci_key, "--rekor", &mock_url],
    );
    world.sign_js("js-provenance", &[&["--digest", &digest, "--slsa-revision", REVISION], keyless.as_slice()].concat());
    world.sign_js(
        "js-keyless-wrong-subject",
        &[&["--digest", &digest, "--subject-digest", &other], keyless.as_slice()].concat(),
    );
    world.sign_js(
        "js-keyed-wrong-subject",
        &["--digest", &digest, "--subject-digest", &other, "--key", &ci_key, "--rekor", &mock_url],
    );
    world.sign_py("py-keyless", &[]);
    world.tamper("js-keyless", "js-keyless-tampered");
    world.tamper("py-keyless", "py-keyless-tampered");
    world.tamper("js-keyed", "js-keyed-tampered");

    for (repo, bundles) in [
        ("unsigned", &[][..]),
        ("js-keyless", &["js-keyless"][..]),
        ("py-keyless", &["py-keyless"]),
        ("js-keyed", &["js-keyed"]),
        ("js-message", &["js-message"]),
        ("js-provenance", &["js-provenance"]),
        ("wrong-subject", &["js-keyless-wrong-subject", "js-keyed-wrong-subject"]),
        ("tampered", &["js-keyless-tampered", "py-keyless-tampered", "js-keyed-tampered"]),
        ("two-signers", &["js-keyless", "js-keyed"]),
    ] {
        world.repo(repo, bundles);
    }

    let ci_pub_pem = std::fs::read_to_string(&world.ci_pub).unwrap();
    let intruder_pem = std::fs::read_to_string(&world.intruder_pub).unwrap();
    let ci = || SignaturePolicy::keyless("ci", SAN, ISSUER);
    let release = || SignaturePolicy::public_key("release", &ci_pub_pem).unwrap();
    let (root, other_root) = (world.root.clone(), world.other_root.clone());
    let b = |name: &str| world.bundle(name);
    let ci_pub = world.ci_pub.display().to_string();
    let intruder_pub = world.intruder_pub.display().to_string();
    let keyless_judge = ["--digest", digest.as_str(), "--san", SAN, "--issuer", ISSUER];
    let keyed_judge = ["--digest", digest.as_str(), "--key", ci_pub.as_str()];
    let case = |name, repo, root: &PathBuf, policies, judged, expected, reason| Case {
        name,
        repo,
        root: root.clone(),
        policies,
        require: 1,
        provenance: false,
        commit: REVISION,
        judged,
        expected,
        reason,
    };
    let mut cases = vec![
        case(
            "valid keyless (sigstore-js)",
            "js-keyless",
            &root,
            vec![ci()],
            vec![args(&root, &b("js-keyless"), &keyless_judge)],
            true,
            None,
        ),
        case(
            "valid keyless (sigstore-python)",
            "py-keyless",
            &root,
            vec![ci()],
            vec![args(&root, &b("py-keyless"), &keyless_judge)],
            true,
            None,
        ),
        case(
            "valid keyed (DSSE, bundle v0.3)",
            "js-keyed",
            &root,
            vec![release()],
            vec![args(&root, &b("js-keyed"), &keyed_judge)],
            true,
            None,
        ),
        case(
            "valid keyed (message signature, bundle v0.2)",
            "js-message",
            &root,
            vec![release()],
            vec![args(&root, &b("js-message"), &["--artifact", &manifest, "--key", &ci_pub])],
            true,
            None,
        ),
        case("no referrer", "unsigned", &root, vec![ci()], vec![], false, Some("no referrer")),
        case(
            "wrong SAN (sigstore-js)",
            "js-keyless",
            &root,
            vec![SignaturePolicy::keyless("ci", "evil@promote.test", ISSUER)],
            vec![args(
                &root,
                &b("js-keyless"),
                &["--digest", &digest, "--san", "evil@promote.test", "--issuer", ISSUER],
            )],
            false,
            Some("wrong identity"),
        ),
        case(
            "wrong SAN (sigstore-python)",
            "py-keyless",
            &root,
            vec![SignaturePolicy::keyless("ci", "evil@promote.test", ISSUER)],
            vec![args(
                &root,
                &b("py-keyless"),
                &["--digest", &digest, "--san", "evil@promote.test", "--issuer", ISSUER],
            )],
            false,
            Some("wrong identity"),
        ),
        case(
            "wrong issuer",
            "js-keyless",
            &root,
            vec![SignaturePolicy::keyless("ci", SAN, "https://evil-issuer.test")],
            vec![args(
                &root,
                &b("js-keyless"),
                &["--digest", &digest, "--san", SAN, "--issuer", "https://evil-issuer.test"],
            )],
            false,
            Some("wrong issuer"),
        ),
        case(
            "wrong key",
            "js-keyed",
            &root,
            vec![SignaturePolicy::public_key("release", &intruder_pem).unwrap()],
            vec![args(&root, &b("js-keyed"), &["--digest", &digest, "--key", &intruder_pub])],
            false,
            Some("wrong key"),
        ),
        case(
            "subject ≠ digest (keyless and keyed statements about another image)",
            "wrong-subject",
            &root,
            vec![ci(), release()],
            vec![
                args(&root, &b("js-keyless-wrong-subject"), &keyless_judge),
                args(&root, &b("js-keyed-wrong-subject"), &keyed_judge),
            ],
            false,
            Some("subject mismatch"),
        ),
        case(
            "another trust root (keyless)",
            "js-keyless",
            &other_root,
            vec![ci()],
            vec![args(&other_root, &b("js-keyless"), &keyless_judge)],
            false,
            Some("untrusted root"),
        ),
        case(
            "another trust root (keyed)",
            "js-keyed",
            &other_root,
            vec![release()],
            vec![args(&other_root, &b("js-keyed"), &keyed_judge)],
            false,
            Some("untrusted root"),
        ),
        case(
            "tampered statements (sigstore-js keyless, sigstore-python keyless, keyed)",
            "tampered",
            &root,
            vec![ci(), release()],
            vec![
                args(&root, &b("js-keyless-tampered"), &keyless_judge),
                args(&root, &b("py-keyless-tampered"), &keyless_judge),
                args(&root, &b("js-keyed-tampered"), &keyed_judge),
            ],
            false,
            Some("tampered"),
        ),
        case(
            "identity pattern, anchored, matches",
            "js-keyless",
            &root,
            vec![SignaturePolicy::keyless_matching(
                "ci",
                Match::pattern(r"ci@promote\.test").unwrap(),
                Match::Exact(ISSUER.into()),
            )],
            vec![args(&root, &b("js-keyless"), &keyless_judge)],
            true,
            None,
        ),
        case(
            "identity pattern matching only a prefix does not match",
            "js-keyless",
            &root,
            vec![SignaturePolicy::keyless_matching(
                "ci",
                Match::pattern("ci@promote").unwrap(),
                Match::Exact(ISSUER.into()),
            )],
            vec![args(&root, &b("js-keyless"), &["--digest", &digest, "--san", "ci@promote", "--issuer", ISSUER])],
            false,
            Some("wrong identity"),
        ),
    ];
    cases.push(Case {
        require: 2,
        ..case(
            "require: 2 with one signature",
            "js-keyless",
            &root,
            vec![ci(), SignaturePolicy::keyless("scanner", "scanner@promote.test", ISSUER)],
            vec![
                args(&root, &b("js-keyless"), &keyless_judge),
                args(
                    &root,
                    &b("js-keyless"),
                    &["--digest", &digest, "--san", "scanner@promote.test", "--issuer", ISSUER],
                ),
            ],
            false,
            Some("1 of 2 required signatures"),
        )
    });
    cases.push(Case {
        require: 2,
        ..case(
            "require: 2 with a keyless and a keyed signature",
            "two-signers",
            &root,
            vec![ci(), release()],
            vec![args(&root, &b("js-keyless"), &keyless_judge), args(&root, &b("js-keyed"), &keyed_judge)],
            true,
            None,
        )
    });
    for (name, commit, expected, reason) in [
        ("provenance names the build's commit", REVISION, true, None),
        ("provenance names another commit", OTHER_REVISION, false, Some("provenance mismatch")),
    ] {
        cases.push(Case {
            provenance: true,
            commit,
            ..case(
                name,
                "js-provenance",
                &root,
                vec![ci()],
                vec![args(&root, &b("js-provenance"), &[&keyless_judge[..], &["--expect-revision", commit]].concat())],
                expected,
                reason,
            )
        });
    }
    cases.push(Case {
        provenance: true,
        ..case(
            "provenance required, only a cosign signature attached",
            "js-keyless",
            &root,
            vec![ci()],
            vec![args(&root, &b("js-keyless"), &[&keyless_judge[..], &["--expect-revision", REVISION]].concat())],
            false,
            Some("no verified SLSA provenance"),
        )
    });

    // The judges, one batch each.
    let all: Vec<Vec<String>> = cases.iter().flat_map(|c| c.judged.clone()).collect();
    let js = toolchain::judge_batch(Judge::SigstoreJs, &all);
    let py = toolchain::judge_batch(Judge::SigstorePython, &all);
    let mut offset = 0;
    let mut table = Vec::new();
    for case in &cases {
        let n = case.judged.len();
        let valid = |verdicts: &[Value]| verdicts.iter().filter(|v| v["verdict"] == "valid").count() >= case.require;
        let (js_valid, py_valid) = (valid(&js[offset..offset + n]), valid(&py[offset..offset + n]));
        offset += n;

        let root = TrustRoot::from_file(&case.root).unwrap();
        let gate = SignatureGate::new("signed", world.store(), root, case.policies.clone())
            .unwrap()
            .require(case.require)
            .unwrap()
            .require_provenance(case.provenance);
        let report = evaluate(&gate, &world, case.repo, case.commit).await;
        let ours = report.verdict.is_pass();
        let reason = match &report.verdict {
            Verdict::Fail(reason) => reason.clone(),
            _ => String::new(),
        };
        table.push(format!(
            "{:<75} expected {:<5} gate {:<5} js {:<5} py {:<5} {reason}",
            case.name, case.expected, ours, js_valid, py_valid
        ));
        assert_eq!(js_valid, case.expected, "{}: @sigstore/verify {:?}", case.name, &js[offset - n..offset]);
        assert_eq!(py_valid, case.expected, "{}: sigstore-python {:?}", case.name, &py[offset - n..offset]);
        assert_eq!(ours, case.expected, "{}: the gate said {:?}\n{:#?}", case.name, report.verdict, report.evidence);
        if let (Verdict::Fail(reason), Some(code)) = (&report.verdict, case.reason) {
            assert!(reason.contains(code), "{}: the reason must say `{code}`: {reason}", case.name);
            assert!(reason.contains("artifact app"), "{}: the reason must name the artifact: {reason}", case.name);
        }
    }
    eprintln!("{}", table.join("\n"));

    // Evidence of a pass: who signed, the log index, the bundle and referrer digests, as the tools reported them.
    let gate = SignatureGate::new("signed", world.store(), TrustRoot::from_file(&root).unwrap(), vec![ci(), release()])
        .unwrap()
        .require(2)
        .unwrap();
    let report = evaluate(&gate, &world, "two-signers", REVISION).await;
    let app = &report.evidence["artifacts"]["app"];
    assert_eq!(app["listed_by"], "tag-schema index", "docker-registry 2.8.2 has no referrers API");
    assert_eq!(app["requests"], 6, "referrers API probe, the index, then a manifest and a blob per bundle");
    let matched = app["matched"].as_array().unwrap();
    let by_policy = |name: &str| matched.iter().find(|m| m["policy"] == name).unwrap().clone();
    let (keyless_match, keyed_match) = (by_policy("ci"), by_policy("release"));
    let signed_keyless = &world.signed["js-keyless"];
    let signed_keyed = &world.signed["js-keyed"];
    assert_eq!(keyless_match["signer"], SAN);
    assert_eq!(keyless_match["issuer"], ISSUER);
    assert_eq!(keyless_match["log_index"], signed_keyless["log_index"]);
    assert_eq!(keyless_match["bundle_digest"], signed_keyless["bundle_digest"]);
    assert_eq!(keyed_match["signer"], format!("key:{}", signed_keyed["signer"]["key_hint"].as_str().unwrap()));
    assert_eq!(keyed_match["log_index"], signed_keyed["log_index"]);
    let referrers: Vec<&Value> = world.attached["two-signers"].iter().map(|a| &a["referrer_digest"]).collect();
    assert!(referrers.contains(&&keyless_match["referrer"]) && referrers.contains(&&keyed_match["referrer"]));
    assert_eq!(report.evidence["trusted_root"], Digest::sha256_of(&std::fs::read(&root).unwrap()).to_string());

    // The gate is a pure gate by the conformance suite, and loads from a spec.
    promote_core::conformance::gate(Arc::new(gate), "2026-11-30T12:00:00Z".parse().unwrap()).await;
}

#[tokio::test]
async fn the_signature_kind_loads_from_a_spec_and_names_bad_settings() {
    let dir = tempfile::tempdir().unwrap();
    // Any valid TrustedRoot JSON will do for loading: an empty one is allowed (keys are checked when used).
    let root = r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#;
    std::fs::write(dir.path().join("trusted_root.json"), root).unwrap();
    let mut registry = SpecRegistry::with_defaults();
    promote_oci::kinds::register(&mut registry);
    let spec = |gate: &str| {
        format!(
            "pipeline: p\nstore: {{ kind: memory }}\nledger: {{ kind: memory }}\nstages:\n  - name: prd\n    gates:\n      - {gate}\n"
        )
    };
    let good = "{ kind: signature, trusted_root: trusted_root.json, require: 1, policies: [{ name: ci, identity_pattern: 'https://github\\.com/acme/.+', issuer: https://token.actions.githubusercontent.com }] }";
    registry.load_str(&spec(good), Path::new("promote.yaml"), dir.path(), None).await.unwrap();
    for (gate, key) in [
        ("{ kind: signature, trusted_root: trusted_root.json, policies: [{ name: ci, identity: a }] }", "issuer"),
        (
            "{ kind: signature, trusted_root: trusted_root.json, policies: [{ name: ci, identity: a, identity_pattern: b, issuer: c }] }",
            "identity",
        ),
        (
            "{ kind: signature, trusted_root: trusted_root.json, policies: [{ name: ci, identity_pattern: '(', issuer: c }] }",
            "identity_pattern",
        ),
        (
            "{ kind: signature, trusted_root: trusted_root.json, require: 2, policies: [{ name: ci, identity: a, issuer: c }] }",
            "require",
        ),
        (
            "{ kind: signature, trusted_root: missing.json, policies: [{ name: ci, identity: a, issuer: c }] }",
            "trusted_root",
        ),
        ("{ kind: signature, trusted_root: trusted_root.json, policies: [] }", "policies"),
        (
            "{ kind: signature, trusted_root: trusted_root.json, policies: [{ name: ci, identity: a, issuer: c, tlgo: false }] }",
            "tlgo",
        ),
    ] {
        let error = registry.load_str(&spec(gate), Path::new("promote.yaml"), dir.path(), None).await.unwrap_err();
        assert!(error.to_string().contains(key), "{gate}: {error}");
    }
}

/// Figures for the README (no timed assertion): the median time to verify one bundle with the trust root
/// loaded once, and the registry requests the gate makes per artifact (docker-registry 2.8.2, tag schema).
/// `cargo test --release -p promote-oci --test signature_gate -- --ignored --nocapture measure`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints the figures of notes-trust.md"]
async fn measure_verification_time_and_requests() {
    if !toolchain::available() {
        return;
    }
    let mut world = World::start();
    let digest = world.digest.to_string();
    let mock_url = world.mock.url().to_owned();
    let keyless = world.keyless_args();
    let keyless: Vec<&str> = keyless.iter().map(String::as_str).collect();
    let ci_key = world.ci_key.display().to_string();
    world.sign_js("js-keyless", &[&["--digest", &digest][..], keyless.as_slice()].concat());
    world.sign_js("js-keyed", &["--digest", &digest, "--key", &ci_key, "--rekor", &mock_url]);
    world.sign_py("py-keyless", &[]);
    world.repo("one", &["js-keyless"]);
    world.repo("three", &["js-keyless", "js-keyed", "py-keyless"]);

    let root = TrustRoot::from_file(&world.root).unwrap();
    let pem = std::fs::read_to_string(&world.ci_pub).unwrap();
    let keyed = SignaturePolicy::public_key("release", &pem).unwrap();
    let ci = SignaturePolicy::keyless("ci", SAN, ISSUER);
    const RUNS: usize = 200;
    for (name, policy) in [("js-keyless", &ci), ("py-keyless", &ci), ("js-keyed", &keyed)] {
        let bytes = std::fs::read(world.bundle(name)).unwrap();
        let mut times: Vec<std::time::Duration> = (0..RUNS)
            .map(|_| {
                let started = std::time::Instant::now();
                root.verify_bundle(&bytes, policy, &world.digest).unwrap();
                started.elapsed()
            })
            .collect();
        times.sort();
        eprintln!(
            "verify {name}: median {:?}, p90 {:?} over {RUNS} runs (parse + verify, trust root loaded once)",
            times[RUNS / 2],
            times[RUNS * 9 / 10]
        );
    }
    for (repo, policies, require) in [("one", vec![ci.clone()], 1), ("three", vec![ci.clone(), keyed.clone()], 2)] {
        let gate =
            SignatureGate::new("signed", world.store(), root.clone(), policies).unwrap().require(require).unwrap();
        let mut times = Vec::new();
        let mut requests = Value::Null;
        for _ in 0..20 {
            let started = std::time::Instant::now();
            let report = evaluate(&gate, &world, repo, REVISION).await;
            times.push(started.elapsed());
            assert!(report.verdict.is_pass());
            requests = report.evidence["artifacts"]["app"]["requests"].clone();
        }
        times.sort();
        eprintln!(
            "gate on {repo} ({} bundles): {requests} registry requests per artifact, median {:?} per evaluation (loopback)",
            world.attached[repo].len(),
            times[times.len() / 2]
        );
    }
}
