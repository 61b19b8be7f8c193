//! The file ledger's checkpoint: its [`LedgerSummary`] as of one entry, kept in `<ledger>.checkpoint` so that
//! opening a large ledger does not parse its whole history.
//!
//! It is a cache. It names the entry it was taken at (sequence number, hash, and where that line ends), is
//! used only if that exact line is in the ledger, and is ignored (and later rewritten) when anything about
//! it does not hold. Deleting it is always safe.
//!
//! It also carries the BLAKE3 digests of the ledger's bytes before it, one per whole 1 MiB
//! [segment](super::file::segments), taken of bytes that were checked line by line. An open compares the
//! file with those instead of hashing each line there; if any differs, the open checks every line and folds
//! the whole ledger, as without a checkpoint. It is written to a new temporary file (mode 0600) and
//! renamed into place, and not fsynced: a checkpoint lost in a crash costs one slower open.
//!
//! Without a key it carries a sha256 of its summary: that finds damage, not a doctored checkpoint whose
//! hash was recomputed, which can change what `status` shows (never which fencing tokens the ledger
//! accepts: those come from the ledger's lines). With the ledger's key it carries an HMAC of its header and
//! summary instead, and one that does not verify under the key is ignored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::file::segments::{self, SEGMENT, SegmentDigest};
use super::summary::LedgerSummary;
use crate::integrity::IntegrityKey;
use crate::state_file;

/// Names the layout of the header and of the summary's serialised form; change it when either changes, so
/// that an older checkpoint is ignored rather than misread.
const FORMAT: &str = "promote-ledger-checkpoint/2";

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
    /// The size of the segments `segments` digests.
    segment_bytes: u64,
    /// The BLAKE3 digest (hex) of each whole segment of the ledger before `end`, from its start.
    segments: Vec<String>,
    /// sha256 of the summary line, in a checkpoint written without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary_sha256: Option<String>,
    /// HMAC-SHA256 of the header's other fields and the summary line under the ledger's key, in a checkpoint
    /// written with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hmac_sha256: Option<String>,
}

/// What a keyed checkpoint's HMAC covers before its fields.
const CONTEXT: &[u8] = b"promote ledger checkpoint\n";

impl Header {
    /// The HMAC input's parts other than the summary: every field of the header but the HMAC itself.
    fn keyed_fields(&self) -> String {
        let segments = self.segments.join(",");
        format!("{}\n{}\n{}\n{}\n{}\n{segments}\n", self.format, self.seq, self.hash, self.end, self.segment_bytes)
    }
}

/// A checkpoint read back from disk, its header checked and its summary's bytes verified against the
/// header's hash, but the summary not parsed yet: parsing is the slow part, and the ledger does it while
/// its lines are being checked.
pub(super) struct Checkpoint {
    /// The byte offset just past the last entry the summary covers.
    pub end: u64,
    /// The checkpoint file's size, which sets when the next one is due.
    pub bytes: u64,
    /// The entry the summary was taken at: its number and hash.
    pub seq: u64,
    pub hash: String,
    /// The digests of the ledger's whole segments before `end`.
    pub segments: Vec<SegmentDigest>,
    /// The summary's JSON.
    body: Vec<u8>,
}

impl Checkpoint {
    /// Parses the summary; it must be at the entry the header names.
    pub(super) fn summary(&self) -> Result<LedgerSummary, String> {
        let summary: LedgerSummary =
            serde_json::from_slice(&self.body).map_err(|error| format!("its summary does not parse: {error}"))?;
        if summary.head_seq() != self.seq || summary.head_hash() != self.hash {
            return Err("its summary is not at the entry its header names".into());
        }
        Ok(summary)
    }
}

/// Where the checkpoint of the ledger at `ledger` lives.
pub(super) fn path_for(ledger: &Path) -> PathBuf {
    let mut name = ledger.as_os_str().to_owned();
    name.push(".checkpoint");
    PathBuf::from(name)
}

/// Reads the checkpoint beside `ledger`, if there is a sound one (under `key`, if given). One that cannot be
/// used is logged and ignored: the ledger is then folded from its first entry.
pub(super) fn load(ledger: &Path, key: Option<&IntegrityKey>) -> Option<Checkpoint> {
    let path = path_for(ledger);
    let read = state_file::open(&path, state_file::options().read(true)).and_then(|mut file| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map(|_| bytes).map_err(|e| crate::Error::io(&path, e))
    });
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(crate::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read the ledger checkpoint; folding the whole ledger");
            return None;
        }
    };
    match parse(&bytes, key) {
        Ok(checkpoint) => Some(checkpoint),
        Err(reason) => {
            tracing::warn!(path = %path.display(), reason, "ignoring the ledger checkpoint; folding the whole ledger");
            None
        }
    }
}

fn parse(bytes: &[u8], key: Option<&IntegrityKey>) -> Result<Checkpoint, String> {
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or("it has no header line")?;
    let header: Header =
        serde_json::from_slice(&bytes[..newline]).map_err(|error| format!("its header does not parse: {error}"))?;
    if header.format != FORMAT {
        return Err(format!("it is in format {:?}, not {FORMAT:?}", header.format));
    }
    let body = bytes[newline + 1..].strip_suffix(b"\n").ok_or("it is cut short")?;
    match (key, &header.summary_sha256, &header.hmac_sha256) {
        (None, Some(sha256), None) => {
            if hex::encode(Sha256::digest(body)) != *sha256 {
                return Err("its summary does not match its hash".into());
            }
        }
        (Some(key), None, Some(hmac)) => {
            if !key.verifies(&[CONTEXT, header.keyed_fields().as_bytes(), body], hmac.as_bytes()) {
                return Err("it does not verify under the ledger's key".into());
            }
        }
        (None, _, Some(_)) => return Err("it is keyed, and the ledger was opened without a key".into()),
        (Some(_), _, None) => return Err("it is not keyed, and the ledger is".into()),
        _ => return Err("its header carries no hash it can be checked with".into()),
    }
    if header.segment_bytes != SEGMENT {
        return Err(format!("its segments are {} bytes, not {SEGMENT}", header.segment_bytes));
    }
    let segments = segments::from_hex(&header.segments).ok_or("a segment digest is not 32 bytes of hex")?;
    if segments.len() as u64 > header.end / SEGMENT {
        return Err("it has digests of segments past the entry it was taken at".into());
    }
    Ok(Checkpoint {
        end: header.end,
        bytes: bytes.len() as u64,
        seq: header.seq,
        hash: header.hash,
        segments,
        body: body.to_vec(),
    })
}

/// Writes `summary`, taken at the entry whose line ends at byte `end`, as the checkpoint beside `ledger`
/// (keyed, with `key`), with the digests of the ledger's whole segments before `end` (checked line by line
/// when they were taken). Returns the checkpoint's size.
pub(super) fn store(
    ledger: &Path,
    end: u64,
    segments: &[SegmentDigest],
    summary: &LedgerSummary,
    key: Option<&IntegrityKey>,
) -> std::io::Result<u64> {
    debug_assert_eq!(segments.len() as u64, end / SEGMENT, "every whole segment before the end");
    // Several handles (and processes) may write at once; each writes its own temporary file.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let body = serde_json::to_vec(summary).map_err(std::io::Error::other)?;
    let mut header = Header {
        format: FORMAT.to_owned(),
        seq: summary.head_seq(),
        hash: summary.head_hash().to_owned(),
        end,
        segment_bytes: SEGMENT,
        segments: segments::to_hex(segments),
        summary_sha256: None,
        hmac_sha256: None,
    };
    match key {
        None => header.summary_sha256 = Some(hex::encode(Sha256::digest(&body))),
        Some(key) => {
            header.hmac_sha256 = Some(hex::encode(key.tag(&[CONTEXT, header.keyed_fields().as_bytes(), &body])));
        }
    }
    let mut bytes = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&body);
    bytes.push(b'\n');

    let path = path_for(ledger);
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}-{}.tmp", std::process::id(), WRITES.fetch_add(1, Ordering::Relaxed)));
    let temporary = PathBuf::from(temporary);
    // A new file, never one already there (nor a symlink planted under its name).
    let mut file = state_file::options().write(true).create_new(true).open(&temporary)?;
    let written = file.write_all(&bytes).and_then(|()| std::fs::rename(&temporary, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map(|()| bytes.len() as u64)
}

/// Removes the temporary files of checkpoints that were never renamed into place (a crash between writing
/// and renaming leaves one): those named `<ledger>.checkpoint.<pid>-<n>.tmp`, as [`store`] names them.
/// Call it only while holding the ledger's lock exclusively: every checkpoint is written under the lock, so
/// none is being written then. A symlink of that name is removed, not followed.
pub(super) fn remove_stale_temporaries(ledger: &Path) {
    let Some(name) = path_for(ledger).file_name().map(|name| name.to_string_lossy().into_owned()) else {
        return;
    };
    let dir = state_file::parent_of(ledger);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(suffix) = file_name.to_str().and_then(|f| f.strip_prefix(name.as_str())) else {
            continue;
        };
        if !is_temporary_suffix(suffix) || entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => {
                tracing::debug!(path = %entry.path().display(), "removed a stale ledger checkpoint temporary file")
            }
            Err(error) => {
                tracing::warn!(path = %entry.path().display(), %error, "cannot remove a stale checkpoint temporary file")
            }
        }
    }
}

/// Whether `suffix` is what [`store`] puts after the checkpoint's name: `.<digits>-<digits>.tmp`.
fn is_temporary_suffix(suffix: &str) -> bool {
    let Some(middle) = suffix.strip_prefix('.').and_then(|s| s.strip_suffix(".tmp")) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    middle.split_once('-').is_some_and(|(pid, n)| digits(pid) && digits(n))
}

#[cfg(test)]
mod tests {
    use super::is_temporary_suffix;

    #[test]
    fn only_our_temporary_names_count_as_ours() {
        for ours in [".12-0.tmp", ".4194305-17.tmp"] {
            assert!(is_temporary_suffix(ours), "{ours}");
        }
        for theirs in
            ["", ".tmp", ".12.tmp", ".12-.tmp", ".-1.tmp", ".12-0.tmp.bak", ".a-1.tmp", "x.12-0.tmp", ".12-0-1.tmp"]
        {
            assert!(!is_temporary_suffix(theirs), "{theirs}");
        }
    }
}
