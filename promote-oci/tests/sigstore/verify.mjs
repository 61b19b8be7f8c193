#!/usr/bin/env node
// Judge 1: @sigstore/verify, offline, against a trusted_root.json. Exit 0 = valid, 1 = invalid, 2 = usage error.
// Prints one JSON line: {"verdict":"valid"|"invalid","judge","reason","message","signer","log_index",
//   "subject_digests","predicate_type"}.
//
//   node verify.mjs --trusted-root ROOT.json --bundle B.json (--digest sha256:HEX | --artifact FILE) POLICY [opts]
//   node verify.mjs --trusted-root ROOT.json --legacy-manifest M.json --legacy-payload BLOB... --digest D --key PUB
// POLICY, one of:
//   keyless: --san ID (exact) | --san-regex RE, and --issuer URL (exact)
//   keyed:   --key PUB.pem (a P-256 public key; the bundle's key hint is not trusted, the signature decides)
// Options:
//   --artifact FILE          the signed bytes (the image manifest) for message-signature bundles; its SHA-256 is the
//                            digest the statement subject must equal for DSSE bundles
//   --no-tlog                accept a bundle without a transparency-log entry (default: at least one is required)
//   --predicate-type URI     require this in-toto predicate type
//   --expect-revision REV    require a SLSA provenance v1 predicate whose resolvedDependencies hold gitCommit REV
//   node verify.mjs --batch  one JSON array of the arguments above per stdin line; one verdict line each on stdout
// For DSSE bundles the statement's subject must contain the digest; for message signatures the signed artifact must
// have it. For a legacy cosign .sig manifest, the simple-signing payload must name the digest, and the signature
// (with the hashedrekord SET of the dev.sigstore.cosign/bundle annotation, if present) is checked by rebuilding the
// equivalent bundle v0.1 and giving it to @sigstore/verify.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';

const require = createRequire(import.meta.url);
const { Verifier, toSignedEntity, toTrustMaterial, PolicyError, VerificationError } = require('@sigstore/verify');
const bundleLib = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const JUDGE = `@sigstore/verify ${require('@sigstore/verify/package.json').version}`;

const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const COSIGN_BUNDLE_ANNOTATION = 'dev.sigstore.cosign/bundle';

const OPTIONS = {
  'trusted-root': { type: 'string' },
  bundle: { type: 'string' },
  digest: { type: 'string' },
  artifact: { type: 'string' },
  san: { type: 'string' },
  'san-regex': { type: 'string' },
  issuer: { type: 'string' },
  key: { type: 'string' },
  'no-tlog': { type: 'boolean', default: false },
  'predicate-type': { type: 'string' },
  'expect-revision': { type: 'string' },
  'legacy-manifest': { type: 'string' },
  'legacy-payload': { type: 'string', multiple: true },
};

class Rejected extends Error {
  constructor(reason, message) {
    super(message);
    this.reason = reason;
  }
}

const usageError = (message) => new Rejected('USAGE', message);

// One case: its arguments, whether the policy is keyed, the signed artifact (if given) and the image digest.
function parseCase(argv) {
  let a;
  try {
    ({ values: a } = parseArgs({ args: argv, options: OPTIONS }));
  } catch (e) {
    throw usageError(e.message);
  }
  if (!a['trusted-root']) throw usageError('--trusted-root is required');
  if (!a.bundle === !a['legacy-manifest']) throw usageError('give --bundle or --legacy-manifest');
  const keyed = Boolean(a.key);
  if (keyed === Boolean(a.san || a['san-regex'] || a.issuer)) {
    throw usageError('give either --key or --san/--san-regex and --issuer');
  }
  if (!keyed && !((a.san || a['san-regex']) && a.issuer)) {
    throw usageError('keyless policy needs --san (or --san-regex) and --issuer');
  }
  const artifact = a.artifact ? fs.readFileSync(a.artifact) : undefined;
  const digest = a.digest ?? (artifact && `sha256:${crypto.createHash('sha256').update(artifact).digest('hex')}`);
  if (!digest || !/^sha256:[0-9a-f]{64}$/.test(digest)) {
    throw usageError('--digest sha256:<64 hex> (or --artifact FILE) is required');
  }
  return { a, keyed, artifact, digest };
}

const escapeRegex = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function verifier(c, tlogRequired) {
  const root = TrustedRoot.fromJSON(JSON.parse(fs.readFileSync(c.a['trusted-root'], 'utf8')));
  let keyFinder = () => {
    throw new VerificationError({ code: 'PUBLIC_KEY_ERROR', message: 'no public key given' });
  };
  if (c.keyed) {
    const publicKey = crypto.createPublicKey(fs.readFileSync(c.a.key));
    keyFinder = () => ({ publicKey, validFor: () => true });
  }
  const trust = toTrustMaterial(root, keyFinder);
  return new Verifier(trust, {
    tlogThreshold: tlogRequired ? 1 : 0,
    ctlogThreshold: c.keyed ? 0 : 1,
    timestampThreshold: tlogRequired ? 1 : 0,
  });
}

function policy(c) {
  if (c.keyed) return undefined;
  return {
    subjectAlternativeName: c.a['san-regex'] ?? `^${escapeRegex(c.a.san)}$`,
    extensions: { issuer: c.a.issuer },
  };
}

// The version-appropriate shape check of @sigstore/bundle (v0.2+ must carry an inclusion proof).
function parseBundle(json) {
  const bundle = bundleLib.bundleFromJSON(json);
  if (bundle.mediaType === bundleLib.BUNDLE_V01_MEDIA_TYPE) bundleLib.assertBundleV01(bundle);
  else if (bundle.mediaType === bundleLib.BUNDLE_V02_MEDIA_TYPE) bundleLib.assertBundleV02(bundle);
  else bundleLib.assertBundleLatest(bundle);
  return bundle;
}

function statementChecks(c, bundle) {
  const env = bundle.content.dsseEnvelope;
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) {
    throw new Rejected('PAYLOAD_TYPE_MISMATCH', `payload type ${env.payloadType}, expected ${IN_TOTO_PAYLOAD_TYPE}`);
  }
  const statement = JSON.parse(env.payload.toString('utf8'));
  const subjectDigests = (statement.subject ?? []).map((s) => `sha256:${s.digest?.sha256}`);
  const facts = { subject_digests: subjectDigests, predicate_type: statement.predicateType };
  if (!subjectDigests.includes(c.digest)) {
    throw new Rejected('SUBJECT_MISMATCH', `statement subjects ${subjectDigests.join(', ')} do not include ${c.digest}`);
  }
  if (c.a['predicate-type'] && statement.predicateType !== c.a['predicate-type']) {
    throw new Rejected('PREDICATE_TYPE_MISMATCH', `predicate type ${statement.predicateType}, expected ${c.a['predicate-type']}`);
  }
  if (c.a['expect-revision']) {
    if (statement.predicateType !== SLSA_PROVENANCE_V1) {
      throw new Rejected('PREDICATE_TYPE_MISMATCH', `expected a SLSA provenance v1 predicate, got ${statement.predicateType}`);
    }
    const deps = statement.predicate?.buildDefinition?.resolvedDependencies ?? [];
    const revisions = deps.map((d) => d.digest?.gitCommit).filter(Boolean);
    if (!revisions.includes(c.a['expect-revision'])) {
      throw new Rejected('REVISION_MISMATCH', `source revisions [${revisions.join(', ')}] do not include ${c.a['expect-revision']}`);
    }
  }
  return facts;
}

function signerFacts(c, signer, bundle) {
  const entry = bundle.verificationMaterial.tlogEntries[0];
  const logIndex = entry ? Number(entry.logIndex) : null;
  if (c.keyed) {
    const content = bundle.verificationMaterial.content;
    return { signer: { key_hint: content.$case === 'publicKey' ? content.publicKey.hint : null }, log_index: logIndex };
  }
  return {
    signer: { san: signer.identity?.subjectAlternativeName, issuer: signer.identity?.extensions?.issuer },
    log_index: logIndex,
  };
}

function reasonOf(e) {
  if (e instanceof Rejected) return { reason: e.reason, message: e.message };
  if (e instanceof PolicyError || e instanceof VerificationError) return { reason: e.code, message: e.message };
  if (e instanceof bundleLib.ValidationError) return { reason: 'MALFORMED_BUNDLE', message: `${e.message}: ${e.fields}` };
  return { reason: 'MALFORMED_BUNDLE', message: String(e?.message ?? e) };
}

function verifyBundle(c) {
  const bundle = parseBundle(JSON.parse(fs.readFileSync(c.a.bundle, 'utf8')));
  let facts = {};
  let entity;
  if (bundle.content.$case === 'dsseEnvelope') {
    facts = statementChecks(c, bundle);
    entity = toSignedEntity(bundle);
  } else {
    if (!c.artifact) throw usageError('a message-signature bundle needs --artifact (the signed manifest bytes)');
    const signed = `sha256:${bundle.content.messageSignature.messageDigest.digest.toString('hex')}`;
    facts = { subject_digests: [signed], predicate_type: null };
    if (signed !== c.digest) throw new Rejected('SUBJECT_MISMATCH', `message digest ${signed} is not ${c.digest}`);
    entity = toSignedEntity(bundle, c.artifact);
  }
  const signer = verifier(c, !c.a['no-tlog']).verify(entity, policy(c));
  return { ...facts, ...signerFacts(c, signer, bundle) };
}

// Rebuilds the bundle v0.1 that carries exactly the facts of one cosign .sig layer.
function legacyBundle(layer, payload) {
  const ann = layer.annotations ?? {};
  const signature = ann[COSIGN_SIGNATURE_ANNOTATION];
  if (!signature) throw new Rejected('MALFORMED_BUNDLE', `layer ${layer.digest} has no ${COSIGN_SIGNATURE_ANNOTATION}`);
  const tlogEntries = [];
  if (ann[COSIGN_BUNDLE_ANNOTATION]) {
    const rekor = JSON.parse(ann[COSIGN_BUNDLE_ANNOTATION]);
    const body = JSON.parse(Buffer.from(rekor.Payload.body, 'base64').toString());
    tlogEntries.push({
      logIndex: String(rekor.Payload.logIndex),
      logId: { keyId: Buffer.from(rekor.Payload.logID, 'hex').toString('base64') },
      kindVersion: { kind: body.kind, version: body.apiVersion },
      integratedTime: String(rekor.Payload.integratedTime),
      inclusionPromise: { signedEntryTimestamp: rekor.SignedEntryTimestamp },
      canonicalizedBody: rekor.Payload.body,
    });
  }
  return parseBundle({
    mediaType: bundleLib.BUNDLE_V01_MEDIA_TYPE,
    verificationMaterial: {
      publicKey: { hint: '' },
      tlogEntries,
      timestampVerificationData: { rfc3161Timestamps: [] },
    },
    messageSignature: {
      messageDigest: { algorithm: 'SHA2_256', digest: crypto.createHash('sha256').update(payload).digest('base64') },
      signature,
    },
  });
}

function verifyLegacy(c) {
  if (!c.keyed) throw usageError('legacy .sig verification here is keyed only (--key)');
  const manifest = JSON.parse(fs.readFileSync(c.a['legacy-manifest'], 'utf8'));
  const payloads = new Map(
    (c.a['legacy-payload'] ?? []).map((f) => {
      const bytes = fs.readFileSync(f);
      return [`sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`, bytes];
    }),
  );
  const failures = [];
  for (const layer of manifest.layers ?? []) {
    const payload = payloads.get(layer.digest);
    if (!payload) continue;
    try {
      const simple = JSON.parse(payload.toString('utf8'));
      const named = simple?.critical?.image?.['docker-manifest-digest'];
      if (simple?.critical?.type !== 'cosign container image signature') {
        throw new Rejected('MALFORMED_BUNDLE', `layer ${layer.digest} is not a cosign simple-signing payload`);
      }
      if (named !== c.digest) throw new Rejected('SUBJECT_MISMATCH', `payload names ${named}, not ${c.digest}`);
      const bundle = legacyBundle(layer, payload);
      const tlog = bundle.verificationMaterial.tlogEntries.length > 0;
      if (!tlog && !c.a['no-tlog']) throw new Rejected('TLOG_ERROR', `layer ${layer.digest} has no ${COSIGN_BUNDLE_ANNOTATION}`);
      const signer = verifier(c, tlog).verify(toSignedEntity(bundle, payload));
      return { subject_digests: [named], predicate_type: null, ...signerFacts(c, signer, bundle), layer: layer.digest };
    } catch (e) {
      failures.push(reasonOf(e));
    }
  }
  if (failures.length === 0) throw new Rejected('NO_SIGNATURE', 'no layer of the manifest matches a given payload');
  throw new Rejected(failures[0].reason, failures.map((f) => f.message).join('; '));
}

// The verdict for one argument list: {"verdict", "judge", ...}, or a usage error (thrown).
function judge(argv) {
  const c = parseCase(argv);
  try {
    return { verdict: 'valid', judge: JUDGE, ...(c.a.bundle ? verifyBundle(c) : verifyLegacy(c)) };
  } catch (e) {
    const r = reasonOf(e);
    if (r.reason === 'USAGE') throw e;
    return { verdict: 'invalid', judge: JUDGE, ...r };
  }
}

// --batch: one JSON array of arguments per stdin line, one verdict per stdout line, in order (one Node start for
// many cases). A usage error in a line is answered with {"verdict":"error","message"}.
async function batch() {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let out;
    try {
      out = judge(JSON.parse(line));
    } catch (e) {
      out = { verdict: 'error', judge: JUDGE, message: e.message };
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
}

const argv = process.argv.slice(2);
if (argv.length === 1 && argv[0] === '--batch') {
  await batch();
} else {
  try {
    const out = judge(argv);
    process.stdout.write(`${JSON.stringify(out)}\n`);
    process.exit(out.verdict === 'valid' ? 0 : 1);
  } catch (e) {
    process.stderr.write(`verify.mjs: ${e.message}\n`);
    process.exit(2);
  }
}
