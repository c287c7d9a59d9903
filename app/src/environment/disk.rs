//! What the console reads of the project's files and its own key, shared by every capability that
//! needs it: the env file's final values, a file's sha256, the installation's fingerprint key.

use std::path::Path;

use crate::config::Config;

/// The installation's fingerprint key, in the data directory.
pub const FINGERPRINT_KEY_FILE: &str = "fingerprint.key";

/// The key that makes fingerprints of this installation: 32 random bytes made on first use and kept
/// (owner-only) in the data directory, so fingerprints stay comparable across restarts.
pub fn fingerprint_key(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(FINGERPRINT_KEY_FILE);
    match std::fs::read(&path) {
        Ok(key) if key.len() >= 32 => return Ok(key),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key: [u8; 32] = rand::random();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(&key)?;
    file.sync_all()?;
    Ok(key.to_vec())
}

/// The final values of the project's env file as compose reads it (empty when it cannot be read or
/// does not parse: the audit says why).
pub fn env_values(config: &Config) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(config.env_file()).unwrap_or_default();
    super::envfile::parse(&text, &|_| None)
        .map(|file| {
            file.resolved()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The sha256 of a file, hex; None when it cannot be read.
pub fn file_sha256(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    std::fs::read(path)
        .ok()
        .map(|b| hex::encode(Sha256::digest(b)))
}

/// What a stat says of a file, enough to tell that it changed: another file (inode), another length,
/// content written (mtime) or its mode or owner changed (ctime). A page compares these instead of
/// reading the file again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    inode: u64,
    len: u64,
    mode: u32,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// The file's stamp now; None when it cannot be read (absent, say).
pub fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    Some(FileStamp {
        inode: m.ino(),
        len: m.len(),
        mode: m.mode(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
    })
}
