//! What every target shares: a runtime for the async APIs, the secret canary, and input splitting.

use std::future::Future;

/// The character every secret value a target plants starts with, and that the targets remove from every text
/// that is not secret (templates, keys, plain values): wherever it shows up, part of a secret leaked.
pub(crate) const SECRET_MARK: char = '\u{1F512}';

/// The start of every secret value a target plants.
pub(crate) const CANARY: &str = "\u{1F512}Cnry9Q7z";

/// Runs `future` to completion on this thread's current-thread runtime (built once per thread: a fresh
/// runtime per input would cost more than most inputs).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

/// Splits `data` at every occurrence of `separator`, at most `max` parts (the last part keeps the rest).
pub(crate) fn split<'a>(data: &'a [u8], separator: &[u8], max: usize) -> Vec<&'a [u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() + 1 < max {
        match rest.windows(separator.len()).position(|window| window == separator) {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + separator.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts
}

/// `text` without [`SECRET_MARK`], for text that is not secret.
pub(crate) fn not_secret(text: &str) -> String {
    text.replace(SECRET_MARK, "")
}

/// Panics if `text` (an error message, a masked rendering) holds any part of a secret.
pub(crate) fn assert_no_secret(text: &str, what: &str) {
    assert!(!text.contains(SECRET_MARK), "a secret value reached {what}: {text:?}");
}
