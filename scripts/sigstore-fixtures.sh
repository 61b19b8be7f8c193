#!/usr/bin/env bash
# Installs the sigstore fixture toolchain of the supply-chain tests (issue 19) into promote-oci/tests/sigstore/.
# Idempotent, and fast when already set up (a few checks, no network):
#   - apt, only for what is missing: nodejs + npm, docker-registry, apache2-utils (htpasswd), python3-venv, and the
#     curl and jq that smoke.sh uses;
#   - `npm ci` of the committed package-lock.json when node_modules is missing or was installed from another lock;
#   - a venv at promote-oci/tests/sigstore/.venv with requirements.txt (sigstore==4.5.1, securesystemslib==1.6.0 and
#     their pinned closure), re-created when requirements.txt changes.
# Nothing is fetched from the public sigstore infrastructure: the tests run their own mock on 127.0.0.1.
# Usage: scripts/sigstore-fixtures.sh   (then: promote-oci/tests/sigstore/smoke.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
fixtures=promote-oci/tests/sigstore

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  echo "==> apt: installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The pinned @sigstore packages declare node "^20.17.0 || >=22.9.0" (the newer ones need ^22.22.2).
node_ok() {
  command -v node >/dev/null && command -v npm >/dev/null &&
    node -e 'const [a, b] = process.versions.node.split(".").map(Number);
             process.exit((a === 20 && b >= 17) || (a === 22 && b >= 9) || a > 22 ? 0 : 1)'
}

missing=()
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v curl >/dev/null || missing+=(curl)
command -v jq >/dev/null || missing+=(jq)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
if ! node_ok; then
  echo "sigstore-fixtures: node $(node --version 2>/dev/null || echo missing) is too old; the pinned @sigstore" \
    "packages need ^20.17.0 or >=22.9.0 (Debian bookworm's own nodejs is 18)" >&2
  exit 1
fi

lock_sum=$(sha256sum "$fixtures/package-lock.json" | cut -d' ' -f1)
stamp="$fixtures/node_modules/.promote-lock.sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  echo "==> npm ci in $fixtures"
  (cd "$fixtures" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  echo "$lock_sum" >"$stamp"
fi

req_sum=$(sha256sum "$fixtures/requirements.txt" | cut -d' ' -f1)
venv="$fixtures/.venv"
vstamp="$venv/.promote-requirements.sha256"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$vstamp" ] || [ "$(cat "$vstamp")" != "$req_sum" ]; then
  echo "==> venv $venv (pip install -r requirements.txt)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$fixtures/requirements.txt"
  echo "$req_sum" >"$vstamp"
fi
echo "sigstore fixtures ready: node $(node --version), $("$venv/bin/python" -c \
  'import importlib.metadata as m; print("sigstore", m.version("sigstore"), "securesystemslib", m.version("securesystemslib"))')"
