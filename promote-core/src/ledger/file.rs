//! The file ledger: one JSON line per entry, appended under an OS file lock and fsynced.
//!
//! Each line carries its own hash and the hash of the line before, so a reader verifies every line it
//! reads. A last line without its newline is a torn write (a crash mid-append): it is reported as
//! [`Error::LedgerCorrupt`], never dropped silently; [`FileLedger::recover`] sets it aside on request.
//!
//! Opening checks every line and the whole chain, but parses only the entries after the
//! checkpoint (see `checkpoint.rs`): its summary plus those entries is what `status` reads. The first full
//! read parses the rest. Before the checkpoint, the file's bytes are checked against the checkpoint's
//! digests of them instead of line by line (see `segments.rs`), and any difference means every line is
//! checked. The fencing tokens the ledger enforces come from that walk over every line, never from the
//! checkpoint.
//!
//! With an [`IntegrityKey`], each new line's hash (and the checkpoint's) is an HMAC under the key, and every
//! line after those written before the ledger was keyed must verify under it.

mod lines;
pub(super) mod segments;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::checkpoint::{self, Checkpoint};
use super::entry::ChainLink;
use super::{ChainTip, GENESIS_HASH, Ledger, LedgerCapabilities, LedgerEntry, LedgerSummary, NewEntry};
use crate::error::{Error, ErrorClass, Result};
use crate::integrity::IntegrityKey;
use crate::state_file;
use lines::{Checked, Policy, Problem, Segments};
use segments::{SEGMENT, SegmentDigest};

/// The environment variable [`FileLedgerOptions::from_env`] reads [`FileLedgerOptions::unkeyed_until`] from.
pub const UNKEYED_UNTIL_ENV: &str = "PROMOTE_LEDGER_UNKEYED_UNTIL";

/// A durable, append-only ledger in one file, safe for several processes.
///
/// Beside the file it keeps a checkpoint, `<path>.checkpoint`: the ledger's [`LedgerSummary`] as of one
/// entry, so that opening a large ledger and asking for `status` does not parse its whole history. The
/// checkpoint is a cache: it is used only if the entry it names is in the file, and deleting it is safe.
#[derive(Debug, Clone)]
pub struct FileLedger {
    path: Arc<PathBuf>,
    options: FileLedgerOptions,
    state: Arc<Mutex<State>>,
}

/// How a [`FileLedger`] keeps its checkpoint, and the key (if any) its chain is keyed with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileLedgerOptions {
    checkpoint_every: Option<u64>,
    key: Option<Arc<IntegrityKey>>,
    unkeyed_until: u64,
}

impl Default for FileLedgerOptions {
    fn default() -> Self {
        FileLedgerOptions { checkpoint_every: Some(1 << 20), key: None, unkeyed_until: 0 }
    }
}

impl FileLedgerOptions {
    /// The defaults, with the integrity key from the file `PROMOTE_LEDGER_KEY_FILE` names (if it is set) and
    /// [`FileLedgerOptions::unkeyed_until`] from `PROMOTE_LEDGER_UNKEYED_UNTIL` (if it is set).
    /// [`FileLedger::open`] uses these.
    pub fn from_env() -> Result<Self> {
        let mut options = FileLedgerOptions { key: IntegrityKey::from_env()?.map(Arc::new), ..Self::default() };
        if let Some(value) = std::env::var_os(UNKEYED_UNTIL_ENV).filter(|v| !v.is_empty()) {
            let text = value.to_string_lossy();
            options.unkeyed_until = text
                .parse()
                .map_err(|_| Error::invalid(UNKEYED_UNTIL_ENV, text.as_ref(), "expected a number of ledger entries"))?;
        }
        Ok(options)
    }

    /// Writes a new checkpoint once `bytes` of entries (1 MiB by default) were added since the last one,
    /// and never sooner than the last checkpoint's own size, so that checkpoints cost a bounded share of
    /// what is written. `None` writes none (an existing checkpoint is still used while it matches).
    /// Writing one may read the file again, to digest the segments added since this handle last did (see
    /// [`FileLedger::open_with`]): about as long as an open that finds a checkpoint.
    pub fn checkpoint_every(mut self, bytes: Option<u64>) -> Self {
        self.checkpoint_every = bytes;
        self
    }

    /// Keys the ledger with `key`: every entry appended is sealed with HMAC-SHA256 under it, and so is the
    /// checkpoint. Opening then requires every entry (after [`FileLedgerOptions::unkeyed_until`]) to verify
    /// under the key: an entry written without it, or under another key, is [`Error::LedgerCorrupt`] at its
    /// line. A key read from a file must not be in the ledger's own directory.
    pub fn integrity_key(mut self, key: IntegrityKey) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// With a key, accepts the first `entries` entries unkeyed: those a ledger held before it was first
    /// opened with a key. Every later entry must be keyed. Set it to the ledger's entry count when you start
    /// keying an existing ledger (`wc -l` of the file); without it, such a ledger does not open under a key,
    /// because an unkeyed entry is just what someone without the key would write.
    pub fn unkeyed_until(mut self, entries: u64) -> Self {
        self.unkeyed_until = entries;
        self
    }

    fn key(&self) -> Option<&IntegrityKey> {
        self.key.as_deref()
    }
}

#[derive(Debug, Default)]
struct State {
    tip: ChainTip,
    /// Byte offset of each verified line: `offsets[i]` is where entry `i + 1` starts.
    offsets: Vec<u64>,
    /// Bytes verified so far.
    end: u64,
    /// The digests of the file's whole segments from its start, taken as they were verified; a checkpoint
    /// carries those before its end.
    segments: Vec<SegmentDigest>,
    /// Where things stand as of `tip`: folded from every entry, or from a checkpoint and the entries after it.
    summary: Arc<LedgerSummary>,
    /// The last checkpoint read or written: where the part it covers ends, and its size.
    checkpoint_end: u64,
    checkpoint_bytes: u64,
    /// What `open` parsed, handed to the first full read so that opening parses the file once.
    opened: Option<Vec<LedgerEntry>>,
    /// Whether a verified entry is keyed: no unkeyed entry may follow.
    keyed: bool,
}

/// How [`FileLedger::locked`] locks the file.
#[derive(Debug, Clone, Copy)]
enum Lock {
    Shared,
    Exclusive,
    /// Exclusive if no one else holds the lock (then no one is writing a checkpoint, and the temporary
    /// files of checkpoints that were never renamed can go), shared otherwise.
    Opening,
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
    /// Opens (or creates) the ledger at `path` and verifies every entry in it, with
    /// [`FileLedgerOptions::from_env`]: the defaults, keyed if `PROMOTE_LEDGER_KEY_FILE` names a key file.
    ///
    /// A torn last record or a broken chain is [`Error::LedgerCorrupt`] naming the line.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(path, FileLedgerOptions::from_env()?).await
    }

    /// Opens (or creates) the ledger at `path` and verifies every entry in it: each line's hash against its
    /// bytes (under the key, for keyed lines), and the chain from the first line to the last. Entries up to
    /// a checkpoint that matches the file are not parsed until something reads them, and the bytes before it
    /// are checked against its digests of them rather than line by line (any difference, and every line is
    /// checked); the first full read checks each of those lines' hashes too.
    ///
    /// The ledger's directory is created owner-only if missing, and refused ([`Error::UnsafeFile`]) if
    /// someone else may write to it; the file is created with mode 0600, and never opened through a symlink.
    ///
    /// A torn last record or a broken chain is [`Error::LedgerCorrupt`] naming the line.
    pub async fn open_with(path: impl Into<PathBuf>, options: FileLedgerOptions) -> Result<Self> {
        let path = path.into();
        let ledger = FileLedger { path: Arc::new(path), options, state: Arc::default() };
        let this = ledger.clone();
        blocking(move || this.prepare_dir()).await?;
        ledger
            .locked(Lock::Opening, |this, file, state| {
                let end = this.whole_end(file, state)?;
                match this.matching_checkpoint(file, end) {
                    Some(checkpoint) => this.verify_with_checkpoint(state, end, &checkpoint)?,
                    None => this.verify_all(state, end)?,
                }
                this.checkpoint_if_due(state);
                Ok(())
            })
            .await?;
        Ok(ledger)
    }

    /// Creates the ledger's directory if missing and refuses one that is unsafe, or a key file inside it.
    fn prepare_dir(&self) -> Result<()> {
        let dir = state_file::parent_of(&self.path);
        state_file::prepare_dir(dir)?;
        let Some(key_file) = self.options.key().and_then(IntegrityKey::source) else {
            return Ok(());
        };
        // Whoever can write the ledger's directory could replace a key kept there.
        let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let named = state_file::parent_of(key_file).canonicalize().map_err(|e| Error::io(key_file, e))?;
        let resolved = key_file.canonicalize().map_err(|e| Error::io(key_file, e))?;
        if named.starts_with(&dir) || resolved.starts_with(&dir) {
            return Err(state_file::refused(
                key_file,
                format!(
                    "the ledger's integrity key is inside the ledger's directory {}: whoever can write the \
                     ledger could replace it; keep it elsewhere",
                    dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// Writes a checkpoint of the ledger as it stands now, whatever the options say, so that the next open
    /// parses nothing. Call it after a bulk import, say.
    pub async fn checkpoint(&self) -> Result<()> {
        self.locked(Lock::Shared, |this, file, state| {
            this.scan(file, state, u64::MAX)?;
            this.write_checkpoint(state)
        })
        .await
    }

    /// Runs `work` off the async runtime with the ledger file open and locked (shared for reading, exclusive
    /// for appending) and this handle's state held.
    async fn locked<T: Send + 'static>(
        &self,
        lock: Lock,
        work: impl FnOnce(&FileLedger, &mut File, &mut State) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let this = self.clone();
        blocking(move || {
            let mut file = this.open_file()?;
            let locking = match lock {
                Lock::Shared => file.lock_shared(),
                Lock::Exclusive => file.lock(),
                Lock::Opening => match file.try_lock() {
                    Ok(()) => {
                        checkpoint::remove_stale_temporaries(&this.path);
                        Ok(())
                    }
                    Err(std::fs::TryLockError::WouldBlock) => file.lock_shared(),
                    Err(std::fs::TryLockError::Error(error)) => Err(error),
                },
            };
            locking.map_err(|e| Error::io(this.path.as_ref(), e))?;
            let mut state = this.state.lock().expect("ledger poisoned");
            work(&this, &mut file, &mut state)
        })
        .await
    }

    /// The ledger's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Verifies the file and, if its last record is torn, moves the torn bytes to `<path>.torn-<offset>`
    /// and truncates the file to its last whole record. A broken chain *before* the tail is not repaired:
    /// that is tampering or disk damage, and it stays an error. Uses [`FileLedgerOptions::from_env`].
    pub async fn recover(path: impl Into<PathBuf>) -> Result<Recovery> {
        Self::recover_with(path, FileLedgerOptions::from_env()?).await
    }

    /// [`FileLedger::recover`] with `options` (the key, for a keyed ledger). The torn bytes go to a new file
    /// (mode 0600; `<path>.torn-<offset>.1` and so on if that name is taken), never through a symlink.
    pub async fn recover_with(path: impl Into<PathBuf>, options: FileLedgerOptions) -> Result<Recovery> {
        let path = path.into();
        blocking(move || {
            state_file::check_dir(state_file::parent_of(&path))?;
            let mut file = state_file::open(&path, state_file::options().read(true).write(true))?;
            file.lock().map_err(|e| Error::io(&path, e))?;
            let (whole, length) = match lines::whole_end(&mut file, 0).map_err(|e| Error::io(&path, e))? {
                Ok(length) => (length, length),
                Err((whole, _)) => (whole, file.metadata().map_err(|e| Error::io(&path, e))?.len()),
            };
            // Verify what is whole before touching anything.
            let probe = FileLedger { path: Arc::new(path.clone()), options, state: Arc::default() };
            let mut state = State::default();
            probe.verify(&mut state, whole, 0, u64::MAX, Segments::NONE)?;
            let saved_to = if whole == length {
                None
            } else {
                let mut torn = Vec::new();
                file.seek(SeekFrom::Start(whole))
                    .and_then(|_| file.read_to_end(&mut torn))
                    .map_err(|e| Error::io(&path, e))?;
                let aside = PathBuf::from(format!("{}.torn-{whole}", path.display()));
                let (mut saved, aside) = state_file::create_beside(&aside, 100)?;
                saved.write_all(&torn).and_then(|()| saved.sync_all()).map_err(|e| Error::io(&aside, e))?;
                file.set_len(whole).map_err(|e| Error::io(&path, e))?;
                file.sync_all().map_err(|e| Error::io(&path, e))?;
                Some(aside)
            };
            Ok(Recovery { entries: state.tip.seq(), torn_bytes: length - whole, saved_to })
        })
        .await
    }

    fn open_file(&self) -> Result<File> {
        state_file::open(&self.path, state_file::options().read(true).append(true).create(true))
    }

    /// Reads and verifies everything past `state.end`, folding it into the summary and returning the
    /// entries whose seq is above `collect_after`.
    fn scan(&self, file: &mut File, state: &mut State, collect_after: u64) -> Result<Vec<LedgerEntry>> {
        let end = self.whole_end(file, state)?;
        if end == state.end {
            return Ok(Vec::new());
        }
        // What `open` parsed no longer reaches the end.
        state.opened = None;
        let covered = state.tip.seq();
        self.verify(state, end, covered, collect_after, Segments::NONE)
    }

    /// Where the whole lines past `state.end` end, refusing a torn last record.
    fn whole_end(&self, file: &mut File, state: &State) -> Result<u64> {
        match lines::whole_end(file, state.end).map_err(|e| Error::io(self.path.as_ref(), e))? {
            Ok(end) => Ok(end),
            Err((_, whole_lines)) => Err(self.corrupt(
                state.tip.seq() + whole_lines + 1,
                "the last record is torn (no end of line): a write was interrupted; \
                 FileLedger::recover sets it aside",
            )),
        }
    }

    /// The checkpoint beside the file, if the entry it names is the line that ends where it says (and, with a
    /// key, if it verifies under the key).
    fn matching_checkpoint(&self, file: &mut File, end: u64) -> Option<Checkpoint> {
        let checkpoint = checkpoint::load(&self.path, self.options.key())?;
        let anchor = (checkpoint.end <= end).then(|| lines::line_ending_at(file, checkpoint.end));
        let matches = anchor.and_then(|line| line.ok().flatten()).is_some_and(|line| {
            ChainLink::read(&line, self.options.key())
                .is_ok_and(|link| link.seq == checkpoint.seq && link.hash == checkpoint.hash.as_bytes())
        });
        if !matches {
            tracing::warn!(
                path = %self.path.display(),
                "the ledger checkpoint names an entry this ledger does not have; folding the whole ledger"
            );
        }
        matches.then_some(checkpoint)
    }

    /// Verifies the lines from `state.end` to `end`, which follow the tip, and moves the state past them.
    /// Lines up to `covered` (by the summary) are hash- and chain-checked only; later ones are also parsed
    /// and folded into the summary, and those above `collect_after` are returned. On an error the state is
    /// left as it was.
    fn verify(
        &self,
        state: &mut State,
        end: u64,
        covered: u64,
        collect_after: u64,
        segments: Segments<'_>,
    ) -> Result<Vec<LedgerEntry>> {
        let checked = self.check_after_tip(state, end, covered, segments)?;
        Ok(self.advance(state, end, checked, collect_after))
    }

    /// Verifies a whole file from its start, with no checkpoint to go by, parsing every entry.
    fn verify_all(&self, state: &mut State, end: u64) -> Result<()> {
        // The segments' digests, for the checkpoint written next.
        let segments = Segments { known: &[], compute: self.options.checkpoint_every.is_some() };
        state.opened = Some(self.verify(state, end, 0, 0, segments)?);
        Ok(())
    }

    /// [`FileLedger::verify`] of a whole file whose `checkpoint` matches it: the bytes before the checkpoint
    /// are checked against its segment digests, the checkpoint's summary is parsed on its own thread while
    /// that runs (both take time on a large ledger), and the lines after it are folded in. If the bytes
    /// differ from the digests, or the summary does not parse, the checkpoint is ignored: every line is
    /// checked and the whole ledger folded.
    fn verify_with_checkpoint(&self, state: &mut State, end: u64, checkpoint: &Checkpoint) -> Result<()> {
        let segments = Segments { known: &checkpoint.segments, compute: true };
        let (summary, checked) = std::thread::scope(|scope| {
            let parsing = scope.spawn(|| checkpoint.summary());
            let checked = self.check_after_tip(state, end, checkpoint.seq, segments);
            (parsing.join().expect("checkpoint parser panicked"), checked)
        });
        let reason = match (summary, checked) {
            (Ok(summary), Ok(checked)) => {
                state.summary = Arc::new(summary);
                (state.checkpoint_end, state.checkpoint_bytes) = (checkpoint.end, checkpoint.bytes);
                self.advance(state, end, checked, u64::MAX);
                // The checkpoint's fences are not trusted: the walk over every line found the real ones.
                let fences = state.tip.fences.iter().map(|(stage, token)| (stage.clone(), *token)).collect();
                Arc::make_mut(&mut state.summary).replace_fences(fences);
                return Ok(());
            }
            (_, Err(Failed(error))) => return Err(error),
            (_, Err(Changed)) => "the ledger's bytes before it are not the ones it was taken of".to_owned(),
            (Err(reason), Ok(_)) => reason,
        };
        tracing::warn!(
            path = %self.path.display(), reason,
            "ignoring the ledger checkpoint; checking every line and folding the whole ledger"
        );
        self.verify_all(state, end)
    }

    /// Checks the lines from `state.end` to `end` as following the tip, parsing those above `covered`.
    fn check_after_tip(
        &self,
        state: &State,
        end: u64,
        covered: u64,
        segments: Segments<'_>,
    ) -> std::result::Result<Checked, CheckFailure> {
        let first = state.tip.seq() + 1;
        self.check(state.end, end, first, Some(state.tip.hash()), covered, state.keyed, segments)
    }

    /// Moves the state past `checked` lines ending at `end`, folding their parsed entries into the summary;
    /// returns those above `collect_after`.
    fn advance(&self, state: &mut State, end: u64, checked: Checked, collect_after: u64) -> Vec<LedgerEntry> {
        let Checked { last, offsets, entries, fences, keyed, segments, .. } = checked;
        if state.end == 0 {
            state.segments = segments;
        }
        state.offsets.extend(offsets);
        state.keyed |= keyed;
        for (stage, token) in fences {
            state.tip.note_token(&stage, token);
        }
        let mut collected = Vec::new();
        for entry in entries {
            if entry.seq > state.summary.head_seq() {
                Arc::make_mut(&mut state.summary).apply(&entry);
            }
            if entry.seq > collect_after {
                collected.push(entry);
            }
        }
        if let Some((seq, hash)) = last {
            state.tip.move_to(seq, hash);
        }
        state.end = end;
        collected
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        start: u64,
        end: u64,
        first: u64,
        prev: Option<&str>,
        covered: u64,
        keyed_before: bool,
        segments: Segments<'_>,
    ) -> std::result::Result<Checked, CheckFailure> {
        let policy = Policy { key: self.options.key(), unkeyed_until: self.options.unkeyed_until, keyed_before };
        lines::check(&self.path, start, end, first, prev, covered, &policy, segments).map_err(|problem| match problem {
            Problem::Io(error) => Failed(Error::io(self.path.as_ref(), error)),
            Problem::Line(line, reason) => Failed(self.corrupt(line, &reason)),
            Problem::Refused(error) => Failed(error),
            Problem::Changed => Changed,
        })
    }

    /// Writes a checkpoint if enough was added since the last one. A failure is logged, not returned: the
    /// entries are recorded either way, and the checkpoint is only a cache.
    fn checkpoint_if_due(&self, state: &mut State) {
        let Some(every) = self.options.checkpoint_every else {
            return;
        };
        if state.end - state.checkpoint_end.min(state.end) < every.max(state.checkpoint_bytes) {
            return;
        }
        if let Err(error) = self.write_checkpoint(state) {
            tracing::warn!(path = %self.path.display(), %error, "cannot write the ledger checkpoint");
            // Not again on every append; the next is due after another interval.
            state.checkpoint_end = state.end;
        }
    }

    fn write_checkpoint(&self, state: &mut State) -> Result<()> {
        self.digest_segments(state)?;
        let whole = (state.end / SEGMENT) as usize;
        state.checkpoint_bytes =
            checkpoint::store(&self.path, state.end, &state.segments[..whole], &state.summary, self.options.key())
                .map_err(|e| Error::io(checkpoint::path_for(&self.path), e))?;
        state.checkpoint_end = state.end;
        Ok(())
    }

    /// Brings `state.segments` up to every whole segment before `state.end`. Digests vouch for the bytes in
    /// a checkpoint, so they are taken only of bytes checked in the same read: the whole file is read again,
    /// the segments already digested checked against their digests and the lines after them one by one.
    fn digest_segments(&self, state: &mut State) -> Result<()> {
        if state.segments.len() as u64 >= state.end / SEGMENT {
            return Ok(());
        }
        let check = |known: &[SegmentDigest]| {
            let segments = Segments { known, compute: true };
            self.check(0, state.end, 1, Some(GENESIS_HASH), u64::MAX, false, segments)
        };
        let checked = match check(&state.segments) {
            Err(Changed) => check(&[]),
            checked => checked,
        }?;
        if checked.last.as_ref().map(|(seq, hash)| (*seq, hash.as_str())) != Some((state.tip.seq(), state.tip.hash())) {
            return Err(self.corrupt(
                state.tip.seq(),
                "the ledger's lines changed since this handle read them; open it again to have every line checked",
            ));
        }
        state.segments = checked.segments;
        Ok(())
    }

    fn corrupt(&self, line: u64, reason: &str) -> Error {
        Error::LedgerCorrupt { path: self.path.display().to_string(), line, reason: reason.to_owned() }
    }
}

/// Why a check did not pass.
enum CheckFailure {
    Failed(Error),
    /// The bytes before a checkpoint are not the ones its digests were taken of.
    Changed,
}
use CheckFailure::{Changed, Failed};

impl From<CheckFailure> for Error {
    /// For checks given no digests to compare, which cannot find the bytes changed.
    fn from(failure: CheckFailure) -> Self {
        match failure {
            Failed(error) => error,
            Changed => Error::Backend {
                backend: "file-ledger",
                message: "the ledger's bytes changed under the digests they were checked against".into(),
                class: ErrorClass::Temporary,
                source: None,
            },
        }
    }
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
        self.locked(Lock::Exclusive, |this, file, state| {
            // Another process may have appended since we last looked.
            this.scan(file, state, u64::MAX)?;
            state.opened = None;
            let sealed = state.tip.seal_with(entries, this.options.key())?;
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
                Arc::make_mut(&mut state.summary).apply(&entry);
                recorded.push(entry);
            }
            state.keyed |= this.options.key().is_some();
            state.end = offset;
            this.checkpoint_if_due(state);
            Ok(recorded)
        })
        .await
    }

    async fn read_since(&self, after: u64) -> Result<Vec<LedgerEntry>> {
        self.locked(Lock::Shared, move |this, file, state| {
            let known = state.tip.seq();
            let mut entries = Vec::new();
            if let Some(opened) = state.opened.take().filter(|_| after == 0) {
                entries = opened;
            } else if after < known {
                // Re-read what we have seen before, re-checking each line's hash and the chain.
                let start = state.offsets[after as usize];
                let prev = (after == 0).then_some(GENESIS_HASH);
                entries = this.check(start, state.end, after + 1, prev, 0, false, Segments::NONE)?.entries;
            }
            entries.extend(this.scan(file, state, after)?);
            Ok(entries)
        })
        .await
    }

    async fn summary(&self) -> Result<Option<Arc<LedgerSummary>>> {
        self.locked(Lock::Shared, |this, file, state| {
            this.scan(file, state, u64::MAX)?;
            Ok(Some(state.summary.clone()))
        })
        .await
    }
}
