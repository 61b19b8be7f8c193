//! The file ledger: one JSON line per entry, appended under an OS file lock and fsynced.
//!
//! Each line carries its own hash and the hash of the line before, so a reader verifies every line it
//! reads. A last line without its newline is a torn write (a crash mid-append): it is reported as
//! [`Error::LedgerCorrupt`], never dropped silently; [`FileLedger::recover`] sets it aside on request.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{ChainTip, Ledger, LedgerCapabilities, LedgerEntry, NewEntry};
use crate::error::{Error, ErrorClass, Result};

/// A durable, append-only ledger in one file, safe for several processes.
#[derive(Debug, Clone)]
pub struct FileLedger {
    path: Arc<PathBuf>,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    tip: ChainTip,
    /// Byte offset of each verified line: `offsets[i]` is where entry `i + 1` starts.
    offsets: Vec<u64>,
    /// Bytes verified so far.
    end: u64,
    /// What `open` parsed, handed to the first full read so that opening parses the file once.
    opened: Option<Vec<LedgerEntry>>,
}

/// What [`FileLedger::recover`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Entries kept (all verified).
    pub entries: u64,
    /// Bytes of torn tail set aside (0 if the file was whole).
    pub torn_bytes: u64,
    /// Where the torn bytes were saved, if there were any.
    pub saved_to: Option<PathBuf>,
}

impl FileLedger {
    /// Opens (or creates) the ledger at `path` and verifies every entry in it.
    ///
    /// A torn last record or a broken chain is [`Error::LedgerCorrupt`] naming the line.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let ledger = FileLedger { path: Arc::new(path), state: Arc::default() };
        let this = ledger.clone();
        blocking(move || {
            if let Some(parent) = this.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let mut file = this.open_file()?;
            file.lock_shared().map_err(|e| Error::io(this.path.as_ref(), e))?;
            let mut state = this.state.lock().expect("ledger poisoned");
            let entries = this.scan(&mut file, &mut state, 0)?;
            state.opened = Some(entries);
            Ok(())
        })
        .await?;
        Ok(ledger)
    }

    /// The ledger's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Verifies the file and, if its last record is torn, moves the torn bytes to `<path>.torn-<offset>`
    /// and truncates the file to its last whole record. A broken chain *before* the tail is not repaired:
    /// that is tampering or disk damage, and it stays an error.
    pub async fn recover(path: impl Into<PathBuf>) -> Result<Recovery> {
        let path = path.into();
        blocking(move || {
            let mut file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
            file.lock().map_err(|e| Error::io(&path, e))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(|e| Error::io(&path, e))?;
            let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            // Verify what is whole before touching anything.
            let probe = FileLedger { path: Arc::new(path.clone()), state: Arc::default() };
            let mut state = State::default();
            probe.verify_lines(&bytes[..whole], 0, &mut state, u64::MAX)?;
            let torn = &bytes[whole..];
            let saved_to = if torn.is_empty() {
                None
            } else {
                let aside = PathBuf::from(format!("{}.torn-{whole}", path.display()));
                std::fs::write(&aside, torn).map_err(|e| Error::io(&aside, e))?;
                file.set_len(whole as u64).map_err(|e| Error::io(&path, e))?;
                file.sync_all().map_err(|e| Error::io(&path, e))?;
                Some(aside)
            };
            Ok(Recovery { entries: state.tip.seq(), torn_bytes: torn.len() as u64, saved_to })
        })
        .await
    }

    fn open_file(&self) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(self.path.as_ref())
            .map_err(|e| Error::io(self.path.as_ref(), e))
    }

    /// Reads and verifies everything past `state.end`, returning the entries whose seq is above `collect_after`.
    fn scan(&self, file: &mut File, state: &mut State, collect_after: u64) -> Result<Vec<LedgerEntry>> {
        let start = state.end;
        file.seek(SeekFrom::Start(start)).map_err(|e| Error::io(self.path.as_ref(), e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| Error::io(self.path.as_ref(), e))?;
        if bytes.last().is_some_and(|&b| b != b'\n') {
            let whole_lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            return Err(self.corrupt(
                state.tip.seq() + whole_lines + 1,
                "the last record is torn (no end of line): a write was interrupted; \
                 FileLedger::recover sets it aside",
            ));
        }
        self.verify_lines(&bytes, start, state, collect_after)
    }

    fn verify_lines(&self, bytes: &[u8], base: u64, state: &mut State, collect_after: u64) -> Result<Vec<LedgerEntry>> {
        let first_line = state.tip.seq() + 1;
        let parsed = parse_lines(bytes).map_err(|(index, reason)| self.corrupt(first_line + index as u64, &reason))?;
        let mut collected = Vec::new();
        let mut offset = base;
        for (entry, len) in parsed {
            let line_no = state.tip.seq() + 1;
            if entry.seq != line_no {
                return Err(self.corrupt(line_no, &format!("expected record {line_no}, found {}", entry.seq)));
            }
            if entry.prev != state.tip.hash() {
                return Err(self.corrupt(line_no, "the record does not follow the one before it (hash chain broken)"));
            }
            state.offsets.push(offset);
            state.tip.advance(&entry);
            offset += len as u64;
            if entry.seq > collect_after {
                collected.push(entry);
            }
        }
        state.end = offset;
        Ok(collected)
    }

    fn corrupt(&self, line: u64, reason: &str) -> Error {
        Error::LedgerCorrupt { path: self.path.display().to_string(), line, reason: reason.to_owned() }
    }
}

/// Parses and hash-checks each newline-terminated line, returning each entry with its length in bytes,
/// or the index of the first bad line and why. Each line's check is independent of the others (the chain
/// is checked afterwards, in order), so a large read is split across threads.
fn parse_lines(bytes: &[u8]) -> std::result::Result<Vec<(LedgerEntry, usize)>, (usize, String)> {
    const PER_THREAD: usize = 4 << 20;
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from).min(bytes.len() / PER_THREAD).max(1);
    let chunk = lines.len().div_ceil(threads).max(1);
    let parse_chunk = |(number, chunk_lines): (usize, &[&[u8]])| {
        let first = number * chunk;
        chunk_lines
            .iter()
            .enumerate()
            .map(|(index, raw)| {
                let text = std::str::from_utf8(raw)
                    .map_err(|_| (first + index, "the record is not UTF-8".to_owned()))?
                    .trim_end_matches('\n');
                let entry = LedgerEntry::parse_line(text).map_err(|reason| (first + index, reason))?;
                Ok((entry, raw.len()))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
    };
    if threads == 1 {
        return parse_chunk((0, &lines));
    }
    let parts: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> =
            lines.chunks(chunk).enumerate().map(|part| scope.spawn(move || parse_chunk(part))).collect();
        handles.into_iter().map(|handle| handle.join().expect("ledger parser panicked")).collect()
    });
    let mut parsed = Vec::with_capacity(lines.len());
    for part in parts {
        parsed.extend(part?);
    }
    Ok(parsed)
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|error| Error::Backend {
        backend: "file-ledger",
        message: format!("ledger task failed: {error}"),
        class: ErrorClass::Temporary,
        source: None,
    })?
}

#[async_trait]
impl Ledger for FileLedger {
    fn capabilities(&self) -> LedgerCapabilities {
        LedgerCapabilities::durable_shared()
    }

    async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<LedgerEntry>> {
        let this = self.clone();
        blocking(move || {
            let mut file = this.open_file()?;
            file.lock().map_err(|e| Error::io(this.path.as_ref(), e))?;
            let mut state = this.state.lock().expect("ledger poisoned");
            // Another process may have appended since we last looked.
            this.scan(&mut file, &mut state, u64::MAX)?;
            state.opened = None;
            let sealed = state.tip.seal(entries)?;
            let mut buffer = String::new();
            for (_, line) in &sealed {
                buffer.push_str(line);
                buffer.push('\n');
            }
            let written = file.write_all(buffer.as_bytes()).and_then(|()| file.sync_data());
            if let Err(error) = written {
                // Leave no partial batch behind: cut the file back to where it was.
                let _ = file.set_len(state.end);
                return Err(Error::io(this.path.as_ref(), error));
            }
            let mut offset = state.end;
            let mut recorded = Vec::with_capacity(sealed.len());
            for (entry, line) in sealed {
                state.offsets.push(offset);
                offset += line.len() as u64 + 1;
                state.tip.advance(&entry);
                recorded.push(entry);
            }
            state.end = offset;
            Ok(recorded)
        })
        .await
    }

    async fn read_since(&self, after: u64) -> Result<Vec<LedgerEntry>> {
        let this = self.clone();
        blocking(move || {
            let mut file = this.open_file()?;
            file.lock_shared().map_err(|e| Error::io(this.path.as_ref(), e))?;
            let mut state = this.state.lock().expect("ledger poisoned");
            let known = state.tip.seq();
            let mut entries = Vec::new();
            if let Some(opened) = state.opened.take().filter(|_| after == 0) {
                entries = opened;
            } else if after < known {
                // Re-read what we have seen before, re-checking each line's own hash.
                let start = state.offsets[after as usize];
                let len = (state.end - start) as usize;
                let mut bytes = vec![0; len];
                file.seek(SeekFrom::Start(start)).map_err(|e| Error::io(this.path.as_ref(), e))?;
                file.read_exact(&mut bytes).map_err(|e| Error::io(this.path.as_ref(), e))?;
                for (index, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
                    let line_no = after + index as u64 + 1;
                    let text = std::str::from_utf8(raw)
                        .map_err(|_| this.corrupt(line_no, "the record is not UTF-8"))?
                        .trim_end_matches('\n');
                    entries.push(LedgerEntry::parse_line(text).map_err(|reason| this.corrupt(line_no, &reason))?);
                }
            }
            entries.extend(this.scan(&mut file, &mut state, after)?);
            Ok(entries)
        })
        .await
    }
}
