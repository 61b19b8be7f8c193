#!/usr/bin/env node
// Fixture signer built on sigstore-js (@sigstore/sign). Signs an image digest the way cosign v3 does: an in-toto
// Statement v1 in a DSSE envelope inside a sigstore bundle v0.3, subject = the image manifest digest.
//
//   node sign.mjs --out BUNDLE.json (--digest sha256:HEX | --artifact FILE) IDENTITY [options]
//
// IDENTITY, one of:
//   keyless: --fulcio URL --rekor URL --san ID --issuer URL   (an unsigned OIDC token is made for SAN and issuer)
//   keyed:   --key P256.pem [--rekor URL]                      (bundle carries a publicKey hint; no --rekor: no log)
// Options:
//   --format dsse|message|cosign-legacy   dsse: bundle v0.3 DSSE (default); message: bundle v0.2 message signature
//                                          over --artifact (the manifest bytes, so its digest is the image digest);
//                                          cosign-legacy: a simple-signing payload signature for attach.mjs --legacy
//   --predicate-type URI                  default https://sigstore.dev/cosign/sign/v1
//   --predicate JSON | --predicate-file F default {}
//   --slsa-revision REV [--slsa-repo URI] a SLSA provenance v1 predicate whose resolvedDependencies name the source
//                                          repository at REV (sets --predicate-type https://slsa.dev/provenance/v1)
//   --subject-digest sha256:HEX           statement subject (default: --digest); a WRONG one makes a negative case
//   --subject-name NAME                   default: --image or "image"
//   --image REF                           image name, used as subject name and as the legacy docker-reference
//   --tsa URL                             also get an RFC 3161 timestamp from the mock TSA
// Prints one JSON line: {"bundle","bundle_digest","media_type","format","predicate_type","subject_digest",
//   "signer":{"san","issuer"}|{"key_hint"},"log_index"}; exit 2 on a usage error, 1 on a signing error.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const sign = require('@sigstore/sign');
const { bundleToJSON } = require('@sigstore/bundle');

const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const STATEMENT_V1 = 'https://in-toto.io/Statement/v1';

function usage(message) {
  process.stderr.write(`sign.mjs: ${message}\n`);
  process.exit(2);
}

const { values: a } = parseArgs({
  options: {
    out: { type: 'string' },
    digest: { type: 'string' },
    artifact: { type: 'string' },
    format: { type: 'string', default: 'dsse' },
    fulcio: { type: 'string' },
    rekor: { type: 'string' },
    tsa: { type: 'string' },
    san: { type: 'string' },
    issuer: { type: 'string' },
    key: { type: 'string' },
    'predicate-type': { type: 'string' },
    predicate: { type: 'string' },
    'predicate-file': { type: 'string' },
    'slsa-revision': { type: 'string' },
    'slsa-repo': { type: 'string', default: 'git+https://git.promote.test/app' },
    'subject-digest': { type: 'string' },
    'subject-name': { type: 'string' },
    image: { type: 'string' },
  },
});

if (!a.out) usage('--out is required');
if (!['dsse', 'message', 'cosign-legacy'].includes(a.format)) usage(`unknown --format ${a.format}`);
const keyless = Boolean(a.fulcio || a.san || a.issuer);
if (keyless === Boolean(a.key)) usage('give either keyless (--fulcio --san --issuer --rekor) or keyed (--key)');
if (keyless && !(a.fulcio && a.san && a.issuer && a.rekor)) usage('keyless needs --fulcio, --rekor, --san and --issuer');

const artifactBytes = a.artifact ? fs.readFileSync(a.artifact) : undefined;
const digest = a.digest ?? (artifactBytes && `sha256:${crypto.createHash('sha256').update(artifactBytes).digest('hex')}`);
if (!digest || !/^sha256:[0-9a-f]{64}$/.test(digest)) usage('--digest sha256:<64 hex> (or --artifact FILE) is required');
if (a.format === 'cosign-legacy' && keyless) usage('--format cosign-legacy is keyed only (--key)');
if (a.format === 'message' && !artifactBytes) usage('--format message signs --artifact FILE (the manifest bytes)');

// An unsigned token: the mock Fulcio and sigstore-js read claims without checking a signature.
function identityToken(san, issuer) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: issuer, sub: san, aud: 'sigstore', iat: now, exp: now + 600, email: san, email_verified: true };
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
}

// A P-256 key signer whose hint is the hex SHA-256 of the DER SubjectPublicKeyInfo.
function keySigner(pemFile) {
  const privateKey = crypto.createPrivateKey(fs.readFileSync(pemFile));
  if (privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') usage(`${pemFile} is not a P-256 private key`);
  const publicKey = crypto.createPublicKey(privateKey);
  const hint = crypto.createHash('sha256').update(publicKey.export({ format: 'der', type: 'spki' })).digest('hex');
  const publicPem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
  return {
    hint,
    async sign(data) {
      return {
        signature: crypto.sign('sha256', data, privateKey),
        key: { $case: 'publicKey', publicKey: publicPem, hint },
      };
    },
  };
}

function predicate() {
  if (a['slsa-revision']) {
    return {
      type: a['predicate-type'] ?? SLSA_PROVENANCE_V1,
      body: {
        buildDefinition: {
          buildType: 'https://promote.test/build/v1',
          externalParameters: { source: a['slsa-repo'], revision: a['slsa-revision'] },
          resolvedDependencies: [{ uri: a['slsa-repo'], digest: { gitCommit: a['slsa-revision'] } }],
        },
        runDetails: { builder: { id: 'https://promote.test/builder' }, metadata: {} },
      },
    };
  }
  let body = {};
  if (a['predicate-file']) body = JSON.parse(fs.readFileSync(a['predicate-file'], 'utf8'));
  else if (a.predicate) body = JSON.parse(a.predicate);
  return { type: a['predicate-type'] ?? COSIGN_SIGN_PREDICATE, body };
}

const signer = keyless
  ? new sign.FulcioSigner({
      fulcioBaseURL: a.fulcio,
      identityProvider: { getToken: async () => identityToken(a.san, a.issuer) },
    })
  : keySigner(a.key);
const witnesses = [];
if (a.rekor) witnesses.push(new sign.RekorWitness({ rekorBaseURL: a.rekor, entryType: 'dsse' }));
if (a.tsa) witnesses.push(new sign.TSAWitness({ tsaBaseURL: a.tsa }));

const subjectDigest = a['subject-digest'] ?? digest;
const subjectName = a['subject-name'] ?? a.image ?? 'image';
const signerInfo = keyless ? { san: a.san, issuer: a.issuer } : { key_hint: signer.hint };

function writeOut(text) {
  fs.writeFileSync(a.out, text);
  return `sha256:${crypto.createHash('sha256').update(text).digest('hex')}`;
}

try {
  if (a.format === 'dsse') {
    const pred = predicate();
    const statement = {
      _type: STATEMENT_V1,
      subject: [{ name: subjectName, digest: { sha256: subjectDigest.slice('sha256:'.length) } }],
      predicateType: pred.type,
      predicate: pred.body,
    };
    const builder = new sign.DSSEBundleBuilder({ signer, witnesses });
    const bundle = await builder.create({ data: Buffer.from(JSON.stringify(statement)), type: IN_TOTO_PAYLOAD_TYPE });
    const json = bundleToJSON(bundle);
    const bundleDigest = writeOut(JSON.stringify(json));
    print(json, bundleDigest, { predicate_type: pred.type, subject_digest: subjectDigest });
  } else if (a.format === 'message') {
    const builder = new sign.MessageSignatureBundleBuilder({ signer, witnesses });
    const bundle = await builder.create({ data: artifactBytes });
    const json = bundleToJSON(bundle);
    const bundleDigest = writeOut(JSON.stringify(json));
    print(json, bundleDigest, { predicate_type: null, subject_digest: digest });
  } else {
    // cosign v2 "simple signing": the signature is over these exact payload bytes, which name the digest.
    const payload = Buffer.from(
      JSON.stringify({
        critical: {
          identity: { 'docker-reference': a.image ?? 'image' },
          image: { 'docker-manifest-digest': subjectDigest },
          type: 'cosign container image signature',
        },
        optional: null,
      }),
    );
    // A message-signature bundle gives the signature and, with --rekor, a hashedrekord entry with its SET: the
    // same facts cosign stores in the dev.sigstore.cosign/bundle annotation.
    const builder = new sign.MessageSignatureBundleBuilder({ signer, witnesses });
    const bundle = await builder.create({ data: payload });
    const entry = bundle.verificationMaterial.tlogEntries[0];
    const legacy = {
      mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
      payload: payload.toString('base64'),
      signature: bundle.content.messageSignature.signature.toString('base64'),
      rekorBundle: entry
        ? {
            SignedEntryTimestamp: entry.inclusionPromise.signedEntryTimestamp.toString('base64'),
            Payload: {
              body: entry.canonicalizedBody.toString('base64'),
              integratedTime: Number(entry.integratedTime),
              logIndex: Number(entry.logIndex),
              logID: entry.logId.keyId.toString('hex'),
            },
          }
        : null,
    };
    const digestOut = writeOut(JSON.stringify(legacy));
    process.stdout.write(
      `${JSON.stringify({
        bundle: a.out,
        bundle_digest: digestOut,
        media_type: legacy.mediaType,
        format: a.format,
        predicate_type: null,
        subject_digest: subjectDigest,
        signer: signerInfo,
        log_index: entry ? Number(entry.logIndex) : null,
      })}\n`,
    );
  }
} catch (e) {
  process.stderr.write(`sign.mjs: ${e?.message ?? e}${e?.cause ? ` (cause: ${e.cause.message ?? e.cause})` : ''}\n`);
  process.exit(1);
}

function print(json, bundleDigest, extra) {
  const entry = json.verificationMaterial.tlogEntries?.[0];
  process.stdout.write(
    `${JSON.stringify({
      bundle: a.out,
      bundle_digest: bundleDigest,
      media_type: json.mediaType,
      format: a.format,
      ...extra,
      signer: signerInfo,
      log_index: entry ? Number(entry.logIndex) : null,
    })}\n`,
  );
}
