//! The keyed ledger: with an integrity key, each entry and the checkpoint carry an HMAC, so a writer without
//! the key can neither edit history (even re-hashing every line after the edit) nor append, nor make a
//! doctored checkpoint count. The key never appears in an error, a `Debug` or a file.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use promote_core::HoldRequest;
use promote_core::ledger::{
    Fence, GENESIS_HASH, HashScheme, LedgerEntry, LedgerExt, NewEntry, verify_chain, verify_chain_with,
};
use promote_core::{Error, FileLedger, FileLedgerOptions, IntegrityKey, Ledger, MemoryArtifactStore, Pipeline, Stage};

const KEY: &str = "k3y-d0-n0t-l3ak-6f1e0c2a9b7d4e3f";
const OTHER_KEY: &str = "an0ther-k3y-00000000000000000000";

fn key() -> IntegrityKey {
    IntegrityKey::new(KEY.as_bytes().to_vec()).unwrap()
}

fn keyed() -> FileLedgerOptions {
    FileLedgerOptions::default().integrity_key(key())
}

fn entry(n: usize, token: u64) -> NewEntry {
    let mut entry = support::hold_entry(n, format!("reason {n}"));
    entry.fence = Some(Fence { stage: "prd".into(), token });
    entry
}

fn checkpoint_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.checkpoint", path.display()))
}

/// A keyed ledger with `count` entries in `dir`, checkpointed after them.
async fn keyed_ledger(dir: &Path, count: usize) -> PathBuf {
    let path = dir.join("ledger.jsonl");
    let ledger = FileLedger::open_with(&path, keyed()).await.unwrap();
    for n in 0..count {
        ledger.append(vec![entry(n, n as u64 + 1)]).await.unwrap();
    }
    ledger.checkpoint().await.unwrap();
    path
}

/// Opens `path` with `options` and expects it refused as corrupt at `line`, for a reason containing `reason`.
async fn assert_refused(path: &Path, options: FileLedgerOptions, line: u64, reason: &str) -> Error {
    match FileLedger::open_with(path, options).await {
        Err(error @ Error::LedgerCorrupt { .. }) => {
            let Error::LedgerCorrupt { line: at, reason: why, .. } = &error else { unreachable!() };
            assert_eq!(*at, line, "{error}");
            assert!(why.contains(reason), "{error}");
            error
        }
        other => panic!("expected the ledger refused at line {line} ({reason}), got {other:?}"),
    }
}

/// Re-seals the ledger's lines from `from` (1-based) on, unkeyed, after changing line `from` with `edit`:
/// what someone who can write the file, but does not hold the key, can do to make the chain check again.
fn rehash_unkeyed(path: &Path, from: usize, edit: impl Fn(&mut NewEntry)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut prev = match from {
        1 => GENESIS_HASH.to_owned(),
        n => serde_json::from_str::<LedgerEntry>(&lines[n - 2]).unwrap().hash,
    };
    for (index, line) in lines.iter_mut().enumerate().skip(from - 1) {
        let old: LedgerEntry = serde_json::from_str(line).unwrap();
        let mut new = NewEntry { at: old.at, actor: old.actor, fence: old.fence, event: old.event };
        if index == from - 1 {
            edit(&mut new);
        }
        let (sealed, text) = LedgerEntry::seal(old.seq, &prev, new);
        prev = sealed.hash;
        *line = text;
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn a_keyed_ledger_reads_back_what_was_written_and_every_entry_is_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let path = keyed_ledger(dir.path(), 5).await;
    let reopened = FileLedger::open_with(&path, keyed()).await.unwrap();
    let entries = reopened.read_since(0).await.unwrap();
    assert_eq!(entries.len(), 5);
    assert!(entries.iter().all(|e| e.scheme == HashScheme::HmacSha256), "{entries:?}");
    verify_chain_with("ledger", (0, GENESIS_HASH), &entries, Some(&key())).unwrap();
    assert!(verify_chain("ledger", (0, GENESIS_HASH), &entries).is_err(), "an unkeyed check cannot verify them");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().all(|line| line.contains(r#""scheme":"hmac-sha256""#)), "{text}");
    let checkpoint = std::fs::read_to_string(checkpoint_of(&path)).unwrap();
    assert!(checkpoint.contains("hmac_sha256") && !checkpoint.contains("summary_sha256"), "{checkpoint}");

    reopened.append(vec![entry(5, 6)]).await.unwrap();
    let summary = reopened.summary().await.unwrap().unwrap();
    assert_eq!(summary.newest_fence("prd"), Some(6));
    assert_eq!(summary.all_holds().count(), 6);
    // Without the checkpoint, the same.
    std::fs::remove_file(checkpoint_of(&path)).unwrap();
    let folded = FileLedger::open_with(&path, keyed()).await.unwrap();
    assert_eq!(folded.summary().await.unwrap().unwrap(), summary);
    assert_eq!(folded.read_since(0).await.unwrap().len(), 6);
}

#[tokio::test]
async fn a_keyed_ledger_opened_without_its_key_or_with_another_is_corrupt_at_line_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = keyed_ledger(dir.path(), 3).await;
    for options in [FileLedgerOptions::default(), FileLedgerOptions::default().checkpoint_every(None)] {
        assert_refused(&path, options, 1, "keyed entry: the key is missing or wrong").await;
    }
    let other = FileLedgerOptions::default().integrity_key(IntegrityKey::new(OTHER_KEY.as_bytes().to_vec()).unwrap());
    let error = assert_refused(&path, other, 1, "keyed entry: the key is missing or wrong").await;
    assert!(!format!("{error} {error:?}").contains(KEY) && !format!("{error:?}").contains(OTHER_KEY));
    assert!(matches!(FileLedger::recover(&path).await, Err(Error::LedgerCorrupt { line: 1, .. })));
    FileLedger::recover_with(&path, keyed()).await.unwrap();
}

#[tokio::test]
async fn an_edit_rehashed_without_the_key_is_found_at_the_edited_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = keyed_ledger(dir.path(), 6).await;
    let original = std::fs::read(&path).unwrap();

    // Every line from the third one re-sealed with the unkeyed chain, the third one changed: the chain and
    // each line's sha256 check, as they would without a key.
    rehash_unkeyed(&path, 3, |entry| entry.actor = "mallory".into());
    let entries = FileLedger::open(&path).await.map(|_| ()).unwrap_err();
    assert!(matches!(entries, Error::LedgerCorrupt { line: 1, .. }), "the keyed lines before it still need the key");
    assert_refused(&path, keyed(), 3, "unkeyed entry").await;

    // The same edit kept as a keyed line, its hash recomputed as sha256.
    std::fs::write(&path, &original).unwrap();
    let text = String::from_utf8(original.clone()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let edited = lines[2].replacen(r#""actor":"ops""#, r#""actor":"eve""#, 1);
    let body = &edited[..edited.len() - r#","hash":""}"#.len() - 64];
    let rehashed = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!("{body}}}").as_bytes()));
    lines[2] = format!("{body},\"hash\":\"{rehashed}\"}}");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert_refused(&path, keyed(), 3, "keyed entry: the key is missing or wrong").await;
}

#[tokio::test]
async fn an_entry_appended_without_the_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = keyed_ledger(dir.path(), 4).await;
    let last: LedgerEntry =
        serde_json::from_str(std::fs::read_to_string(&path).unwrap().lines().last().unwrap()).unwrap();
    // A line sealed just as promote seals one, without the key; it is the fifth entry.
    let (_, forged) = LedgerEntry::seal(5, &last.hash, entry(99, 1_000));
    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, format!("{forged}\n").as_bytes()).unwrap();
    assert_refused(&path, keyed(), 5, "unkeyed entry in a keyed ledger").await;
    // Marking it keyed without the key does not help.
    let keyed_forgery = forged.replacen(r#","at":"#, r#","scheme":"hmac-sha256","at":"#, 1);
    let text = std::fs::read_to_string(&path).unwrap().replace(&forged, &keyed_forgery);
    std::fs::write(&path, text).unwrap();
    assert_refused(&path, keyed(), 5, "keyed entry: the key is missing or wrong").await;
}

#[tokio::test]
async fn an_unkeyed_ledger_is_keyed_from_the_entry_the_options_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let unkeyed = FileLedger::open_with(&path, FileLedgerOptions::default()).await.unwrap();
    unkeyed.append((0..3).map(|n| entry(n, 1)).collect()).await.unwrap();
    drop(unkeyed);
    assert_refused(&path, keyed(), 1, "unkeyed entry in a keyed ledger").await;

    let adopted = FileLedger::open_with(&path, keyed().unkeyed_until(3)).await.unwrap();
    adopted.append(vec![entry(3, 2)]).await.unwrap();
    let entries = adopted.read_since(0).await.unwrap();
    let schemes: Vec<HashScheme> = entries.iter().map(|e| e.scheme).collect();
    assert_eq!(schemes, [HashScheme::Sha256, HashScheme::Sha256, HashScheme::Sha256, HashScheme::HmacSha256]);
    assert_refused(&path, FileLedgerOptions::default(), 4, "keyed entry: the key is missing or wrong").await;

    // Cut back to the unkeyed part and extended without the key: refused, because entry 4 must be keyed.
    let text = std::fs::read_to_string(&path).unwrap();
    let first_three: String = text.split_inclusive('\n').take(3).collect();
    std::fs::write(&path, &first_three).unwrap();
    let third: LedgerEntry = serde_json::from_str(first_three.lines().last().unwrap()).unwrap();
    let (_, forged) = LedgerEntry::seal(4, &third.hash, entry(99, 1_000));
    std::fs::write(&path, format!("{first_three}{forged}\n")).unwrap();
    assert_refused(&path, keyed().unkeyed_until(3), 4, "unkeyed entry").await;
    // And an unkeyed line may never follow a keyed one, whatever the options allow.
    std::fs::write(&path, &text).unwrap();
    let fourth: LedgerEntry = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let (_, forged) = LedgerEntry::seal(5, &fourth.hash, entry(99, 1_000));
    std::fs::write(&path, format!("{text}{forged}\n")).unwrap();
    assert_refused(&path, keyed().unkeyed_until(10), 5, "unkeyed entry after keyed ones").await;
}

/// A checkpoint doctored by someone without the key (a hold added, fences raised, the sha256 recomputed or
/// the HMAC replaced) is ignored: status and the fences come from the ledger.
#[tokio::test]
async fn a_doctored_checkpoint_under_a_key_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = keyed_ledger(dir.path(), 4).await;
    let good = std::fs::read_to_string(checkpoint_of(&path)).unwrap();
    let (header, body) = good.trim_end().split_once('\n').unwrap();
    let mut summary: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut extra = summary["holds"][0].clone();
    extra["id"] = "hold-doctored".into();
    summary["holds"].as_array_mut().unwrap().push(extra);
    summary["fences"]["prd"] = 1_000_000.into();
    let body = serde_json::to_string(&summary).unwrap();
    let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
    let mut with_sha256: serde_json::Value = serde_json::from_str(header).unwrap();
    with_sha256.as_object_mut().unwrap().remove("hmac_sha256");
    with_sha256["summary_sha256"] = sha256.into();
    let mut with_other_mac: serde_json::Value = serde_json::from_str(header).unwrap();
    with_other_mac["hmac_sha256"] =
        IntegrityKey::new(OTHER_KEY.as_bytes().to_vec()).unwrap().mac(body.as_bytes()).into();

    for (newest, header) in [(4, with_sha256), (5, with_other_mac)] {
        std::fs::write(checkpoint_of(&path), format!("{header}\n{body}\n")).unwrap();
        let ledger = FileLedger::open_with(&path, keyed()).await.unwrap();
        let summary = ledger.summary().await.unwrap().unwrap();
        assert!(summary.all_holds().all(|hold| hold.id != "hold-doctored"), "{header}");
        assert_eq!(summary.newest_fence("prd"), Some(newest));
        ledger.append(vec![entry(9, newest + 1)]).await.expect("the fences are the ledger's, not the checkpoint's");
    }
}

#[tokio::test]
async fn the_key_appears_in_no_file_error_or_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = keyed_ledger(dir.path(), 3).await;
    let options = keyed();
    let ledger = FileLedger::open_with(&path, options.clone()).await.unwrap();
    let wrong = FileLedger::open_with(&path, FileLedgerOptions::default()).await.unwrap_err();
    let shown = format!("{:?} {:?} {:?} {wrong} {wrong:?}", key(), options, ledger);
    assert!(shown.contains("[redacted]"), "{shown}");
    let hex_key = hex::encode(KEY);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(KEY) && !text.contains(&hex_key), "{text}");
    }
    assert!(!shown.contains(KEY) && !shown.contains(&hex_key), "{shown}");
}

#[tokio::test]
async fn a_key_file_inside_the_ledgers_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let inside = state.join("ledger.key");
    std::fs::write(&inside, format!("{KEY}\n")).unwrap();
    let options = FileLedgerOptions::default().integrity_key(IntegrityKey::from_file(&inside).unwrap());
    let error = FileLedger::open_with(state.join("ledger.jsonl"), options).await.unwrap_err();
    assert!(matches!(error, Error::UnsafeFile { .. }) && error.to_string().contains("inside"), "{error}");
    assert!(!error.to_string().contains(KEY));

    // One outside it (here: beside it) is fine, and is the same key as the bytes.
    let outside = dir.path().join("ledger.key");
    std::fs::write(&outside, format!("{KEY}\n")).unwrap();
    let options = FileLedgerOptions::default().integrity_key(IntegrityKey::from_file(&outside).unwrap());
    let ledger = FileLedger::open_with(state.join("ledger.jsonl"), options).await.unwrap();
    ledger.append(vec![entry(0, 1)]).await.unwrap();
    FileLedger::open_with(state.join("ledger.jsonl"), keyed()).await.unwrap();
}

/// `FileLedger::open` (what a spec's `ledger: { kind: file }` uses) takes the key from
/// `PROMOTE_LEDGER_KEY_FILE`. The environment is set for a child process running this same test.
#[tokio::test]
async fn open_takes_the_key_from_the_environment() {
    const CHILD: &str = "PROMOTE_TEST_LEDGER_DIR";
    if let Some(dir) = std::env::var_os(CHILD) {
        let path = Path::new(&dir).join("state/ledger.jsonl");
        let pipeline = Pipeline::builder("shop")
            .store(Arc::new(MemoryArtifactStore::new()))
            .ledger(Arc::new(FileLedger::open(&path).await.unwrap()))
            .stage(Stage::new("prd"))
            .build()
            .unwrap();
        pipeline
            .hold(HoldRequest::new("prd", promote_core::ledger::HoldScope::All).reason("freeze").placed_by("ops"))
            .await
            .unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("ledger.key");
    std::fs::write(&key_file, KEY).unwrap();
    let run = |extra: &[(&str, &str)]| {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", "open_takes_the_key_from_the_environment", "--nocapture"]);
        child
            .env(CHILD, dir.path())
            .env("PROMOTE_LEDGER_KEY_FILE", &key_file)
            .env_remove("PROMOTE_LEDGER_UNKEYED_UNTIL");
        for (name, value) in extra {
            child.env(name, value);
        }
        child.output().unwrap()
    };
    let output = run(&[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let path = dir.path().join("state/ledger.jsonl");
    let entries = FileLedger::open_with(&path, keyed()).await.unwrap().read_since(0).await.unwrap();
    assert!(!entries.is_empty() && entries.iter().all(|e| e.scheme == HashScheme::HmacSha256));
    assert!(FileLedger::open_with(&path, FileLedgerOptions::default()).await.is_err());

    let output = run(&[("PROMOTE_LEDGER_UNKEYED_UNTIL", "many")]);
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success() && printed.contains("PROMOTE_LEDGER_UNKEYED_UNTIL"), "{printed}");
    let _ = FileLedger::open_with(&path, keyed()).await.unwrap().view().await.unwrap();
}
