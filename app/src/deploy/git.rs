//! The project directory's git checkout, through the git CLI as a child process (as compose is run):
//! clean environment, no prompts, bounded time, output scrubbed. What a deploy's source step fetches
//! and checks out, and what its change card reads.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::config::Config;
use crate::environment::disk::{FileStamp, stamp};
use crate::environment::secrets::Scrubber;

/// The variables a git child keeps from the console's environment.
const KEPT_VARIABLES: &[&str] = &["PATH", "HOME", "TMPDIR"];
/// Output beyond this is cut: a listing of a huge history must not fill the console's memory.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(String),
    #[error("`git {what}` failed (exit {code}): {stderr}")]
    Failed {
        what: String,
        code: String,
        stderr: String,
    },
    #[error("`git {what}` did not finish within {} s", .after.as_secs())]
    Timeout { what: String, after: Duration },
}

/// The working tree as `git status` sees it: what a checkout could overwrite.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkingTree {
    /// Tracked files changed, added, deleted or renamed on the server (paths only, never contents).
    pub modified: Vec<String>,
    /// Files git does not track and that are not ignored.
    pub untracked: Vec<String>,
}

/// One commit of a range, as the change card lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitLine {
    pub id: String,
    pub subject: String,
    pub author: String,
    /// Author date, RFC 3339.
    pub date: String,
}

#[derive(Debug, Clone)]
pub struct Git {
    dir: PathBuf,
    pub remote: String,
    pub branch: String,
    ssh_key: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    timeout: Duration,
}

impl Git {
    pub fn from_config(config: &Config) -> Git {
        let git = &config.project.git;
        Git {
            dir: std::path::absolute(&config.project.dir).unwrap_or(config.project.dir.clone()),
            remote: git.remote.clone(),
            branch: git.branch.clone(),
            ssh_key: git.ssh_key.clone(),
            known_hosts: git.known_hosts.clone(),
            timeout: Duration::from_secs(git.timeout_secs),
        }
    }

    /// `git -C <dir> <args>` in a clean environment: no prompt for credentials (it would hang), the
    /// deploy key and strict host keys for ssh remotes.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("-C")
            .arg(&self.dir)
            .args(["-c", "core.quotepath=off"])
            .args(args)
            .env_clear()
            .envs(
                KEPT_VARIABLES
                    .iter()
                    .filter_map(|k| Some((*k, std::env::var_os(k)?))),
            )
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut ssh = vec!["ssh -o BatchMode=yes -o StrictHostKeyChecking=yes".to_string()];
        if let Some(key) = &self.ssh_key {
            ssh.push(format!("-o IdentitiesOnly=yes -i {}", shell_quote(key)));
        }
        if let Some(known_hosts) = &self.known_hosts {
            ssh.push(format!(
                "-o UserKnownHostsFile={}",
                shell_quote(known_hosts)
            ));
        }
        cmd.env("GIT_SSH_COMMAND", ssh.join(" "));
        cmd
    }

    /// Runs git to its end; stdout on success, stderr (scrubbed: remote URLs may hold credentials)
    /// in the error.
    pub async fn run(&self, args: &[&str], scrubber: &Scrubber) -> Result<String, GitError> {
        let what = args.join(" ");
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output();
        let out = match tokio::time::timeout(self.timeout, child).await {
            Err(_) => {
                return Err(GitError::Timeout {
                    what: scrubber.scrub(&what),
                    after: self.timeout,
                });
            }
            Ok(Err(e)) => return Err(GitError::Spawn(e.to_string())),
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(GitError::Failed {
                what: scrubber.scrub(&what),
                code: out
                    .status
                    .code()
                    .map_or_else(|| "by signal".into(), |c| c.to_string()),
                stderr: scrubber.scrub(stderr.trim()),
            });
        }
        let mut stdout = out.stdout;
        stdout.truncate(MAX_OUTPUT);
        Ok(String::from_utf8_lossy(&stdout).into_owned())
    }

    /// Whether the project directory is the top of a git working tree (not merely inside one).
    pub async fn is_checkout(&self, scrubber: &Scrubber) -> bool {
        match self.run(&["rev-parse", "--show-toplevel"], scrubber).await {
            Ok(top) => {
                let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or(p.to_path_buf());
                canonical(Path::new(top.trim())) == canonical(&self.dir)
            }
            Err(_) => false,
        }
    }

    /// Stamps of what `resolve(wanted)` and `head` read in a plain `.git` directory: HEAD, the packed
    /// refs, FETCH_HEAD, the ref directories (git writes a ref by renaming a new file into its
    /// directory, which changes the directory) and the ref files `wanted` may name. Equal stamps: the
    /// same answers, without asking git. None when there is no `.git` directory to stamp or `wanted`
    /// is not a ref name `resolve` would try.
    pub fn refs_stamp(&self, wanted: &str) -> Option<Vec<Option<FileStamp>>> {
        let git = self.dir.join(".git");
        if !git.is_dir() || !plausible_ref(wanted) {
            return None;
        }
        let remote = format!("refs/remotes/{}", self.remote);
        let mut paths = vec![
            git.join("HEAD"),
            git.join("packed-refs"),
            git.join("FETCH_HEAD"),
        ];
        for dir in ["refs/heads", "refs/tags", remote.as_str()] {
            let named = git.join(dir).join(wanted);
            paths.push(git.join(dir));
            paths.extend(named.parent().map(Path::to_path_buf));
            paths.push(named);
        }
        Some(paths.iter().map(|p| stamp(p)).collect())
    }

    /// The commit checked out now.
    pub async fn head(&self, scrubber: &Scrubber) -> Option<String> {
        self.run(
            &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"],
            scrubber,
        )
        .await
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
    }

    /// Fetches every branch and tag of the remote (without touching the working tree).
    pub async fn fetch(&self, scrubber: &Scrubber) -> Result<(), GitError> {
        let refspec = format!("+refs/heads/*:refs/remotes/{}/*", self.remote);
        self.run(
            &[
                "fetch",
                "--prune",
                "--tags",
                "--force",
                "--no-write-fetch-head",
                &self.remote,
                &refspec,
            ],
            scrubber,
        )
        .await
        .map(drop)
    }

    /// The commit `wanted` names: a branch of the remote, a tag, or a commit id (in that order).
    pub async fn resolve(&self, wanted: &str, scrubber: &Scrubber) -> Option<String> {
        if !plausible_ref(wanted) {
            return None;
        }
        let candidates = [
            format!("refs/remotes/{}/{wanted}", self.remote),
            format!("refs/tags/{wanted}"),
            wanted.to_string(),
        ];
        for candidate in candidates {
            let spec = format!("{candidate}^{{commit}}");
            if let Ok(id) = self
                .run(&["rev-parse", "--verify", "--quiet", &spec], scrubber)
                .await
            {
                let id = id.trim().to_string();
                if !id.is_empty() {
                    return Some(id);
                }
            }
        }
        None
    }

    pub async fn working_tree(&self, scrubber: &Scrubber) -> Result<WorkingTree, GitError> {
        let out = self
            .run(
                &["status", "--porcelain=v1", "-z", "--untracked-files=all"],
                scrubber,
            )
            .await?;
        Ok(parse_status(&out))
    }

    /// Paths that differ between two commits.
    pub async fn changed_paths(
        &self,
        from: &str,
        to: &str,
        scrubber: &Scrubber,
    ) -> Result<Vec<String>, GitError> {
        let out = self
            .run(&["diff", "--name-only", "-z", from, to, "--"], scrubber)
            .await?;
        Ok(split_nul(&out))
    }

    /// Whether `commit` tracks `path`.
    pub async fn tracks(&self, commit: &str, path: &str, scrubber: &Scrubber) -> bool {
        self.run(&["ls-tree", "--name-only", commit, "--", path], scrubber)
            .await
            .is_ok_and(|out| !out.trim().is_empty())
    }

    /// Whether `ancestor` is an ancestor of (or equal to) `commit`.
    pub async fn descends(&self, commit: &str, ancestor: &str, scrubber: &Scrubber) -> bool {
        self.run(&["merge-base", "--is-ancestor", ancestor, commit], scrubber)
            .await
            .is_ok()
    }

    /// The subject line of a commit.
    pub async fn subject(&self, commit: &str, scrubber: &Scrubber) -> String {
        self.run(&["log", "-1", "--format=%s", commit], scrubber)
            .await
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// Checks out `commit`: the configured branch reset to it when it is that branch's tip (what the
    /// workflow's `reset --hard origin/main` leaves), else a detached HEAD. `force` discards changes to
    /// tracked files and overwrites untracked files in the way; ignored files (the env file) stay.
    pub async fn checkout(
        &self,
        commit: &str,
        on_branch: bool,
        force: bool,
        scrubber: &Scrubber,
    ) -> Result<(), GitError> {
        let mut args = vec!["checkout", "--quiet"];
        if force {
            args.push("--force");
        }
        if on_branch {
            args.extend(["-B", self.branch.as_str(), commit]);
        } else {
            args.extend(["--detach", commit]);
        }
        self.run(&args, scrubber).await.map(drop)
    }
}

/// `git status --porcelain=v1 -z`: `XY path\0`, renames and copies followed by their old path.
/// Whether `wanted` may name a ref or commit: not empty, not an option, no `..` (which also keeps
/// it inside the ref directories when it is joined to them).
fn plausible_ref(wanted: &str) -> bool {
    !wanted.is_empty() && !wanted.starts_with('-') && !wanted.contains("..")
}

pub fn parse_status(out: &str) -> WorkingTree {
    let mut tree = WorkingTree::default();
    let mut entries = out.split('\0').filter(|e| !e.is_empty());
    while let Some(entry) = entries.next() {
        let (code, path) = (entry.get(..2).unwrap_or(""), entry.get(3..).unwrap_or(""));
        match code {
            "??" => tree.untracked.push(path.to_string()),
            "!!" => {}
            _ => {
                tree.modified.push(path.to_string());
                if code.starts_with('R') || code.starts_with('C') {
                    // The old path of a rename: part of the same change.
                    entries.next();
                }
            }
        }
    }
    tree
}

fn split_nul(out: &str) -> Vec<String> {
    out.split('\0')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

/// A path for `GIT_SSH_COMMAND`, which git runs through a shell.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// At most `n` paths in a sentence, then how many more.
pub fn some_paths(paths: &[String], n: usize) -> String {
    let mut text = paths
        .iter()
        .take(n)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > n {
        text.push_str(&format!(" and {} more", paths.len() - n));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn the_refs_stamp_changes_with_a_commit_a_fetch_or_a_new_tag_and_not_otherwise() {
        let origin = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        git(origin.path(), &["init", "-q", "--initial-branch=main"]);
        git(
            origin.path(),
            &["commit", "-q", "--allow-empty", "-m", "one"],
        );
        git(
            dir.path(),
            &["clone", "-q", &origin.path().display().to_string(), "."],
        );
        let mut config = Config::default();
        config.project.dir = dir.path().to_path_buf();
        let repo = Git::from_config(&config);
        let stamp = || repo.refs_stamp("main").expect("a .git directory");

        let first = stamp();
        assert_eq!(stamp(), first, "nothing changed");
        git(
            dir.path(),
            &["commit", "-q", "--allow-empty", "-m", "local"],
        );
        let committed = stamp();
        assert_ne!(committed, first, "HEAD's branch moved");
        git(
            origin.path(),
            &["commit", "-q", "--allow-empty", "-m", "two"],
        );
        git(dir.path(), &["fetch", "-q", "origin"]);
        let fetched = stamp();
        assert_ne!(fetched, committed, "origin/main moved");
        git(dir.path(), &["tag", "v1"]);
        assert_ne!(stamp(), fetched, "a tag appeared");
        assert_eq!(repo.refs_stamp("../../etc"), None, "not a ref name");
    }

    #[test]
    fn status_separates_changed_tracked_files_from_untracked_ones() {
        let out = " M backend/app/views.py\0?? notes.txt\0R  new.py\0old.py\0D  gone.py\0!! ignored\0A  added.py\0";
        let tree = parse_status(out);
        assert_eq!(
            tree.modified,
            ["backend/app/views.py", "new.py", "gone.py", "added.py"]
        );
        assert_eq!(tree.untracked, ["notes.txt"]);
        assert_eq!(parse_status(""), WorkingTree::default());
    }

    #[test]
    fn a_list_of_paths_says_how_many_it_left_out() {
        let paths: Vec<String> = (1..=5).map(|i| format!("f{i}")).collect();
        assert_eq!(some_paths(&paths, 3), "f1, f2, f3 and 2 more");
        assert_eq!(some_paths(&paths[..2], 3), "f1, f2");
    }

    #[test]
    fn paths_in_the_ssh_command_are_quoted_for_its_shell() {
        assert_eq!(shell_quote(Path::new("/k/it's key")), r"'/k/it'\''s key'");
    }
}
