//! "What this deploy changes": the card the Deploys page shows before the click and every deploy keeps.
//! It compares what production runs with what the deploy would bring: commits, files, the compose
//! file's services, the env file's keys (names only) and the Django migrations it adds. Reading git and
//! compose is in `ssr` below; the comparisons are plain functions with table tests.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Commits listed on the card (the count says how many more).
pub const MAX_COMMITS: usize = 50;
/// Files listed per top folder (the count says how many more).
pub const MAX_FILES_PER_FOLDER: usize = 20;
/// Migration operations that can lose data or run code nobody reviewed on this page.
pub const DATA_LOSING_OPERATIONS: &[&str] = &[
    "RemoveField",
    "DeleteModel",
    "RunSQL",
    "RunPython",
    "AlterField",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub id: String,
    pub subject: String,
    pub author: String,
    /// Author date, RFC 3339.
    pub date: String,
}

/// The files changed under one top folder (`(root)` for files at the top).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderChanges {
    pub folder: String,
    /// At most `MAX_FILES_PER_FOLDER`.
    pub files: Vec<String>,
    pub total: usize,
}

/// One service of the compose file, compared between the two commits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub service: String,
    /// added, removed or changed.
    pub change: String,
    /// What changed, one line each ("ports: + 127.0.0.1:8443:443", "environment: + SENTRY_DSN").
    pub details: Vec<String>,
}

/// Env file keys since the last successful deploy (names only: values may be secrets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvChanges {
    /// The deploy compared with; None: no successful deploy recorded the keys yet.
    pub since_deploy: Option<i64>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// A Django migration the target adds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationChange {
    pub path: String,
    /// Its operations that can lose data (`DATA_LOSING_OPERATIONS`), in order.
    pub data_losing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeCard {
    /// The ref asked for (the configured branch unless the deployer named another).
    pub wanted: String,
    /// What the project directory is checked out at now (None: no commit yet).
    pub running: Option<CommitInfo>,
    /// The last successful deploy.
    pub running_deploy: Option<i64>,
    pub target: CommitInfo,
    /// Commits in the target that production does not run.
    pub ahead: u64,
    /// Whether the target contains what runs (false: history was rewritten, or an older commit).
    pub descends: bool,
    /// Newest first, at most `MAX_COMMITS`.
    pub commits: Vec<CommitInfo>,
    pub folders: Vec<FolderChanges>,
    pub files_total: usize,
    pub compose: Vec<ServiceChange>,
    /// Why the compose file could not be compared.
    pub compose_error: Option<String>,
    pub env: EnvChanges,
    pub migrations: Vec<MigrationChange>,
    /// A migration can lose data: "back up the database first" should be ticked.
    pub backup_advised: bool,
    /// When the remote was last fetched by the console, if it was.
    pub fetched_at: Option<DateTime<Utc>>,
    /// A link to a commit, `{commit}` replaced by its id (`project.git.commit_url`).
    pub commit_url: Option<String>,
}

impl ChangeCard {
    pub fn commit_link(&self, id: &str) -> Option<String> {
        self.commit_url.as_ref().map(|t| t.replace("{commit}", id))
    }

    /// Production runs the target already and nothing else differs.
    pub fn up_to_date(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.id == self.target.id)
    }
}

/// What the Deploys page shows above the button.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceView {
    /// The project directory is not a git checkout: deploys build what is on disk.
    NotGit {
        dir: String,
    },
    Card(Box<ChangeCard>),
    /// The card could not be made (unknown ref, git failed): why.
    Unavailable {
        reason: String,
    },
}

/// The env part of the card in one sentence.
pub fn env_summary(env: &EnvChanges) -> String {
    let Some(since) = env.since_deploy else {
        return "No successful deploy recorded the keys yet.".into();
    };
    if env.added.is_empty() && env.removed.is_empty() && env.changed.is_empty() {
        return format!("No key added, removed or changed since deploy #{since}.");
    }
    let part = |what: &str, keys: &[String]| {
        (!keys.is_empty()).then(|| format!("{what}: {}", keys.join(", ")))
    };
    let parts: Vec<String> = [
        part("added", &env.added),
        part("removed", &env.removed),
        part("changed", &env.changed),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!("Since deploy #{since}: {}.", parts.join("; "))
}

/// Files grouped by their top folder, in path order, each group bounded.
pub fn group_by_folder(files: &[String]) -> Vec<FolderChanges> {
    let mut groups: Vec<FolderChanges> = Vec::new();
    let mut sorted: Vec<&String> = files.iter().collect();
    sorted.sort();
    for file in sorted {
        let folder = match file.split_once('/') {
            Some((top, _)) => top.to_string(),
            None => "(root)".to_string(),
        };
        match groups.last_mut().filter(|g| g.folder == folder) {
            Some(group) => {
                group.total += 1;
                if group.files.len() < MAX_FILES_PER_FOLDER {
                    group.files.push(file.clone());
                }
            }
            None => groups.push(FolderChanges {
                folder,
                files: vec![file.clone()],
                total: 1,
            }),
        }
    }
    groups
}

/// The operations of a Django migration's source that can lose data, in the order they appear.
pub fn data_losing_operations(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("migrations.") {
        rest = &rest[at + "migrations.".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if rest[name.len()..].starts_with('(') && DATA_LOSING_OPERATIONS.contains(&name.as_str()) {
            found.push(name);
        }
    }
    found
}

/// Whether a path is a Django migration module (`<app>/migrations/0003_x.py`).
pub fn is_migration(path: &str) -> bool {
    let mut parts = path.rsplit('/');
    let (Some(file), Some(folder)) = (parts.next(), parts.next()) else {
        return false;
    };
    folder == "migrations"
        && file.ends_with(".py")
        && file.chars().next().is_some_and(|c| c.is_ascii_digit())
}

/// Keys added, removed and changed between two `key -> fingerprint` maps (names only).
pub fn env_changes(
    before: &std::collections::BTreeMap<String, String>,
    now: &std::collections::BTreeMap<String, String>,
    since_deploy: i64,
) -> EnvChanges {
    EnvChanges {
        since_deploy: Some(since_deploy),
        added: now
            .keys()
            .filter(|k| !before.contains_key(*k))
            .cloned()
            .collect(),
        removed: before
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect(),
        changed: now
            .iter()
            .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
            .map(|(k, _)| k.clone())
            .collect(),
    }
}

#[cfg(feature = "ssr")]
pub mod ssr;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_grouped_by_top_folder_and_bounded() {
        let mut files: Vec<String> = vec![
            "README.md".into(),
            "backend/app/views.py".into(),
            "backend/app/models.py".into(),
            "frontend/src/App.tsx".into(),
        ];
        files.extend((0..25).map(|i| format!("docs/page{i:02}.md")));
        let groups = group_by_folder(&files);
        let summary: Vec<(&str, usize, usize)> = groups
            .iter()
            .map(|g| (g.folder.as_str(), g.files.len(), g.total))
            .collect();
        assert_eq!(
            summary,
            [
                ("(root)", 1, 1),
                ("backend", 2, 2),
                ("docs", 20, 25),
                ("frontend", 1, 1)
            ]
        );
        assert_eq!(
            groups[1].files,
            ["backend/app/models.py", "backend/app/views.py"]
        );
    }

    #[test]
    fn data_losing_operations_are_found_in_a_migrations_source() {
        let source = r#"
class Migration(migrations.Migration):
    operations = [
        migrations.AddField(model_name="a", name="b", field=models.IntegerField(default=0)),
        migrations.RemoveField(model_name="simulation", name="created_at"),
        migrations.RunPython(forwards, migrations.RunPython.noop),
        migrations.AlterField(model_name="a", name="c", field=models.TextField()),
        migrations.DeleteModel(name="Old"),
        migrations.RunSQL("DROP TABLE x"),
    ]
"#;
        assert_eq!(
            data_losing_operations(source),
            [
                "RemoveField",
                "RunPython",
                "AlterField",
                "DeleteModel",
                "RunSQL"
            ]
        );
        assert!(
            data_losing_operations("migrations.AddField(model_name='a')\n").is_empty(),
            "adding a field loses nothing"
        );
    }

    #[test]
    fn migration_modules_are_numbered_python_files_in_a_migrations_folder() {
        for (path, want) in [
            ("backend/simulations/migrations/0003_remove_x.py", true),
            ("simulations/migrations/0001_initial.py", true),
            ("backend/simulations/migrations/__init__.py", false),
            ("backend/simulations/migrations/README.md", false),
            ("backend/simulations/views.py", false),
            ("0001_initial.py", false),
        ] {
            assert_eq!(is_migration(path), want, "{path}");
        }
    }

    #[test]
    fn env_keys_are_compared_by_name_and_fingerprint() {
        let before = [("A", "1"), ("B", "2"), ("C", "3")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let now = [("A", "1"), ("B", "9"), ("D", "4")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        let changes = env_changes(&before, &now, 7);
        assert_eq!(changes.since_deploy, Some(7));
        assert_eq!(changes.added, ["D"]);
        assert_eq!(changes.removed, ["C"]);
        assert_eq!(changes.changed, ["B"]);
        assert_eq!(
            env_summary(&changes),
            "Since deploy #7: added: D; removed: C; changed: B."
        );
    }
}
