#!/usr/bin/env bash
# Runs every check CI runs, on a fresh Debian machine or this one.
#
# 1. Installs what the tests need and is missing: docker-registry, skopeo, htpasswd and openssl (apt),
#    moto_server (pip), and the sigstore fixture toolchain (npm packages and a Python venv, pinned; see
#    scripts/sigstore-fixtures.sh). The tests start their own registries, moto servers, mock sigstore
#    services and fake Kubernetes API servers on loopback ports; kubectl comes with the machine image.
# 2. Runs: cargo fmt --check, clippy -D warnings on all targets (all features, then the feature sets users
#    compile), rustdoc with warnings denied, every test, and the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v openssl >/dev/null || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v moto_server >/dev/null; then
  echo "==> installing moto[server]"
  python3 -m pip install --quiet 'moto[server]'
  hash -r
  if ! command -v moto_server >/dev/null && command -v pyenv >/dev/null; then pyenv rehash; fi
fi

# The sigstore toolchain of the supply-chain tests (node packages and a venv; see promote-oci/tests/sigstore).
scripts/sigstore-fixtures.sh

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
# What users compile: each crate with its default features, and promote-core without the http gate (no TLS).
echo "==> cargo clippy, per feature set"
cargo clippy -p promote-core --no-default-features --quiet -- -D warnings
cargo clippy -p promote-core -p promote-oci -p promote-aws -p promote-k8s --all-targets --quiet -- -D warnings
echo "==> cargo doc"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --all-features --quiet
echo "==> quickstart (twice, in a scratch state directory)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
PROMOTE_QUICKSTART_DIR="$scratch/qs" cargo run --quiet --example quickstart >/dev/null
PROMOTE_QUICKSTART_DIR="$scratch/qs" cargo run --quiet --example quickstart >/dev/null
echo "==> cargo test"
cargo test --workspace --all-features
echo "==> cargo test, promote-aws without oci-copy"
cargo test -p promote-aws --quiet
