//! Ledger entries: what happened, who did it, under which fencing token, chained by hash.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::build::{Build, BuildId};
use crate::config::Provenance;
use crate::digest::Digest;
use crate::error::{Error, Result};
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

/// The part of an entry that is hashed, in field order.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    prev: &'a str,
    at: &'a DateTime<Utc>,
    actor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    fence: &'a Option<Fence>,
    event: &'a LedgerEvent,
}

/// A recorded entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Its position, from 1.
    pub seq: u64,
    /// The hash of the entry before (or [`GENESIS_HASH`]).
    pub prev: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it.
    pub actor: String,
    /// The fencing token it was written under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<Fence>,
    /// What happened.
    pub event: LedgerEvent,
    /// sha256 of the entry's body (every field above, serialised in order), hex.
    pub hash: String,
}

impl LedgerEntry {
    /// Seals `entry` as number `seq` after an entry whose hash is `prev`. Returns the entry and the exact
    /// line a line-oriented backend writes for it (JSON, no trailing newline).
    pub fn seal(seq: u64, prev: &str, entry: NewEntry) -> (LedgerEntry, String) {
        let body = Body { seq, prev, at: &entry.at, actor: &entry.actor, fence: &entry.fence, event: &entry.event };
        let body_json = serde_json::to_string(&body).expect("ledger entries always serialise");
        let hash = hex::encode(Sha256::digest(body_json.as_bytes()));
        let line = format!("{},\"hash\":\"{hash}\"}}", &body_json[..body_json.len() - 1]);
        let sealed = LedgerEntry {
            seq,
            prev: prev.to_owned(),
            at: entry.at,
            actor: entry.actor,
            fence: entry.fence,
            event: entry.event,
            hash,
        };
        (sealed, line)
    }

    /// Recomputes this entry's hash from its fields.
    pub fn computed_hash(&self) -> String {
        let body = Body {
            seq: self.seq,
            prev: &self.prev,
            at: &self.at,
            actor: &self.actor,
            fence: &self.fence,
            event: &self.event,
        };
        let body_json = serde_json::to_string(&body).expect("ledger entries always serialise");
        hex::encode(Sha256::digest(body_json.as_bytes()))
    }

    /// Parses one line as written by [`LedgerEntry::seal`], checking its hash against its exact bytes.
    pub fn parse_line(line: &str) -> std::result::Result<LedgerEntry, String> {
        let link = ChainLink::read(line.as_bytes())?;
        Self::from_checked_line(line.as_bytes(), &link)
    }

    /// Parses a line whose hash [`ChainLink::read`] has checked (the parser checks it is UTF-8).
    pub(crate) fn from_checked_line(line: &[u8], link: &ChainLink<'_>) -> std::result::Result<LedgerEntry, String> {
        let entry: LedgerEntry =
            serde_json::from_slice(line).map_err(|error| format!("the record does not parse: {error}"))?;
        if entry.seq != link.seq || entry.prev.as_bytes() != link.prev || entry.hash.as_bytes() != link.hash {
            return Err("the record's fields disagree with its chain header".into());
        }
        Ok(entry)
    }
}

/// What a sealed line says of its place in the chain, read without parsing the rest of it. The hashes are
/// the line's bytes: `hash` has been checked against the line, so it is hex; `prev` is whatever the line
/// says, to be compared with the hash before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainLink<'a> {
    pub seq: u64,
    pub prev: &'a [u8],
    pub hash: &'a [u8],
}

impl<'a> ChainLink<'a> {
    /// Checks a line's hash against its exact bytes and reads its sequence number and the hash it follows.
    /// The body is serialised in a fixed field order, so these are always the line's first two fields.
    pub(crate) fn read(line: &'a [u8]) -> std::result::Result<Self, String> {
        let hash = checked_hash(line)?;
        let head = || "the record does not start with its sequence number and previous hash".to_owned();
        let rest = line.strip_prefix(b"{\"seq\":").ok_or_else(head)?;
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let seq = std::str::from_utf8(&rest[..digits]).ok().and_then(|d| d.parse().ok()).ok_or_else(head)?;
        let rest = rest[digits..].strip_prefix(b",\"prev\":\"").ok_or_else(head)?;
        // Every hash, the genesis one included, is 64 hex digits.
        let prev = rest.get(..HASH_HEX).filter(|_| rest.get(HASH_HEX) == Some(&b'"')).ok_or_else(head)?;
        Ok(ChainLink { seq, prev, hash })
    }
}

const HASH_HEX: usize = 64;

/// The hash a sealed line stores, once it is checked against the line's bytes.
fn checked_hash(line: &[u8]) -> std::result::Result<&[u8], String> {
    // A sealed line ends with its hash field: `,"hash":"<64 hex digits>"}`.
    const MARK: &[u8] = b",\"hash\":\"";
    const TAIL: usize = MARK.len() + HASH_HEX + 2;
    let at = line.len().checked_sub(TAIL).ok_or("the record has no hash")?;
    let tail = &line[at..];
    if !tail.starts_with(MARK) || !tail.ends_with(b"\"}") {
        return Err("the record does not end with its hash".into());
    }
    let stored = &tail[MARK.len()..TAIL - 2];
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

/// Checks that `entries` form an unbroken chain starting after (`seq`, `hash`). Used by backends that
/// store entries as data rather than as lines.
pub fn verify_chain(name: &str, after: (u64, &str), entries: &[LedgerEntry]) -> Result<()> {
    let (mut seq, mut hash) = (after.0, after.1.to_owned());
    for entry in entries {
        let broken = |reason: String| Error::LedgerCorrupt { path: name.to_owned(), line: entry.seq, reason };
        if entry.seq != seq + 1 {
            return Err(broken(format!("expected record {} but found {}", seq + 1, entry.seq)));
        }
        if entry.prev != hash {
            return Err(broken("the record does not follow the one before it (hash chain broken)".into()));
        }
        if entry.computed_hash() != entry.hash {
            return Err(broken("the record's hash does not match its content".into()));
        }
        seq = entry.seq;
        hash = entry.hash.clone();
    }
    Ok(())
}
