//! What the console reads of the project's files and its own key, shared by every capability that
//! needs it: the env file's final values, a file's sha256, the installation's fingerprint key.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::secrets::{Masker, Scrubber};
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

/// The env file as last read: its stamp, its values and the scrubber of its secrets.
pub struct EnvKept {
    stamp: FileStamp,
    values: Arc<BTreeMap<String, String>>,
    scrubber: Arc<Scrubber>,
}

impl Masker {
    /// The env file's final values and the scrubber of its secrets, read again only when the file
    /// changes (its stamp): building the scrubber's automaton is the dearest part of a health round
    /// or a deploy's start otherwise. A file that cannot be stamped is read every time.
    pub fn env_file(&self, config: &Config) -> (Arc<BTreeMap<String, String>>, Arc<Scrubber>) {
        let stamp = stamp(&config.env_file());
        let mut kept = self.env_kept.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(k), Some(now)) = (kept.as_ref(), stamp.as_ref())
            && k.stamp == *now
        {
            return (k.values.clone(), k.scrubber.clone());
        }
        let values = Arc::new(env_values(config));
        let scrubber =
            Arc::new(self.scrubber(values.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        *kept = stamp.map(|stamp| EnvKept {
            stamp,
            values: values.clone(),
            scrubber: scrubber.clone(),
        });
        (values, scrubber)
    }
}

/// The final values of the project's env file as compose reads it (empty when it cannot be read or
/// does not parse: the audit says why).
pub fn env_values(config: &Config) -> BTreeMap<String, String> {
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
