//! promote's own state files (the file ledger, its checkpoint and recovery files, lock files): created
//! readable by their owner only, opened without following a symlink, and kept only in directories that no
//! one else can write to. On a shared machine, whoever can write a state directory could otherwise plant a
//! symlink where promote is about to write, or swap its state for their own.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::{Error, Location};

/// The mode of every state file promote creates.
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;
/// The mode of every state directory promote creates.
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;

/// [`Error::UnsafeFile`] about `path`.
pub(crate) fn refused(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
    Error::UnsafeFile { location: Location { file: path.into(), line: None, column: None }, reason: reason.into() }
}

/// The directory a state file at `path` lives in (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Creates `dir` and any missing parent (owner-only), then checks that it is safe to keep state in.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir).map_err(|e| Error::io(dir, e))?;
    check_dir(dir)
}

/// Refuses a directory that someone other than this process's user (or root) owns, or that others may write
/// to without the sticky bit: they could replace what promote keeps there. A symlinked directory is judged
/// by the directory it points to.
pub(crate) fn check_dir(dir: &Path) -> Result<(), Error> {
    let metadata = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !metadata.is_dir() {
        return Err(refused(dir, "it is not a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let user = rustix::process::geteuid().as_raw();
        let owner = metadata.uid();
        if owner != user && owner != 0 {
            return Err(refused(
                dir,
                format!(
                    "refusing to keep state in it: it belongs to uid {owner}, not to this user (uid {user}) or root, \
                     and its owner could replace the files promote keeps there"
                ),
            ));
        }
        let mode = metadata.mode() & 0o7777;
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(refused(
                dir,
                format!(
                    "refusing to keep state in it: others can write to it (mode {mode:o}) and could plant symlinks \
                     or replace the files promote keeps there; `chmod go-w` it"
                ),
            ));
        }
    }
    Ok(())
}

/// Options that open a state file without following a symlink, creating it (if asked to) owner-only.
pub(crate) fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The bits fit an i32: O_NOFOLLOW is a small flag.
        options.mode(FILE_MODE).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    options
}

/// Opens the state file at `path` with `options` (from [`options`]), refusing a symlink or anything but a
/// regular file.
pub(crate) fn open(path: &Path, options: &OpenOptions) -> Result<File, Error> {
    let file = options.open(path).map_err(|error| match is_symlink_refusal(&error) {
        true => refused(path, "it is a symlink, and promote never follows one to a state file"),
        false => Error::io(path, error),
    })?;
    let metadata = file.metadata().map_err(|e| Error::io(path, e))?;
    if !metadata.is_file() {
        return Err(refused(path, "it is not a regular file"));
    }
    Ok(file)
}

/// Whether opening with `O_NOFOLLOW` failed because the last component is a symlink.
pub(crate) fn is_symlink_refusal(error: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
    }
    #[cfg(not(unix))]
    {
        let _ = error;
        false
    }
}

/// Creates a new state file at `path`, or at `path` with `.1`, `.2`… appended if that exists (never
/// replacing or following what is there), and returns it with the path it got.
pub(crate) fn create_beside(path: &Path, attempts: u32) -> Result<(File, PathBuf), Error> {
    let mut options = options();
    options.write(true).create_new(true);
    for attempt in 0..attempts {
        let candidate = match attempt {
            0 => path.to_owned(),
            n => PathBuf::from(format!("{}.{n}", path.display())),
        };
        match options.open(&candidate) {
            Ok(file) => return Ok((file, candidate)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(Error::io(candidate, error)),
        }
    }
    Err(refused(path, format!("it and {} numbered names beside it exist already", attempts.saturating_sub(1))))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn state_directories_others_can_write_to_are_refused_unless_sticky() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state/nested");
        prepare_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700, "created owner-only");
        for (mode, refused) in [(0o777, true), (0o770, true), (0o755, false), (0o1777, false), (0o700, false)] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let checked = check_dir(&dir);
            assert_eq!(checked.is_err(), refused, "mode {mode:o}: {checked:?}");
            if let Err(error) = checked {
                assert!(matches!(error, Error::UnsafeFile { .. }) && error.to_string().contains("others can write"));
            }
        }
    }

    #[test]
    fn state_files_are_created_owner_only_and_symlinks_are_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("elsewhere");
        std::fs::write(&target, "precious").unwrap();
        let link = root.path().join("state.lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut options = options();
        options.read(true).write(true).create(true).truncate(false);
        let error = open(&link, &options).unwrap_err();
        assert!(matches!(error, Error::UnsafeFile { .. }) && error.to_string().contains("symlink"), "{error}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");

        let fresh = root.path().join("fresh");
        open(&fresh, &options).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o600);

        let (_, first) = create_beside(&link, 3).unwrap();
        assert_eq!(first, PathBuf::from(format!("{}.1", link.display())), "the symlink's name is skipped");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    }
}
