//! Database backups: `pg_dump` inside the database container, streamed to a file in the backups
//! directory (never held in memory), verified before it counts, listed and downloadable. The work is in
//! `ssr.rs`; downloads are a streaming route of the server.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[cfg(feature = "ssr")]
pub mod ssr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum BackupFormat {
    /// `pg_dump -Fc`: compressed, restorable with `pg_restore`, checked with `pg_restore --list`.
    #[default]
    Custom,
    /// Plain SQL.
    Plain,
}

impl BackupFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupFormat::Custom => "custom",
            BackupFormat::Plain => "plain",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            BackupFormat::Custom => "dump",
            BackupFormat::Plain => "sql",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackupOutcome {
    Running,
    Succeeded,
    Failed,
    Deleted,
}

impl BackupOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupOutcome::Running => "running",
            BackupOutcome::Succeeded => "succeeded",
            BackupOutcome::Failed => "failed",
            BackupOutcome::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> BackupOutcome {
        match s {
            "running" => BackupOutcome::Running,
            "succeeded" => BackupOutcome::Succeeded,
            "deleted" => BackupOutcome::Deleted,
            _ => BackupOutcome::Failed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub id: i64,
    pub actor: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub database: String,
    pub format: BackupFormat,
    pub outcome: BackupOutcome,
    pub reason: String,
    pub file_name: Option<String>,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
    pub duration_ms: Option<u64>,
    pub deploy_id: Option<i64>,
}

#[server(endpoint = "backup_start")]
pub async fn start_backup(#[server(default)] format: BackupFormat) -> Result<Backup, AppError> {
    let actor = crate::auth::require(crate::auth::Role::Deployer).await?;
    let state = expect_context::<crate::state::AppState>();
    ssr::backup_now(&(&state).into(), &actor.name, format)
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()).replied())
}

#[server(endpoint = "backup_list")]
pub async fn list_backups() -> Result<Vec<Backup>, AppError> {
    crate::auth::require(crate::auth::Role::Viewer).await?;
    let state = expect_context::<crate::state::AppState>();
    Ok(state.store.backups(200).await?)
}

#[component]
pub fn BackupsPage() -> impl IntoView {
    let start = ServerAction::<StartBackup>::new();
    let backups = Resource::new(move || start.version().get(), |_| list_backups());
    view! {
        <Title text="Backups"/>
        <h1>"Backups"</h1>
        <section class="card">
            <h2>"Back up now"</h2>
            <p class="muted small">
                "pg_dump inside the database container, streamed to the backups directory, kept only when pg_dump "
                "exited 0 and the archive reads back (pg_restore --list)."
            </p>
            <ActionForm action=start attr:class="deploy-form">
                <label><input type="radio" name="format" value="Custom" checked/>" custom format (-Fc)"</label>
                <label><input type="radio" name="format" value="Plain"/>" plain SQL"</label>
                <button type="submit" class="primary" data-testid="backup-button" disabled=move || start.pending().get()>
                    {move || if start.pending().get() { "Backing up…" } else { "Back up now" }}
                </button>
            </ActionForm>
            {move || start.value().get().map(|r| match r {
                Ok(b) => view! { <p class="status ok" data-testid="backup-result">{format!("Backup #{} done: {}", b.id, b.file_name.unwrap_or_default())}</p> }.into_any(),
                Err(e) => view! { <p class="error-box" role="alert" data-testid="backup-error">{e.to_string()}</p> }.into_any(),
            })}
        </section>
        <h2 class="section">"Backups"</h2>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                {move || Suspend::new(async move {
                    backups.await.map(|list| view! { <BackupTable backups=list/> })
                })}
            </ErrorBoundary>
        </Suspense>
    }
}

#[component]
fn BackupTable(backups: Vec<Backup>) -> impl IntoView {
    if backups.is_empty() {
        return view! { <p class="muted">"No backups yet."</p> }.into_any();
    }
    view! {
        <table class="table" data-testid="backups">
            <thead><tr><th>"#"</th><th>"Started (UTC)"</th><th>"By"</th><th>"Database"</th><th>"Outcome"</th><th>"Size"</th><th>"sha256"</th><th></th></tr></thead>
            <tbody>
                {backups.into_iter().map(|b| {
                    let class = match b.outcome {
                        BackupOutcome::Succeeded => "ok",
                        BackupOutcome::Running => "warn",
                        BackupOutcome::Failed => "down",
                        BackupOutcome::Deleted => "",
                    };
                    view! {
                        <tr data-testid="backup-row" data-outcome=b.outcome.as_str()>
                            <td>{format!("#{}", b.id)}</td>
                            <td class="nowrap">{b.started_at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                            <td>{b.actor}</td>
                            <td>{format!("{} ({})", b.database, b.format.as_str())}</td>
                            <td>
                                <span class=format!("tag {class}")>{b.outcome.as_str()}</span>
                                {(!b.reason.is_empty()).then(|| view! { <div class="reason small">{b.reason.clone()}</div> })}
                            </td>
                            <td class="nowrap">{b.size_bytes.map(crate::health::maintenance::human_bytes)}</td>
                            <td><code class="small">{b.sha256.clone()}</code></td>
                            <td>{(b.outcome == BackupOutcome::Succeeded).then(|| view! {
                                <a href=format!("/backups/{}/download", b.id) rel="external" download>"Download"</a>
                            })}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
