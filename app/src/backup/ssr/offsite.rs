//! The off-site copy: each verified backup copied with rclone to `backups.copy_to` (a remote of
//! rclone's own configuration file, which holds its credentials, mode 0600) and checked there (its
//! size, and a hash the remote gives compared with the same hash of the local file) before the row says
//! "copied". Retention deletes the remote copy with the local file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::config::Config;

/// How long one rclone command may take (a large backup over a slow link takes its time).
const COMMAND_WITHIN: Duration = Duration::from_secs(6 * 3600);

/// rclone's own bounds: a remote that does not answer fails in seconds, not after rclone's defaults.
const BOUNDS: [&str; 8] = [
    "--contimeout",
    "10s",
    "--timeout",
    "60s",
    "--retries",
    "2",
    "--low-level-retries",
    "2",
];

/// The hashes compared, best first (the remote names them as rclone does).
const HASHES: [&str; 3] = ["sha256", "sha1", "md5"];

/// Where backups are copied, and with what.
pub struct Offsite {
    program: PathBuf,
    config_file: PathBuf,
    /// `remote:path`.
    target: String,
}

impl Offsite {
    /// The configured copy, if `backups.copy_to` is set.
    pub fn from_config(config: &Config) -> Option<Offsite> {
        Some(Offsite {
            program: PathBuf::from("rclone"),
            config_file: config.rclone_config(),
            target: config.backups.copy_target()?.to_string(),
        })
    }

    /// Where a backup named `name` goes.
    pub fn remote_path(&self, name: &str) -> String {
        if self.target.ends_with(':') || self.target.ends_with('/') {
            format!("{}{name}", self.target)
        } else {
            format!("{}/{name}", self.target)
        }
    }

    /// Runs rclone with `args`; its stdout, or why it failed (its last message).
    async fn rclone(&self, args: &[&str]) -> Result<String, String> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg("--config")
            .arg(&self.config_file)
            .args(BOUNDS)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let out = tokio::time::timeout(COMMAND_WITHIN, command.output())
            .await
            .map_err(|_| {
                format!(
                    "rclone did not end within {} h",
                    COMMAND_WITHIN.as_secs() / 3600
                )
            })?
            .map_err(|e| format!("cannot run rclone: {e}"))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let said = stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .map(|l| l.trim())
            // rclone starts each line with the date and time.
            .map(|l| l.splitn(3, ' ').nth(2).unwrap_or(l))
            .unwrap_or("no message");
        Err(format!(
            "rclone {} failed: {said}",
            args.first().unwrap_or(&"")
        ))
    }

    /// Copies `local` to the target and checks it there; what was checked, or why it failed.
    pub async fn copy(&self, local: &Path, name: &str, sha256: &str) -> Result<String, String> {
        let remote = self.remote_path(name);
        let local_text = local.display().to_string();
        self.rclone(&["copyto", &local_text, &remote]).await?;
        let size = tokio::fs::metadata(local)
            .await
            .map_err(|e| format!("cannot read {local_text}: {e}"))?
            .len();
        let listed = self.rclone(&["lsjson", "--hash", &remote]).await?;
        let (remote_size, hashes) = parse_listing(&listed)?;
        if remote_size != size {
            return Err(format!(
                "the copy at {remote} is {remote_size} bytes, the backup {size}"
            ));
        }
        let Some((kind, theirs)) = HASHES
            .iter()
            .find_map(|k| Some((*k, hashes.get(*k)?.clone())))
        else {
            return Ok(format!(
                "copied to {remote}; its size checked (the remote gives no hash)"
            ));
        };
        let ours = if kind == "sha256" {
            sha256.to_string()
        } else {
            let out = self.rclone(&["hashsum", kind, &local_text]).await?;
            out.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        if !ours.eq_ignore_ascii_case(&theirs) {
            return Err(format!(
                "the copy at {remote} has another {kind} than the backup: it is not the same file"
            ));
        }
        Ok(format!(
            "copied to {remote}; its size and {kind} checked there"
        ))
    }

    /// Deletes the copy of backup `name` (retention, or a delete by hand). A copy that is not there
    /// is not an error.
    pub async fn delete(&self, name: &str) -> Result<(), String> {
        let remote = self.remote_path(name);
        match self.rclone(&["deletefile", &remote]).await {
            Ok(_) => Ok(()),
            Err(e) if e.contains("not found") || e.contains("doesn't exist") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The size and hashes of the one file `rclone lsjson --hash` lists.
fn parse_listing(json: &str) -> Result<(u64, std::collections::BTreeMap<String, String>), String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Size")]
        size: u64,
        #[serde(rename = "Hashes", default)]
        hashes: std::collections::BTreeMap<String, String>,
    }
    let entries: Vec<Entry> = serde_json::from_str(json)
        .map_err(|e| format!("rclone lsjson answered something else: {e}"))?;
    match entries.as_slice() {
        [one] => Ok((one.size, one.hashes.clone())),
        [] => Err("the copy is not on the remote after rclone copied it".into()),
        _ => Err("rclone lsjson listed more than the copy".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_gives_size_and_hashes_and_nothing_else_passes() {
        let (size, hashes) = parse_listing(
            r#"[{"Path":"a.dump","Size":100,"IsDir":false,"Hashes":{"md5":"ab","sha1":"cd"}}]"#,
        )
        .unwrap();
        assert_eq!(size, 100);
        assert_eq!(hashes["md5"], "ab");
        assert!(parse_listing("[]").is_err());
        assert!(parse_listing("not json").is_err());
        let (_, none) = parse_listing(r#"[{"Size":5}]"#).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn a_backup_goes_under_the_target() {
        let at = |target: &str| Offsite {
            program: "rclone".into(),
            config_file: "x".into(),
            target: target.into(),
        };
        assert_eq!(
            at("offsite:epsm").remote_path("a.dump"),
            "offsite:epsm/a.dump"
        );
        assert_eq!(at("offsite:").remote_path("a.dump"), "offsite:a.dump");
        assert_eq!(
            at("offsite:epsm/").remote_path("a.dump"),
            "offsite:epsm/a.dump"
        );
    }
}
