#!/usr/bin/env node
// Attaches a signature to an image in a loopback registry, as third-party tools do.
//
//   node attach.mjs --image 127.0.0.1:PORT/REPO --digest sha256:HEX --bundle B.json [--username U --password P]
//     @sigstore/oci attachArtifactToImage: a referrer manifest (artifactType = the bundle media type, one layer, a
//     subject) and, since docker-registry 2.8.2 has no referrers API, the sha256-<hex> tag-schema index. Annotations
//     as cosign v3: dev.sigstore.bundle.content and dev.sigstore.bundle.predicateType.
//   node attach.mjs --image 127.0.0.1:PORT/REPO --digest sha256:HEX --legacy L.json [--username U --password P]
//     A legacy cosign sha256-<hex>.sig manifest from `sign.mjs --format cosign-legacy` output: a simple-signing layer
//     with the dev.cosignproject.cosign/signature (and dev.sigstore.cosign/bundle) annotations, appended to the
//     existing .sig manifest if there is one, written with plain HTTP (children first, then the tag).
// Prints one JSON line: {"referrer_digest","referrer_size","media_type","artifact_type","tag","tag_digest"}.
// Exit 1 on a registry error, 2 on a usage error.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { attachArtifactToImage } = require('@sigstore/oci');

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const COSIGN_BUNDLE_ANNOTATION = 'dev.sigstore.cosign/bundle';
const ACCEPT_ALL = [OCI_INDEX, OCI_MANIFEST, 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');

const { values: a } = parseArgs({
  options: {
    image: { type: 'string' },
    digest: { type: 'string' },
    bundle: { type: 'string' },
    legacy: { type: 'string' },
    username: { type: 'string' },
    password: { type: 'string' },
  },
});

function usage(message) {
  process.stderr.write(`attach.mjs: ${message}\n`);
  process.exit(2);
}

if (!a.image || !/^(127\.0\.0\.1|localhost)(:\d+)?\/.+/.test(a.image)) usage('--image 127.0.0.1:PORT/REPO is required');
if (!a.digest || !/^sha256:[0-9a-f]{64}$/.test(a.digest)) usage('--digest sha256:<64 hex> is required');
if (!a.bundle === !a.legacy) usage('give --bundle or --legacy');
if (Boolean(a.username) !== Boolean(a.password)) usage('give both --username and --password, or neither');

const slash = a.image.indexOf('/');
const base = `http://${a.image.slice(0, slash)}/v2/${a.image.slice(slash + 1)}`;
const auth = a.username ? { authorization: `Basic ${Buffer.from(`${a.username}:${a.password}`).toString('base64')}` } : {};
const sha256 = (buf) => `sha256:${crypto.createHash('sha256').update(buf).digest('hex')}`;

async function registry(method, path, { headers = {}, body, ok = [200] } = {}) {
  const res = await fetch(`${base}${path}`, { method, headers: { ...auth, ...headers }, body, redirect: 'follow' });
  if (!ok.includes(res.status)) {
    throw new Error(`${method} ${path}: HTTP ${res.status} ${(await res.text()).slice(0, 300)}`);
  }
  return res;
}

async function pushBlob(bytes) {
  const digest = sha256(bytes);
  const head = await registry('HEAD', `/blobs/${digest}`, { ok: [200, 404] });
  if (head.status === 200) return digest;
  const start = await registry('POST', '/blobs/uploads/', { ok: [202] });
  const location = new URL(start.headers.get('location'), base);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, {
    method: 'PUT',
    headers: { ...auth, 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  if (put.status !== 201) throw new Error(`PUT blob ${digest}: HTTP ${put.status}`);
  return digest;
}

async function tagDigest(tag) {
  const res = await registry('HEAD', `/manifests/${tag}`, { headers: { accept: ACCEPT_ALL }, ok: [200, 404] });
  return res.status === 200 ? res.headers.get('docker-content-digest') : null;
}

async function attachBundle() {
  const text = fs.readFileSync(a.bundle);
  const bundle = JSON.parse(text);
  const annotations = { 'dev.sigstore.bundle.content': bundle.dsseEnvelope ? 'dsse-envelope' : 'message-signature' };
  if (bundle.dsseEnvelope) {
    try {
      const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString());
      if (statement.predicateType) annotations['dev.sigstore.bundle.predicateType'] = statement.predicateType;
    } catch {
      // Not an in-toto statement: attach it all the same, without the predicate annotation.
    }
  }
  const descriptor = await attachArtifactToImage({
    imageName: a.image,
    imageDigest: a.digest,
    artifact: text,
    mediaType: bundle.mediaType,
    annotations,
    credentials: a.username ? { username: a.username, password: a.password } : undefined,
  });
  const tag = a.digest.replace(':', '-');
  return {
    referrer_digest: descriptor.digest,
    referrer_size: descriptor.size,
    media_type: descriptor.mediaType,
    artifact_type: bundle.mediaType,
    tag,
    tag_digest: await tagDigest(tag),
  };
}

async function attachLegacy() {
  const sig = JSON.parse(fs.readFileSync(a.legacy, 'utf8'));
  const payload = Buffer.from(sig.payload, 'base64');
  const tag = `${a.digest.replace(':', '-')}.sig`;
  const layerAnnotations = { [COSIGN_SIGNATURE_ANNOTATION]: sig.signature };
  if (sig.rekorBundle) layerAnnotations[COSIGN_BUNDLE_ANNOTATION] = JSON.stringify(sig.rekorBundle);
  const layer = { mediaType: SIMPLE_SIGNING, size: payload.length, digest: await pushBlob(payload), annotations: layerAnnotations };

  let layers = [];
  const existing = await registry('GET', `/manifests/${tag}`, { headers: { accept: ACCEPT_ALL }, ok: [200, 404] });
  if (existing.status === 200) layers = (await existing.json()).layers ?? [];
  const same = (l) => l.digest === layer.digest && l.annotations?.[COSIGN_SIGNATURE_ANNOTATION] === sig.signature;
  if (!layers.some(same)) layers.push(layer);

  // cosign's config names every layer's digest as a diff ID.
  const config = Buffer.from(
    JSON.stringify({
      architecture: '',
      created: '0001-01-01T00:00:00Z',
      history: [{ created: '0001-01-01T00:00:00Z' }],
      os: '',
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      config: {},
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, size: config.length, digest: await pushBlob(config) },
      layers,
    }),
  );
  await registry('PUT', `/manifests/${tag}`, { headers: { 'content-type': OCI_MANIFEST }, body: manifest, ok: [201] });
  return {
    referrer_digest: sha256(manifest),
    referrer_size: manifest.length,
    media_type: OCI_MANIFEST,
    artifact_type: SIMPLE_SIGNING,
    tag,
    tag_digest: await tagDigest(tag),
  };
}

try {
  const out = a.bundle ? await attachBundle() : await attachLegacy();
  process.stdout.write(`${JSON.stringify(out)}\n`);
} catch (e) {
  const cause = e?.cause ? ` (cause: ${e.cause.message ?? e.cause})` : '';
  process.stderr.write(`attach.mjs: ${e?.message ?? e}${cause}\n`);
  process.exit(1);
}
