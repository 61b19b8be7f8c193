//! A lock across processes on one machine: an OS file lock per stage.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{EnvironmentLock, Lease, LockWait};
use crate::error::{Error, ErrorClass, Result};

/// How often a waiting process retries a held file lock.
const POLL: Duration = Duration::from_millis(25);

/// Locks stages across processes with an OS file lock on `<dir>/<stage>.lock`.
///
/// The file also keeps the last fencing token and the holder's name, so tokens keep growing across
/// restarts and a refusal can say who holds the stage. The OS releases the lock if the holder dies.
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
        std::fs::create_dir_all(self.dir.as_ref()).map_err(|e| Error::io(self.dir.as_ref(), e))?;
        let path = self.dir.join(format!("{stage}.lock"));
        let io = |e| Error::io(&path, e);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
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
        let last: u64 = content.split_whitespace().next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let token = last + 1;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(format!("{token} {holder}\n").as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(Ok(Lease::new(stage, holder, token, Box::new(Held(file)))))
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
