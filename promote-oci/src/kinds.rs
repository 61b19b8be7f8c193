//! The spec kinds this crate adds: artifact stores `oci-registry` and `oci-layout`, the `signature`
//! gate ([`SignatureGate`]), and the `oci-attestation` stage attestor ([`PromotionAttestor`]).
//!
//! ```yaml
//! store:
//!   kind: oci-registry
//!   insecure: ["127.0.0.1:5000"]       # plain HTTP, loopback or explicitly trusted hosts only
//!   max_concurrency: 8
//!   copy_signatures: true
//!   credentials:
//!     registry.example.com: { username: ci, password_env: REGISTRY_PASSWORD }
//!     myregistry.azurecr.io: { identity_token_env: ACR_REFRESH_TOKEN }  # or token_env: a bearer token
//!   trusted_token_realms:              # token services off the registry's origin that may get its credentials
//!     registry.example.com: https://auth.example.com   # (Docker Hub's auth.docker.io is built in)
//! ```
//! ```yaml
//! store: { kind: oci-layout, root: images }   # relative to the spec file
//! ```
//! ```yaml
//! gates:
//!   - kind: signature
//!     trusted_root: trust/trusted_root.json   # sigstore TrustedRoot JSON, relative to the spec file
//!     require: 2                              # signatures meeting different policies (default 1)
//!     provenance: true                        # a SLSA v1 provenance must name the build's commit
//!     policies:
//!       - name: ci                            # keyless: exact identity, or identity_pattern (anchored)
//!         identity: https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main
//!         issuer: https://token.actions.githubusercontent.com   # or issuer_pattern
//!       - name: scanner
//!         public_key: trust/scanner.pub      # PEM; tlog: false accepts bundles without a log entry
//!     registry: { insecure: ["127.0.0.1:5000"] }   # how to read referrers; the oci-registry settings
//! ```
//! ```yaml
//! stages:
//!   - name: prd
//!     attest:                                 # after each success: a signed statement, attached as a referrer
//!       - kind: oci-attestation
//!         key_env: PROMOTE_ATTESTATION_KEY    # a P-256 PKCS#8 PEM private key (or key_file: path)
//!         registry: { insecure: ["127.0.0.1:5000"] }
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use promote_core::gate::Gate;
use promote_core::spec::{BackendSpec, SpecRegistry};
use promote_core::{ArtifactStore, Result};
use serde::Deserialize;

use crate::layout::OciLayoutConfig;
use crate::registry::{OciRegistryConfig, OciRegistryStore};
use crate::trust::{Match, PromotionAttestor, SignatureGate, SignaturePolicy, TrustRoot};

/// A registry store from `config`, found at `prefix` (`""` for a store, `"registry."` inside a gate).
fn registry_store(spec: &BackendSpec, mut config: OciRegistryConfig, prefix: &str) -> Result<OciRegistryStore> {
    if spec.policy().is_trusted() {
        return config.build();
    }
    // An untrusted spec chooses no credential and no plain-HTTP host, and reaches only the embedder's
    // registries, anonymously (the docker config is not read).
    let refusals = [
        ("insecure", !config.insecure.is_empty(), "sends requests, and credentials, over plain HTTP"),
        ("credentials", !config.credentials.is_empty(), "chooses which environment variables hold credentials"),
        ("trusted_token_realms", !config.trusted_token_realms.is_empty(), "sends credentials to other hosts"),
    ];
    for (setting, present, does) in refusals {
        if present {
            spec.refuse_setting_if_untrusted(&format!("{prefix}{setting}"), does)?;
        }
    }
    config.docker_config = false;
    let allowed: Vec<String> = spec.policy().allowed_registries().map(str::to_owned).collect();
    config.builder().only_registries(allowed).build()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureSettings {
    #[serde(default)]
    name: Option<String>,
    trusted_root: PathBuf,
    policies: Vec<PolicySettings>,
    #[serde(default)]
    require: Option<usize>,
    #[serde(default)]
    provenance: bool,
    #[serde(default)]
    registry: Option<OciRegistryConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySettings {
    name: String,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    identity_pattern: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    issuer_pattern: Option<String>,
    #[serde(default)]
    public_key: Option<PathBuf>,
    #[serde(default = "tlog_default")]
    tlog: bool,
    #[serde(default)]
    predicate_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttestationSettings {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    key_env: Option<String>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    registry: Option<OciRegistryConfig>,
}

fn tlog_default() -> bool {
    true
}

/// One of `exact` or `pattern` at `key`: exactly one must be given.
fn matcher(spec: &BackendSpec, key: &str, exact: Option<String>, pattern: Option<String>) -> Result<Match> {
    match (exact, pattern) {
        (Some(exact), None) => Ok(Match::Exact(exact)),
        (None, Some(pattern)) => {
            Match::pattern(&pattern).map_err(|error| spec.error_at(&format!("{key}_pattern"), error.to_string()))
        }
        (Some(_), Some(_)) => Err(spec.error_at(key, format!("give `{key}` or `{key}_pattern`, not both"))),
        (None, None) => Err(spec.error_at(key, format!("a keyless policy needs `{key}` or `{key}_pattern`"))),
    }
}

fn signature_policy(spec: &BackendSpec, index: usize, settings: PolicySettings) -> Result<SignaturePolicy> {
    let key = |setting: &str| format!("policies[{index}].{setting}");
    let keyless = [&settings.identity, &settings.identity_pattern, &settings.issuer, &settings.issuer_pattern]
        .iter()
        .any(|value| value.is_some());
    let mut policy = match settings.public_key {
        Some(_) if keyless => {
            return Err(spec.error_at(&key("public_key"), "a policy names a key or a keyless identity, not both"));
        }
        Some(path) => {
            let path = spec.resolve_path(&key("public_key"), &path)?;
            let pem = std::fs::read_to_string(&path)
                .map_err(|error| spec.error_at(&key("public_key"), format!("{}: {error}", path.display())))?;
            SignaturePolicy::public_key(settings.name, &pem)
                .map_err(|error| spec.error_at(&key("public_key"), error.to_string()))?
        }
        None => {
            let identity = matcher(spec, &key("identity"), settings.identity, settings.identity_pattern)?;
            let issuer = matcher(spec, &key("issuer"), settings.issuer, settings.issuer_pattern)?;
            SignaturePolicy::keyless_matching(settings.name, identity, issuer)
        }
    };
    if !settings.tlog {
        policy = policy.without_tlog();
    }
    if let Some(predicate_type) = settings.predicate_type {
        policy = policy.predicate_type(predicate_type);
    }
    Ok(policy)
}

/// Registers `oci-registry` and `oci-layout` (stores) and `signature` (gate) on `registry`.
pub fn register(registry: &mut SpecRegistry) {
    registry.register_store("oci-registry", |spec| async move {
        let config: OciRegistryConfig = spec.parse()?;
        Ok(Arc::new(registry_store(&spec, config, "")?) as Arc<dyn ArtifactStore>)
    });
    registry.register_gate("signature", |spec| async move {
        let settings: SignatureSettings = spec.parse()?;
        let root_path = spec.resolve_path("trusted_root", &settings.trusted_root)?;
        let root =
            TrustRoot::from_file(&root_path).map_err(|error| spec.error_at("trusted_root", error.to_string()))?;
        if settings.policies.is_empty() {
            return Err(spec.error_at("policies", "needs at least one policy"));
        }
        let policies = settings
            .policies
            .into_iter()
            .enumerate()
            .map(|(index, policy)| signature_policy(&spec, index, policy))
            .collect::<Result<Vec<_>>>()?;
        let store = registry_store(&spec, settings.registry.unwrap_or_default(), "registry.")?;
        let name = settings.name.unwrap_or_else(|| "signature".into());
        let mut gate = SignatureGate::new(name, store, root, policies)
            .map_err(|error| spec.error_at("policies", error.to_string()))?;
        if let Some(require) = settings.require {
            gate = gate.require(require).map_err(|error| spec.error_at("require", error.to_string()))?;
        }
        Ok(Arc::new(gate.require_provenance(settings.provenance)) as Arc<dyn Gate>)
    });
    registry.register_attestor("oci-attestation", |spec| async move {
        spec.refuse_if_untrusted("signs with a private key and writes to registries")?;
        let settings: AttestationSettings = spec.parse()?;
        let pem = match (settings.key_env, settings.key_file) {
            (Some(variable), None) => std::env::var(&variable)
                .map_err(|_| spec.error_at("key_env", format!("the environment variable {variable} is not set")))?,
            (None, Some(path)) => {
                let path = spec.resolve_path("key_file", &path)?;
                std::fs::read_to_string(&path)
                    .map_err(|error| spec.error_at("key_file", format!("{}: {error}", path.display())))?
            }
            _ => return Err(spec.error_at("key_env", "give the signing key as `key_env` or `key_file` (one of them)")),
        };
        let store = registry_store(&spec, settings.registry.unwrap_or_default(), "registry.")?;
        let attestor = PromotionAttestor::new(store, &promote_core::Secret::new(pem))
            .map_err(|error| spec.error_at("key_env", error.to_string()))?
            .named(settings.name.unwrap_or_else(|| "attestation".into()));
        Ok(Arc::new(attestor) as Arc<dyn promote_core::attest::Attestor>)
    });
    registry.register_store("oci-layout", |spec| async move {
        let mut config: OciLayoutConfig = spec.parse()?;
        config.root = spec.resolve_path("root", &config.root)?;
        Ok(Arc::new(config.build()) as Arc<dyn ArtifactStore>)
    });
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[tokio::test]
    async fn specs_name_oci_stores_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let mut registry = SpecRegistry::with_defaults();
        register(&mut registry);
        let spec =
            |store: &str| format!("pipeline: p\nstore: {store}\nledger: {{ kind: memory }}\nstages:\n  - name: dev\n");
        for store in ["{ kind: oci-layout, root: images }", "{ kind: oci-registry, insecure: [\"127.0.0.1:5000\"] }"] {
            registry.load_str(&spec(store), Path::new("promote.yaml"), dir.path(), None).await.unwrap();
        }
        let error = registry
            .load_str(&spec("{ kind: oci-registry, insecur: [] }"), Path::new("promote.yaml"), dir.path(), None)
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with("promote.yaml:2") && error.to_string().contains("insecur"), "{error}");
    }

    #[tokio::test]
    async fn an_untrusted_spec_chooses_no_credentials_and_reaches_only_allowed_registries() {
        use promote_core::spec::SpecPolicy;
        use promote_core::{ArtifactRef, Error};

        let dir = tempfile::tempdir().unwrap();
        let mut registry =
            SpecRegistry::with_defaults().with_policy(SpecPolicy::untrusted().allow_registry("registry.example"));
        register(&mut registry);
        let spec =
            |store: &str| format!("pipeline: p\nstore: {store}\nledger: {{ kind: memory }}\nstages:\n  - name: dev\n");
        for (store, key) in [
            ("{ kind: oci-registry, insecure: [\"127.0.0.1:5000\"] }", "store.insecure"),
            (
                "{ kind: oci-registry, credentials: { evil.example: { token_env: AWS_SECRET_ACCESS_KEY } } }",
                "store.credentials",
            ),
            (
                "{ kind: oci-registry, trusted_token_realms: { registry.example: \"https://evil.example\" } }",
                "store.trusted_token_realms",
            ),
            ("{ kind: oci-layout, root: /var/lib/images }", "store.root"),
        ] {
            let error = registry.load_str(&spec(store), Path::new("promote.yaml"), dir.path(), None).await.unwrap_err();
            assert!(matches!(&error, Error::Spec { key: refused, .. } if refused == key), "{store}: {error}");
        }
        // Allowed: a registry store with no credential settings, which refuses other registries without a request.
        let pipeline = registry
            .load_str(&spec("{ kind: oci-registry }"), Path::new("promote.yaml"), dir.path(), None)
            .await
            .unwrap();
        let elsewhere: ArtifactRef = "evil.example/web:1".parse().unwrap();
        let error = pipeline.store().resolve(&elsewhere).await.unwrap_err();
        assert!(matches!(error, Error::PermissionDenied { .. }), "{error:?}");
        assert!(error.to_string().contains("evil.example"), "{error}");
    }

    /// A spec with one stage holding `stage_lines` (indented under `- name: prd`).
    fn stage_spec(stage_lines: &str) -> String {
        format!(
            "pipeline: p\nstore: {{ kind: memory }}\nledger: {{ kind: memory }}\nstages:\n  - name: prd\n{stage_lines}"
        )
    }

    /// The setting an untrusted spec was refused at, or a panic naming what happened instead.
    async fn refused_at(registry: &SpecRegistry, dir: &Path, what: &str, text: &str) -> (String, String) {
        match registry.load_str(text, Path::new("promote.yaml"), dir, None).await {
            Err(promote_core::Error::Spec { key, message, .. }) => (key, message),
            Err(other) => panic!("{what}: expected a spec error, got {other:?}"),
            Ok(_) => panic!("{what}: the untrusted spec loaded"),
        }
    }

    #[tokio::test]
    async fn an_untrusted_spec_gives_the_trust_kinds_no_file_outside_its_directory() {
        use promote_core::spec::SpecPolicy;

        let outside = tempfile::tempdir().unwrap();
        let dir = outside.path().join("repo");
        std::fs::create_dir_all(dir.join("trust")).unwrap();
        // An empty TrustedRoot loads (its keys are checked when used); a P-256 SubjectPublicKeyInfo.
        let root = r#"{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[],"certificateAuthorities":[],"ctlogs":[],"timestampAuthorities":[]}"#;
        let key = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWLuZqDPn1x3Y6Nw3I2Hcl4mU5Q+Fg+o6cOyO0lHH\nS0v4ZvqPTGK6DdE9MlfP5pcmHCM/TqXqOtkuLdGoG6MJXw==\n-----END PUBLIC KEY-----\n";
        // The same valid files inside the spec's directory and outside it, so that only the path is refused.
        for base in [dir.join("trust"), outside.path().to_owned()] {
            std::fs::write(base.join("root.json"), root).unwrap();
            std::fs::write(base.join("release.pub"), key).unwrap();
        }
        std::os::unix::fs::symlink(outside.path(), dir.join("escape")).unwrap();
        let mut registry = SpecRegistry::with_defaults().with_policy(SpecPolicy::untrusted());
        register(&mut registry);
        let gate = |trusted_root: &str, public_key: &str| {
            stage_spec(&format!(
                "    gates:\n      - {{ kind: signature, trusted_root: {trusted_root}, policies: [{{ name: release, public_key: {public_key} }}] }}\n"
            ))
        };
        registry
            .load_str(&gate("trust/root.json", "trust/release.pub"), Path::new("promote.yaml"), &dir, None)
            .await
            .unwrap();

        let absolute = |name: &str| outside.path().join(name).display().to_string();
        let hostile = |name: &str| {
            [
                ("a climb out of the repository", "../../etc/passwd".to_owned()),
                ("a climb to a valid file", format!("../{name}")),
                ("an absolute path", "/etc/passwd".to_owned()),
                ("an absolute path to a valid file", absolute(name)),
                ("a symlink out", format!("escape/{name}")),
            ]
        };
        // The files outside are valid: a trusted spec may name them, so only the policy refuses them below.
        let mut trusted = SpecRegistry::with_defaults();
        register(&mut trusted);
        let outside_files = gate(&absolute("root.json"), "escape/release.pub");
        trusted.load_str(&outside_files, Path::new("promote.yaml"), &dir, None).await.unwrap();
        for (what, path) in hostile("root.json") {
            let (key, message) = refused_at(&registry, &dir, what, &gate(&path, "trust/release.pub")).await;
            assert_eq!(key, "stages[0].gates[0].trusted_root", "{what}: {message}");
            assert!(message.contains("untrusted spec"), "{what}: {message}");
        }
        for (what, path) in hostile("release.pub") {
            let (key, message) = refused_at(&registry, &dir, what, &gate("trust/root.json", &path)).await;
            assert_eq!(key, "stages[0].gates[0].policies[0].public_key", "{what}: {message}");
            assert!(message.contains("untrusted spec"), "{what}: {message}");
        }

        // The attestor signs with the runner's key: refused outright, whatever names the key.
        let attest = |key: &str| stage_spec(&format!("    attest:\n      - {{ kind: oci-attestation, {key} }}\n"));
        for key in ["key_file: ../../etc/passwd", "key_file: trust/release.pub", "key_env: AWS_SECRET_ACCESS_KEY"] {
            let (refused, message) = refused_at(&registry, &dir, key, &attest(key)).await;
            assert_eq!(refused, "stages[0].attest[0]", "{key}: {message}");
            assert!(message.contains("oci-attestation") && message.contains("untrusted spec"), "{key}: {message}");
        }
        // An embedder that allows the kind still gives it no key file outside the spec's directory.
        let mut allowing =
            SpecRegistry::with_defaults().with_policy(SpecPolicy::untrusted().allow_kind("oci-attestation"));
        register(&mut allowing);
        for (what, path) in hostile("release.pub") {
            let (key, message) = refused_at(&allowing, &dir, what, &attest(&format!("key_file: {path}"))).await;
            assert_eq!(key, "stages[0].attest[0].key_file", "{what}: {message}");
            assert!(message.contains("untrusted spec"), "{what}: {message}");
        }
    }
}
