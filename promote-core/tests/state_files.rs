//! promote's state files on a shared machine: a state directory with a symlink planted for each state
//! file, a lock file holding the largest token, directories others can write to. Nothing is written
//! through a symlink, nothing panics, and what promote creates is readable by its owner only.
#![cfg(unix)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use promote_core::ledger::{Fence, NewEntry};
use promote_core::{EnvironmentLock, Error, FileLedger, FileLock, Ledger, LockWait};

const PRECIOUS: &str = "someone else's file\n";

/// A file outside the state directory that a planted symlink points at; it must keep its content.
fn precious(dir: &Path) -> PathBuf {
    let path = dir.join("precious.txt");
    std::fs::write(&path, PRECIOUS).unwrap();
    path
}

fn assert_untouched(path: &Path) {
    assert_eq!(std::fs::read_to_string(path).unwrap(), PRECIOUS, "{} was written through a symlink", path.display());
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn refused_for(error: &Error, words: &str) -> bool {
    matches!(error, Error::UnsafeFile { .. }) && error.to_string().contains(words)
}

fn held(stage: &str, token: u64) -> NewEntry {
    let mut entry = support::hold_entry(0, "r".into());
    entry.fence = Some(Fence { stage: stage.into(), token });
    entry
}

#[tokio::test]
async fn a_symlinked_lock_file_is_refused_and_what_it_points_to_is_not_overwritten() {
    let root = tempfile::tempdir().unwrap();
    let outside = precious(root.path());
    let locks = root.path().join("locks");
    std::fs::create_dir(&locks).unwrap();
    std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o700)).unwrap();
    symlink(&outside, locks.join("prd.lock")).unwrap();
    let error = FileLock::new(&locks).acquire("prd", "ci", LockWait::Fail).await.unwrap_err();
    assert!(refused_for(&error, "symlink"), "{error}");
    assert!(error.to_string().contains("prd.lock"), "the error names the file: {error}");
    assert_untouched(&outside);
}

#[tokio::test]
async fn a_lock_file_holding_the_largest_token_is_an_error_not_a_panic() {
    let root = tempfile::tempdir().unwrap();
    let locks = root.path().join("locks");
    let lock = FileLock::new(&locks);
    drop(lock.acquire("prd", "ci", LockWait::Fail).await.unwrap());
    let planted = format!("{} mallory\n", u64::MAX);
    std::fs::write(locks.join("prd.lock"), &planted).unwrap();
    let error = lock.acquire("prd", "ci", LockWait::Fail).await.unwrap_err();
    assert!(refused_for(&error, &u64::MAX.to_string()), "{error}");
    assert!(error.to_string().contains("prd.lock") && !error.is_retryable(), "{error}");
    assert_eq!(std::fs::read_to_string(locks.join("prd.lock")).unwrap(), planted, "left as found");
    // The token before the largest still gives the largest.
    std::fs::write(locks.join("prd.lock"), format!("{} ci\n", u64::MAX - 1)).unwrap();
    assert_eq!(lock.acquire("prd", "ci", LockWait::Fail).await.unwrap().token(), u64::MAX);
}

#[tokio::test]
async fn locks_are_created_owner_only_and_a_directory_others_can_write_to_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let locks = root.path().join("state/locks");
    let lease = FileLock::new(&locks).acquire("dev", "ci", LockWait::Fail).await.unwrap();
    assert_eq!(lease.token(), 1);
    drop(lease);
    assert_eq!(mode(&locks), 0o700);
    assert_eq!(mode(&locks.join("dev.lock")), 0o600);

    std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = FileLock::new(&locks).acquire("dev", "ci", LockWait::Fail).await.unwrap_err();
    assert!(refused_for(&error, "others can write"), "{error}");
    // /tmp-style: others may create files, but not remove or rename ours.
    std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(FileLock::new(&locks).acquire("dev", "ci", LockWait::Fail).await.unwrap().token(), 2);

    let error = FileLock::new(&locks).acquire("../dev", "ci", LockWait::Fail).await.unwrap_err();
    assert!(matches!(error, Error::InvalidInput { .. }), "{error}");
}

#[tokio::test]
async fn a_state_directory_owned_by_another_user_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let theirs = root.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    // Only root can give a directory away; as another user, there is nothing to set up.
    if std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root and must run this test");
        eprintln!("skipped: cannot chown a directory to another user (not root)");
        return;
    }
    let error = FileLock::new(&theirs).acquire("dev", "ci", LockWait::Fail).await.unwrap_err();
    assert!(refused_for(&error, "uid 65534"), "{error}");
    let error = FileLedger::open(theirs.join("ledger.jsonl")).await.unwrap_err();
    assert!(refused_for(&error, "uid 65534"), "{error}");
    assert!(!theirs.join("ledger.jsonl").exists());
}

#[tokio::test]
async fn the_ledger_and_its_checkpoint_are_owner_only_and_symlinks_are_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let outside = precious(root.path());
    let dir = root.path().join("state");
    let path = dir.join("ledger.jsonl");
    let ledger = FileLedger::open(&path).await.unwrap();
    ledger.append(vec![held("prd", 1)]).await.unwrap();
    ledger.checkpoint().await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&path), 0o600, "the ledger holds evidence: owner-only");
    let checkpoint = PathBuf::from(format!("{}.checkpoint", path.display()));
    assert_eq!(mode(&checkpoint), 0o600);

    // A symlink where the checkpoint goes is ignored when reading and replaced, not followed, when writing.
    std::fs::remove_file(&checkpoint).unwrap();
    symlink(&outside, &checkpoint).unwrap();
    let reopened = FileLedger::open(&path).await.unwrap();
    reopened.append(vec![held("prd", 2)]).await.unwrap();
    reopened.checkpoint().await.unwrap();
    assert_untouched(&outside);
    assert!(std::fs::symlink_metadata(&checkpoint).unwrap().is_file(), "the symlink was replaced");

    // A symlink where the ledger is: refused.
    let linked = dir.join("linked.jsonl");
    symlink(&outside, &linked).unwrap();
    let error = FileLedger::open(&linked).await.unwrap_err();
    assert!(refused_for(&error, "symlink"), "{error}");
    assert_untouched(&outside);

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o775)).unwrap();
    let error = FileLedger::open(&path).await.unwrap_err();
    assert!(refused_for(&error, "others can write"), "{error}");
}

#[tokio::test]
async fn symlinks_planted_at_checkpoint_temporary_names_are_not_written_through() {
    let root = tempfile::tempdir().unwrap();
    let outside = precious(root.path());
    let path = root.path().join("state/ledger.jsonl");
    let ledger = FileLedger::open(&path).await.unwrap();
    ledger.append(vec![held("prd", 1)]).await.unwrap();
    // Every name this process could use next, planted after open (which clears stale ones).
    for n in 0..2_000 {
        symlink(&outside, format!("{}.checkpoint.{}-{n}.tmp", path.display(), std::process::id())).unwrap();
    }
    let error = ledger.checkpoint().await.unwrap_err();
    assert!(
        matches!(&error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists),
        "{error}"
    );
    assert_untouched(&outside);
    // The append that triggers a due checkpoint still succeeds: the checkpoint is only a cache.
    ledger.append(vec![held("prd", 2)]).await.unwrap();
    assert_untouched(&outside);
}

#[tokio::test]
async fn stale_checkpoint_temporary_files_are_removed_on_open_and_nothing_else() {
    let root = tempfile::tempdir().unwrap();
    let outside = precious(root.path());
    let dir = root.path().join("state");
    let path = dir.join("ledger.jsonl");
    FileLedger::open(&path).await.unwrap().append(vec![held("prd", 1)]).await.unwrap();
    // What a crash between writing a checkpoint and renaming it leaves (4194305 is above any pid), a
    // symlink under such a name, and files that only look alike.
    let stale = ["ledger.jsonl.checkpoint.4194305-3.tmp", "ledger.jsonl.checkpoint.12-0.tmp"];
    std::fs::write(dir.join(stale[0]), "{}").unwrap();
    symlink(&outside, dir.join(stale[1])).unwrap();
    let kept = ["ledger.jsonl.checkpoint.backup.tmp", "other.jsonl.checkpoint.12-0.tmp", "ledger.jsonl.checkpoint.1-2"];
    for name in kept {
        std::fs::write(dir.join(name), "mine").unwrap();
    }

    FileLedger::open(&path).await.unwrap();
    for name in stale {
        assert!(std::fs::symlink_metadata(dir.join(name)).is_err(), "{name} was removed");
    }
    for name in kept {
        assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), "mine", "{name} is not ours");
    }
    assert_untouched(&outside);
}

#[tokio::test]
async fn recovery_never_writes_the_torn_bytes_through_a_symlink() {
    let root = tempfile::tempdir().unwrap();
    let outside = precious(root.path());
    let path = root.path().join("state/ledger.jsonl");
    FileLedger::open(&path).await.unwrap().append(vec![held("prd", 1)]).await.unwrap();
    let whole = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":2"))
        .unwrap()
        .unwrap();
    let planted = PathBuf::from(format!("{}.torn-{whole}", path.display()));
    symlink(&outside, &planted).unwrap();

    let recovery = FileLedger::recover(&path).await.unwrap();
    assert_untouched(&outside);
    let saved = recovery.saved_to.unwrap();
    assert_eq!(saved, PathBuf::from(format!("{}.1", planted.display())), "the planted name is skipped");
    assert_eq!(std::fs::read(&saved).unwrap(), b"{\"seq\":2");
    assert_eq!(mode(&saved), 0o600);
    assert_eq!(FileLedger::open(&path).await.unwrap().read_since(0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_forged_record_number_at_the_largest_there_is_is_corruption_not_a_panic() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("ledger.jsonl");
    let (_, first) =
        promote_core::ledger::LedgerEntry::seal(u64::MAX, promote_core::ledger::GENESIS_HASH, held("prd", 1));
    let (_, second) = promote_core::ledger::LedgerEntry::seal(1, promote_core::ledger::GENESIS_HASH, held("prd", 1));
    std::fs::write(&path, format!("{first}\n{second}\n")).unwrap();
    support::assert_refused_at(&path, 1, &format!("found {}", u64::MAX)).await;
}

#[tokio::test]
async fn fencing_tokens_at_the_largest_there_is_are_compared_without_overflow() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("ledger.jsonl");
    let ledger = FileLedger::open(&path).await.unwrap();
    ledger.append(vec![held("prd", u64::MAX)]).await.unwrap();
    let error = ledger.append(vec![held("prd", 7)]).await.unwrap_err();
    assert!(matches!(error, Error::Fenced { newest: u64::MAX, .. }), "{error}");
    ledger.append(vec![held("prd", u64::MAX)]).await.unwrap();
    let reopened = FileLedger::open(&path).await.unwrap();
    let summary = reopened.summary().await.unwrap().unwrap();
    assert_eq!(summary.newest_fence("prd"), Some(u64::MAX));
    assert!(matches!(reopened.append(vec![held("prd", 1)]).await, Err(Error::Fenced { .. })));
}
