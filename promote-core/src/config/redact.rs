//! [`Redactor`]: replaces every known secret value in text that is about to be shown (a gate's captured
//! output, a response body) with `[redacted]`.

use std::fmt;
use std::ops::Range;

use memchr::memmem;

use super::secret::{REDACTED, Secret};

/// The secret values a pipeline knows, for masking them in text that leaves the process.
///
/// Every occurrence of every secret is masked, overlapping and repeated ones included: the bytes covered
/// by any occurrence are replaced, and a run of covered bytes becomes one `[redacted]`. Empty secrets are
/// ignored.
///
/// When only part of a text is shown (the tail of a program's output, the head of a response body), call
/// [`Redactor::redact_window`] with [`Redactor::margin`] bytes of context beyond each cut: a secret that
/// straddles a cut is then still recognised, and no fragment of it is shown.
///
/// ```
/// use promote_core::Secret;
/// use promote_core::config::Redactor;
/// let redactor = Redactor::new([Secret::new("hunter2"), Secret::new("s3cr3t")]);
/// assert_eq!(redactor.redact("user=ci password=hunter2 token=s3cr3t"), "user=ci password=[redacted] token=[redacted]");
/// // A secret cut by the window is masked, not shown in part.
/// let text = b"...hunter2 tail";
/// assert_eq!(redactor.redact_window(text, 6..text.len()), "[redacted] tail");
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    /// Distinct, non-empty, longest first.
    secrets: Vec<Secret>,
}

impl Redactor {
    /// A redactor for these secrets.
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        let mut redactor = Redactor::default();
        redactor.extend(secrets);
        redactor
    }

    /// A redactor for every secret alive in this process: the config values loaded, the registry and
    /// cloud credentials held, the gates' own secrets. What a pipeline knows, without anyone listing it.
    ///
    /// ```
    /// use promote_core::Secret;
    /// use promote_core::config::Redactor;
    /// let token = Secret::new("tok-8f2b1c-live");
    /// assert_eq!(Redactor::live().redact("token=tok-8f2b1c-live"), "token=[redacted]");
    /// drop(token);
    /// assert_eq!(Redactor::live().redact("tok-8f2b1c-live"), "tok-8f2b1c-live", "a dropped secret is forgotten");
    /// ```
    pub fn live() -> Self {
        Redactor::new(Secret::live())
    }

    /// Adds secrets.
    pub fn extend(&mut self, secrets: impl IntoIterator<Item = Secret>) {
        for secret in secrets {
            if !secret.expose().is_empty() && !self.secrets.contains(&secret) {
                self.secrets.push(secret);
            }
        }
        self.secrets.sort_by_key(|secret| std::cmp::Reverse(secret.expose().len()));
    }

    /// This redactor's secrets together with `other`'s.
    pub fn merged(&self, other: &Redactor) -> Redactor {
        let mut merged = self.clone();
        merged.extend(other.secrets.iter().cloned());
        merged
    }

    /// How many distinct secrets it masks.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether it masks nothing.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The length in bytes of the longest secret: the context to keep beyond a cut so that
    /// [`Redactor::redact_window`] recognises a secret lying across it.
    pub fn margin(&self) -> usize {
        self.secrets.first().map_or(0, |secret| secret.expose().len())
    }

    /// `text` with every secret replaced by `[redacted]`.
    pub fn redact(&self, text: &str) -> String {
        if self.secrets.is_empty() {
            return text.to_owned();
        }
        self.redact_window(text.as_bytes(), 0..text.len())
    }

    /// The bytes of `shown` (a range of `bytes`) as text, with every secret replaced by `[redacted]`.
    /// Secrets are looked for in the whole of `bytes`, so one that starts or ends outside `shown` is masked
    /// where it overlaps it. Invalid UTF-8 is replaced, as [`String::from_utf8_lossy`] does. A range
    /// outside `bytes` is clamped to it.
    pub fn redact_window(&self, bytes: &[u8], shown: Range<usize>) -> String {
        let end = shown.end.min(bytes.len());
        let start = shown.start.min(end);
        let masked = self.mask(bytes);
        let mut out = Vec::with_capacity(end - start);
        let mut index = start;
        while index < end {
            if masked[index] {
                out.extend_from_slice(REDACTED.as_bytes());
                while index < end && masked[index] {
                    index += 1;
                }
            } else {
                out.push(bytes[index]);
                index += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Which bytes belong to an occurrence of a secret, overlapping occurrences included.
    fn mask(&self, bytes: &[u8]) -> Vec<bool> {
        let mut masked = vec![false; bytes.len()];
        for secret in &self.secrets {
            let needle = secret.expose().as_bytes();
            let finder = memmem::Finder::new(needle);
            let (mut from, mut covered) = (0, 0);
            while let Some(found) = finder.find(&bytes[from..]) {
                let at = from + found;
                let end = at + needle.len();
                // Only the part the previous occurrence did not cover: long runs stay linear.
                masked[at.max(covered)..end].fill(true);
                covered = end;
                // Step by one byte, not by the secret's length, so overlapping occurrences are found too.
                from = at + 1;
                if from >= bytes.len() {
                    break;
                }
            }
        }
        masked
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secrets: &[&str]) -> Redactor {
        Redactor::new(secrets.iter().map(|s| Secret::new(*s)))
    }

    #[test]
    fn every_occurrence_is_masked_overlaps_included() {
        let r = redactor(&["aa", "ab"]);
        assert_eq!(r.redact("x=aaaa aaa; y=ab"), "x=[redacted] [redacted]; y=[redacted]");
        // Overlapping occurrences of one secret leave nothing of it behind.
        assert_eq!(redactor(&["aba"]).redact("ababa!"), "[redacted]!");
        // Two different secrets that overlap are one masked run.
        assert_eq!(redactor(&["abc", "cde"]).redact("-abcde-"), "-[redacted]-");
        assert_eq!(redactor(&["tok"]).redact("tok tok tok"), "[redacted] [redacted] [redacted]");
    }

    #[test]
    fn empty_and_repeated_secrets_are_ignored() {
        let r = Redactor::new([Secret::new(""), Secret::new("x1"), Secret::new("x1")]);
        assert_eq!(r.len(), 1);
        assert_eq!(r.redact("ax1b"), "a[redacted]b");
        assert!(Redactor::default().is_empty());
        assert_eq!(Redactor::default().redact("plain"), "plain");
        assert_eq!(Redactor::default().margin(), 0);
    }

    #[test]
    fn a_window_never_shows_a_fragment_of_a_cut_secret() {
        let secret = "abcdefghijklmnopqrstuvwxyz";
        let r = redactor(&[secret]);
        assert_eq!(r.margin(), secret.len());
        let text = format!("0123{secret}4567");
        let bytes = text.as_bytes();
        // Every cut through the secret, on either side of the window.
        for cut in 4..4 + secret.len() {
            let tail = r.redact_window(bytes, cut..bytes.len());
            assert_eq!(tail, "[redacted]4567", "tail from {cut}");
            let head = r.redact_window(bytes, 0..cut + 1);
            assert_eq!(head, "0123[redacted]", "head to {}", cut + 1);
        }
        assert_eq!(r.redact_window(bytes, 0..100), "0123[redacted]4567", "a range past the end is clamped");
    }

    #[test]
    fn merged_redactors_mask_both_sets() {
        let merged = redactor(&["one"]).merged(&redactor(&["two", "one"]));
        assert_eq!(merged.len(), 2);
        assert_eq!(merged.redact("one two three"), "[redacted] [redacted] three");
    }

    #[test]
    fn it_never_prints_a_secret() {
        let r = redactor(&["hunter2"]);
        assert_eq!(format!("{r:?}"), "Redactor(1 secrets)");
    }
}
