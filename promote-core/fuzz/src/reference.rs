//! Target `reference`: artifact references and digests.
//!
//! Input: a reference or digest text, optionally followed by a NUL and bytes to verify against it. Every
//! parse either fails with an error or yields a value that prints back to text which parses to the same
//! value; a digest verifies exactly the bytes it was computed from.

use std::str::FromStr;

use promote_core::{ArtifactRef, Digest, Error};

/// Runs one input.
pub(crate) fn run(data: &[u8]) {
    let (text, payload) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    reference(&text);
    digest(&text, payload);
}

fn reference(text: &str) {
    let Ok(parsed) = ArtifactRef::from_str(text) else { return };
    let printed = parsed.to_string();
    let again = ArtifactRef::from_str(&printed).unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) fails: {e}"));
    assert_eq!(again, parsed, "{text:?} prints as {printed:?}, which parses differently");
    assert_eq!(again.to_string(), printed);
    assert!(parsed.tag().is_some() || parsed.digest().is_some(), "{text:?}: neither tag nor digest");
    assert_eq!(parsed.name(), format!("{}/{}", parsed.registry(), parsed.repository()));
    let json = serde_json::to_string(&parsed).expect("a reference serialises");
    let back: ArtifactRef = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not read back: {e}"));
    assert_eq!(back, parsed);
    // The same repository under another tag or digest keeps its name.
    let pinned = parsed.pinned(&Digest::sha256_of(text.as_bytes()));
    assert!(pinned.same_repository(&parsed) && pinned.tag().is_none());
    assert_eq!(ArtifactRef::from_str(&pinned.to_string()).ok(), Some(pinned));
    if let Some(tag) = parsed.tag() {
        let retagged = parsed.with_tag(tag).expect("a parsed tag is a valid tag");
        assert_eq!(retagged.tag(), Some(tag));
    }
}

fn digest(text: &str, payload: &[u8]) {
    // Both the whole text and what follows an `@`, as a reference carries it.
    for candidate in [Some(text), text.split_once('@').map(|(_, digest)| digest)].into_iter().flatten() {
        let Ok(digest) = Digest::parse(candidate) else { continue };
        assert_eq!(digest.as_str(), candidate);
        assert_eq!(format!("{}:{}", digest.algorithm(), digest.hex()), candidate);
        assert!(digest.short().len() <= 12 && digest.hex().starts_with(digest.short()));
        let _ = digest.signature_tag("sig");
        let json = serde_json::to_string(&digest).expect("a digest serialises");
        assert_eq!(serde_json::from_str::<Digest>(&json).ok().as_ref(), Some(&digest));
        match digest.verify(payload) {
            Ok(()) => assert!(digest.is_verifiable() && digest.verifies(payload)),
            Err(Error::DigestMismatch { expected, actual, .. }) => {
                assert!(digest.is_verifiable());
                assert_eq!(expected, digest);
                assert_eq!(actual.algorithm(), digest.algorithm());
                assert_ne!(actual, digest);
            }
            Err(Error::NotSupported { .. }) => assert!(!digest.is_verifiable()),
            Err(other) => panic!("verify({candidate:?}) failed with {other:?}"),
        }
        if digest.is_verifiable() {
            let computed = Digest::compute(digest.algorithm(), payload).expect("a verifiable algorithm computes");
            assert!(computed.verifies(payload));
            assert_eq!(Digest::parse(computed.as_str()).ok().as_ref(), Some(&computed));
        }
    }
    let sha256 = Digest::sha256_of(payload);
    assert!(sha256.verifies(payload) && Digest::sha512_of(payload).verifies(payload));
    let mut altered = payload.to_vec();
    altered.push(0);
    assert!(!sha256.verifies(&altered));
}
