//! The file half of the folder's invariant: bounded reads, directory listings, and atomic
//! writes (temp file in the same directory with its mode set before any byte, fsync, rename,
//! fsync the directory), so a reader never sees half a file.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::KeyFolderError;

/// Reads a key or state file, refusing anything bigger than a key can be.
pub(super) fn read_small(path: &Path) -> Result<Vec<u8>, KeyFolderError> {
    use std::io::Read as _;
    let io_err = |source| KeyFolderError::Io { path: path.to_owned(), source };
    let file = fs::File::open(path).map_err(io_err)?;
    let mut bytes = Vec::new();
    file.take(access_token::keyset::MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > access_token::keyset::MAX_KEY_FILE_BYTES {
        return Err(KeyFolderError::BadKey {
            path: path.to_owned(),
            reason: "too big for a key".into(),
        });
    }
    Ok(bytes)
}

pub(super) fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

pub(super) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, KeyFolderError> {
    let io_err = |source| KeyFolderError::Io { path: dir.to_owned(), source };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        paths.push(entry.map_err(io_err)?.path());
    }
    paths.sort();
    Ok(paths)
}

pub(super) fn remove_file(path: &Path) -> Result<(), KeyFolderError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(KeyFolderError::Io { path: path.to_owned(), source }),
    }
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), KeyFolderError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| KeyFolderError::Io { path: dir.to_owned(), source })
}

pub(super) fn create_dir(path: &Path, mode: u32) -> Result<(), KeyFolderError> {
    let io_err = |source| KeyFolderError::Io { path: path.to_owned(), source };
    if path.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
    builder.create(path).map_err(io_err)?;
    // Explicitly, so the umask does not decide who can read `public/`.
    set_mode(path, mode).map_err(io_err)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Writes `bytes` to `path` through a temp file in the same directory (`tempfile`: a hidden,
/// random name, created exclusively, removed if anything fails): `mode` on the open file (so
/// the umask does not decide who reads a public key, and a private key is never readable by
/// others, even for a moment), fsync, rename over `path`, fsync the directory.
pub(super) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFolderError> {
    let io_err = |source| KeyFolderError::Io { path: path.to_owned(), source };
    let dir = path.parent().ok_or_else(|| io_err(io::ErrorKind::InvalidInput.into()))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let prefix = format!(".{name}.tmp-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(fs::Permissions::from_mode(mode & 0o600));
    }
    let mut file = builder.tempfile_in(dir).map_err(io_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.as_file().set_permissions(fs::Permissions::from_mode(mode)).map_err(io_err)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(bytes).map_err(io_err)?;
    file.as_file().sync_all().map_err(io_err)?;
    file.persist(path).map_err(|e| io_err(e.error))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)
}
