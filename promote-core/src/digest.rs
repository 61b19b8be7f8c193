//! Content digests (`algorithm:hex`), as the OCI image spec defines them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};

/// A validated content digest such as `sha256:9f86d0…`.
///
/// `sha256` and `sha512` digests must have the exact hex length and be lowercase; other registered
/// algorithms are accepted if they follow the OCI grammar, so that a store can carry them through. Only
/// `sha256` and `sha512` can be verified: [`Digest::verify`] refuses every other algorithm rather than
/// take bytes on trust.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    value: String,
    colon: usize,
}

impl Digest {
    /// Parses and validates a digest string.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::invalid("digest", input, reason);
        let colon = input.find(':').ok_or_else(|| invalid("expected `algorithm:hex`"))?;
        let (algorithm, encoded) = (&input[..colon], &input[colon + 1..]);
        let algorithm_ok = !algorithm.is_empty()
            && algorithm
                .split(['+', '.', '_', '-'])
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if !algorithm_ok {
            return Err(invalid("the algorithm must be lowercase letters and digits"));
        }
        let hex_len = match algorithm {
            "sha256" => Some(64),
            "sha512" => Some(128),
            _ => None,
        };
        match hex_len {
            Some(len) => {
                if encoded.len() != len {
                    return Err(invalid(&format!("{algorithm} needs {len} hex characters, got {}", encoded.len())));
                }
                if !encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return Err(invalid("the hex part must be lowercase hexadecimal"));
                }
            }
            None => {
                if encoded.is_empty()
                    || !encoded.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
                {
                    return Err(invalid("the encoded part has characters outside [a-zA-Z0-9=_-]"));
                }
            }
        }
        Ok(Digest { value: input.to_owned(), colon })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        let value = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        Digest { value, colon: 6 }
    }

    /// The sha512 digest of `bytes`.
    pub fn sha512_of(bytes: &[u8]) -> Self {
        let value = format!("sha512:{}", hex::encode(Sha512::digest(bytes)));
        Digest { value, colon: 6 }
    }

    /// The digest of `bytes` under `algorithm` (`sha256` or `sha512`); any other algorithm is
    /// [`Error::NotSupported`].
    pub fn compute(algorithm: &str, bytes: &[u8]) -> Result<Self> {
        let mut hasher = DigestHasher::new(algorithm)?;
        hasher.update(bytes);
        Ok(hasher.finish())
    }

    /// Whether this digest's algorithm can be verified (`sha256` and `sha512`).
    pub fn is_verifiable(&self) -> bool {
        VERIFIABLE.contains(&self.algorithm())
    }

    /// Checks that `bytes` hash to this digest, under this digest's own algorithm.
    ///
    /// A mismatch is [`Error::DigestMismatch`], whose `reference` is this digest (callers that know the
    /// artifact replace it with its reference) and whose `actual` is the digest of `bytes` under the same
    /// algorithm. An algorithm that cannot be verified is [`Error::NotSupported`]: bytes are never taken
    /// on trust.
    pub fn verify(&self, bytes: &[u8]) -> Result<()> {
        let actual = Digest::compute(self.algorithm(), bytes)?;
        if actual == *self {
            return Ok(());
        }
        Err(Error::DigestMismatch { reference: self.value.clone(), expected: self.clone(), actual })
    }

    /// Whether `bytes` hash to this digest. Algorithms that cannot be verified never verify.
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        self.verify(bytes).is_ok()
    }

    /// The algorithm, e.g. `sha256`.
    pub fn algorithm(&self) -> &str {
        &self.value[..self.colon]
    }

    /// The encoded (hex) part.
    pub fn hex(&self) -> &str {
        &self.value[self.colon + 1..]
    }

    /// The full `algorithm:hex` string.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The first 12 hex characters, for display.
    pub fn short(&self) -> &str {
        let hex = self.hex();
        &hex[..hex.len().min(12)]
    }

    /// The cosign-style tag that carries this digest's signatures (`sha256-<hex>.sig`), given a suffix.
    pub fn signature_tag(&self, suffix: &str) -> String {
        format!("{}-{}.{suffix}", self.algorithm(), self.hex())
    }
}

/// The algorithms [`Digest::verify`] and [`DigestHasher`] can compute.
const VERIFIABLE: [&str; 2] = ["sha256", "sha512"];

fn unsupported(algorithm: &str) -> Error {
    Error::NotSupported {
        backend: "digest",
        operation: format!("verifying `{algorithm}` digests (only sha256 and sha512 are verified)"),
    }
}

/// Computes a digest over bytes that arrive in pieces (a streamed blob), in the algorithm of the digest it
/// will be checked against.
///
/// ```
/// use promote_core::Digest;
/// use promote_core::digest::DigestHasher;
/// let expected = Digest::sha512_of(b"hello world");
/// let mut hasher = DigestHasher::for_digest(&expected)?;
/// hasher.update(b"hello ");
/// hasher.update(b"world");
/// assert_eq!(hasher.finish(), expected);
/// # Ok::<(), promote_core::Error>(())
/// ```
#[derive(Clone)]
pub struct DigestHasher(HasherState);

#[derive(Clone)]
enum HasherState {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl DigestHasher {
    /// A hasher for `algorithm` (`sha256` or `sha512`); any other algorithm is [`Error::NotSupported`].
    pub fn new(algorithm: &str) -> Result<Self> {
        match algorithm {
            "sha256" => Ok(DigestHasher(HasherState::Sha256(Sha256::new()))),
            "sha512" => Ok(DigestHasher(HasherState::Sha512(Sha512::new()))),
            other => Err(unsupported(other)),
        }
    }

    /// A hasher in the algorithm of `digest`.
    pub fn for_digest(digest: &Digest) -> Result<Self> {
        Self::new(digest.algorithm())
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            HasherState::Sha256(hasher) => hasher.update(bytes),
            HasherState::Sha512(hasher) => hasher.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.0 {
            HasherState::Sha256(hasher) => ("sha256", hex::encode(hasher.finalize())),
            HasherState::Sha512(hasher) => ("sha512", hex::encode(hasher.finalize())),
        };
        Digest { value: format!("{algorithm}:{hex}"), colon: algorithm.len() }
    }
}

impl fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match self.0 {
            HasherState::Sha256(_) => "sha256",
            HasherState::Sha512(_) => "sha512",
        };
        write!(f, "DigestHasher({algorithm})")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.value)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256() {
        let d = Digest::sha256_of(b"hello");
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(d.verifies(b"hello"));
        assert!(!d.verifies(b"hello!"));
        assert_eq!(d.signature_tag("sig"), format!("sha256-{}.sig", d.hex()));
    }

    #[test]
    fn refuses_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("SHA256:{}", "a".repeat(64)),
            "md5:",
            "bad algo:abc",
        ] {
            let error = Digest::parse(bad).unwrap_err();
            assert!(matches!(error, Error::InvalidInput { what: "digest", .. }), "{bad}: {error}");
        }
        assert!(Digest::parse("blake3:abcDEF_-=").is_ok());
    }

    #[test]
    fn sha512_digests_are_verified() {
        let d = Digest::sha512_of(b"hello");
        assert_eq!(d.algorithm(), "sha512");
        assert_eq!(d.hex().len(), 128);
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(d.verifies(b"hello"));
        d.verify(b"hello").unwrap();
        match d.verify(b"forged") {
            Err(Error::DigestMismatch { expected, actual, .. }) => {
                assert_eq!(expected, d);
                assert_eq!(actual, Digest::sha512_of(b"forged"), "the actual digest is in the same algorithm");
            }
            other => panic!("expected a mismatch, got {other:?}"),
        }
        // A well-formed sha512 digest of other bytes: before, this "verified" because only sha256 was checked.
        let pinned = Digest::parse(&format!("sha512:{}", "0".repeat(128))).unwrap();
        assert!(!pinned.verifies(b"hello"));
    }

    #[test]
    fn unknown_algorithms_fail_closed() {
        let blake = Digest::parse("blake3:abcdef").unwrap();
        assert!(!blake.is_verifiable());
        assert!(!blake.verifies(b"anything"));
        let error = blake.verify(b"anything").unwrap_err();
        assert!(matches!(error, Error::NotSupported { .. }), "{error}");
        assert!(error.to_string().contains("blake3"), "{error}");
        assert!(matches!(DigestHasher::new("md5"), Err(Error::NotSupported { .. })));
    }

    #[test]
    fn the_hasher_streams_both_algorithms() {
        for expected in [Digest::sha256_of(b"abcdef"), Digest::sha512_of(b"abcdef")] {
            let mut hasher = DigestHasher::for_digest(&expected).unwrap();
            for piece in [&b"ab"[..], b"", b"cdef"] {
                hasher.update(piece);
            }
            assert_eq!(hasher.finish(), expected);
            assert_eq!(Digest::compute(expected.algorithm(), b"abcdef").unwrap(), expected);
        }
    }
}
