//! Private files. The data directory holds session ids and roles (the store), the SP's private key,
//! the fingerprint key and full database dumps: nothing there is for other local users. The process
//! runs with umask 0077, so what it creates is 0700 / 0600; at start every private path that already
//! exists is checked, and a looser one stops the start with the command that fixes it. Files the
//! console creates beside others' (temp and lock files) are opened without following symlinks.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;

/// From here on, what this process creates is readable by its owner only.
pub fn restrict_umask() {
    use nix::sys::stat::{Mode, umask};
    umask(Mode::from_bits_truncate(0o077));
}

/// A private path that others may read or write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is open to other local users (mode {mode:04o}); it holds {what}. Fix: chmod {fix:o} {}",
    path.display(),
    path.display()
)]
pub struct TooOpen {
    pub path: PathBuf,
    pub mode: u32,
    pub what: &'static str,
    pub fix: u32,
}

/// `path`, if it exists, is not open to group or others (a symlink is judged by what it points to).
pub fn check_private(path: &Path, what: &'static str) -> Result<(), TooOpen> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    Err(TooOpen {
        path: path.to_path_buf(),
        mode,
        what,
        fix: if meta.is_dir() { 0o700 } else { 0o600 },
    })
}

/// Every private path of this configuration that exists: the data directory, the store and its WAL
/// and SHM files, the SAML directory and the SP key (its certificate is public), the fingerprint key, the backups directory and every
/// backup in it.
pub fn check_private_paths(config: &Config) -> Result<(), TooOpen> {
    let data = &config.data_dir;
    check_private(data, "the store, the SAML key and the backups")?;
    for suffix in ["", "-wal", "-shm"] {
        let store = data.join(format!("{}{suffix}", crate::store::DATABASE_FILE));
        check_private(&store, "sessions, roles and the audit log")?;
    }
    check_private(&data.join("saml"), "the SP's private key")?;
    check_private(
        &config.data_path(&config.auth.sp_key),
        "the SP's private key",
    )?;
    check_private(
        &data.join(crate::environment::disk::FINGERPRINT_KEY_FILE),
        "the key of the env fingerprints",
    )?;
    for channel in &config.alerts.channels {
        for file in channel.secret_files() {
            check_private(&config.data_path(file), "an alert channel's secret")?;
        }
    }
    check_private(
        &config.rclone_config(),
        "the off-site copy's credentials (rclone's configuration)",
    )?;
    let backups = config.backups_dir();
    check_private(&backups, "database dumps")?;
    if let Ok(entries) = std::fs::read_dir(&backups) {
        for entry in entries.flatten() {
            check_private(&entry.path(), "a database dump")?;
        }
    }
    Ok(())
}

/// Opens (creating, 0600) a file for writing without following a symlink at `path` and without
/// truncating it: for lock files.
pub fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
}

/// Creates a new file (0600) that must not exist yet (so no symlink planted there is followed).
pub async fn create_new_private(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
}

/// A name as a part of a file name: letters, digits, `-` and `_` kept, anything else (a path
/// separator, a dot, a space) becomes `_`; empty becomes `database`.
pub fn file_name_part(name: &str) -> String {
    let safe: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "database".into()
    } else {
        safe
    }
}

/// The sha256 of a file, read in pieces (a backup may be larger than memory), off the async threads.
pub async fn sha256_of(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_harmless_file_name_part() {
        for (name, part) in [
            ("epsm_db", "epsm_db"),
            ("../../etc/passwd", "______etc_passwd"),
            ("a/b", "a_b"),
            ("..", "__"),
            ("", "database"),
            ("db name\n", "db_name_"),
            ("dä", "d_"),
        ] {
            assert_eq!(file_name_part(name), part, "{name:?}");
        }
    }

    #[test]
    fn a_path_open_to_others_is_named_with_its_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(check_private(&file, "x"), Ok(()));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = check_private(&file, "x").unwrap_err();
        assert_eq!((err.mode, err.fix), (0o644, 0o600));
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = check_private(dir.path(), "x").unwrap_err();
        assert_eq!(err.fix, 0o700);
        assert_eq!(check_private(&dir.path().join("absent"), "x"), Ok(()));
    }

    #[test]
    fn a_lock_file_is_not_opened_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join(".lock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_lock_file(&link).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        let fresh = dir.path().join("fresh.lock");
        open_lock_file(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
