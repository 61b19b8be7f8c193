//! A lock across processes on one machine: an OS file lock per stage.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{EnvironmentLock, Lease, LockWait};
use crate::error::{Error, ErrorClass, Result};
use crate::state_file;

/// How often a waiting process retries a held file lock.
const POLL: Duration = Duration::from_millis(25);

/// Locks stages across processes with an OS file lock on `<dir>/<stage>.lock`.
///
/// The file also keeps the last fencing token and the holder's name, so tokens keep growing across
/// restarts and a refusal can say who holds the stage; `<dir>/<stage>.token` keeps the newest token too, so
/// that removing a lock file does not restart them. The OS releases the lock if the holder dies. A lease is
/// lost if its lock file is removed or replaced while it is held.
///
/// The directory is created owner-only if missing, and refused ([`Error::UnsafeFile`]) if someone else may
/// write to it. Lock files are created with mode 0600 and never opened through a symlink. A lock file whose
/// token cannot grow (it holds the largest token there is) is refused, never wrapped around.
#[derive(Debug, Clone)]
pub struct FileLock {
    dir: Arc<PathBuf>,
}

impl FileLock {
    /// Locks under `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileLock { dir: Arc::new(dir.into()) }
    }

    fn try_acquire(&self, stage: &str, holder: &str) -> Result<std::result::Result<Lease, String>> {
        if stage.is_empty() || stage.starts_with('.') || stage.contains(['/', '\\']) {
            return Err(Error::invalid("stage name", stage, "a lock file is named after it: no '/', no leading '.'"));
        }
        state_file::prepare_dir(&self.dir)?;
        let path = self.dir.join(format!("{stage}.lock"));
        let io = |e| Error::io(&path, e);
        let mut file: File =
            state_file::open(&path, state_file::options().read(true).write(true).create(true).truncate(false))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut content = String::new();
                file.read_to_string(&mut content).map_err(io)?;
                let holder = content.split_once(' ').map_or("another process", |(_, h)| h.trim()).to_owned();
                return Ok(Err(holder));
            }
            Err(TryLockError::Error(error)) => return Err(io(error)),
        }
        let mut content = String::new();
        file.read_to_string(&mut content).map_err(io)?;
        let in_lock: u64 = content.split_whitespace().next().and_then(|t| t.parse().ok()).unwrap_or(0);
        // The newest token is also kept beside the lock file, written only under the lock: a lock file
        // removed or replaced (which loses its holder the lock) does not make tokens start again from 1,
        // which the ledger's fencing would then refuse.
        let high_water_path = self.dir.join(format!("{stage}.token"));
        let mut high_water: File = state_file::open(
            &high_water_path,
            state_file::options().read(true).write(true).create(true).truncate(false),
        )?;
        let mut kept = String::new();
        high_water.read_to_string(&mut kept).map_err(|e| Error::io(&high_water_path, e))?;
        let last = in_lock.max(kept.trim().parse().unwrap_or(0));
        let token = last.checked_add(1).ok_or_else(|| {
            state_file::refused(
                &path,
                format!(
                    "its last fencing token is {last}, the largest there is, so no newer token can be issued; \
                     someone may have written it there. Check the ledger's newest token for stage {stage} \
                     before replacing the file"
                ),
            )
        })?;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(format!("{token} {holder}\n").as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        let keep = |e| Error::io(&high_water_path, e);
        high_water.set_len(0).map_err(keep)?;
        high_water.seek(SeekFrom::Start(0)).map_err(keep)?;
        high_water.write_all(format!("{token}\n").as_bytes()).map_err(keep)?;
        high_water.sync_data().map_err(keep)?;
        // The lock is lost if its file is removed or replaced: another process could then lock a new file.
        let held = file.metadata().map_err(io)?;
        let (device, inode) = (held.dev(), held.ino());
        let lost = move || match std::fs::symlink_metadata(&path) {
            Ok(now) => (now.dev(), now.ino()) != (device, inode),
            Err(_) => true,
        };
        Ok(Ok(Lease::new(stage, holder, token, Box::new(Held(file))).lost_if(lost)))
    }
}

/// Keeps the locked file open; closing it releases the OS lock.
struct Held(#[allow(dead_code)] File);

#[async_trait]
impl EnvironmentLock for FileLock {
    async fn acquire(&self, stage: &str, holder: &str, wait: LockWait) -> Result<Lease> {
        let deadline = match wait {
            LockWait::Fail => None,
            LockWait::Wait(limit) => Some(tokio::time::Instant::now() + limit),
        };
        loop {
            let this = self.clone();
            let (stage_owned, holder_owned) = (stage.to_owned(), holder.to_owned());
            let attempt = tokio::task::spawn_blocking(move || this.try_acquire(&stage_owned, &holder_owned))
                .await
                .map_err(|e| Error::backend("file-lock", ErrorClass::Temporary, e.to_string()))??;
            match attempt {
                Ok(lease) => return Ok(lease),
                Err(current) => {
                    let out_of_time = deadline.is_none_or(|d| tokio::time::Instant::now() + POLL > d);
                    if out_of_time {
                        return Err(Error::Locked { stage: stage.to_owned(), holder: current });
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }
}
