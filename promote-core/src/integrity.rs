//! The optional integrity key: an HMAC-SHA256 key, kept outside promote's state, that makes the ledger's
//! chain and its checkpoint verifiable only by whoever holds it.
//!
//! Without a key, the ledger's chain is plain sha256: it finds damage and naive edits, but anyone who can
//! write the file can also recompute every hash after an edit. With a key, the hash of each new entry and of
//! the checkpoint is an HMAC under the key, so an edit (or an entry appended by someone without the key)
//! no longer verifies.

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The environment variable naming the key file that [`IntegrityKey::from_env`] reads.
pub const KEY_FILE_ENV: &str = "PROMOTE_LEDGER_KEY_FILE";

/// The shortest key accepted, in bytes.
const MIN_KEY_BYTES: usize = 16;

/// An HMAC-SHA256 key that keys the ledger's chain and checkpoint (see
/// [`FileLedgerOptions::integrity_key`](crate::FileLedgerOptions::integrity_key)).
///
/// Keep it outside the directory promote keeps its state in: whoever can write the ledger must not be able
/// to read the key. It never prints: `Debug` shows only where it came from, and no error names its bytes.
///
/// ```
/// use promote_core::IntegrityKey;
/// let key = IntegrityKey::new(b"0123456789abcdef0123456789abcdef".to_vec())?;
/// assert_eq!(key.mac(b"data").len(), 64);
/// assert!(!format!("{key:?}").contains("0123456789"));
/// # Ok::<(), promote_core::Error>(())
/// ```
#[derive(Clone)]
pub struct IntegrityKey {
    /// HMAC with the key already absorbed, cloned for each message (keying costs two sha256 blocks).
    prepared: Hmac<Sha256>,
    /// Where the key was read from, if from a file.
    source: Option<PathBuf>,
}

impl IntegrityKey {
    /// A key from its bytes. At least 16 bytes; 32 random bytes is what HMAC-SHA256 wants
    /// (`openssl rand -hex 32` gives a suitable text key).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.len() < MIN_KEY_BYTES {
            return Err(Error::invalid(
                "integrity key",
                "[redacted]",
                format!("it is {} bytes long; use at least {MIN_KEY_BYTES} (32 random bytes is best)", bytes.len()),
            ));
        }
        let prepared = Hmac::<Sha256>::new_from_slice(&bytes).expect("HMAC takes a key of any length");
        Ok(IntegrityKey { prepared, source: None })
    }

    /// The key in the file at `path`: its bytes, less trailing whitespace (so that a key written by
    /// `openssl rand -hex 32 > key` and one edited by hand are the same key).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| Error::io(path, e))?);
        let length = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |last| last + 1);
        let mut key = Self::new(&bytes[..length]).map_err(|error| match error {
            Error::InvalidInput { reason, .. } => {
                Error::invalid("integrity key file", path.display().to_string(), reason)
            }
            other => other,
        })?;
        key.source = Some(path.to_owned());
        Ok(key)
    }

    /// The key in the file that the environment variable `PROMOTE_LEDGER_KEY_FILE` names, or `None` when it
    /// is unset or empty.
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var_os(KEY_FILE_ENV) {
            Some(path) if !path.is_empty() => Self::from_file(PathBuf::from(path)).map(Some),
            _ => Ok(None),
        }
    }

    /// The file the key was read from, if it was read from one.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// HMAC-SHA256 of `data` under the key, as 64 hex digits. Start `data` with a label saying what it is
    /// (`"promote config fingerprint\n…"`), so that a tag made for one purpose cannot stand in for another.
    pub fn mac(&self, data: &[u8]) -> String {
        hex::encode(self.tag(&[data]))
    }

    /// The HMAC of `parts` joined.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.prepared.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `hex_tag` (64 hex digits) is the HMAC of `parts` joined, compared in constant time.
    pub(crate) fn verifies(&self, parts: &[&[u8]], hex_tag: &[u8]) -> bool {
        let mut tag = [0u8; 32];
        if hex::decode_to_slice(hex_tag, &mut tag).is_err() {
            return false;
        }
        let mut mac = self.prepared.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(&tag).is_ok()
    }
}

impl fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntegrityKey").field("source", &self.source).field("key", &"[redacted]").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_never_printed_and_macs_are_the_standard_hmac() {
        // RFC 4231 test case 2 uses a 4-byte key, below our minimum; this is case 1 with a 20-byte key.
        let key = IntegrityKey::new(vec![0x0b; 20]).unwrap();
        assert_eq!(key.mac(b"Hi There"), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
        assert!(key.verifies(&[b"Hi ", b"There"], key.mac(b"Hi There").as_bytes()));
        assert!(!key.verifies(&[b"Hi There!"], key.mac(b"Hi There").as_bytes()));
        assert!(!key.verifies(&[b"Hi There"], b"not hex"));
        let shown = format!("{key:?}");
        assert!(shown.contains("[redacted]") && !shown.contains("11, 11"), "{shown}");
    }

    #[test]
    fn short_keys_are_refused_without_showing_them() {
        let error = IntegrityKey::new(b"hunter2".to_vec()).unwrap_err();
        assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
        assert!(!error.to_string().contains("hunter2") && !format!("{error:?}").contains("hunter2"), "{error}");
    }

    #[test]
    fn a_key_file_loses_its_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        let from_file = IntegrityKey::from_file(&path).unwrap();
        let direct = IntegrityKey::new(b"0123456789abcdef0123456789abcdef".to_vec()).unwrap();
        assert_eq!(from_file.mac(b"x"), direct.mac(b"x"));
        assert_eq!(from_file.source(), Some(path.as_path()));
        std::fs::write(&path, "short\n").unwrap();
        let error = IntegrityKey::from_file(&path).unwrap_err();
        assert!(error.to_string().contains(&path.display().to_string()) && !error.to_string().contains("short"));
    }
}
