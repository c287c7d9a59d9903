//! Making the change card: git (log, diff, show) and compose (`config` of the compose file at each
//! commit) read through their CLIs, the comparisons done by the plain functions of `changes.rs`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{
    ChangeCard, CommitInfo, MAX_COMMITS, MigrationChange, ServiceChange, data_losing_operations,
    group_by_folder, is_migration,
};
use crate::compose::ComposeCli;
use crate::deploy::git::Git;
use crate::environment::secrets::Scrubber;

/// Files listed at most (a rewrite of the whole tree is summed up, not listed).
const MAX_FILES: usize = 2000;
/// Migrations read at most.
const MAX_MIGRATIONS: usize = 100;
/// Fields of a service the card compares, besides `environment` (compared by names).
const COMPARED_FIELDS: &[&str] = &["build", "image", "ports", "volumes", "healthcheck"];

/// The git and compose parts of the card for `running -> target` (what does not change while the two
/// commits stay the same: the console caches it per pair). Env keys, the deploy number and the fetch
/// time are the caller's.
pub async fn card_for(
    git: &Git,
    compose: &ComposeCli,
    compose_file: &str,
    wanted: &str,
    running: Option<&str>,
    target: &str,
    scrubber: &Scrubber,
) -> Result<ChangeCard, String> {
    let text = |e: crate::deploy::git::GitError| e.to_string();
    let target_info = commit_info(git, target, scrubber).await.map_err(text)?;
    let running_info = match running {
        Some(r) => Some(commit_info(git, r, scrubber).await.map_err(text)?),
        None => None,
    };
    let range = match running {
        Some(r) => format!("{r}..{target}"),
        None => target.to_string(),
    };
    let ahead: u64 = git
        .run(&["rev-list", "--count", &range], scrubber)
        .await
        .map_err(text)?
        .trim()
        .parse()
        .unwrap_or(0);
    let log = git
        .run(
            &[
                "log",
                &format!("--max-count={MAX_COMMITS}"),
                "--format=%H%x1f%s%x1f%an%x1f%aI%x1e",
                &range,
                "--",
            ],
            scrubber,
        )
        .await
        .map_err(text)?;
    let commits = parse_log(&log);
    let descends = match running {
        Some(r) => git.descends(target, r, scrubber).await,
        None => true,
    };
    let (files, added) = match running {
        Some(r) => (
            git.changed_paths(r, target, scrubber).await.map_err(text)?,
            git.run(
                &[
                    "diff",
                    "--name-only",
                    "-z",
                    "--diff-filter=A",
                    r,
                    target,
                    "--",
                ],
                scrubber,
            )
            .await
            .map_err(text)?
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect::<Vec<_>>(),
        ),
        None => (vec![], vec![]),
    };
    let files_total = files.len();
    let folders = group_by_folder(&files[..files.len().min(MAX_FILES)]);
    let mut migrations = Vec::new();
    for path in added
        .iter()
        .filter(|p| is_migration(p))
        .take(MAX_MIGRATIONS)
    {
        let source = git
            .run(&["show", &format!("{target}:{path}")], scrubber)
            .await
            .unwrap_or_default();
        migrations.push(MigrationChange {
            path: path.clone(),
            data_losing: data_losing_operations(&source),
        });
    }
    let (compose_changes, compose_error) = match running {
        Some(r) => match compose_at(git, compose, compose_file, r, scrubber).await {
            Ok(before) => match compose_at(git, compose, compose_file, target, scrubber).await {
                Ok(after) => (compose_diff(&before, &after), None),
                Err(e) => (vec![], Some(format!("at {}: {e}", short(target)))),
            },
            Err(e) => (vec![], Some(format!("at {}: {e}", short(r)))),
        },
        None => (vec![], None),
    };
    let backup_advised = migrations.iter().any(|m| !m.data_losing.is_empty());
    Ok(ChangeCard {
        wanted: wanted.to_string(),
        running: running_info,
        running_deploy: None,
        target: target_info,
        ahead,
        descends,
        commits,
        folders,
        files_total,
        compose: compose_changes,
        compose_error,
        env: Default::default(),
        migrations,
        backup_advised,
        fetched_at: None,
        commit_url: None,
    })
}

fn short(commit: &str) -> String {
    commit.chars().take(10).collect()
}

async fn commit_info(
    git: &Git,
    commit: &str,
    scrubber: &Scrubber,
) -> Result<CommitInfo, crate::deploy::git::GitError> {
    let out = git
        .run(
            &["log", "-1", "--format=%H%x1f%s%x1f%an%x1f%aI%x1e", commit],
            scrubber,
        )
        .await?;
    Ok(parse_log(&out).pop().unwrap_or(CommitInfo {
        id: commit.to_string(),
        subject: String::new(),
        author: String::new(),
        date: String::new(),
    }))
}

/// `git log --format=%H%x1f%s%x1f%an%x1f%aI%x1e` output.
pub fn parse_log(out: &str) -> Vec<CommitInfo> {
    out.split('\x1e')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .filter_map(|record| {
            let mut fields = record.split('\x1f');
            Some(CommitInfo {
                id: fields.next()?.to_string(),
                subject: fields.next()?.to_string(),
                author: fields.next()?.to_string(),
                date: fields.next()?.to_string(),
            })
        })
        .collect()
}

/// The compose file as it is at `commit`, as compose reads it (not interpolated: values stay `${VAR}`).
async fn compose_at(
    git: &Git,
    compose: &ComposeCli,
    compose_file: &str,
    commit: &str,
    scrubber: &Scrubber,
) -> Result<Value, String> {
    let text = git
        .run(&["show", &format!("{commit}:{compose_file}")], scrubber)
        .await
        .map_err(|e| e.to_string())?;
    let json = compose
        .config_of_text(&text, scrubber)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&json).map_err(|e| format!("compose config is not JSON: {e}"))
}

/// The services of two `docker compose config --format json` outputs compared: added, removed, and
/// per service what changed of its build, image, ports, volumes, healthcheck and environment (names).
pub fn compose_diff(before: &Value, after: &Value) -> Vec<ServiceChange> {
    let services = |v: &Value| v["services"].as_object().cloned().unwrap_or_default();
    let (old, new) = (services(before), services(after));
    let mut changes = Vec::new();
    for (name, service) in &new {
        let Some(was) = old.get(name) else {
            changes.push(ServiceChange {
                service: name.clone(),
                change: "added".into(),
                details: describe_service(service),
            });
            continue;
        };
        let mut details = Vec::new();
        for field in COMPARED_FIELDS {
            let (a, b) = (&was[*field], &service[*field]);
            if a == b {
                continue;
            }
            match (a.as_array(), b.as_array()) {
                (Some(a), Some(b)) => {
                    for item in b.iter().filter(|i| !a.contains(i)) {
                        details.push(format!("{field}: + {}", item_text(item)));
                    }
                    for item in a.iter().filter(|i| !b.contains(i)) {
                        details.push(format!("{field}: - {}", item_text(item)));
                    }
                }
                _ if b.is_null() => details.push(format!("{field}: removed")),
                _ if a.is_null() => details.push(format!("{field}: {}", item_text(b))),
                _ => details.push(format!("{field}: {} -> {}", item_text(a), item_text(b))),
            }
        }
        let names = |v: &Value| -> BTreeMap<String, Value> {
            v["environment"]
                .as_object()
                .map(|m| m.clone().into_iter().collect())
                .unwrap_or_default()
        };
        let (env_a, env_b) = (names(was), names(service));
        for key in env_b.keys().filter(|k| !env_a.contains_key(*k)) {
            details.push(format!("environment: + {key}"));
        }
        for key in env_a.keys().filter(|k| !env_b.contains_key(*k)) {
            details.push(format!("environment: - {key}"));
        }
        for (key, value) in env_b
            .iter()
            .filter(|(k, v)| env_a.get(*k).is_some_and(|a| a != *v))
        {
            // Names only: a value in the compose file may be a secret written into it.
            let _ = value;
            details.push(format!("environment: {key} changed"));
        }
        if !details.is_empty() {
            changes.push(ServiceChange {
                service: name.clone(),
                change: "changed".into(),
                details,
            });
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        changes.push(ServiceChange {
            service: name.clone(),
            change: "removed".into(),
            details: vec![],
        });
    }
    changes
}

/// An added service in a line or two: what it runs and what it publishes.
fn describe_service(service: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(image) = service["image"].as_str() {
        out.push(format!("image: {image}"));
    }
    if !service["build"].is_null() {
        out.push(format!("build: {}", item_text(&service["build"])));
    }
    if let Some(ports) = service["ports"].as_array() {
        for port in ports {
            out.push(format!("ports: + {}", item_text(port)));
        }
    }
    out
}

/// A compose value as one short line: strings as they are, a port or volume as compose writes it
/// short, anything else as compact JSON (cut at 120 characters).
fn item_text(value: &Value) -> String {
    if let Some(s) = value.as_str() {
        return s.to_string();
    }
    if let (Some(target), Some(obj)) = (value.get("target"), value.as_object()) {
        if obj.contains_key("published") || obj.contains_key("host_ip") || obj.contains_key("mode")
        {
            let ip = value["host_ip"]
                .as_str()
                .map(|i| format!("{i}:"))
                .unwrap_or_default();
            let published = match &value["published"] {
                Value::String(p) => format!("{p}:"),
                Value::Number(n) => format!("{n}:"),
                _ => String::new(),
            };
            return format!("{ip}{published}{target}");
        }
        if let Some(source) = value["source"].as_str() {
            return format!("{source}:{}", target.as_str().unwrap_or_default());
        }
    }
    if let Some(context) = value.get("context").and_then(|c| c.as_str()) {
        let dockerfile = value["dockerfile"].as_str().unwrap_or("Dockerfile");
        return format!("{context} ({dockerfile})");
    }
    let text = value.to_string();
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_log_record_is_id_subject_author_date() {
        let out = "abc\x1fFix the thing\x1fDana\x1f2026-11-30T10:00:00+01:00\x1e\ndef\x1fSecond\x1fEve\x1f2026-11-29T09:00:00+00:00\x1e\n";
        let commits = parse_log(out);
        assert_eq!(commits.len(), 2);
        assert_eq!(commits[0].subject, "Fix the thing");
        assert_eq!(commits[1].author, "Eve");
        assert!(parse_log("").is_empty());
    }

    #[test]
    fn the_compose_diff_names_services_fields_and_environment_names_never_values() {
        let before = json!({"services": {
            "backend": {"build": {"context": ".", "dockerfile": "backend/Dockerfile"},
                        "environment": {"A": "1", "SECRET": "old-secret-value", "GONE": "x"},
                        "ports": ["127.0.0.1:8000:8000"],
                        "healthcheck": {"test": ["CMD", "true"], "interval": "3s"}},
            "redis": {"image": "redis:7"},
            "old": {"image": "busybox"}
        }});
        let after = json!({"services": {
            "backend": {"build": {"context": ".", "dockerfile": "backend/Dockerfile"},
                        "environment": {"A": "1", "SECRET": "new-secret-value", "NEW": "y"},
                        "ports": ["127.0.0.1:8000:8000", "127.0.0.1:8443:8443"],
                        "healthcheck": {"test": ["CMD", "true"], "interval": "5s"}},
            "redis": {"image": "redis:7.2"},
            "energyplus": {"image": "nrel/energyplus:23.2.0"}
        }});
        let changes = compose_diff(&before, &after);
        let find = |name: &str| changes.iter().find(|c| c.service == name).unwrap();
        assert_eq!(find("energyplus").change, "added");
        assert_eq!(
            find("energyplus").details,
            ["image: nrel/energyplus:23.2.0"]
        );
        assert_eq!(find("old").change, "removed");
        assert_eq!(find("redis").details, ["image: redis:7 -> redis:7.2"]);
        let backend = &find("backend").details;
        assert!(
            backend.contains(&"ports: + 127.0.0.1:8443:8443".to_string()),
            "{backend:?}"
        );
        assert!(
            backend.iter().any(|d| d.starts_with("healthcheck: ")),
            "{backend:?}"
        );
        for want in [
            "environment: + NEW",
            "environment: - GONE",
            "environment: SECRET changed",
        ] {
            assert!(backend.contains(&want.to_string()), "{want}: {backend:?}");
        }
        let all = format!("{changes:?}");
        assert!(!all.contains("secret-value"), "values never: {all}");
        assert!(
            compose_diff(&before, &before).is_empty(),
            "no change, no line"
        );
    }

    #[test]
    fn ports_and_volumes_in_long_form_read_as_compose_writes_them_short() {
        assert_eq!(
            item_text(
                &json!({"mode": "ingress", "host_ip": "127.0.0.1", "target": 80, "published": "8080", "protocol": "tcp"})
            ),
            "127.0.0.1:8080:80"
        );
        assert_eq!(
            item_text(
                &json!({"type": "volume", "source": "postgres_data", "target": "/var/lib/postgresql/data"})
            ),
            "postgres_data:/var/lib/postgresql/data"
        );
        assert_eq!(
            item_text(&json!({"context": ".", "dockerfile": "db/Dockerfile"})),
            ". (db/Dockerfile)"
        );
    }
}
