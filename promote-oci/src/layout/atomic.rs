//! Files written whole or not at all: created new under a random name in the layout's directory, then
//! renamed into place.

use std::path::Path;

use promote_core::{Error, ErrorClass, Result};
use tokio::io::AsyncWriteExt as _;

use super::io_error;
use crate::error::LAYOUT_BACKEND;

/// A new temporary file in the layout's directory, to be renamed into place: created exclusively under a
/// random name with mode 0600 (never a file already there, nor through a symlink planted under its name).
/// Dropping the path removes the file.
pub(super) async fn create_temporary(root: &Path) -> Result<(tokio::fs::File, tempfile::TempPath)> {
    let dir = root.to_owned();
    let created =
        tokio::task::spawn_blocking(move || tempfile::Builder::new().prefix(".promote-tmp-").tempfile_in(dir))
            .await
            .map_err(|error| {
                Error::backend(LAYOUT_BACKEND, ErrorClass::Temporary, format!("file task failed: {error}"))
            })?
            .map_err(io_error(root))?;
    let (file, path) = created.into_parts();
    Ok((tokio::fs::File::from_std(file), path))
}

pub(super) async fn write_atomically(root: &Path, target: &Path, bytes: &[u8]) -> Result<()> {
    let (mut file, temp) = create_temporary(root).await?;
    let result = async {
        file.write_all(bytes).await.map_err(io_error(&temp))?;
        file.sync_all().await.map_err(io_error(&temp))?;
        tokio::fs::rename(&temp, target).await.map_err(io_error(target))
    }
    .await;
    if result.is_ok() {
        let _ = temp.keep();
    }
    result
}
