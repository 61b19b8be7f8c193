//! Ledger entries: what happened, who did it, under which fencing token, chained by hash.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::build::{Build, BuildId};
use crate::config::Provenance;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::integrity::IntegrityKey;
use crate::reference::ArtifactRef;

/// The hash that precedes the first entry of every ledger.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A promotion's id: the stage, the build and the attempt number (`prd/b-…/2`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PromotionId(String);

impl PromotionId {
    /// The id of attempt `attempt` to put `build` into `stage`.
    pub fn new(stage: &str, build: &BuildId, attempt: u32) -> Self {
        PromotionId(format!("{stage}/{build}/{attempt}"))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PromotionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PromotionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a promotion happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromotionKind {
    /// A build moves forward into a stage.
    Promote,
    /// An earlier build that passed the stage goes back into it.
    Rollback {
        /// The build it replaces, if the stage had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replacing: Option<BuildId>,
    },
}

/// The steps of one promotion, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Take the stage's lock.
    Lock,
    /// Check the build passed the stage(s) before and no hold blocks it.
    Eligibility,
    /// Evaluate the entry gates.
    EntryGates,
    /// Make each artifact available for the stage and verify its digest there.
    Artifacts,
    /// Load the layered config and render the manifests.
    Render,
    /// Apply the bundle and wait until healthy.
    Deploy,
    /// Run the verification gates.
    Verify,
}

impl Step {
    /// Every step in order.
    pub const ALL: [Step; 7] =
        [Step::Lock, Step::Eligibility, Step::EntryGates, Step::Artifacts, Step::Render, Step::Deploy, Step::Verify];
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Lock => "lock",
            Step::Eligibility => "eligibility",
            Step::EntryGates => "entry-gates",
            Step::Artifacts => "artifacts",
            Step::Render => "render",
            Step::Deploy => "deploy",
            Step::Verify => "verify",
        })
    }
}

/// A gate's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The gate lets the build through.
    Pass,
    /// Not yet: the reason says what is awaited.
    Pending(String),
    /// No: the reason says why.
    Fail(String),
}

impl Verdict {
    /// Whether this is [`Verdict::Pass`].
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
}

/// A gate's verdict and the evidence it gave, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateEvidence {
    /// The gate's name.
    pub gate: String,
    /// The gate's kind (`approval`, `soak`, …).
    pub kind: String,
    /// The verdict.
    pub verdict: Verdict,
    /// What the gate looked at (approvers, durations, command output), never a secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence: BTreeMap<String, serde_json::Value>,
}

/// An artifact as placed in a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedArtifact {
    /// Where the stage finds it (a tag in the stage's repository).
    pub target: ArtifactRef,
    /// The digest verified at the target.
    pub digest: Digest,
}

/// What a finished step found or did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepDetail {
    /// Nothing worth recording beyond success.
    Done,
    /// The lock was taken.
    Locked {
        /// The fencing token.
        token: u64,
    },
    /// Why the build is eligible.
    Eligible {
        /// The promotions in upstream stages that qualify it.
        upstream: Vec<PromotionId>,
    },
    /// Gate verdicts.
    Gates {
        /// One per gate.
        verdicts: Vec<GateEvidence>,
    },
    /// Artifacts placed and verified.
    Artifacts {
        /// By artifact name.
        placed: BTreeMap<String, PlacedArtifact>,
    },
    /// Config loaded and manifests rendered.
    Rendered {
        /// The config fingerprint (never the values).
        config_fingerprint: String,
        /// Where each config value came from.
        provenance: BTreeMap<String, Provenance>,
        /// The hash of the rendered bundle.
        bundle_hash: String,
        /// How many objects the bundle holds.
        objects: usize,
    },
    /// The deploy became healthy.
    Deployed {
        /// What the deployer reported.
        summary: String,
    },
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The step did its work.
    Ok(StepDetail),
    /// The step hit an error; the promotion stays open and a re-run resumes it.
    Error {
        /// The error, as text (errors never hold secrets).
        message: String,
        /// Whether a retry may help.
        retryable: bool,
    },
}

/// How a promotion ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalState {
    /// The build is in the stage and verified.
    Succeeded,
    /// Gates were pending; nothing was changed.
    Pending {
        /// What is awaited.
        reasons: Vec<String>,
    },
    /// A gate failed, or the deploy or verification failed.
    Failed {
        /// The step that failed.
        step: Step,
        /// Why.
        reason: String,
    },
}

/// A manual approval of a build for a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The build approved.
    pub build: BuildId,
    /// The stage it is approved for.
    pub stage: String,
    /// Who approved.
    pub approver: String,
    /// When.
    pub at: DateTime<Utc>,
    /// An optional comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// What a hold blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldScope {
    /// Only automatic promotion (`reconcile`); people may still promote.
    Auto,
    /// Every promotion into the stage.
    All,
}

/// A hold on a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// The hold's id, unique within the ledger.
    pub id: String,
    /// The stage held.
    pub stage: String,
    /// What it blocks.
    pub scope: HoldScope,
    /// Why.
    pub reason: String,
    /// Who placed it.
    pub placed_by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// What happened, as the ledger records it.
///
/// Every enum in a ledger entry is externally tagged (`{"step_finished": {…}}`): serde parses that form
/// without buffering, which keeps opening a large ledger fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LedgerEvent {
    /// A build was registered.
    BuildRegistered {
        /// The build, with every artifact pinned.
        build: Build,
    },
    /// A promotion started.
    PromotionStarted {
        /// Its id.
        promotion: PromotionId,
        /// The build.
        build: BuildId,
        /// The target stage.
        stage: String,
        /// Promote or rollback.
        kind: PromotionKind,
    },
    /// An interrupted promotion was picked up again.
    PromotionResumed {
        /// Its id.
        promotion: PromotionId,
    },
    /// A step started.
    StepStarted {
        /// The promotion.
        promotion: PromotionId,
        /// The step.
        step: Step,
    },
    /// A step finished.
    StepFinished {
        /// The promotion.
        promotion: PromotionId,
        /// The step.
        step: Step,
        /// How it ended.
        outcome: StepOutcome,
    },
    /// A promotion finished.
    PromotionFinished {
        /// The promotion.
        promotion: PromotionId,
        /// How.
        state: FinalState,
    },
    /// An approval was recorded.
    ApprovalRecorded {
        /// The approval.
        approval: Approval,
    },
    /// A hold was placed.
    HoldPlaced {
        /// The hold.
        hold: Hold,
    },
    /// A hold was lifted.
    HoldLifted {
        /// The hold's id.
        hold: String,
        /// The stage it was on.
        stage: String,
    },
    /// A stage's attestor published attestations of a promotion that succeeded.
    Attested {
        /// The promotion.
        promotion: PromotionId,
        /// What was published.
        attestations: Vec<AttestationRef>,
    },
}

/// An attestation of a promotion, published by a stage's [`Attestor`](crate::attest::Attestor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AttestationRef {
    /// The attestor's name.
    pub attestor: String,
    /// The artifact it is about.
    pub artifact: String,
    /// Where it is published (the attested digest in the stage's repository, `registry/repo@sha256:…`).
    pub subject: String,
    /// The attestation's digest (for an OCI referrer, the referrer manifest's).
    pub digest: Digest,
}

impl AttestationRef {
    /// An attestation by `attestor` about `artifact`, published at `subject` with this digest.
    pub fn new(
        attestor: impl Into<String>,
        artifact: impl Into<String>,
        subject: impl Into<String>,
        digest: Digest,
    ) -> Self {
        AttestationRef { attestor: attestor.into(), artifact: artifact.into(), subject: subject.into(), digest }
    }
}

/// A fencing token attached to a write: the ledger refuses tokens older than one it has seen for the stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    /// The stage whose lock issued the token.
    pub stage: String,
    /// The token.
    pub token: u64,
}

/// An entry to append: the ledger assigns its sequence number and chain hash.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: String,
    /// The fencing token, for writes made under a stage's lock.
    pub fence: Option<Fence>,
    /// What happened.
    pub event: LedgerEvent,
}

/// How an entry's `hash` is made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum HashScheme {
    /// sha256 of the entry's body. It finds damage and naive edits, but not a writer who recomputes the
    /// hashes after an edit. Entries written without an [`IntegrityKey`] use it.
    #[default]
    #[serde(rename = "sha256")]
    Sha256,
    /// HMAC-SHA256 of the entry's body under the ledger's [`IntegrityKey`]: only a holder of the key can
    /// write an entry that verifies.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl HashScheme {
    fn is_sha256(&self) -> bool {
        *self == HashScheme::Sha256
    }
}

/// What a keyed entry's HMAC covers before its body, so that a tag made for one purpose cannot stand in for
/// another.
const ENTRY_CONTEXT: &[u8] = b"promote ledger entry\n";
/// Why a keyed entry does not verify when there is no key.
pub(crate) const KEY_MISSING: &str =
    "keyed entry: the key is missing or wrong (the ledger was opened without its integrity key)";
/// Why a keyed entry does not verify under the key given.
pub(crate) const KEY_WRONG: &str = "keyed entry: the key is missing or wrong, or the record was changed";

/// The part of an entry that is hashed, in field order. A line-oriented backend writes it, then the hash.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(skip_serializing_if = "HashScheme::is_sha256")]
    scheme: HashScheme,
    at: &'a DateTime<Utc>,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fence: &'a Option<Fence>,
    event: &'a LedgerEvent,
}

impl Body<'_> {
    fn json(&self) -> String {
        serde_json::to_string(self).expect("ledger entries always serialise")
    }
}

/// The hash of a serialised body under `key` (HMAC-SHA256) or without (sha256), in hex.
fn hash_of(body_json: &str, key: Option<&IntegrityKey>) -> String {
    match key {
        None => hex::encode(Sha256::digest(body_json.as_bytes())),
        Some(key) => hex::encode(key.tag(&[ENTRY_CONTEXT, body_json.as_bytes()])),
    }
}

/// A recorded entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Its position, from 1.
    pub seq: u64,
    /// The hash of the entry before (or [`GENESIS_HASH`]).
    pub prev: String,
    /// How `hash` is made: keyed or not.
    #[serde(default, skip_serializing_if = "HashScheme::is_sha256")]
    pub scheme: HashScheme,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: String,
    /// The fencing token it was written under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<Fence>,
    /// What happened.
    pub event: LedgerEvent,
    /// The hash of the entry's body (every field above, serialised in order), hex: sha256, or HMAC-SHA256
    /// under the ledger's key, as `scheme` says.
    pub hash: String,
}

impl LedgerEntry {
    /// Seals `entry` as number `seq` after an entry whose hash is `prev`, unkeyed. Returns the entry and the
    /// exact line a line-oriented backend writes for it (JSON, no trailing newline).
    pub fn seal(seq: u64, prev: &str, entry: NewEntry) -> (LedgerEntry, String) {
        Self::seal_with(seq, prev, entry, None)
    }

    /// Seals `entry` as number `seq` after an entry whose hash is `prev`: keyed with HMAC-SHA256 when `key`
    /// is given ([`HashScheme::HmacSha256`]), with sha256 otherwise. Returns the entry and the exact line a
    /// line-oriented backend writes for it (JSON, no trailing newline).
    pub fn seal_with(seq: u64, prev: &str, entry: NewEntry, key: Option<&IntegrityKey>) -> (LedgerEntry, String) {
        let scheme = if key.is_some() { HashScheme::HmacSha256 } else { HashScheme::Sha256 };
        let body =
            Body { seq, prev, scheme, at: &entry.at, actor: &entry.actor, fence: &entry.fence, event: &entry.event };
        let body_json = body.json();
        let hash = hash_of(&body_json, key);
        let line = format!("{},\"hash\":\"{hash}\"}}", &body_json[..body_json.len() - 1]);
        let sealed = LedgerEntry {
            seq,
            prev: prev.to_owned(),
            scheme,
            at: entry.at,
            actor: entry.actor,
            fence: entry.fence,
            event: entry.event,
            hash,
        };
        (sealed, line)
    }

    fn body(&self) -> Body<'_> {
        Body {
            seq: self.seq,
            prev: &self.prev,
            scheme: self.scheme,
            at: &self.at,
            actor: &self.actor,
            fence: &self.fence,
            event: &self.event,
        }
    }

    /// Recomputes this entry's sha256 from its fields. For a keyed entry ([`HashScheme::HmacSha256`]) this is
    /// not its hash: [`verify_chain_with`] checks those under the key.
    pub fn computed_hash(&self) -> String {
        hash_of(&self.body().json(), None)
    }

    /// Why this entry's hash is not what its fields and `key` give, if it is not.
    fn hash_problem(&self, key: Option<&IntegrityKey>) -> Option<&'static str> {
        match (self.scheme, key) {
            (HashScheme::Sha256, Some(_)) => Some(UNKEYED_IN_KEYED),
            (HashScheme::Sha256, None) => {
                (self.computed_hash() != self.hash).then_some("the record's hash does not match its content")
            }
            (HashScheme::HmacSha256, None) => Some(KEY_MISSING),
            (HashScheme::HmacSha256, Some(key)) => {
                let body = self.body().json();
                (!key.verifies(&[ENTRY_CONTEXT, body.as_bytes()], self.hash.as_bytes())).then_some(KEY_WRONG)
            }
        }
    }

    /// Parses one line as written by [`LedgerEntry::seal`], checking its hash against its exact bytes. A
    /// keyed line does not verify here: it needs the key. A line that does not parse or verify is
    /// [`Error::LedgerCorrupt`] at line 1 of `<line>` (the caller knows where the line came from).
    pub fn parse_line(line: &str) -> Result<LedgerEntry> {
        ChainLink::read(line.as_bytes(), None)
            .and_then(|link| Self::from_checked_line(line.as_bytes(), &link))
            .map_err(|reason| Error::LedgerCorrupt { path: "<line>".to_owned(), line: 1, reason })
    }

    /// Parses a line whose hash [`ChainLink::read`] has checked (the parser checks it is UTF-8).
    pub(crate) fn from_checked_line(line: &[u8], link: &ChainLink<'_>) -> std::result::Result<LedgerEntry, String> {
        let entry: LedgerEntry =
            serde_json::from_slice(line).map_err(|error| format!("the record does not parse: {error}"))?;
        let fence = entry.fence.as_ref().map(|fence| (Some(Cow::Borrowed(fence.stage.as_str())), fence.token));
        if entry.seq != link.seq
            || entry.prev.as_bytes() != link.prev
            || entry.hash.as_bytes() != link.hash
            || entry.scheme != link.scheme
            || fence != link.fence.map(|(stage, token)| (decode_string(stage), token))
        {
            return Err("the record's fields disagree with its chain header".into());
        }
        Ok(entry)
    }
}

/// Why an unkeyed entry is refused where entries must be keyed.
pub(crate) const UNKEYED_IN_KEYED: &str =
    "unkeyed entry in a keyed ledger: it was written without the integrity key (by someone who does not hold it?)";

/// What a sealed line says of its place in the chain, read without parsing the rest of it: its number, the
/// hash it follows, its own hash (checked against the line's bytes, under the key if the line is keyed), and
/// the fencing token it was written under. The hashes are the line's bytes: `hash` has been checked, so it is
/// hex; `prev` is whatever the line says, to be compared with the hash before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainLink<'a> {
    pub seq: u64,
    pub prev: &'a [u8],
    pub hash: &'a [u8],
    pub scheme: HashScheme,
    /// The fence's stage (as the line has it: a JSON string, quotes included, see [`decode_string`]) and
    /// token.
    pub fence: Option<(&'a [u8], u64)>,
}

/// What follows the previous hash in a keyed line.
const KEYED_MARK: &[u8] = b",\"scheme\":\"hmac-sha256\"";

impl<'a> ChainLink<'a> {
    /// Checks a line's hash against its exact bytes (an HMAC under `key` for a keyed line) and reads its
    /// chain header. The body is serialised in a fixed field order (see `Body`), so the header is the line's
    /// first fields: `seq`, `prev`, a keyed line's `scheme`, then `at` and `actor`, skipped, and `fence`.
    pub(crate) fn read(line: &'a [u8], key: Option<&IntegrityKey>) -> std::result::Result<Self, String> {
        Self::parse(line, |scheme| match scheme {
            HashScheme::Sha256 => checked_hash(line),
            HashScheme::HmacSha256 => checked_mac(line, key),
        })
    }

    /// [`ChainLink::read`] of a line whose bytes are vouched for by other means (the file ledger's segment
    /// digests, taken when the line was read with [`ChainLink::read`]): its hash is taken as it stands, not
    /// computed. A keyed line still needs a `key`, as it does there: a ledger is not read as keyed without
    /// one, whatever vouches for its bytes.
    pub(crate) fn read_digested(line: &'a [u8], key: Option<&IntegrityKey>) -> std::result::Result<Self, String> {
        Self::parse(line, |scheme| match scheme {
            HashScheme::HmacSha256 if key.is_none() => Err(KEY_MISSING.into()),
            _ => stored_hash(line).map(|(_, hash)| hash),
        })
    }

    /// Reads the chain header, the line's own hash given by `hash` for the line's scheme.
    fn parse(
        line: &'a [u8],
        hash: impl FnOnce(HashScheme) -> std::result::Result<&'a [u8], String>,
    ) -> std::result::Result<Self, String> {
        let mut cursor = Cursor(line);
        let head = cursor.head();
        let scheme = match head.is_some() && cursor.eat(KEYED_MARK) {
            true => HashScheme::HmacSha256,
            false => HashScheme::Sha256,
        };
        let hash = hash(scheme)?;
        let (seq, prev) =
            head.ok_or("the record does not start with its sequence number and previous hash".to_owned())?;
        let fence = cursor.fence().ok_or("the record's fields are not in the order promote writes them".to_owned())?;
        Ok(ChainLink { seq, prev, hash, scheme, fence })
    }
}

/// Reads a sealed line's leading fields.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn eat(&mut self, literal: &[u8]) -> bool {
        match self.0.strip_prefix(literal) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    fn number(&mut self) -> Option<u64> {
        let digits = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let mut number = 0u64;
        for digit in &self.0[..digits] {
            number = number.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
        }
        self.0 = &self.0[digits..];
        Some(number)
    }

    /// A JSON string, quotes included.
    fn string(&mut self) -> Option<&'a [u8]> {
        if self.0.first() != Some(&b'"') {
            return None;
        }
        let mut at = 1;
        loop {
            let next = at + memchr::memchr2(b'"', b'\\', self.0.get(at..)?)?;
            if self.0[next] == b'\\' {
                // An escape: the byte after the backslash is never the closing quote.
                at = next + 2;
                continue;
            }
            let (string, rest) = self.0.split_at(next + 1);
            self.0 = rest;
            return Some(string);
        }
    }

    /// `{"seq":<n>,"prev":"<64 hex digits>"`.
    fn head(&mut self) -> Option<(u64, &'a [u8])> {
        if !self.eat(b"{\"seq\":") {
            return None;
        }
        let seq = self.number()?;
        if !self.eat(b",\"prev\":\"") {
            return None;
        }
        // Every hash, the genesis one included, is 64 hex digits.
        let prev = self.0.get(..HASH_HEX).filter(|_| self.0.get(HASH_HEX) == Some(&b'"'))?;
        self.0 = &self.0[HASH_HEX + 1..];
        Some((seq, prev))
    }

    /// `,"at":"…","actor":"…"`, then the fence if there is one, up to `,"event":`.
    fn fence(&mut self) -> Option<Option<(&'a [u8], u64)>> {
        let skipped = self.eat(b",\"at\":") && self.string().is_some() && self.eat(b",\"actor\":");
        if !skipped || self.string().is_none() {
            return None;
        }
        let fence = if self.eat(b",\"fence\":{\"stage\":") {
            let stage = self.string()?;
            if !self.eat(b",\"token\":") {
                return None;
            }
            let token = self.number()?;
            if !self.eat(b"}") {
                return None;
            }
            Some((stage, token))
        } else {
            None
        };
        self.0.starts_with(b",\"event\":").then_some(fence)
    }
}

/// The text of a JSON string (quotes included), decoding escapes only if it has any; `None` if it is not
/// valid.
pub(crate) fn decode_string(quoted: &[u8]) -> Option<Cow<'_, str>> {
    let inner = &quoted[1..quoted.len() - 1];
    if memchr::memchr(b'\\', inner).is_none() {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice(quoted).ok().map(Cow::Owned)
}

const HASH_HEX: usize = 64;

/// Where a sealed line's hash field starts, and the hash it stores (not yet checked).
fn stored_hash(line: &[u8]) -> std::result::Result<(usize, &[u8]), String> {
    // A sealed line ends with its hash field: `,"hash":"<64 hex digits>"}`.
    const MARK: &[u8] = b",\"hash\":\"";
    const TAIL: usize = MARK.len() + HASH_HEX + 2;
    let at = line.len().checked_sub(TAIL).ok_or("the record has no hash")?;
    let tail = &line[at..];
    if !tail.starts_with(MARK) || !tail.ends_with(b"\"}") {
        return Err("the record does not end with its hash".into());
    }
    Ok((at, &tail[MARK.len()..TAIL - 2]))
}

/// The hash an unkeyed line stores, once it is checked against the line's bytes.
fn checked_hash(line: &[u8]) -> std::result::Result<&[u8], String> {
    let (at, stored) = stored_hash(line)?;
    let mut hasher = Sha256::new();
    hasher.update(&line[..at]);
    hasher.update(b"}");
    let mut computed = [0u8; HASH_HEX];
    hex::encode_to_slice(hasher.finalize(), &mut computed).expect("a sha256 is 32 bytes");
    if computed != stored {
        return Err("the record's hash does not match its content".into());
    }
    Ok(stored)
}

/// The HMAC a keyed line stores, once it is checked against the line's bytes under `key`.
fn checked_mac<'a>(line: &'a [u8], key: Option<&IntegrityKey>) -> std::result::Result<&'a [u8], String> {
    let (at, stored) = stored_hash(line)?;
    let key = key.ok_or(KEY_MISSING)?;
    if !key.verifies(&[ENTRY_CONTEXT, &line[..at], b"}"], stored) {
        return Err(KEY_WRONG.into());
    }
    Ok(stored)
}

/// Checks that `entries` form an unbroken chain starting after (`seq`, `hash`), unkeyed. Used by backends
/// that store entries as data rather than as lines.
pub fn verify_chain(name: &str, after: (u64, &str), entries: &[LedgerEntry]) -> Result<()> {
    verify_chain_with(name, after, entries, None)
}

/// Checks that `entries` form an unbroken chain starting after (`seq`, `hash`). With a `key`, every entry
/// must be keyed ([`HashScheme::HmacSha256`]) and verify under it; without one, a keyed entry does not verify.
pub fn verify_chain_with(
    name: &str,
    after: (u64, &str),
    entries: &[LedgerEntry],
    key: Option<&IntegrityKey>,
) -> Result<()> {
    let (mut seq, mut hash) = (after.0, after.1.to_owned());
    for entry in entries {
        let broken = |reason: String| Error::LedgerCorrupt { path: name.to_owned(), line: entry.seq, reason };
        if seq.checked_add(1) != Some(entry.seq) {
            return Err(broken(format!("expected record {} but found {}", seq.saturating_add(1), entry.seq)));
        }
        if entry.prev != hash {
            return Err(broken("the record does not follow the one before it (hash chain broken)".into()));
        }
        if let Some(problem) = entry.hash_problem(key) {
            return Err(broken(problem.into()));
        }
        seq = entry.seq;
        hash = entry.hash.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(actor: &str, fence: Option<(&str, u64)>) -> NewEntry {
        NewEntry {
            at: Utc::now(),
            actor: actor.into(),
            fence: fence.map(|(stage, token)| Fence { stage: stage.into(), token }),
            event: LedgerEvent::HoldLifted { hold: "h".into(), stage: "prd".into() },
        }
    }

    /// The chain header's fence is read from the line's bytes without parsing it; whatever the actor and
    /// stage hold (quotes, backslashes, text that looks like a fence), it is the fence serde reads.
    #[test]
    fn the_fence_read_from_a_line_is_the_fence_it_holds() {
        let tricky = r#"eve","fence":{"stage":"prd","token":99},"x":"\"#;
        let cases = [
            (tricky, None),
            (tricky, Some(("dev", 3))),
            ("ci", Some((r#"st"a\ge\"#, u64::MAX))),
            ("ci", Some(("ünï", 0))),
        ];
        for (actor, fence) in cases {
            for key in [None, Some(IntegrityKey::new(vec![7; 32]).unwrap())] {
                let (sealed, line) = LedgerEntry::seal_with(1, GENESIS_HASH, entry(actor, fence), key.as_ref());
                let link = ChainLink::read(line.as_bytes(), key.as_ref()).unwrap();
                let read = link.fence.map(|(stage, token)| (decode_string(stage).unwrap().into_owned(), token));
                assert_eq!(read, fence.map(|(stage, token)| (stage.to_owned(), token)), "{line}");
                assert_eq!(LedgerEntry::from_checked_line(line.as_bytes(), &link).unwrap(), sealed);
            }
        }
    }
}
