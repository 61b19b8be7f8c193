//! Content digests (`algorithm:hex`), as the OCI image spec defines them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A validated content digest such as `sha256:9f86d0…`.
///
/// `sha256` and `sha512` digests must have the exact hex length and be lowercase; other registered
/// algorithms are accepted if they follow the OCI grammar, so that a store can carry them through.
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

    /// Whether `bytes` hash to this digest. Unknown algorithms never verify.
    pub fn verifies(&self, bytes: &[u8]) -> bool {
        self.algorithm() == "sha256" && *self == Digest::sha256_of(bytes)
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
}
