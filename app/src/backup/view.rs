//! The Backups page: the list with its live progress, "Back up now", downloads and deletion, and
//! the server functions behind them.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{Backup, BackupFormat, BackupOutcome, BackupPolicy};
use crate::error::AppError;

/// The backups service of this server (server functions only).
#[cfg(feature = "ssr")]
fn backups() -> std::sync::Arc<super::ssr::Backups> {
    expect_context()
}

/// "Back up now": the backup's record, finished or (after a while) still running; a second one while
/// one runs is refused, naming it (`super::ssr::start_for_page`).
#[server(endpoint = "backup_start")]
pub async fn start_backup(#[server(default)] format: BackupFormat) -> Result<Backup, AppError> {
    let actor = crate::auth::gate::require(crate::auth::Role::Deployer).await?;
    super::ssr::start_for_page(&backups(), &actor.name, format)
        .await
        .map_err(AppError::replied)
}

/// "Test restore": the newest backup restored into a scratch database and its tables and row counts
/// compared with those recorded when it was taken (`super::ssr::drill_for_page`).
#[server(endpoint = "backup_drill")]
pub async fn start_drill() -> Result<Backup, AppError> {
    let actor = crate::auth::gate::require(crate::auth::Role::Deployer).await?;
    super::ssr::drill_for_page(&backups(), &actor.name)
        .await
        .map_err(AppError::replied)
}

/// The backups, newest first; a running one's size is its bytes so far.
#[server(endpoint = "backup_list")]
pub async fn list_backups() -> Result<Vec<Backup>, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    let (backups, store) = (backups(), expect_context::<crate::store::Store>());
    let kept = store.read_kept("backup list", || backups.list(200));
    Ok(kept.await?.to_vec())
}

#[server(endpoint = "backup_policy")]
pub async fn read_backup_policy() -> Result<BackupPolicy, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    Ok(backups().policy())
}

/// Deletes a backup's file (admin; the operator types the file name to confirm). Audited, refusals too.
#[server(endpoint = "backup_delete")]
pub async fn delete_backup(id: i64, #[server(default)] confirm: String) -> Result<(), AppError> {
    let actor = crate::auth::gate::require(crate::auth::Role::Admin).await?;
    backups()
        .delete_confirmed(&actor.name, id, &confirm)
        .await
        .map_err(AppError::replied)
}

/// What the restore form needs: the database name to type, and when the running code was deployed
/// (a backup taken before it may predate its migrations: "migrate" is ticked for it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RestoreContext {
    pub database: String,
    pub last_deploy: Option<(i64, chrono::DateTime<chrono::Utc>)>,
    /// The server's clock when this was read (the browser's clock is not asked: a backup's age is
    /// told against this).
    pub read_at: chrono::DateTime<chrono::Utc>,
}

#[server(endpoint = "backup_restore_facts")]
pub async fn read_restore_context() -> Result<RestoreContext, AppError> {
    crate::auth::gate::require(crate::auth::Role::Admin).await?;
    let deployer = expect_context::<std::sync::Arc<crate::deploy::ssr::Deployer>>();
    let database = deployer.database_name();
    let last_deploy = deployer
        .history_rows(Some(crate::deploy::DeployOutcome::Succeeded), None, 50)
        .await?
        .into_iter()
        .find(|d| d.options.restore.is_none())
        .map(|d| (d.id, d.finished_at.unwrap_or(d.started_at)));
    Ok(RestoreContext {
        database,
        last_deploy,
        read_at: chrono::Utc::now(),
    })
}

/// Restores the database from backup `id` (admin; the database name typed to confirm), run like a
/// deploy: its id, whose page follows it.
#[server(endpoint = "backup_restore")]
pub async fn restore_backup(
    id: i64,
    #[server(default)] migrate: bool,
    #[server(default)] confirm: String,
) -> Result<i64, AppError> {
    let actor = crate::auth::gate::require(crate::auth::Role::Admin).await?;
    let deployer = expect_context::<std::sync::Arc<crate::deploy::ssr::Deployer>>();
    let options = crate::deploy::DeployOptions {
        restore: Some(crate::deploy::RestoreRequest {
            from: crate::deploy::RestoreFrom::Backup(id),
            migrate,
        }),
        ..Default::default()
    };
    deployer
        .start(&actor, options, Some(&confirm))
        .await
        .map_err(|e| e.into_app_error().replied())
}

#[component]
pub fn BackupsPage() -> impl IntoView {
    let start = ServerAction::<StartBackup>::new();
    let delete = ServerAction::<DeleteBackup>::new();
    let restore = ServerAction::<RestoreBackup>::new();
    let drill = ServerAction::<StartDrill>::new();
    let navigate = leptos_router::hooks::use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(id)) = restore.value().get() {
            navigate(&format!("/deploys/{id}"), Default::default());
        }
    });
    // While a backup runs (this page's, the schedule's or the command line's), the list is re-read
    // every second: a running backup's size is its bytes so far.
    let tick = RwSignal::new(0u32);
    let running = RwSignal::new(false);
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || {
                if start.pending().get_untracked()
                    || drill.pending().get_untracked()
                    || running.get_untracked()
                {
                    tick.update(|t| *t += 1);
                }
            },
            std::time::Duration::from_secs(1),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    let backups = Resource::new(
        move || {
            (
                start.version().get(),
                delete.version().get(),
                drill.version().get(),
                tick.get(),
            )
        },
        |_| list_backups(),
    );
    Effect::new(move |_| {
        let any = backups.get().and_then(Result::ok).is_some_and(|list| {
            list.iter().any(|b| {
                b.outcome == BackupOutcome::Running
                    || b.drill.as_ref().is_some_and(|d| d.ok.is_none())
                    || b.copy.as_ref().is_some_and(|c| c.ok.is_none())
            })
        });
        running.set(any);
    });
    let policy = Resource::new(|| (), |_| read_backup_policy());
    let login = expect_context::<crate::auth::view::LoginResource>();
    // What the restore form needs, read for admins only (a restore is theirs alone).
    let restore_context = Resource::new(
        move || login.get().and_then(crate::auth::view::role_of),
        |role| async move {
            if role >= Some(crate::auth::Role::Admin) {
                read_restore_context().await.ok()
            } else {
                None
            }
        },
    );
    view! {
        <Title text="Backups"/>
        <h1>"Backups"</h1>
        <div class="grid">
            <crate::auth::view::RoleGate role=crate::auth::Role::Deployer explain="backups on demand">
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
                    Ok(replied) => {
                        // A reply sent while the backup still ran: the list (re-read every second
                        // meanwhile) tells how it ends.
                        let b = backups
                            .get()
                            .and_then(Result::ok)
                            .and_then(|list| list.into_iter().find(|b| b.id == replied.id))
                            .unwrap_or(replied);
                        match b.outcome {
                            BackupOutcome::Running => view! {
                                <p class="status warn" data-testid="backup-result">
                                    {format!("Backup #{} is running: its row below shows the bytes so far.", b.id)}
                                </p>
                            }.into_any(),
                            BackupOutcome::Failed => view! {
                                <p class="error-box" role="alert" data-testid="backup-error">{format!("backup #{} failed: {}", b.id, b.reason)}</p>
                            }.into_any(),
                            _ => view! {
                                <p class="status ok" data-testid="backup-result">{format!("Backup #{} done: {}", b.id, b.file_name.unwrap_or_default())}</p>
                            }.into_any(),
                        }
                    }
                    Err(e) => view! { <p class="error-box" role="alert" data-testid="backup-error">{e.to_string()}</p> }.into_any(),
                })}
            </section>
            <section class="card">
                <h2>"Test restore"</h2>
                <p class="muted small">
                    "The newest backup restored into a throwaway PostgreSQL container (the database service's image, no "
                    "network), its tables and row counts compared with those recorded when it was taken, then removed."
                </p>
                <ActionForm action=drill attr:class="deploy-form">
                    <button type="submit" data-testid="drill-button" disabled=move || drill.pending().get()>
                        {move || if drill.pending().get() { "Testing…" } else { "Test restore" }}
                    </button>
                </ActionForm>
                {move || drill.value().get().map(|r| match r {
                    Ok(b) => view! { <p class="muted small" data-testid="drill-result">{format!("Backup #{}: see its row below.", b.id)}</p> }.into_any(),
                    Err(e) => view! { <p class="error-box" role="alert" data-testid="drill-error">{e.to_string()}</p> }.into_any(),
                })}
            </section>
            </crate::auth::view::RoleGate>
            <section class="card" data-testid="backup-policy">
                <h2>"Schedule and retention"</h2>
                <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        policy.await.map(|p| view! { <PolicyText policy=p/> })
                    })}
                </Suspense>
            </section>
        </div>
        <h2 class="section">"Backups"</h2>
        {move || delete.value().get().and_then(Result::err).map(|e| view! {
            <p class="error-box" role="alert" data-testid="delete-error">{e.to_string()}</p>
        })}
        {move || restore.value().get().and_then(Result::err).map(|e| view! {
            <p class="error-box" role="alert" data-testid="restore-error">{e.to_string()}</p>
        })}
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                {move || Suspend::new(async move {
                    // The role once for the whole table, not a gate (and a suspense) per row.
                    let role = crate::auth::view::role_of(login.await);
                    let facts = restore_context.await;
                    backups.await.map(|list| view! { <BackupTable backups=list delete restore facts role/> })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

#[component]
fn PolicyText(policy: BackupPolicy) -> impl IntoView {
    let schedule = match (&policy.schedule, policy.next_run) {
        (Some(cron), Some(next)) => format!(
            "Scheduled: {cron} (UTC); next at {}.",
            next.format("%Y-%m-%d %H:%M:%S")
        ),
        (Some(cron), None) => format!("Scheduled: {cron} (UTC), which has no next time."),
        (None, _) => "No schedule (set backups.schedule to a cron expression).".into(),
    };
    let mut kept = Vec::new();
    if policy.keep_last > 0 {
        kept.push(format!("the last {}", policy.keep_last));
    }
    if policy.keep_days > 0 {
        kept.push(format!("those of the last {} days", policy.keep_days));
    }
    let retention = if kept.is_empty() {
        "Every backup is kept.".to_string()
    } else {
        format!(
            "Kept: {} (applied after each backup).",
            kept.join(", and at most ")
        )
    };
    view! {
        <p data-testid="schedule">{schedule}</p>
        <p>{retention}</p>
        <p class="muted small">"Admins can delete a backup by typing its file name."</p>
    }
}

#[component]
fn BackupTable(
    backups: Vec<Backup>,
    delete: ServerAction<DeleteBackup>,
    restore: ServerAction<RestoreBackup>,
    /// Admins only: what the restore form needs.
    facts: Option<RestoreContext>,
    role: Option<crate::auth::Role>,
) -> impl IntoView {
    use crate::auth::Role;
    let (may_download, may_delete) = (role >= Some(Role::Deployer), role >= Some(Role::Admin));
    if backups.is_empty() {
        return view! { <p class="muted">"No backups yet."</p> }.into_any();
    }
    view! {
        <div class="table-wrap" tabindex="0"><table class="table cards-on-phone" data-testid="backups">
            <thead><tr><th>"#"</th><th>"Started (UTC)"</th><th>"By"</th><th>"Database"</th><th>"Outcome"</th><th>"Size"</th><th>"Took"</th><th>"File and sha256"</th><th></th></tr></thead>
            <tbody>
                {backups.into_iter().map(|b| {
                    let class = match b.outcome {
                        BackupOutcome::Succeeded => "ok",
                        BackupOutcome::Running => "warn",
                        BackupOutcome::Failed => "down",
                        BackupOutcome::Deleted => "",
                    };
                    let size = b.size_bytes.map(|s| {
                        let size = crate::health::maintenance::human_bytes(s);
                        if b.outcome == BackupOutcome::Running { format!("{size} so far") } else { size }
                    });
                    let succeeded = b.outcome == BackupOutcome::Succeeded;
                    let name = b.file_name.clone().unwrap_or_default();
                    let actions = view! {
                        {(succeeded && may_download).then(|| view! {
                            <a href=format!("/backups/{}/download", b.id) rel="external" download>"Download"</a>
                        })}
                        {facts.clone().filter(|_| succeeded).map(|facts| view! {
                            <RestoreForm backup=b.clone() facts restore/>
                        })}
                        {(succeeded && may_delete).then(|| view! {
                            <details class="danger">
                                <summary data-testid=format!("delete-open-{}", b.id)>"Delete…"</summary>
                                <ActionForm action=delete attr:class="prune">
                                    <input type="hidden" name="id" value=b.id.to_string()/>
                                    <input type="text" name="confirm" placeholder=format!("type {name}") autocomplete="off"
                                        aria-label=format!("Type {name} to confirm the delete")
                                        data-testid=format!("delete-confirm-{}", b.id)/>
                                    <button type="submit" data-testid=format!("delete-{}", b.id)>"Delete backup"</button>
                                </ActionForm>
                            </details>
                        })}
                    };
                    view! {
                        <tr data-testid="backup-row" data-outcome=b.outcome.as_str()>
                            <td data-label="#">{format!("#{}", b.id)}</td>
                            <td data-label="Started (UTC)" class="nowrap">{b.started_at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                            <td data-label="By">{b.actor}</td>
                            <td data-label="Database">{format!("{} ({})", b.database, b.format.as_str())}</td>
                            <td data-label="Outcome">
                                <span class=format!("tag {class}")>{b.outcome.as_str()}</span>
                                {(!b.reason.is_empty()).then(|| view! { <div class="reason small">{b.reason.clone()}</div> })}
                                {b.drill.clone().map(|d| view! { <DrillLine drill=d/> })}
                                {b.copy.clone().map(|c| view! { <CopyLine copy=c/> })}
                            </td>
                            <td data-label="Size" class="nowrap" data-testid="backup-size">{size}</td>
                            <td data-label="Took" class="nowrap">{b.duration_ms.map(|ms| crate::deploy::view::seconds(ms as i64))}</td>
                            <td data-label="File and sha256" class="file">
                                {b.file_name.clone().map(|f| view! { <div data-testid="backup-file">{breakable(&f)}</div> })}
                                {b.sha256.clone().map(|h| {
                                    let short: String = h.chars().take(16).collect();
                                    view! {
                                        <code class="small hash" title=format!("sha256 {h}") data-sha256=h.clone()>
                                            {format!("sha256 {short}…")}
                                        </code>
                                    }
                                })}
                                {b.deploy_id.map(|d| view! {
                                    <div class="muted small">"at deploy "<a href=format!("/deploys/{d}")>{format!("#{d}")}</a></div>
                                })}
                            </td>
                            <td>{actions}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table></div>
    }
    .into_any()
}

/// "Restore…" of one backup: what it replaces and loses, "migrate" ticked for a backup older than the
/// running code, the database name typed to confirm.
#[component]
fn RestoreForm(
    backup: Backup,
    facts: RestoreContext,
    restore: ServerAction<RestoreBackup>,
) -> impl IntoView {
    let id = backup.id;
    let database = facts.database.clone();
    let older_than_code = facts.last_deploy.filter(|(_, at)| backup.started_at < *at);
    let age = crate::deploy::view::seconds(
        (facts.read_at - backup.started_at)
            .num_milliseconds()
            .max(0),
    );
    view! {
        <details class="danger">
            <summary data-testid=format!("restore-open-{id}")>"Restore…"</summary>
            <ActionForm action=restore attr:class="prune restore-form">
                <input type="hidden" name="id" value=id.to_string()/>
                <p class="small">
                    {format!(
                        "Replaces database {database} with this backup, taken {age} ago: everything written since is lost                          (a safety backup is taken first). The services that write to it are stopped while it runs,                          behind the maintenance page."
                    )}
                </p>
                <label class="small">
                    <input type="checkbox" name="migrate" value="true" checked=older_than_code.is_some()
                        data-testid=format!("restore-migrate-{id}")/>
                    " migrate afterwards"
                    {older_than_code.map(|(deploy, _)| format!(" (deploy #{deploy} came after this backup)"))}
                </label>
                <input type="text" name="confirm" placeholder=format!("type {database}") autocomplete="off"
                    aria-label=format!("Type {database} to confirm the restore")
                    data-testid=format!("restore-confirm-{id}")/>
                <button type="submit" data-testid=format!("restore-{id}") disabled=move || restore.pending().get()>
                    "Restore database"
                </button>
            </ActionForm>
        </details>
    }
}

/// "restore tested <when>: ok / failed (why)", or that the test runs.
#[component]
pub fn DrillLine(drill: super::Check) -> impl IntoView {
    let at = drill.at.format("%Y-%m-%d %H:%M").to_string();
    let (class, state, text) = match drill.ok {
        None => (
            "warn",
            "running",
            format!("restore test running since {at}"),
        ),
        Some(true) => ("ok", "ok", format!("restore tested {at} UTC: ok")),
        Some(false) => ("down", "failed", format!("restore tested {at} UTC: failed")),
    };
    view! {
        <div class=format!("small drill {class}") data-testid="backup-drill" data-state=state title=drill.detail.clone()>
            {text}
            {(drill.ok == Some(false)).then(|| view! { <div class="reason">{drill.detail.clone()}</div> })}
        </div>
    }
}

/// The off-site copy: running, copied and checked (what was checked), or failed (why).
#[component]
pub fn CopyLine(copy: super::Check) -> impl IntoView {
    let (class, state, text) = match copy.ok {
        None => ("warn", "running", "copying off site…".to_string()),
        Some(true) => ("ok", "ok", copy.detail.clone()),
        Some(false) => ("down", "failed", "off-site copy failed".to_string()),
    };
    view! {
        <div class=format!("small drill {class}") data-testid="backup-copy" data-state=state title=copy.detail.clone()>
            {text}
            {(copy.ok == Some(false)).then(|| view! { <div class="reason">{copy.detail.clone()}</div> })}
        </div>
    }
}

/// A file name that may wrap only after its separators (`-`, `_`, `.`), never inside a word.
fn breakable(name: &str) -> impl IntoView + use<> {
    let mut parts = Vec::new();
    let mut rest = name;
    while let Some(at) = rest.find(['-', '_', '.']) {
        parts.push(rest[..=at].to_string());
        rest = &rest[at + 1..];
    }
    parts.push(rest.to_string());
    parts
        .into_iter()
        .map(|part| view! { {part}<wbr/> })
        .collect_view()
}
