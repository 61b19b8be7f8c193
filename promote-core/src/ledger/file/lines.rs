//! Reading and checking the ledger file's lines, on several threads for a large file.
//!
//! Each thread reads its own part of the file through a small buffer that it reuses (a large ledger is
//! never held in memory whole), checks every line's hash against its bytes and that each line follows the
//! one before, and parses the lines it is asked to. The parts are then joined in order, so damage is
//! named by its exact line whichever thread found it.
//!
//! From the file's start, a check can also digest the file in [segments](super::segments), and compare the
//! first ones with a checkpoint's digests: a line wholly inside those is not hashed on its own, since the
//! segment's digest covers its bytes. If any differ, the check says so, and the caller checks every line.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::segments::{SEGMENT, SegmentDigest, SegmentHasher};
use crate::error::Error;
use crate::integrity::IntegrityKey;
use crate::ledger::LedgerEntry;
use crate::ledger::entry::{ChainLink, HashScheme, UNKEYED_IN_KEYED, decode_string};
use crate::state_file;

/// Bytes each thread reads at a time.
const BUFFER: usize = 1 << 20;
/// Below this much per thread, one thread is faster than several.
const PER_THREAD: u64 = 4 << 20;

/// The checked lines of a range of the file.
#[derive(Debug, Default)]
pub(super) struct Checked {
    /// How many lines.
    pub lines: u64,
    /// The last line's number and hash.
    pub last: Option<(u64, String)>,
    /// Where each line starts.
    pub offsets: Vec<u64>,
    /// The lines parsed in full (those numbered above `covered`), in order.
    pub entries: Vec<LedgerEntry>,
    /// The newest fencing token of each stage, from every line, parsed or not.
    pub fences: Vec<(String, u64)>,
    /// Whether any line is keyed.
    pub keyed: bool,
    /// The digests of every whole segment, when asked for.
    pub segments: Vec<SegmentDigest>,
}

/// What a check from the file's start does with [segment](super::segments) digests.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Segments<'a> {
    /// The first segments' digests, from a checkpoint: the lines wholly inside them are checked by these.
    pub known: &'a [SegmentDigest],
    /// Whether to return the digests of every whole segment.
    pub compute: bool,
}

impl Segments<'_> {
    /// Nothing to do with segments.
    pub(super) const NONE: Segments<'static> = Segments { known: &[], compute: false };

    fn digesting(&self) -> bool {
        self.compute || !self.known.is_empty()
    }

    /// Where the bytes the known digests cover end.
    fn known_end(&self) -> u64 {
        self.known.len() as u64 * SEGMENT
    }
}

/// What the lines' hashes must be.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Policy<'a> {
    /// The ledger's key: keyed lines verify under it, and with it, lines must be keyed.
    pub key: Option<&'a IntegrityKey>,
    /// With a key, lines up to this number may still be unkeyed (written before the ledger was keyed).
    pub unkeyed_until: u64,
    /// Whether a line before the range is keyed: no unkeyed line may follow a keyed one.
    pub keyed_before: bool,
}

/// Why a range did not check out.
#[derive(Debug)]
pub(super) enum Problem {
    Io(io::Error),
    /// The line with this number is damaged.
    Line(u64, String),
    /// The file could not be opened safely.
    Refused(Error),
    /// The bytes the known segment digests cover are not the bytes they were taken of.
    Changed,
}

impl From<io::Error> for Problem {
    fn from(error: io::Error) -> Self {
        Problem::Io(error)
    }
}

/// Notes `token` as seen for `stage` in a short list (a ledger has few stages).
fn note_fence(fences: &mut Vec<(String, u64)>, stage: &str, token: u64) {
    match fences.iter_mut().find(|(seen, _)| seen == stage) {
        Some((_, newest)) => *newest = (*newest).max(token),
        None => fences.push((stage.to_owned(), token)),
    }
}

/// Checks the whole lines in `start..end` of the file at `path` under `policy`. The first is expected to be
/// number `first` and, when `prev` is given, to follow that hash. Lines numbered above `covered` are parsed.
/// With `segments` (only from the file's start), the segments are digested as well.
#[allow(clippy::too_many_arguments)]
pub(super) fn check(
    path: &Path,
    start: u64,
    end: u64,
    first: u64,
    prev: Option<&str>,
    covered: u64,
    policy: &Policy<'_>,
    segments: Segments<'_>,
) -> Result<Checked, Problem> {
    debug_assert!(start == 0 || !segments.digesting(), "segments are digested from the file's start");
    debug_assert!(segments.known_end() <= end, "the known segments lie inside what is checked");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64).min((end - start) / PER_THREAD);
    let reading = Reading { path, start, end, covered, policy, segments };
    let parts: Vec<_> = if threads <= 1 {
        vec![reading.part(start, end)]
    } else {
        let bound = |k: u64| match k {
            0 => start,
            k if k == threads => end,
            // Each segment is digested by one thread.
            k if segments.digesting() => (start + (end - start) * k / threads) / SEGMENT * SEGMENT,
            k => start + (end - start) * k / threads,
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..threads).map(|k| scope.spawn(move || reading.part(bound(k), bound(k + 1)))).collect();
            handles.into_iter().map(|handle| handle.join().expect("ledger checker panicked")).collect()
        })
    };
    let digests: Vec<SegmentDigest> = parts.iter().flatten().flat_map(|part| part.segments.iter().copied()).collect();
    // Digests that differ come first: a trusted line's hash was not checked, and its bytes may be anything.
    // A part that failed has no digests past its failure: then the bytes may have changed too.
    if !segments.known.is_empty() && (parts.iter().any(Result::is_err) || !digests.starts_with(segments.known)) {
        return match parts.into_iter().find_map(Result::err) {
            Some(problem @ (Problem::Io(_) | Problem::Refused(_))) => Err(problem),
            _ => Err(Problem::Changed),
        };
    }
    let mut joined = join(parts, first, prev, policy)?;
    joined.segments = digests;
    Ok(joined)
}

/// Joins the parts' checks in order: each part must follow the one before.
fn join(
    parts: Vec<Result<Part, Problem>>,
    first: u64,
    prev: Option<&str>,
    policy: &Policy<'_>,
) -> Result<Checked, Problem> {
    let mut joined = Checked::default();
    let mut next = first;
    let mut prev = prev.map(str::to_owned);
    let mut keyed_before = policy.keyed_before;
    for part in parts {
        let part = part?;
        if let Some((seq, first_prev)) = &part.first {
            if *seq != next {
                return Err(Problem::Line(next, format!("expected record {next}, found {seq}")));
            }
            if prev.as_ref().is_some_and(|prev| prev.as_bytes() != first_prev) {
                return Err(Problem::Line(next, BROKEN.into()));
            }
        }
        // An unkeyed line after a keyed one in an earlier part, unless this part failed sooner.
        let unkeyed_after_keyed = part.first_unkeyed.filter(|_| keyed_before).map(|index| (index, UNKEYED_AFTER_KEYED));
        let failure = match (part.failure, unkeyed_after_keyed) {
            (Some((failed, _)), Some((index, reason))) if index < failed => Some((index, reason.to_owned())),
            (None, Some((index, reason))) => Some((index, reason.to_owned())),
            (failure, _) => failure,
        };
        if let Some((index, reason)) = failure {
            return Err(Problem::Line(next + index, reason));
        }
        keyed_before |= part.checked.keyed;
        joined.keyed |= part.checked.keyed;
        for (stage, token) in &part.checked.fences {
            note_fence(&mut joined.fences, stage, *token);
        }
        next += part.checked.lines;
        joined.lines += part.checked.lines;
        if let Some((seq, hash)) = part.last {
            // A checked line's own hash is the hex digits it was compared with; a trusted one's, what was
            // checked when its segment was digested (unless a doctored unkeyed checkpoint vouched for it).
            let hash =
                String::from_utf8(hash).map_err(|_| Problem::Line(seq, "the record's hash is not hex".into()))?;
            prev = Some(hash.clone());
            joined.last = Some((seq, hash));
        }
        joined.offsets.extend(part.checked.offsets);
        joined.entries.extend(part.checked.entries);
    }
    Ok(joined)
}

const BROKEN: &str = "the record does not follow the one before it (hash chain broken)";
const UNKEYED_AFTER_KEYED: &str =
    "unkeyed entry after keyed ones: it was written without the integrity key (by someone who does not hold it?)";

/// One thread's share.
#[derive(Default)]
struct Part {
    /// The digests of the whole segments in the part, when asked for.
    segments: Vec<SegmentDigest>,
    checked: Checked,
    /// The first line's number and the hash it follows.
    first: Option<(u64, Vec<u8>)>,
    /// The last line's number and hash.
    last: Option<(u64, Vec<u8>)>,
    /// The first bad line, counted from the part's first, and why.
    failure: Option<(u64, String)>,
    /// The first unkeyed line, counted from the part's first.
    first_unkeyed: Option<u64>,
    /// The newest token per fence stage as the lines spell it (a JSON string), decoded when the part ends:
    /// comparing bytes is cheaper than decoding each line's.
    raw_fences: Vec<(Vec<u8>, u64)>,
}

impl Part {
    /// Checks one line; false (with the failure noted) if it is bad. A `trusted` line's bytes are checked
    /// by a segment digest: its own hash is not computed.
    fn line(&mut self, bytes: &[u8], at: u64, trusted: bool, covered: u64, policy: &Policy<'_>) -> bool {
        let index = self.checked.lines;
        let checked = self.check_line(bytes, at, trusted, covered, policy);
        if let Err(reason) = checked {
            self.failure = Some((index, reason));
            return false;
        }
        true
    }

    fn check_line(
        &mut self,
        bytes: &[u8],
        at: u64,
        trusted: bool,
        covered: u64,
        policy: &Policy<'_>,
    ) -> Result<(), String> {
        let link = match trusted {
            true => ChainLink::read_digested(bytes, policy.key)?,
            false => ChainLink::read(bytes, policy.key)?,
        };
        match link.scheme {
            HashScheme::HmacSha256 => self.checked.keyed = true,
            _ if policy.key.is_some() && link.seq > policy.unkeyed_until => {
                return Err(format!(
                    "{UNKEYED_IN_KEYED}; with the key, entries after number {} must be keyed \
                     (FileLedgerOptions::unkeyed_until, or {} for a ledger written before it was keyed)",
                    policy.unkeyed_until,
                    super::UNKEYED_UNTIL_ENV
                ));
            }
            _ if self.checked.keyed => return Err(UNKEYED_AFTER_KEYED.into()),
            _ => {
                self.first_unkeyed.get_or_insert(self.checked.lines);
            }
        }
        match &mut self.last {
            Some((seq, hash)) => {
                let expected = seq.checked_add(1).ok_or("the record numbers run past the largest there is")?;
                if link.seq != expected {
                    return Err(format!("expected record {expected}, found {}", link.seq));
                }
                if link.prev != hash.as_slice() {
                    return Err(BROKEN.into());
                }
                *seq = link.seq;
                hash.clear();
                hash.extend_from_slice(link.hash);
            }
            None => {
                self.first = Some((link.seq, link.prev.to_vec()));
                self.last = Some((link.seq, link.hash.to_vec()));
            }
        }
        if let Some((stage, token)) = link.fence {
            match self.raw_fences.iter_mut().find(|(seen, _)| seen.as_slice() == stage) {
                Some((_, newest)) => *newest = (*newest).max(token),
                None => {
                    decode_string(stage).ok_or("the record's fence does not name a stage")?;
                    self.raw_fences.push((stage.to_vec(), token));
                }
            }
        }
        if link.seq > covered {
            self.checked.entries.push(LedgerEntry::from_checked_line(bytes, &link)?);
        }
        self.checked.offsets.push(at);
        self.checked.lines += 1;
        Ok(())
    }
}

/// What every part of one check shares.
#[derive(Clone, Copy)]
struct Reading<'a> {
    path: &'a Path,
    /// Where the check starts: a line starts there.
    start: u64,
    /// Where the check ends: no part reads past it.
    end: u64,
    /// Lines numbered above this are parsed.
    covered: u64,
    policy: &'a Policy<'a>,
    segments: Segments<'a>,
}

impl Reading<'_> {
    /// Checks the lines that start in `from..to`, reading on to `end` to finish the last of them. A part
    /// that does not start at the check's start may begin inside a line, which then belongs to the part
    /// before. When digesting, `from` is a segment boundary, and so is `to` unless it is `end`.
    fn part(&self, from: u64, to: u64) -> Result<Part, Problem> {
        let align = from > self.start;
        let mut part = Part::default();
        let mut file = state_file::open(self.path, state_file::options().read(true)).map_err(Problem::Refused)?;
        // The buffer holds the file's bytes from `base`; `done..filled` are yet to be looked at.
        let mut base = if align { from - 1 } else { from };
        file.seek(SeekFrom::Start(base))?;
        let mut buffer = vec![0; BUFFER];
        let (mut done, mut filled) = (0, 0);
        // Starting just before `from`, the first newline seen ends the line that straddles it.
        let mut skip_one = align;
        let mut hasher = self.segments.digesting().then(|| SegmentHasher::new(from));
        let trusted_below = self.segments.known_end();
        loop {
            if let Some(length) = memchr::memchr(b'\n', &buffer[done..filled]) {
                let at = base + done as u64;
                let line = &buffer[done..done + length];
                done += length + 1;
                if std::mem::take(&mut skip_one) {
                    continue;
                }
                let trusted = base + done as u64 <= trusted_below;
                if at >= to || !part.line(line, at, trusted, self.covered, self.policy) {
                    break;
                }
                continue;
            }
            let read_to = base + filled as u64;
            if read_to >= self.end {
                break;
            }
            // Keep the unfinished line, at the front; a line longer than the buffer grows it.
            buffer.copy_within(done..filled, 0);
            base += done as u64;
            filled -= done;
            done = 0;
            if filled == buffer.len() {
                buffer.resize(buffer.len() * 2, 0);
            }
            let want = usize::try_from(self.end - read_to).unwrap_or(usize::MAX).min(buffer.len() - filled);
            file.read_exact(&mut buffer[filled..filled + want])?;
            if let Some(hasher) = &mut hasher {
                // The part's own bytes, `from..to`, as they arrive.
                let (low, high) = (read_to.max(from), (read_to + want as u64).min(to));
                if low < high {
                    hasher.feed(&buffer[(low - base) as usize..(high - base) as usize]);
                }
            }
            filled += want;
        }
        for (stage, token) in std::mem::take(&mut part.raw_fences) {
            let stage = decode_string(&stage).expect("checked when first seen");
            note_fence(&mut part.checked.fences, &stage, token);
        }
        part.segments = hasher.map(SegmentHasher::finish).unwrap_or_default();
        Ok(part)
    }
}

/// Where the whole lines after `from` end: the file's length, or, if the last line has no newline (a torn
/// write), `Err` with where the whole lines end and how many there are after `from`.
pub(super) fn whole_end(file: &mut File, from: u64) -> io::Result<Result<u64, (u64, u64)>> {
    let length = file.metadata()?.len();
    if length <= from || last_byte(file, length)? == b'\n' {
        return Ok(Ok(length.max(from)));
    }
    // Rare: find the last newline, and count the whole lines to name the torn one.
    let whole = last_line_end(file, length)?.max(from);
    file.seek(SeekFrom::Start(from))?;
    let (mut lines, mut left) = (0, whole - from);
    let mut buffer = vec![0; BUFFER];
    while left > 0 {
        let read = file.read(&mut buffer[..usize::try_from(left).unwrap_or(BUFFER).min(BUFFER)])?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        lines += memchr::memchr_iter(b'\n', &buffer[..read]).count() as u64;
        left -= read as u64;
    }
    Ok(Err((whole, lines)))
}

/// Where the last whole line of the first `length` bytes ends (0 if there is none).
fn last_line_end(file: &mut File, length: u64) -> io::Result<u64> {
    let mut end = length;
    let mut buffer = vec![0; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buffer.len() as u64);
        let window = &mut buffer[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(window)?;
        if let Some(newline) = memchr::memrchr(b'\n', window) {
            return Ok(start + newline as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn last_byte(file: &mut File, length: u64) -> io::Result<u8> {
    let mut byte = [0];
    file.seek(SeekFrom::Start(length - 1))?;
    file.read_exact(&mut byte)?;
    Ok(byte[0])
}

/// The line (without its newline) that ends just before byte `end`, if byte `end - 1` is a newline.
pub(super) fn line_ending_at(file: &mut File, end: u64) -> io::Result<Option<Vec<u8>>> {
    if end == 0 || file.metadata()?.len() < end || last_byte(file, end)? != b'\n' {
        return Ok(None);
    }
    let mut window = 4096u64;
    loop {
        let start = (end - 1).saturating_sub(window);
        let mut bytes = vec![0; (end - 1 - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut bytes)?;
        match memchr::memrchr(b'\n', &bytes) {
            Some(newline) => return Ok(Some(bytes.split_off(newline + 1))),
            None if start == 0 => return Ok(Some(bytes)),
            None => window *= 4,
        }
    }
}
