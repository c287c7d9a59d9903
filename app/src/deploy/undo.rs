//! "Undo this deploy": the images of the deploy before it, and, when it backed up the database
//! first, the database as it was before it too (a restore of that backup and the image rollback, one
//! run in the history).

use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::{DeployOptions, RestoreFrom, RestoreRequest};
use crate::backup::Backup;
use crate::error::AppError;

/// What undoing deploy `id` can bring back.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UndoChoices {
    pub id: i64,
    /// The newest successful deploy before it whose images are kept.
    pub previous: Option<i64>,
    /// The backup it took before it stopped anything ("back up the database first").
    pub backup: Option<Backup>,
    /// The database name a restore is confirmed with.
    pub database: String,
    /// The server's clock when read (the backup's age is told against it).
    pub read_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(feature = "ssr")]
fn deployer() -> std::sync::Arc<super::ssr::Deployer> {
    expect_context()
}

#[cfg(feature = "ssr")]
async fn choices(id: i64) -> Result<UndoChoices, AppError> {
    let deployer = deployer();
    let previous = deployer
        .list(Some(super::DeployOutcome::Succeeded), 200)
        .await?
        .into_iter()
        .find(|d| d.id < id && !d.images.is_empty())
        .map(|d| d.id);
    let backups = expect_context::<std::sync::Arc<crate::backup::ssr::Backups>>();
    let backup = backups.list(1_000).await?.into_iter().find(|b| {
        b.actor == format!("deploy #{id}") && b.outcome == crate::backup::BackupOutcome::Succeeded
    });
    Ok(UndoChoices {
        id,
        previous,
        backup,
        database: deployer.database_name(),
        read_at: chrono::Utc::now(),
    })
}

/// A rollback to deploy `previous`'s images, with the database of `backup` when `with_data`.
#[cfg(feature = "ssr")]
fn undo_options(previous: i64, backup: i64, with_data: bool) -> DeployOptions {
    DeployOptions {
        rollback_of: Some(previous),
        restore: with_data.then_some(RestoreRequest {
            from: RestoreFrom::Backup(backup),
            migrate: false,
        }),
        ..DeployOptions::default()
    }
}

#[server(endpoint = "deploy_undo_choices")]
pub async fn read_undo_choices(id: i64) -> Result<UndoChoices, AppError> {
    crate::auth::gate::require(crate::auth::Role::Deployer).await?;
    choices(id).await
}

/// Undoes deploy `id`: the previous deploy's images (deployer), with the database as it was before
/// `id` (admin, the database name typed). Returns the new run's id.
#[server(endpoint = "deploy_undo")]
pub async fn undo_deploy(
    id: i64,
    #[server(default)] with_data: bool,
    #[server(default)] confirm: String,
) -> Result<i64, AppError> {
    use crate::auth::Role;
    let role = if with_data {
        Role::Admin
    } else {
        Role::Deployer
    };
    let actor = crate::auth::gate::require(role).await?;
    let found = choices(id).await?;
    let previous = found.previous.ok_or_else(|| {
        AppError::Invalid(format!(
            "no successful deploy before #{id} has its images kept"
        ))
    })?;
    let backup = match (with_data, &found.backup) {
        (false, _) => 0,
        (true, Some(b)) => b.id,
        (true, None) => {
            return Err(AppError::Invalid(format!(
                "deploy #{id} took no backup first: only its images can be undone"
            )));
        }
    };
    deployer()
        .start(
            &actor,
            undo_options(previous, backup, with_data),
            Some(&confirm),
        )
        .await
        .map_err(|e| e.into_app_error().replied())
}

/// The undo choices of a successful deploy, on its page (deployers; the data part for admins).
#[component]
pub fn UndoCard(id: i64) -> impl IntoView {
    let undo = ServerAction::<UndoDeploy>::new();
    let navigate = leptos_router::hooks::use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(new_id)) = undo.value().get() {
            navigate(&format!("/deploys/{new_id}"), Default::default());
        }
    });
    let found = Resource::new(move || id, read_undo_choices);
    let login = expect_context::<crate::auth::view::LoginResource>();
    view! {
        <crate::auth::view::RoleGate role=crate::auth::Role::Deployer>
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                let admin = crate::auth::view::role_of(login.await) >= Some(crate::auth::Role::Admin);
                found.await.ok().and_then(|c| c.previous.map(|previous| view! {
                    <section class="card" data-testid="undo-card">
                        <h2>"Undo this deploy"</h2>
                        <ActionForm action=undo attr:class="rollback">
                            <input type="hidden" name="id" value=id/>
                            <button type="submit" data-testid="undo-images">{format!("Images of deploy #{previous}")}</button>
                            <span class="muted small">" Brings back the images that ran before this deploy. The database stays as it is."</span>
                        </ActionForm>
                        {c.backup.clone().filter(|_| admin).map(|b| {
                            let age = crate::deploy::view::seconds((c.read_at - b.started_at).num_milliseconds().max(0));
                            let database = c.database.clone();
                            view! {
                                <details class="danger">
                                    <summary data-testid="undo-data-open">{format!("Images of deploy #{previous} and the database as before this deploy…")}</summary>
                                    <ActionForm action=undo attr:class="prune restore-form">
                                        <input type="hidden" name="id" value=id/>
                                        <input type="hidden" name="with_data" value="true"/>
                                        <p class="small">{format!(
                                            "Restores backup #{} of {database}, taken {age} ago as this deploy began: everything \
                                             written since is lost (a safety backup is taken first).", b.id
                                        )}</p>
                                        <input type="text" name="confirm" placeholder=format!("type {database}") autocomplete="off"
                                            aria-label=format!("Type {database} to confirm")
                                            data-testid="undo-data-confirm"/>
                                        <button type="submit" data-testid="undo-data">"Undo with the data"</button>
                                    </ActionForm>
                                </details>
                            }
                        })}
                        {move || undo.value().get().and_then(Result::err).map(|e| view! {
                            <p class="error-box" role="alert" data-testid="undo-error">{e.to_string()}</p>
                        })}
                    </section>
                }))
            })}
        </Suspense>
        </crate::auth::view::RoleGate>
    }
}
