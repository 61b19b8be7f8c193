#!/usr/bin/env python3
"""Fixture signer built on sigstore-python: keyless `sign_dsse` against the loopback mock.

    .venv/bin/python sign_py.py --trust-config TRUST_CONFIG.json --san ID --issuer URL --digest sha256:HEX \
        --out BUNDLE.json [--predicate-type URI] [--predicate JSON] [--slsa-revision REV [--slsa-repo URI]] \
        [--subject-digest sha256:HEX] [--subject-name NAME]

TRUST_CONFIG.json is the `trust_config` file that mock-sigstore.mjs writes (trusted root + signing config pointing at
the mock). The identity token is an HS256 JWT with a throw-away key: Fulcio's mock and sigstore-python read its
claims without checking a signature. Prints one JSON line like sign.mjs; exit 1 on a signing error, 2 on usage.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import jwt
from sigstore.dsse import StatementBuilder, Subject
from sigstore.models import ClientTrustConfig
from sigstore.oidc import IdentityToken
from sigstore.sign import SigningContext

COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"


def identity_token(san: str, issuer: str) -> IdentityToken:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": san,
        "aud": "sigstore",
        "iat": now,
        "exp": now + 600,
        "email": san,
        "email_verified": True,
    }
    return IdentityToken(jwt.encode(claims, "not-a-secret-test-only-hmac-key-32b", algorithm="HS256"))


def predicate(args: argparse.Namespace) -> tuple[str, dict]:
    if args.slsa_revision:
        body = {
            "buildDefinition": {
                "buildType": "https://promote.test/build/v1",
                "externalParameters": {"source": args.slsa_repo, "revision": args.slsa_revision},
                "resolvedDependencies": [{"uri": args.slsa_repo, "digest": {"gitCommit": args.slsa_revision}}],
            },
            "runDetails": {"builder": {"id": "https://promote.test/builder"}, "metadata": {}},
        }
        return args.predicate_type or SLSA_PROVENANCE_V1, body
    return args.predicate_type or COSIGN_SIGN_PREDICATE, json.loads(args.predicate) if args.predicate else {}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trust-config", required=True)
    p.add_argument("--san", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--digest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--predicate-type")
    p.add_argument("--predicate")
    p.add_argument("--slsa-revision")
    p.add_argument("--slsa-repo", default="git+https://git.promote.test/app")
    p.add_argument("--subject-digest")
    p.add_argument("--subject-name", default="image")
    args = p.parse_args()

    for d in (args.digest, args.subject_digest or args.digest):
        if not (d.startswith("sha256:") and len(d) == 71):
            p.error(f"not a sha256 digest: {d}")
    subject_digest = args.subject_digest or args.digest
    predicate_type, predicate_body = predicate(args)

    try:
        config = ClientTrustConfig.from_json(Path(args.trust_config).read_text())
        statement = (
            StatementBuilder()
            .subjects([Subject(name=args.subject_name, digest={"sha256": subject_digest.removeprefix("sha256:")})])
            .predicate_type(predicate_type)
            .predicate(predicate_body)
            .build()
        )
        with SigningContext.from_trust_config(config).signer(identity_token(args.san, args.issuer)) as signer:
            bundle = signer.sign_dsse(statement)
    except Exception as exc:  # every failure is reported the same way to the calling test
        print(f"sign_py.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1

    text = bundle.to_json()
    Path(args.out).write_text(text)
    out = json.loads(text)
    entry = (out["verificationMaterial"].get("tlogEntries") or [None])[0]
    print(
        json.dumps(
            {
                "bundle": args.out,
                "bundle_digest": "sha256:" + hashlib.sha256(text.encode()).hexdigest(),
                "media_type": out["mediaType"],
                "format": "dsse",
                "predicate_type": predicate_type,
                "subject_digest": subject_digest,
                "signer": {"san": args.san, "issuer": args.issuer},
                "log_index": int(entry["logIndex"]) if entry else None,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
