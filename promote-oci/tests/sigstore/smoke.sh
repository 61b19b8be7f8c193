#!/usr/bin/env bash
# End-to-end check of the fixture toolchain, offline on loopback:
#   two docker-registry 2.8.2 (anonymous, and htpasswd basic auth) + the mock sigstore service;
#   push a tiny image; sign it keyless (sigstore-js, sigstore-python), keyed (sigstore-js, DSSE v0.3 and message
#   v0.2) and as a legacy cosign .sig; attach each; read every signature back with curl through the tag schema;
#   run both judges on the valid cases and on each negative case of issue 19.
# Prints a matrix and exits non-zero if any judge disagrees with the expected verdict.
# Needs: scripts/sigstore-fixtures.sh run first (node_modules, .venv), docker-registry, htpasswd, curl, jq.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
venv_python="$here/.venv/bin/python"
for tool in docker-registry htpasswd curl jq node; do
  command -v "$tool" >/dev/null || { echo "smoke: $tool is missing (run scripts/sigstore-fixtures.sh)" >&2; exit 2; }
done
[ -x "$venv_python" ] && [ -d "$here/node_modules/@sigstore/verify" ] || {
  echo "smoke: fixtures not installed (run scripts/sigstore-fixtures.sh)" >&2
  exit 2
}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_for DESCRIPTION COMMAND...: at most 100 tries, 0.1 s apart.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "smoke: $what did not come up" >&2
  return 1
}

# start_registry NAME [USER PASS] -> sets registry_addr=127.0.0.1:PORT. Not in a $(...) subshell: the PID must reach
# the trap's list.
start_registry() {
  local name=$1 port dir
  port=$(free_port)
  dir="$work/registry-$name"
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: error, accesslog: {disabled: true}}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$port}"
    if [ $# -eq 3 ]; then
      htpasswd -Bbn "$2" "$3" >"$dir/htpasswd" 2>/dev/null
      echo "auth: {htpasswd: {realm: promote-test, path: $dir/htpasswd}}"
    fi
  } >"$dir/config.yml"
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  pids+=($!)
  # /v2/ answers 200 anonymously or 401 with auth: either means it is up.
  wait_for "registry $name" bash -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/v2/ | grep -qE '200|401'"
  registry_addr="127.0.0.1:$port"
}

# push_blob REGISTRY REPO FILE [CURL AUTH...] -> prints the digest
push_blob() {
  local reg=$1 repo=$2 file=$3; shift 3
  local digest location
  digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
  location=$(curl -sf "$@" -X POST -D - -o /dev/null "http://$reg/v2/$repo/blobs/uploads/" |
    tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case "$location" in http*) ;; *) location="http://$reg$location" ;; esac
  case "$location" in *\?*) location="$location&digest=$digest" ;; *) location="$location?digest=$digest" ;; esac
  curl -sf "$@" -X PUT -H 'content-type: application/octet-stream' --data-binary "@$file" "$location" >/dev/null
  echo "$digest"
}

# push_image REGISTRY REPO TAG CONTENT [CURL AUTH...] -> leaves $work/REPO-TAG.manifest.json, prints the digest
push_image() {
  local reg=$1 repo=$2 tag=$3 content=$4; shift 4
  local d="$work/image-$repo-$tag"
  mkdir -p "$d/root"
  echo "$content" >"$d/root/hello.txt"
  tar -C "$d/root" --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$d/layer.tar" hello.txt
  gzip -n -c "$d/layer.tar" >"$d/layer.tar.gz"
  local diff_id layer config
  diff_id="sha256:$(sha256sum "$d/layer.tar" | cut -d' ' -f1)"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]},"config":{}}' \
    "$diff_id" >"$d/config.json"
  layer=$(push_blob "$reg" "$repo" "$d/layer.tar.gz" "$@")
  config=$(push_blob "$reg" "$repo" "$d/config.json" "$@")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' \
    "$config" "$(stat -c %s "$d/config.json")" "$layer" "$(stat -c %s "$d/layer.tar.gz")" \
    >"$work/$repo-$tag.manifest.json"
  curl -sf "$@" -X PUT -H 'content-type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$work/$repo-$tag.manifest.json" "http://$reg/v2/$repo/manifests/$tag" >/dev/null
  echo "sha256:$(sha256sum "$work/$repo-$tag.manifest.json" | cut -d' ' -f1)"
}

# read_back REGISTRY REPO DIGEST OUTDIR [CURL AUTH...]: every referrer in the sha256-<hex> index, layer blob saved as
# OUTDIR/<referrer hex>.bundle.json; prints the referrer digests.
read_back() {
  local reg=$1 repo=$2 digest=$3 out=$4; shift 4
  mkdir -p "$out"
  curl -sf "$@" -H 'accept: application/vnd.oci.image.index.v1+json' \
    "http://$reg/v2/$repo/manifests/${digest/:/-}" >"$out/index.json"
  local ref layer
  for ref in $(jq -r '.manifests[].digest' "$out/index.json"); do
    curl -sf "$@" -H 'accept: application/vnd.oci.image.manifest.v1+json' \
      "http://$reg/v2/$repo/manifests/$ref" >"$out/${ref#sha256:}.manifest.json"
    [ "$(jq -r .subject.digest "$out/${ref#sha256:}.manifest.json")" = "$digest" ] || {
      echo "smoke: referrer $ref has the wrong subject" >&2
      return 1
    }
    layer=$(jq -r '.layers[0].digest' "$out/${ref#sha256:}.manifest.json")
    curl -sf "$@" "http://$reg/v2/$repo/blobs/$layer" >"$out/${ref#sha256:}.bundle.json"
    echo "$ref"
  done
}

node_key() { # node_key NAME: a P-256 key pair as $work/NAME.pem and $work/NAME.pub
  node -e '
    const c = require("crypto"); const fs = require("fs");
    const { privateKey, publicKey } = c.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    fs.writeFileSync(process.argv[1] + ".pem", privateKey.export({ format: "pem", type: "pkcs8" }));
    fs.writeFileSync(process.argv[1] + ".pub", publicKey.export({ format: "pem", type: "spki" }));
  ' "$work/$1"
}

echo "==> starting docker-registry x2 and the mock sigstore service"
start_registry anon
reg_anon=$registry_addr
start_registry auth promote s3cret-test-only
reg_auth=$registry_addr
auth=(-u promote:s3cret-test-only)
node "$here/mock-sigstore.mjs" --dir "$work/mock" >"$work/mock.json" 2>"$work/mock.err" &
pids+=($!)
wait_for "mock sigstore" test -s "$work/mock.json"
mock_url=$(jq -r .url "$work/mock.json")
root=$(jq -r .trusted_root "$work/mock.json")
trust_config=$(jq -r .trust_config "$work/mock.json")
other_root=$(node "$here/mock-sigstore.mjs" --root-only --dir "$work/other-root" | jq -r .trusted_root)
node_key ci
node_key intruder

SAN=ci@promote.test
ISSUER=https://issuer.test
echo "==> pushing tiny images"
digest=$(push_image "$reg_anon" app v1 "hello from promote")
unsigned=$(push_image "$reg_anon" app v2 "never signed")
digest_auth=$(push_image "$reg_auth" app v1 "hello from promote" "${auth[@]}")
other_digest="sha256:$(printf 'some other image' | sha256sum | cut -d' ' -f1)"
[ "$digest" = "$digest_auth" ] || { echo "smoke: the same image got two digests" >&2; exit 1; }

echo "==> signing"
keyless=(--fulcio "$mock_url" --rekor "$mock_url" --san "$SAN" --issuer "$ISSUER")
node "$here/sign.mjs" --out "$work/js-keyless.json" --digest "$digest" --image "$reg_anon/app" "${keyless[@]}" >/dev/null
node "$here/sign.mjs" --out "$work/js-keyed.json" --digest "$digest" --image "$reg_auth/app" \
  --key "$work/ci.pem" --rekor "$mock_url" >/dev/null
node "$here/sign.mjs" --out "$work/js-message.json" --artifact "$work/app-v1.manifest.json" --format message \
  --key "$work/ci.pem" --rekor "$mock_url" >/dev/null
node "$here/sign.mjs" --out "$work/js-legacy.json" --digest "$digest" --image "$reg_anon/app" --format cosign-legacy \
  --key "$work/ci.pem" --rekor "$mock_url" >/dev/null
node "$here/sign.mjs" --out "$work/js-provenance.json" --digest "$digest" --image "$reg_anon/app" "${keyless[@]}" \
  --slsa-revision 0123456789abcdef0123456789abcdef01234567 >/dev/null
"$venv_python" "$here/sign_py.py" --trust-config "$trust_config" --san "$SAN" --issuer "$ISSUER" --digest "$digest" \
  --out "$work/py-keyless.json" >/dev/null
# Negative fixtures: validly signed statements about another digest, attached to this image.
node "$here/sign.mjs" --out "$work/js-keyless-wrong-subject.json" --digest "$digest" --subject-digest "$other_digest" \
  "${keyless[@]}" >/dev/null
node "$here/sign.mjs" --out "$work/js-keyed-wrong-subject.json" --digest "$digest" --subject-digest "$other_digest" \
  --key "$work/ci.pem" --rekor "$mock_url" >/dev/null
"$venv_python" "$here/sign_py.py" --trust-config "$trust_config" --san "$SAN" --issuer "$ISSUER" --digest "$digest" \
  --subject-digest "$other_digest" --out "$work/py-keyless-wrong-subject.json" >/dev/null

echo "==> attaching (@sigstore/oci; legacy .sig with plain HTTP)"
declare -A referrer
attach() { # attach NAME REGISTRY [AUTH ARGS]
  local name=$1 reg=$2; shift 2
  referrer[$name]=$(node "$here/attach.mjs" --image "$reg/app" --digest "$digest" --bundle "$work/$name.json" "$@" |
    jq -r .referrer_digest)
}
attach js-keyless "$reg_anon"
attach py-keyless "$reg_anon"
attach js-message "$reg_anon"
attach js-provenance "$reg_anon"
attach js-keyless-wrong-subject "$reg_anon"
attach py-keyless-wrong-subject "$reg_anon"
attach js-keyed "$reg_auth" --username promote --password s3cret-test-only
attach js-keyed-wrong-subject "$reg_auth" --username promote --password s3cret-test-only
legacy_tag=$(node "$here/attach.mjs" --image "$reg_anon/app" --digest "$digest" --legacy "$work/js-legacy.json" | jq -r .tag)

echo "==> reading back through the tag schema"
read_back "$reg_anon" app "$digest" "$work/back-anon" >"$work/back-anon.list"
read_back "$reg_auth" app "$digest" "$work/back-auth" "${auth[@]}" >"$work/back-auth.list"
back() { # back NAME -> the read-back bundle path, checked byte-for-byte against what was signed
  local name=$1 ref=${referrer[$1]} dir
  for dir in back-anon back-auth; do
    if [ -f "$work/$dir/${ref#sha256:}.bundle.json" ]; then
      cmp -s "$work/$dir/${ref#sha256:}.bundle.json" "$work/$name.json" || {
        echo "smoke: $name changed on the way through the registry" >&2
        exit 1
      }
      echo "$work/$dir/${ref#sha256:}.bundle.json"
      return
    fi
  done
  echo "smoke: $name ($ref) is not listed in the tag-schema index" >&2
  exit 1
}
curl -sf -H 'accept: application/vnd.oci.image.manifest.v1+json' \
  "http://$reg_anon/v2/app/manifests/$legacy_tag" >"$work/legacy.manifest.json"
legacy_layer=$(jq -r '.layers[0].digest' "$work/legacy.manifest.json")
curl -sf "http://$reg_anon/v2/app/blobs/$legacy_layer" >"$work/legacy.payload"
unsigned_status=$(curl -s -o /dev/null -w '%{http_code}' -H 'accept: application/vnd.oci.image.index.v1+json' \
  "http://$reg_anon/v2/app/manifests/${unsigned/:/-}")
referrers_api_status=$(curl -s -o /dev/null -w '%{http_code}' "http://$reg_anon/v2/app/referrers/$digest")

# Tampered copies: the signed statement changed after signing (JS, Python, keyed), and one v0.2 signature byte.
tamper() { # tamper dsse|message IN OUT
  python3 - "$@" <<'EOF'
import base64, json, sys
mode, src, dst = sys.argv[1:]
bundle = json.load(open(src))
if mode == "dsse":
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"] = {**(statement.get("predicate") or {}), "tampered": True}
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
else:
    sig = bytearray(base64.b64decode(bundle["messageSignature"]["signature"]))
    sig[-1] ^= 0x01
    bundle["messageSignature"]["signature"] = base64.b64encode(bytes(sig)).decode()
json.dump(bundle, open(dst, "w"))
EOF
}
tamper dsse "$(back js-keyless)" "$work/js-keyless-tampered.json"
tamper dsse "$(back py-keyless)" "$work/py-keyless-tampered.json"
tamper dsse "$(back js-keyed)" "$work/js-keyed-tampered.json"
tamper message "$(back js-message)" "$work/js-message-tampered.json"

failures=0
# row NAME EXPECTED JS_ARGS_VAR PY_ARGS_VAR (arrays named by the last two): queued, then judged in one batch per
# judge (one Node and one Python start for all cases), then printed in order.
: >"$work/rows.tsv"
: >"$work/js.jsonl"
: >"$work/py.jsonl"
row() {
  local -n js_args=$3 py_args=$4
  printf '%s\t%s\n' "$1" "$2" >>"$work/rows.tsv"
  jq -cn '$ARGS.positional' --args -- "${js_args[@]}" >>"$work/js.jsonl"
  jq -cn '$ARGS.positional' --args -- "${py_args[@]}" >>"$work/py.jsonl"
}

pol_keyless=(--san "$SAN" --issuer "$ISSUER")
case_args() { # case_args VAR ROOT BUNDLE DIGEST POLICY...: fills the named array
  local -n out=$1
  out=(--trusted-root "$2" --bundle "$3" --digest "$4" "${@:5}")
}

for signer in js py; do
  b=$(back "$signer-keyless")
  case_args j "$root" "$b" "$digest" "${pol_keyless[@]}"; row "$signer keyless: valid" valid j j
  case_args j "$root" "$b" "$digest" --san evil@promote.test --issuer "$ISSUER"; row "$signer keyless: wrong SAN" invalid j j
  case_args j "$root" "$b" "$digest" --san "$SAN" --issuer https://evil-issuer.test
  row "$signer keyless: wrong issuer" invalid j j
  case_args j "$root" "$(back "$signer-keyless-wrong-subject")" "$digest" "${pol_keyless[@]}"
  row "$signer keyless: subject != digest" invalid j j
  case_args j "$other_root" "$b" "$digest" "${pol_keyless[@]}"; row "$signer keyless: another trust root" invalid j j
  case_args j "$root" "$work/$signer-keyless-tampered.json" "$digest" "${pol_keyless[@]}"
  row "$signer keyless: tampered statement" invalid j j
done

b=$(back js-keyed)
case_args j "$root" "$b" "$digest" --key "$work/ci.pub"; row "js keyed (basic-auth registry): valid" valid j j
case_args j "$root" "$b" "$digest" --key "$work/intruder.pub"; row "js keyed: wrong key" invalid j j
case_args j "$root" "$(back js-keyed-wrong-subject)" "$digest" --key "$work/ci.pub"; row "js keyed: subject != digest" invalid j j
case_args j "$other_root" "$b" "$digest" --key "$work/ci.pub"; row "js keyed: another trust root" invalid j j
case_args j "$root" "$work/js-keyed-tampered.json" "$digest" --key "$work/ci.pub"; row "js keyed: tampered statement" invalid j j

b=$(back js-message)
m=(--trusted-root "$root" --bundle "$b" --artifact "$work/app-v1.manifest.json" --key "$work/ci.pub")
row "js keyed v0.2 message signature: valid" valid m m
m=(--trusted-root "$root" --bundle "$b" --artifact "$work/app-v1.manifest.json" --key "$work/intruder.pub")
row "js keyed v0.2: wrong key" invalid m m
m=(--trusted-root "$root" --bundle "$work/js-message-tampered.json" --artifact "$work/app-v1.manifest.json" --key "$work/ci.pub")
row "js keyed v0.2: tampered signature" invalid m m

b=$(back js-provenance)
case_args j "$root" "$b" "$digest" "${pol_keyless[@]}" --expect-revision 0123456789abcdef0123456789abcdef01234567
row "js SLSA provenance: revision matches" valid j j
case_args j "$root" "$b" "$digest" "${pol_keyless[@]}" --expect-revision fedcba9876543210fedcba9876543210fedcba98
row "js SLSA provenance: other revision" invalid j j
case_args j "$root" "$(back js-keyless)" "$digest" "${pol_keyless[@]}" --expect-revision 0123456789abcdef0123456789abcdef01234567
row "cosign/sign statement as provenance" invalid j j

l=(--trusted-root "$root" --legacy-manifest "$work/legacy.manifest.json" --legacy-payload "$work/legacy.payload" --digest "$digest" --key "$work/ci.pub")
row "legacy cosign .sig: valid" valid l l
l=(--trusted-root "$root" --legacy-manifest "$work/legacy.manifest.json" --legacy-payload "$work/legacy.payload" --digest "$digest" --key "$work/intruder.pub")
row "legacy cosign .sig: wrong key" invalid l l
l=(--trusted-root "$root" --legacy-manifest "$work/legacy.manifest.json" --legacy-payload "$work/legacy.payload" --digest "$other_digest" --key "$work/ci.pub")
row "legacy cosign .sig: payload names another digest" invalid l l
l=(--trusted-root "$other_root" --legacy-manifest "$work/legacy.manifest.json" --legacy-payload "$work/legacy.payload" --digest "$digest" --key "$work/ci.pub")
row "legacy cosign .sig: another trust root (SET)" invalid l l

# The envelope alone, as the attestation test will check it: securesystemslib only on the Python side.
jq .dsseEnvelope "$(back js-keyed)" >"$work/js-keyed.envelope.json"
e_js=(--trusted-root "$root" --bundle "$(back js-keyed)" --digest "$digest" --key "$work/ci.pub")
e_py=(--envelope "$work/js-keyed.envelope.json" --digest "$digest" --key "$work/ci.pub")
row "bare DSSE envelope (keyed)" valid e_js e_py
e_py=(--envelope "$work/js-keyed.envelope.json" --digest "$digest" --key "$work/intruder.pub")
e_js=(--trusted-root "$root" --bundle "$(back js-keyed)" --digest "$digest" --key "$work/intruder.pub")
row "bare DSSE envelope: wrong key" invalid e_js e_py

echo "==> judging ($(wc -l <"$work/rows.tsv") cases, each by @sigstore/verify and by sigstore-python/securesystemslib)"
node "$here/verify.mjs" --batch <"$work/js.jsonl" >"$work/js.out"
"$venv_python" "$here/verify_py.py" --batch <"$work/py.jsonl" >"$work/py.out"
[ "$(wc -l <"$work/js.out")" = "$(wc -l <"$work/rows.tsv")" ] && [ "$(wc -l <"$work/py.out")" = "$(wc -l <"$work/rows.tsv")" ] || {
  echo "smoke: a judge did not answer every case" >&2
  exit 1
}
printf '\n%-50s %-9s %-8s %-8s %s\n' "case" "expected" "js" "py" "reasons (js | py)"
printf '%s\n' "$(printf '%.0s-' $(seq 1 130))"
while IFS=$'\t' read -r name expected js_out py_out; do
  js_v=$(jq -r .verdict <<<"$js_out")
  py_v=$(jq -r .verdict <<<"$py_out")
  mark=ok
  if [ "$js_v" != "$expected" ] || [ "$py_v" != "$expected" ]; then
    mark=DISAGREES
    failures=$((failures + 1))
  fi
  printf '%-50s %-9s %-8s %-8s %s | %s  %s\n' "$name" "$expected" "$js_v" "$py_v" \
    "$(jq -r '.reason // "-"' <<<"$js_out")" "$(jq -r '.reason // "-"' <<<"$py_out")" "$mark"
  if [ "$mark" != ok ]; then
    echo "    js: $js_out"
    echo "    py: $py_out"
  fi
done < <(paste "$work/rows.tsv" "$work/js.out" "$work/py.out")
echo

# Registry-level facts the gate's cases rest on.
check() { # check NAME EXPECTED ACTUAL
  local mark=ok
  [ "$2" = "$3" ] || { mark=DISAGREES; failures=$((failures + 1)); }
  printf '%-50s %-9s %-17s %s\n' "$1" "$2" "$3" "$mark"
}
check "no referrer: unsigned image's index (HTTP)" 404 "$unsigned_status"
check "referrers API on docker-registry 2.8.2" 404 "$referrers_api_status"
check "referrers listed (anonymous registry)" 6 "$(wc -l <"$work/back-anon.list")"
check "referrers listed (basic-auth registry)" 2 "$(wc -l <"$work/back-auth.list")"
# require: 2 with one signature: only one distinct policy (the CI identity) is met by the image's signatures.
met=0
for pol in "$SAN" scanner@promote.test; do
  for signer in js py; do
    if node "$here/verify.mjs" --trusted-root "$root" --bundle "$(back "$signer-keyless")" --digest "$digest" \
      --san "$pol" --issuer "$ISSUER" >/dev/null; then
      met=$((met + 1))
      break
    fi
  done
done
check "require: 2 policies, met by the signatures" 1 "$met"

echo
if [ "$failures" -gt 0 ]; then
  echo "smoke: $failures case(s) disagree"
  exit 1
fi
echo "smoke: every judge agrees with every expected verdict"
