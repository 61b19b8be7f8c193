//! The file ledger's checkpoint: its [`LedgerSummary`] as of one entry, kept in `<ledger>.checkpoint` so that
//! opening a large ledger does not parse its whole history.
//!
//! It is a cache. It names the entry it was taken at (sequence number, hash, and where that line ends), is
//! used only if that exact line is in the ledger, carries a sha256 of its own body, and is ignored (and
//! later rewritten) when anything about it does not hold. Deleting it is always safe. It is written to a
//! temporary file and renamed into place, and not fsynced: a checkpoint lost in a crash costs one slower open.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::summary::LedgerSummary;

/// Names the layout of the header and of the summary's serialised form; change it when either changes, so
/// that an older checkpoint is ignored rather than misread.
const FORMAT: &str = "promote-ledger-checkpoint/1";

/// The first line of a checkpoint file; the summary's JSON follows on the second.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    /// The entry the summary was taken at.
    seq: u64,
    hash: String,
    /// The byte offset just past that entry's line.
    end: u64,
    /// sha256 of the summary line.
    summary_sha256: String,
}

/// A checkpoint read back from disk.
pub(super) struct Checkpoint {
    /// The byte offset just past the last entry the summary covers.
    pub end: u64,
    /// The checkpoint file's size, which sets when the next one is due.
    pub bytes: u64,
    pub summary: LedgerSummary,
}

/// Where the checkpoint of the ledger at `ledger` lives.
pub(super) fn path_for(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

/// Reads the checkpoint beside `ledger`, if there is a sound one. One that cannot be used is logged and
/// ignored: the ledger is then folded from its first entry.
pub(super) fn load(ledger: &Path) -> Option<Checkpoint> {
    let path = path_for(ledger);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the ledger checkpoint; folding the whole ledger");
            return None;
        }
    };
    match parse(&bytes) {
        Ok(checkpoint) => Some(checkpoint),
        Err(reason) => {
            tracing::warn!(path = %path.display(), reason, "ignoring the ledger checkpoint; folding the whole ledger");
            None
        }
    }
}

fn parse(bytes: &[u8]) -> Result<Checkpoint, String> {
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or("it has no header line")?;
    let header: Header =
        serde_json::from_slice(&bytes[..newline]).map_err(|error| format!("its header does not parse: {error}"))?;
    if header.format != FORMAT {
        return Err(format!("it is in format {:?}, not {FORMAT:?}", header.format));
    }
    let body = bytes[newline + 1..].strip_suffix(b"\n").ok_or("it is cut short")?;
    if hex::encode(Sha256::digest(body)) != header.summary_sha256 {
        return Err("its summary does not match its hash".into());
    }
    let summary: LedgerSummary =
        serde_json::from_slice(body).map_err(|error| format!("its summary does not parse: {error}"))?;
    if summary.head_seq() != header.seq || summary.head_hash() != header.hash {
        return Err("its summary is not at the entry its header names".into());
    }
    Ok(Checkpoint { end: header.end, bytes: bytes.len() as u64, summary })
}

/// Writes `summary`, taken at the entry whose line ends at byte `end`, as the checkpoint beside `ledger`.
/// Returns the checkpoint's size.
pub(super) fn store(ledger: &Path, end: u64, summary: &LedgerSummary) -> std::io::Result<u64> {
    // Several handles (and processes) may write at once; each writes its own temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let body = serde_json::to_vec(summary).map_err(std::io::Error::other)?;
    let header = Header {
        format: FORMAT.to_owned(),
        seq: summary.head_seq(),
        hash: summary.head_hash().to_owned(),
        end,
        summary_sha256: hex::encode(Sha256::digest(&body)),
    };
    let mut bytes = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&body);
    bytes.push(b'\n');

    let path = path_for(ledger);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}-{}.tmp", std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed)));
    let temporary = PathBuf::from(temporary);
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(&bytes))
        .and_then(|()| std::fs::rename(&temporary, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map(|()| bytes.len() as u64)
}
