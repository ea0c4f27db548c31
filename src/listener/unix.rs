//! The unix domain socket listener: the file's mode and owner decide who may connect.

use std::path::Path;

/// Binds a unix domain socket listener with the given mode (e.g. `0o660`) and optional
/// owner and group (numeric ids): the file permissions decide who may connect. A stale
/// socket file left by a previous run is replaced; any other file at `path` is an error.
#[cfg(unix)]
pub fn bind_unix(
    path: &Path,
    mode: u32,
    owner: Option<u32>,
    group: Option<u32>,
) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ));
        }
        std::fs::remove_file(path)
            .map_err(|e| format!("cannot remove the old socket {}: {e}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    if owner.is_some() || group.is_some() {
        std::os::unix::fs::chown(path, owner, group)
            .map_err(|e| format!("cannot change the owner of {}: {e}", path.display()))?;
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unix_sockets_get_the_mode_asked_for() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let listener = bind_unix(&path, 0o600, None, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(listener);
        // A stale socket is replaced; a regular file is not.
        let _again = bind_unix(&path, 0o660, None, None).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o660
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(bind_unix(&file, 0o600, None, None)
            .unwrap_err()
            .contains("not a socket"));
    }
}
