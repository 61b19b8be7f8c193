#!/usr/bin/env node
// Loopback sigstore for tests: Fulcio, Rekor v1 and a TSA built from @sigstore/mock's exported handlers,
// served over plain HTTP on 127.0.0.1, with a trusted_root.json that @sigstore/verify, sigstore-python and
// sigstore-verify (Rust) accept. Keys are new on every start, so sign and verify within one run.
//
// Usage:
//   node mock-sigstore.mjs [--dir DIR] [--port N] [--watch-stdin]
//     Serves until SIGTERM/SIGINT (or, with --watch-stdin, until stdin closes). Prints one JSON line when ready:
//     {"url", "fulcio_url", "rekor_url", "tsa_url", "trusted_root", "trust_config", "signing_config", "pid"}
//   node mock-sigstore.mjs --root-only [--dir DIR]
//     Writes an unrelated trusted root (fresh keys, nothing served) and exits: the "another trust root" case.
//
// The five shims below were each needed by a real failure (see README.md, "Mock shims").
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const mock = require('@sigstore/mock');
const { TrustedRoot, HashAlgorithm, PublicKeyDetails } = require('@sigstore/protobuf-specs');
const canonicalize = require('canonicalize');

const FULCIO_PATH = '/api/v2/signingCert';
const REKOR_ENTRIES_PATH = '/api/v1/log/entries';
const REKOR_LOG_PATH = '/api/v1/log';
const TSA_PATH = '/api/v1/timestamp';
const MAX_BODY_BYTES = 4 * 1024 * 1024;

const { values: opts } = parseArgs({
  options: {
    dir: { type: 'string' },
    port: { type: 'string', default: '0' },
    'root-only': { type: 'boolean', default: false },
    'watch-stdin': { type: 'boolean', default: false },
  },
});

const outDir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mock-sigstore-'));
fs.mkdirSync(outDir, { recursive: true });

const newKeyPair = () => crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
const sha256 = (...parts) => {
  const h = crypto.createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const spkiDer = (publicKey) => publicKey.export({ format: 'der', type: 'spki' });

// Services are considered valid from a minute before this start, so entries integrated in the same second pass
// the trust root's validity windows in every verifier.
const validFrom = new Date(Date.now() - 60_000);

const caKeys = newKeyPair();
const ctKeys = newKeyPair();
const tlogKeys = newKeyPair();
const tsaKeys = newKeyPair();

const ctlog = await mock.initializeCTLog(ctKeys);
const ca = await mock.initializeCA(caKeys, ctlog);
const tsa = await mock.initializeTSA(tsaKeys);

// ---- Shim 5: TSA genTime with three fraction digits -----------------------------------------------------------
// The mock TSA (pkijs) writes genTime in DER form, so 10:34:32.670 becomes "20261130103432.67Z"; @sigstore/core
// only parses exactly three fraction digits and fails with "invalid time" whenever the milliseconds end in 0.
// Keep the milliseconds off multiples of ten: the time stays honest to within 9 ms.
tsa.getCurrentTime = () => {
  const now = new Date();
  if (now.getMilliseconds() % 10 === 0) now.setMilliseconds(now.getMilliseconds() + 1);
  return now;
};

// ---- Shim 2: a real RFC 6962 log instead of the mock's one-leaf proof -------------------------------------------
// The mock answers with tree size 1, logIndex 0 and no hashes; proto3 JSON drops zero values and sigstore-python
// then rejects the bundle ("inclusionProof.logIndex Field required"). This log starts with a genesis leaf, so
// every real entry has index >= 1, tree size >= 2 and a non-empty audit path, with its own checkpoint and SET.
class MerkleLog {
  constructor(host, keys) {
    this.host = host;
    this.keys = keys;
    this.logID = sha256(spkiDer(keys.publicKey));
    this.treeID = crypto.randomInt(2 ** 48 - 1);
    this.leaves = [leafHash(Buffer.from('{"promote-test-log":"genesis"}'))];
  }

  append(body, integratedTime) {
    const logIndex = this.leaves.length;
    this.leaves.push(leafHash(body));
    const treeSize = this.leaves.length;
    const root = treeHash(this.leaves);
    const proof = auditPath(logIndex, this.leaves);
    const set = crypto.sign(
      'sha256',
      Buffer.from(
        canonicalize({
          body: body.toString('base64'),
          integratedTime,
          logID: this.logID.toString('hex'),
          logIndex,
        }),
      ),
      this.keys.privateKey,
    );
    return {
      logIndex,
      set,
      inclusionProof: {
        logIndex,
        treeSize,
        rootHash: root.toString('hex'),
        hashes: proof.map((h) => h.toString('hex')),
        checkpoint: this.checkpoint(treeSize, root, integratedTime),
      },
    };
  }

  // A signed note in Rekor v1's format; the key hint is the first 4 bytes of the log ID.
  checkpoint(treeSize, root, integratedTime) {
    const note = `${this.host} - ${this.treeID}\n${treeSize}\n${root.toString('base64')}\nTimestamp: ${
      BigInt(integratedTime) * 1_000_000_000n
    }\n`;
    const sig = crypto.sign('sha256', Buffer.from(note), this.keys.privateKey);
    const hinted = Buffer.concat([this.logID.subarray(0, 4), sig]);
    return `${note}\n\u2014 ${this.host} ${hinted.toString('base64')}\n`;
  }

  info() {
    const root = treeHash(this.leaves);
    return {
      treeSize: this.leaves.length,
      rootHash: root.toString('hex'),
      treeID: String(this.treeID),
      signedTreeHead: this.checkpoint(this.leaves.length, root, Math.floor(Date.now() / 1000)),
    };
  }
}

function leafHash(data) {
  return sha256(Buffer.from([0x00]), data);
}

function nodeHash(left, right) {
  return sha256(Buffer.from([0x01]), left, right);
}

// Largest power of two strictly smaller than n (n >= 2).
function splitPoint(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function treeHash(leaves) {
  if (leaves.length === 1) return leaves[0];
  const k = splitPoint(leaves.length);
  return nodeHash(treeHash(leaves.slice(0, k)), treeHash(leaves.slice(k)));
}

// RFC 6962 PATH(m, D[n]), ordered from the leaf upwards.
function auditPath(m, leaves) {
  if (leaves.length <= 1) return [];
  const k = splitPoint(leaves.length);
  if (m < k) return [...auditPath(m, leaves.slice(0, k)), treeHash(leaves.slice(k))];
  return [...auditPath(m - k, leaves.slice(k)), treeHash(leaves.slice(0, k))];
}

// ---- Shim 1: Rekor's canonical dsse body ---------------------------------------------------------------------
// The mock logs a dsse proposal verbatim; Rekor stores envelopeHash, payloadHash and signatures[] instead, and
// @sigstore/verify fails on the verbatim form ("signature count mismatch"). Like Rekor, refuse an envelope whose
// signature does not verify with the proposed verifier.
function canonicalDsse(proposal) {
  const { envelope, verifiers } = proposal.spec.proposedContent;
  const env = JSON.parse(envelope);
  const payload = Buffer.from(env.payload, 'base64');
  const pae = Buffer.concat([
    Buffer.from(`DSSEv1 ${Buffer.byteLength(env.payloadType)} ${env.payloadType} ${payload.length} `),
    payload,
  ]);
  const signatures = env.signatures.map((s) => {
    const verifier = verifiers.find((v) => {
      try {
        return crypto.verify('sha256', pae, verifierKey(v), Buffer.from(s.sig, 'base64'));
      } catch {
        return false;
      }
    });
    if (!verifier) throw new Error('dsse signature does not verify with any proposed verifier');
    return { signature: s.sig, verifier };
  });
  signatures.sort((a, b) => (a.signature < b.signature ? -1 : a.signature > b.signature ? 1 : 0));
  return {
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256(Buffer.from(envelope)).toString('hex') },
      payloadHash: { algorithm: 'sha256', value: sha256(payload).toString('hex') },
      signatures,
    },
  };
}

// A verifier is base64(PEM) of a certificate or a public key.
function verifierKey(b64) {
  const pem = Buffer.from(b64, 'base64').toString();
  return pem.includes('CERTIFICATE') ? new crypto.X509Certificate(pem).publicKey : crypto.createPublicKey(pem);
}

// ---- Shim 3: PEM at 64 columns --------------------------------------------------------------------------------
// The mock returns each certificate PEM on one line. sigstore-python re-encodes the certificate at 64 columns and
// compares it with the log body, so a one-line PEM logged by sigstore-js fails there.
function rewrapPem(pem) {
  const der = Buffer.from(pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''), 'base64');
  const lines = der.toString('base64').match(/.{1,64}/g);
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

// ---- Shim 4: sigstore-python's Fulcio request -----------------------------------------------------------------
// sigstore-python sends the token as "Authorization: Bearer" and the CSR as base64(PEM); the mock wants the token in
// the body and the CSR as PEM (else 400 "Constructed encoding").
function fulcioRequestBody(raw, headers) {
  const body = JSON.parse(raw);
  const auth = headers.authorization ?? '';
  if (!body.credentials && auth.startsWith('Bearer ')) {
    body.credentials = { oidcIdentityToken: auth.slice('Bearer '.length) };
  }
  const csr = body.certificateSigningRequest;
  if (typeof csr === 'string' && !csr.includes('-----BEGIN')) {
    body.certificateSigningRequest = Buffer.from(csr, 'base64').toString();
  }
  return JSON.stringify(body);
}

function writeTrustedRoot(file, { url, tlogPublic, ctlogInfo, caRoot, tsaChain }) {
  const start = validFrom;
  const root = TrustedRoot.toJSON({
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [
      {
        baseUrl: url,
        hashAlgorithm: HashAlgorithm.SHA2_256,
        publicKey: {
          rawBytes: tlogPublic,
          keyDetails: PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
          validFor: { start },
        },
        logId: { keyId: sha256(tlogPublic) },
        checkpointKeyId: undefined,
        operator: 'promote.test',
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
        uri: url,
        certChain: { certificates: [{ rawBytes: caRoot }] },
        validFor: { start },
        operator: 'promote.test',
      },
    ],
    ctlogs: [
      {
        baseUrl: url,
        hashAlgorithm: HashAlgorithm.SHA2_256,
        publicKey: {
          rawBytes: ctlogInfo.publicKey,
          keyDetails: PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
          validFor: { start },
        },
        logId: { keyId: Buffer.from(ctlogInfo.logID) },
        checkpointKeyId: undefined,
        operator: 'promote.test',
      },
    ],
    timestampAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'tsa' },
        uri: `${url}${TSA_PATH}`,
        certChain: { certificates: tsaChain.map((rawBytes) => ({ rawBytes })) },
        validFor: { start },
        operator: 'promote.test',
      },
    ],
  });
  fs.writeFileSync(file, JSON.stringify(root, null, 2));
  return root;
}

function signingConfig(url) {
  const service = (u) => ({ url: u, majorApiVersion: 1, validFor: { start: validFrom.toISOString() }, operator: 'promote.test' });
  // No TSA here: sigstore-python sends RFC 3161 DER queries, the mock TSA only speaks sigstore-js's JSON form.
  return {
    mediaType: 'application/vnd.dev.sigstore.signingconfig.v0.2+json',
    caUrls: [service(url)],
    oidcUrls: [],
    rekorTlogUrls: [service(url)],
    tsaUrls: [],
    rekorTlogConfig: { selector: 'ANY' },
    tsaConfig: { selector: 'ANY' },
  };
}

const tsaChain = [tsa.intCertificate, tsa.rootCertificate].map((c) => Buffer.from(c));

if (opts['root-only']) {
  const file = path.join(outDir, 'trusted_root.json');
  writeTrustedRoot(file, {
    url: 'http://127.0.0.1:9',
    tlogPublic: spkiDer(tlogKeys.publicKey),
    ctlogInfo: ctlog,
    caRoot: ca.rootCertificate,
    tsaChain,
  });
  process.stdout.write(`${JSON.stringify({ trusted_root: file })}\n`);
  process.exit(0);
}

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(opts.port), '127.0.0.1', resolve);
});
const { port } = server.address();
const url = `http://127.0.0.1:${port}`;

const tlog = await mock.initializeTLog(url, tlogKeys);
const log = new MerkleLog(new URL(url).host, tlogKeys);
const fulcio = mock.fulcioHandler(ca);
const rekor = mock.rekorHandler(tlog);
const timestamp = mock.tsaHandler(tsa);

async function handleRekor(raw) {
  let proposal = JSON.parse(raw);
  if (proposal.kind === 'dsse' && proposal.spec?.proposedContent) proposal = canonicalDsse(proposal);
  const res = await rekor.fn(JSON.stringify(proposal));
  if (res.statusCode !== 201) return res;
  // Keep the mock's body, time and log ID; give the entry its place in the real tree.
  const [[, entry]] = Object.entries(JSON.parse(res.response));
  const placed = log.append(Buffer.from(entry.body, 'base64'), entry.integratedTime);
  const uuid = leafHash(Buffer.from(entry.body, 'base64')).toString('hex');
  const response = {
    [uuid]: {
      ...entry,
      logIndex: placed.logIndex,
      verification: { inclusionProof: placed.inclusionProof, signedEntryTimestamp: placed.set.toString('base64') },
    },
  };
  return { statusCode: 201, response: JSON.stringify(response), contentType: 'application/json' };
}

async function handleFulcio(raw, headers) {
  const res = await fulcio.fn(Buffer.from(fulcioRequestBody(raw, headers)));
  if (res.statusCode !== 201) return res;
  const body = JSON.parse(res.response);
  const chain = body.signedCertificateEmbeddedSct.chain;
  chain.certificates = chain.certificates.map(rewrapPem);
  return { statusCode: 201, response: JSON.stringify(body), contentType: 'application/json' };
}

async function route(req, raw) {
  const p = new URL(req.url, url).pathname;
  if (req.method === 'POST' && p === FULCIO_PATH) return handleFulcio(raw.toString(), req.headers);
  if (req.method === 'POST' && p === REKOR_ENTRIES_PATH) return handleRekor(raw.toString());
  if (req.method === 'POST' && p === TSA_PATH) return timestamp.fn(raw);
  if (req.method === 'GET' && p === REKOR_LOG_PATH) {
    return { statusCode: 200, response: JSON.stringify(log.info()), contentType: 'application/json' };
  }
  return { statusCode: 404, response: JSON.stringify({ message: `no route for ${req.method} ${p}` }) };
}

server.on('request', (req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY_BYTES) req.destroy();
    else chunks.push(c);
  });
  req.on('end', async () => {
    let out;
    try {
      out = await route(req, Buffer.concat(chunks));
    } catch (e) {
      out = { statusCode: 400, response: JSON.stringify({ message: String(e?.message ?? e) }) };
    }
    res.writeHead(out.statusCode, { 'content-type': out.contentType ?? 'application/json' });
    res.end(out.response);
  });
});

const trustedRootFile = path.join(outDir, 'trusted_root.json');
const trustedRoot = writeTrustedRoot(trustedRootFile, {
  url,
  tlogPublic: spkiDer(tlogKeys.publicKey),
  ctlogInfo: ctlog,
  caRoot: ca.rootCertificate,
  tsaChain,
});
const signingConfigFile = path.join(outDir, 'signing_config.json');
fs.writeFileSync(signingConfigFile, JSON.stringify(signingConfig(url), null, 2));
const trustConfigFile = path.join(outDir, 'trust_config.json');
fs.writeFileSync(
  trustConfigFile,
  JSON.stringify(
    {
      mediaType: 'application/vnd.dev.sigstore.clienttrustconfig.v0.1+json',
      trustedRoot,
      signingConfig: signingConfig(url),
    },
    null,
    2,
  ),
);

// Exit at once: open keep-alive connections must not keep a killed test's service alive.
const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
if (opts['watch-stdin']) {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

process.stdout.write(
  `${JSON.stringify({
    url,
    fulcio_url: url,
    rekor_url: url,
    tsa_url: `${url}${TSA_PATH}`,
    trusted_root: trustedRootFile,
    trust_config: trustConfigFile,
    signing_config: signingConfigFile,
    pid: process.pid,
  })}\n`,
);
