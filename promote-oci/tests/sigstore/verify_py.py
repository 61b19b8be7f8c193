#!/usr/bin/env python3
"""Judge 2: sigstore-python 4.5.1 and securesystemslib 1.6.0, offline. Exit 0 = valid, 1 = invalid, 2 = usage.

    keyless bundle (sigstore-python's Verifier: chain, SCT, log entry, SET, signature, body consistency):
        verify_py.py --trusted-root ROOT --bundle B --digest D --san ID --issuer URL [--artifact FILE]
    keyed bundle (sigstore-python cannot verify public-key bundles: "expected certificate in bundle"):
        verify_py.py --trusted-root ROOT --bundle B --digest D --key PUB.pem [--artifact FILE] [--no-tlog]
        The signature is checked by securesystemslib (DSSE, or ECDSA over the artifact for message signatures); the
        log entry by sigstore-python's own TransparencyLogEntry checks (inclusion proof, checkpoint, SET) against
        ROOT; and the entry body must record this signature and this key.
    bare DSSE envelope (securesystemslib only):
        verify_py.py --envelope E.json --key PUB.pem [--digest D]
    legacy cosign .sig manifest (securesystemslib ECDSA over the simple-signing payload, plus the SET of the
    dev.sigstore.cosign/bundle annotation with sigstore-python's Rekor keyring when ROOT is given):
        verify_py.py --legacy-manifest M --legacy-payload BLOB [BLOB...] --key PUB.pem --digest D [--trusted-root R]

Common options: --predicate-type URI, --expect-revision REV (SLSA provenance v1 gitCommit), as in verify.mjs.
Batch: `verify_py.py --batch` reads one JSON array of the arguments above per stdin line and prints one verdict line
each (one interpreter start for many cases).
Prints one JSON line: {"verdict","judge","reason","message","signer","log_index","subject_digests","predicate_type"}.
"""

from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import UnverifiedSignatureError
from securesystemslib.exceptions import VerificationError as SslibVerificationError
from securesystemslib.signer import Signature, SSlibKey
from sigstore.errors import Error as SigstoreError
from sigstore.models import Bundle, TransparencyLogEntry, TrustedRoot
from sigstore.verify import Verifier, policy
from sigstore._internal.trust import KeyringPurpose
from sigstore_models.rekor.v1 import TransparencyLogEntry as RawLogEntry

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
COSIGN_SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
JUDGE_SIGSTORE = "sigstore-python 4.5.1"
JUDGE_SSLIB = "securesystemslib 1.6.0"


class Rejected(Exception):
    """A verdict of invalid, with a reason code shared with verify.mjs where the meaning is the same."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def load_public_key(path: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise Rejected("USAGE", f"{path} is not an EC public key")
    return key


def same_key(a: Any, b: Any) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def statement_checks(payload_type: str, payload: bytes, args: argparse.Namespace) -> dict:
    if payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise Rejected("PAYLOAD_TYPE_MISMATCH", f"payload type {payload_type}, expected {IN_TOTO_PAYLOAD_TYPE}")
    statement = json.loads(payload)
    subjects = [f"sha256:{s.get('digest', {}).get('sha256')}" for s in statement.get("subject", [])]
    facts = {"subject_digests": subjects, "predicate_type": statement.get("predicateType")}
    if args.digest and args.digest not in subjects:
        raise Rejected("SUBJECT_MISMATCH", f"statement subjects {', '.join(subjects)} do not include {args.digest}")
    if args.predicate_type and statement.get("predicateType") != args.predicate_type:
        raise Rejected(
            "PREDICATE_TYPE_MISMATCH", f"predicate type {statement.get('predicateType')}, expected {args.predicate_type}"
        )
    if args.expect_revision:
        if statement.get("predicateType") != SLSA_PROVENANCE_V1:
            raise Rejected("PREDICATE_TYPE_MISMATCH", f"expected SLSA provenance v1, got {statement.get('predicateType')}")
        deps = (statement.get("predicate") or {}).get("buildDefinition", {}).get("resolvedDependencies", [])
        revisions = [d.get("digest", {}).get("gitCommit") for d in deps if d.get("digest", {}).get("gitCommit")]
        if args.expect_revision not in revisions:
            raise Rejected("REVISION_MISMATCH", f"source revisions {revisions} do not include {args.expect_revision}")
    return facts


def sslib_key(public_key: ec.EllipticCurvePublicKey, keyid: str) -> SSlibKey:
    # securesystemslib matches signatures to keys by keyid; the key material, not the unauthenticated hint, decides.
    return SSlibKey.from_crypto(public_key, keyid=keyid or "key")


def verify_envelope(envelope_json: dict, public_key: ec.EllipticCurvePublicKey) -> Envelope:
    # from_dict pops the fields it reads: hand it a copy.
    envelope = Envelope.from_dict(copy.deepcopy(envelope_json))
    keyids = [s.keyid for s in envelope.signatures.values()] or [""]
    keys = [sslib_key(public_key, k) for k in keyids]
    try:
        envelope.verify(keys, 1)
    except (SslibVerificationError, UnverifiedSignatureError) as exc:
        raise Rejected("SIGNATURE_ERROR", f"DSSE signature: {exc}")
    return envelope


def verify_keyless(args: argparse.Namespace) -> dict:
    trusted_root = TrustedRoot.from_file(args.trusted_root)
    bundle = Bundle.from_json(Path(args.bundle).read_bytes())
    identity = policy.Identity(identity=args.san, issuer=args.issuer)
    verifier = Verifier(trusted_root=trusted_root)
    entry = json.loads(Path(args.bundle).read_text())["verificationMaterial"]["tlogEntries"][0]
    facts = {"signer": {"san": args.san, "issuer": args.issuer}, "log_index": int(entry["logIndex"])}
    if bundle._dsse_envelope is not None:
        payload_type, payload = verifier.verify_dsse(bundle, identity)
        return {**statement_checks(payload_type, payload, args), **facts}
    if not args.artifact:
        raise Rejected("USAGE", "a message-signature bundle needs --artifact (the signed manifest bytes)")
    artifact = Path(args.artifact).read_bytes()
    if args.digest and sha256(artifact) != args.digest:
        raise Rejected("SUBJECT_MISMATCH", f"artifact digest {sha256(artifact)} is not {args.digest}")
    verifier.verify_artifact(artifact, bundle, identity)
    return {"subject_digests": [sha256(artifact)], "predicate_type": None, **facts}


def verify_log_entry(entry_json: dict, trusted_root: TrustedRoot) -> TransparencyLogEntry:
    """sigstore-python's own checks of a Rekor v1 entry: inclusion proof, signed checkpoint and SET."""
    try:
        entry = TransparencyLogEntry(RawLogEntry.from_dict(entry_json))
        entry._verify(trusted_root.rekor_keyring(KeyringPurpose.VERIFY))
    except SigstoreError as exc:
        raise Rejected("TLOG_ERROR", f"log entry: {exc}")
    except ValueError as exc:
        raise Rejected("MALFORMED_BUNDLE", f"log entry: {exc}")
    return entry


def body_verifier_matches(b64_pem: str, public_key: ec.EllipticCurvePublicKey) -> bool:
    try:
        logged = serialization.load_pem_public_key(base64.b64decode(b64_pem))
    except ValueError:
        return False
    return same_key(logged, public_key)


def verify_keyed(args: argparse.Namespace) -> dict:
    public_key = load_public_key(args.key)
    raw = json.loads(Path(args.bundle).read_text())
    material = raw["verificationMaterial"]
    if "publicKey" not in material:
        raise Rejected("UNTRUSTED_SIGNER_ERROR", "bundle is not signed with a public key")
    entries = material.get("tlogEntries") or []
    facts: dict[str, Any] = {"signer": {"key_hint": material["publicKey"].get("hint")}, "log_index": None}

    if "dsseEnvelope" in raw:
        envelope = verify_envelope(raw["dsseEnvelope"], public_key)
        facts.update(statement_checks(envelope.payload_type, envelope.payload, args))
        payload, sigs = envelope.payload, [s["sig"] for s in raw["dsseEnvelope"]["signatures"]]
    else:
        if not args.artifact:
            raise Rejected("USAGE", "a message-signature bundle needs --artifact (the signed manifest bytes)")
        artifact = Path(args.artifact).read_bytes()
        if args.digest and sha256(artifact) != args.digest:
            raise Rejected("SUBJECT_MISMATCH", f"artifact digest {sha256(artifact)} is not {args.digest}")
        sig_b64 = raw["messageSignature"]["signature"]
        try:
            sslib_key(public_key, "key").verify_signature(
                Signature("key", base64.b64decode(sig_b64).hex()), artifact
            )
        except (SslibVerificationError, UnverifiedSignatureError) as exc:
            raise Rejected("SIGNATURE_ERROR", f"message signature: {exc}")
        facts.update({"subject_digests": [sha256(artifact)], "predicate_type": None})
        payload, sigs = artifact, [sig_b64]

    if not entries:
        if args.no_tlog:
            return facts
        raise Rejected("TLOG_ERROR", "bundle has no transparency-log entry")
    trusted_root = TrustedRoot.from_file(args.trusted_root)
    entry = verify_log_entry(entries[0], trusted_root)
    body = json.loads(entry._inner.canonicalized_body)
    spec = body.get("spec", {})
    if body.get("kind") == "dsse":
        logged_sigs = [s["signature"] for s in spec.get("signatures", [])]
        logged_keys = [s["verifier"] for s in spec.get("signatures", [])]
        if spec.get("payloadHash", {}).get("value") != hashlib.sha256(payload).hexdigest():
            raise Rejected("TLOG_BODY_ERROR", "log entry payload hash does not match the envelope")
    elif body.get("kind") == "hashedrekord":
        logged_sigs = [spec.get("signature", {}).get("content")]
        logged_keys = [spec.get("signature", {}).get("publicKey", {}).get("content")]
        if spec.get("data", {}).get("hash", {}).get("value") != hashlib.sha256(payload).hexdigest():
            raise Rejected("TLOG_BODY_ERROR", "log entry digest does not match the signed artifact")
    else:
        raise Rejected("TLOG_BODY_ERROR", f"unsupported log entry kind {body.get('kind')}")
    if logged_sigs != sigs:
        raise Rejected("TLOG_BODY_ERROR", "log entry signature does not match the bundle")
    if not all(body_verifier_matches(k, public_key) for k in logged_keys):
        raise Rejected("TLOG_BODY_ERROR", "log entry verifier is not the given key")
    facts["log_index"] = int(entries[0]["logIndex"])
    return facts


def verify_bare_envelope(args: argparse.Namespace) -> dict:
    envelope = verify_envelope(json.loads(Path(args.envelope).read_text()), load_public_key(args.key))
    facts = statement_checks(envelope.payload_type, envelope.payload, args)
    return {**facts, "signer": {"keyids": [s.keyid for s in envelope.signatures.values()]}}


def verify_legacy(args: argparse.Namespace) -> dict:
    public_key = load_public_key(args.key)
    manifest = json.loads(Path(args.legacy_manifest).read_text())
    payloads = {sha256(b): b for b in (Path(f).read_bytes() for f in args.legacy_payload or [])}
    failures: list[Rejected] = []
    for layer in manifest.get("layers", []):
        payload = payloads.get(layer.get("digest"))
        if payload is None:
            continue
        try:
            return verify_legacy_layer(layer, payload, public_key, args)
        except Rejected as exc:
            failures.append(exc)
    if not failures:
        raise Rejected("NO_SIGNATURE", "no layer of the manifest matches a given payload")
    raise Rejected(failures[0].reason, "; ".join(str(f) for f in failures))


def verify_legacy_layer(layer: dict, payload: bytes, public_key: ec.EllipticCurvePublicKey, args) -> dict:
    simple = json.loads(payload)
    named = simple.get("critical", {}).get("image", {}).get("docker-manifest-digest")
    if simple.get("critical", {}).get("type") != "cosign container image signature":
        raise Rejected("MALFORMED_BUNDLE", f"layer {layer['digest']} is not a cosign simple-signing payload")
    if named != args.digest:
        raise Rejected("SUBJECT_MISMATCH", f"payload names {named}, not {args.digest}")
    annotations = layer.get("annotations", {})
    sig_b64 = annotations.get(COSIGN_SIGNATURE_ANNOTATION)
    if not sig_b64:
        raise Rejected("MALFORMED_BUNDLE", f"layer {layer['digest']} has no {COSIGN_SIGNATURE_ANNOTATION}")
    try:
        sslib_key(public_key, "key").verify_signature(Signature("key", base64.b64decode(sig_b64).hex()), payload)
    except (SslibVerificationError, UnverifiedSignatureError) as exc:
        raise Rejected("SIGNATURE_ERROR", f"legacy signature: {exc}")
    facts: dict[str, Any] = {"subject_digests": [named], "predicate_type": None, "layer": layer["digest"]}
    rekor_json = annotations.get(COSIGN_BUNDLE_ANNOTATION)
    if not rekor_json:
        if args.no_tlog:
            return {**facts, "log_index": None}
        raise Rejected("TLOG_ERROR", f"layer {layer['digest']} has no {COSIGN_BUNDLE_ANNOTATION}")
    if not args.trusted_root:
        raise Rejected("USAGE", "--trusted-root is needed to check the legacy SET")
    rekor = json.loads(rekor_json)
    p = rekor["Payload"]
    canonical = rfc8785.dumps(
        {"body": p["body"], "integratedTime": p["integratedTime"], "logID": p["logID"], "logIndex": p["logIndex"]}
    )
    keyring = TrustedRoot.from_file(args.trusted_root).rekor_keyring(KeyringPurpose.VERIFY)
    try:
        keyring.verify(key_id=bytes.fromhex(p["logID"]), signature=base64.b64decode(rekor["SignedEntryTimestamp"]),
                       data=canonical)
    except SigstoreError as exc:
        raise Rejected("TLOG_ERROR", f"legacy SET: {exc}")
    body = json.loads(base64.b64decode(p["body"]))
    spec = body.get("spec", {})
    if (
        body.get("kind") != "hashedrekord"
        or spec.get("signature", {}).get("content") != sig_b64
        or spec.get("data", {}).get("hash", {}).get("value") != hashlib.sha256(payload).hexdigest()
        or not body_verifier_matches(spec.get("signature", {}).get("publicKey", {}).get("content", ""), public_key)
    ):
        raise Rejected("TLOG_BODY_ERROR", "legacy log entry does not record this payload, signature and key")
    return {**facts, "log_index": p["logIndex"]}


class UsageError(Exception):
    """Arguments that do not describe a case."""


class CaseParser(argparse.ArgumentParser):
    """An argument parser that raises instead of exiting, so that --batch can answer the next line."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def case_parser() -> CaseParser:
    p = CaseParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trusted-root")
    p.add_argument("--bundle")
    p.add_argument("--envelope")
    p.add_argument("--legacy-manifest")
    p.add_argument("--legacy-payload", nargs="+")
    p.add_argument("--digest")
    p.add_argument("--artifact")
    p.add_argument("--san")
    p.add_argument("--issuer")
    p.add_argument("--key")
    p.add_argument("--no-tlog", action="store_true")
    p.add_argument("--predicate-type")
    p.add_argument("--expect-revision")
    return p


def parse_case(argv: list[str]) -> argparse.Namespace:
    args = case_parser().parse_args(argv)
    if args.artifact and not args.digest:
        args.digest = sha256(Path(args.artifact).read_bytes())
    modes = [m for m in (args.bundle, args.envelope, args.legacy_manifest) if m]
    if len(modes) != 1:
        raise UsageError("give exactly one of --bundle, --envelope, --legacy-manifest")
    if args.bundle and not (args.trusted_root and args.digest):
        raise UsageError("--bundle needs --trusted-root and --digest (or --artifact)")
    if args.legacy_manifest and not (args.key and args.digest):
        raise UsageError("--legacy-manifest needs --key and --digest")
    if (args.envelope or args.legacy_manifest) and not args.key:
        raise UsageError("--envelope and --legacy-manifest need --key")
    if args.bundle and bool(args.key) == bool(args.san or args.issuer):
        raise UsageError("give either --key or --san and --issuer")
    if args.bundle and not args.key and not (args.san and args.issuer):
        raise UsageError("keyless policy needs --san and --issuer")
    return args


def judge(argv: list[str]) -> dict:
    """The verdict for one argument list: {"verdict", "judge", ...}; raises UsageError for bad arguments."""
    args = parse_case(argv)
    name = JUDGE_SIGSTORE if (args.bundle and not args.key) else f"{JUDGE_SSLIB} + {JUDGE_SIGSTORE} (log entry)"
    try:
        if args.envelope:
            name = JUDGE_SSLIB
            facts = verify_bare_envelope(args)
        elif args.legacy_manifest:
            facts = verify_legacy(args)
        elif args.key:
            facts = verify_keyed(args)
        else:
            facts = verify_keyless(args)
    except Rejected as exc:
        if exc.reason == "USAGE":
            raise UsageError(str(exc))
        return {"verdict": "invalid", "judge": name, "reason": exc.reason, "message": str(exc)}
    except SigstoreError as exc:
        return {"verdict": "invalid", "judge": name, "reason": classify(str(exc)), "message": str(exc)}
    except (ValueError, KeyError, TypeError) as exc:
        message = f"{type(exc).__name__}: {exc}"
        return {"verdict": "invalid", "judge": name, "reason": "MALFORMED_BUNDLE", "message": message}
    return {"verdict": "valid", "judge": name, **facts}


def batch() -> int:
    """--batch: one JSON array of arguments per stdin line, one verdict per stdout line, in order."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            out = judge(json.loads(line))
        except (UsageError, OSError, json.JSONDecodeError) as exc:
            out = {"verdict": "error", "judge": JUDGE_SIGSTORE, "message": str(exc)}
        print(json.dumps(out), flush=True)
    return 0


def main() -> int:
    argv = sys.argv[1:]
    if argv == ["--batch"]:
        return batch()
    if argv in (["-h"], ["--help"]):
        case_parser().print_help()
        return 0
    try:
        out = judge(argv)
    except (UsageError, OSError) as exc:
        print(f"verify_py.py: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out))
    return 0 if out["verdict"] == "valid" else 1


def classify(message: str) -> str:
    """Maps sigstore-python's messages onto the reason codes verify.mjs prints, where the meaning matches."""
    m = message.lower()
    if "san" in m or "oidcissuer" in m or "oidc issuer" in m or "extension" in m:
        return "UNTRUSTED_SIGNER_ERROR"
    if "certificate chain" in m or "sct" in m:
        return "CERTIFICATE_ERROR"
    if "inconsistent" in m or "do not match bundle" in m or "does not match bundle" in m:
        return "TLOG_BODY_ERROR"
    if "log entry" in m or "inclusion" in m or "checkpoint" in m:
        return "TLOG_ERROR"
    if "signature" in m:
        return "SIGNATURE_ERROR"
    return "VERIFICATION_ERROR"


if __name__ == "__main__":
    sys.exit(main())
