//! The Deploy form: the guide's options, a confirmation that says what the click will do, and, while
//! a deploy runs, who runs it since when instead of a button that would be refused.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::changes::SourceView;
use super::view::{CancelDeploy, StartDeploy, seconds};
use super::{Deploy, DeployEvent};
use crate::error::AppError;

/// What the form needs besides the change card: the deploy that runs now, and how long the last
/// successful one took and kept EPSM offline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployFormFacts {
    pub running: Option<Deploy>,
    pub last_succeeded_ms: Option<i64>,
    pub last_offline_ms: Option<u64>,
    pub read_at: DateTime<Utc>,
}

#[server(endpoint = "deploy_form_state")]
pub async fn deploy_form_state() -> Result<DeployFormFacts, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    let deployer = expect_context::<std::sync::Arc<super::ssr::Deployer>>();
    let store = expect_context::<crate::store::Store>();
    let kept = store.read_kept("deploy form", || async {
        let (running, succeeded) = tokio::join!(
            deployer.history_rows(Some(super::DeployOutcome::Running), None, 1),
            deployer.history_rows(Some(super::DeployOutcome::Succeeded), None, 20),
        );
        Ok::<_, crate::store::StoreError>((running?, succeeded?))
    });
    let (running, succeeded) = &*kept.await?;
    // The last deploy's figures, not a restore's.
    let last = succeeded.iter().find(|d| d.options.restore.is_none());
    Ok(DeployFormFacts {
        running: running.first().cloned(),
        last_offline_ms: last.and_then(|d| d.downtime.as_ref()).map(|d| d.total_ms),
        last_succeeded_ms: last.and_then(Deploy::duration_ms),
        read_at: Utc::now(),
    })
}

/// What a deploy with the default order does to the running stack, then what the change card says
/// it brings: the lines of the confirmation.
pub fn what_happens(
    card: Option<&SourceView>,
    last_succeeded_ms: Option<i64>,
    last_offline_ms: Option<u64>,
) -> Vec<String> {
    let last = match (last_succeeded_ms, last_offline_ms) {
        (Some(ms), Some(off)) => format!(
            " The last successful deploy took {} in all, and EPSM was offline for {} of it.",
            seconds(ms),
            seconds(off as i64)
        ),
        (Some(ms), None) => format!(" The last successful deploy took {} in all.", seconds(ms)),
        _ => String::new(),
    };
    let offline = format!(
        "EPSM keeps serving while the new images build. For the switch, the worker first finishes the tasks \
         it runs (or “don't wait for running tasks”); then a maintenance page answers while the stack goes \
         down (volumes kept), comes up, migrates and collects its static files, and EPSM is back when nginx \
         is. With “stop the stack before building” it is offline for the build too.{last}"
    );
    let mut lines = vec![offline];
    match card {
        Some(SourceView::Card(c)) => {
            lines.push(if c.up_to_date() {
                format!(
                    "The code does not change: production runs {} already; it is rebuilt.",
                    c.wanted
                )
            } else {
                let subject = c.target.subject.clone();
                format!(
                    "{} new commit{} from {}, the newest “{subject}”.",
                    c.ahead,
                    if c.ahead == 1 { "" } else { "s" },
                    c.wanted,
                )
            });
            if !c.compose.is_empty() {
                let names: Vec<&str> = c.compose.iter().map(|s| s.service.as_str()).collect();
                lines.push(format!("The compose file changes {}.", names.join(", ")));
            }
            let env = &c.env;
            let keys = env.added.len() + env.removed.len() + env.changed.len();
            if keys > 0 {
                lines.push(format!(
                    "{keys} variable{} of .env.production changed since the last deploy.",
                    if keys == 1 { "" } else { "s" }
                ));
            }
            if !c.migrations.is_empty() {
                lines.push(format!(
                    "{} new migration{}{}.",
                    c.migrations.len(),
                    if c.migrations.len() == 1 { "" } else { "s" },
                    if c.backup_advised {
                        ", one can lose data: back up the database first"
                    } else {
                        ""
                    }
                ));
            }
        }
        Some(SourceView::NotGit { dir }) => lines.push(format!(
            "{dir} is not a git checkout: what is on disk is built."
        )),
        Some(SourceView::Unavailable { reason }) => {
            lines.push(format!("What the deploy brings is unknown: {reason}"))
        }
        None => lines.push("What the deploy brings is still being worked out.".into()),
    }
    lines
}

/// The Deploy card of the Deploys page (deployers only; the page wraps it in its role gate).
#[component]
pub fn DeployForm(
    start: ServerAction<StartDeploy>,
    card: Resource<Result<SourceView, AppError>>,
    git_ref: RwSignal<String>,
) -> impl IntoView {
    let cancel = ServerAction::<CancelDeploy>::new();
    // Read again after a start or a cancel, and when the running deploy ends (`ended`).
    let ended = RwSignal::new(0u32);
    let state = Resource::new(
        move || (start.version().get(), cancel.version().get(), ended.get()),
        |_| deploy_form_state(),
    );
    let backup_advised = move || {
        card.get()
            .and_then(|c| c.ok())
            .is_some_and(|v| matches!(v, SourceView::Card(c) if c.backup_advised))
    };
    let confirming = RwSignal::new(false);
    let running = move || state.get().and_then(|s| s.ok()).and_then(|s| s.running);
    view! {
        <section class="card" data-testid="deploy-form" id="deploy">
            <h2>"Deploy"</h2>
            <p class="muted small">
                "The deployment guide's procedure: pre-flight, the newest code from git, down (volumes kept), build "
                "cache prune, build --no-cache, up --force-recreate, wait for healthy, migrate, seed, collectstatic, "
                "verify. One deploy at a time."
            </p>
            <Transition fallback=|| ()>
                {move || running().map(|d| view! {
                    <RunningDeploy deploy=d now=state.get().and_then(|s| s.ok()).map_or_else(Utc::now, |s| s.read_at)
                        cancel ended/>
                })}
            </Transition>
            // Inside a Transition, so the page is rendered knowing whether a deploy runs (a disabled
            // form rendered enabled would stay so after hydration).
            <Transition fallback=|| ()>
            <ActionForm action=start attr:class="deploy-form">
                <fieldset class="plain" disabled=move || running().is_some() || start.pending().get()>
                    <legend class="visually-hidden">"Deploy options"</legend>
                    <label class="wide">"Deploy "
                        <input type="text" name="options[git_ref]" data-testid="deploy-ref" autocomplete="off"
                            placeholder="the configured branch (or a branch, tag or commit)"
                            on:change=move |ev| git_ref.set(event_target_value(&ev))/>
                    </label>
                    <label><input type="checkbox" name="options[skip_migrations]" value="true"/>" skip migrations"</label>
                    <label><input type="checkbox" name="options[skip_seed]" value="true"/>" skip seed"</label>
                    <label><input type="checkbox" name="options[no_pull]" value="true"/>
                        " don't pull newer base images (build without --pull)"</label>
                    <label><input type="checkbox" name="options[ignore_audit_errors]" value="true"/>" deploy despite audit errors"</label>
                    <label><input type="checkbox" name="options[backup_first]" value="true" data-testid="deploy-backup-first"
                        prop:checked=backup_advised/>" back up the database first"</label>
                    <label><input type="checkbox" name="options[stop_first]" value="true" data-testid="deploy-stop-first"/>
                        " stop the stack before building (the guide's order: for a host short of disk or memory)"</label>
                    <label><input type="checkbox" name="options[no_drain]" value="true" data-testid="deploy-no-drain"/>
                        " don't wait for running tasks (the switch interrupts the simulations that run)"</label>
                    <crate::auth::view::RoleGate role=crate::auth::Role::Admin explain="destructive options (discarding local changes, recreating volumes)">
                        <details class="danger">
                            <summary>"Destructive options (admin only)"</summary>
                            <label><input type="checkbox" name="options[discard_local_changes]" value="true" data-testid="deploy-discard"/>
                                " discard local changes on the server (changed tracked files, untracked files in the way)"</label>
                            <label><input type="checkbox" name="options[recreate_volumes]" value="true"/>" recreate volumes: DELETES ALL DATA"</label>
                            <label>
                                <span class="visually-hidden">"Type the project name to confirm a destructive option"</span>
                                <input type="text" name="confirm" placeholder="type the project name to confirm" autocomplete="off"/>
                            </label>
                        </details>
                    </crate::auth::view::RoleGate>
                    <button type="button" class="primary" data-testid="deploy-button"
                        aria-expanded=move || confirming.get().to_string() aria-controls="deploy-confirm"
                        on:click=move |_| confirming.set(true)>
                        "Deploy…"
                    </button>
                    <div id="deploy-confirm" class="confirm" role="group" aria-label="Confirm the deploy"
                        data-testid="deploy-confirm" hidden=move || !confirming.get()>
                        <p><strong>"When you deploy:"</strong></p>
                        <ul data-testid="deploy-confirm-lines">
                            {move || {
                                let card = card.get().and_then(Result::ok);
                                let facts = state.get().and_then(Result::ok);
                                let last = facts.as_ref().and_then(|s| s.last_succeeded_ms);
                                let offline = facts.as_ref().and_then(|s| s.last_offline_ms);
                                what_happens(card.as_ref(), last, offline)
                                    .into_iter()
                                    .map(|line| view! { <li>{line}</li> })
                                    .collect_view()
                            }}
                        </ul>
                        <button type="submit" class="primary" data-testid="deploy-confirm-button">
                            {move || if start.pending().get() { "Starting…" } else { "Deploy now" }}
                        </button>
                        " "
                        <button type="button" data-testid="deploy-confirm-back" on:click=move |_| confirming.set(false)>
                            "Back"
                        </button>
                    </div>
                </fieldset>
            </ActionForm>
            </Transition>
            {move || start.value().get().and_then(|r| r.err()).map(|e| view! {
                <p class="error-box" role="alert" data-testid="deploy-error">{e.to_string()}</p>
            })}
        </section>
    }
}

/// "Deploy #N is running (by whom, since when) — watch / cancel"; tells the form when it ends.
#[component]
fn RunningDeploy(
    deploy: Deploy,
    now: DateTime<Utc>,
    cancel: ServerAction<CancelDeploy>,
    ended: RwSignal<u32>,
) -> impl IntoView {
    let id = deploy.id;
    Effect::new(move |_| {
        crate::live::follow::<DeployEvent, _, _>(
            format!("/api/deploys/{id}/events"),
            false,
            move |event| {
                if let DeployEvent::Finished { .. } = event {
                    ended.update(|n| *n += 1);
                }
            },
            |_| {},
        );
    });
    let since =
        crate::health::human_duration((now - deploy.started_at).num_seconds().max(0) as u64);
    view! {
        <div class="running-deploy" role="status" data-testid="deploy-running" data-deploy=id>
            <span class="tag warn">"running"</span>
            " "
            {format!(
                "Deploy #{id} is running (by {}, since {} UTC, {since} ago) — ",
                deploy.actor,
                deploy.started_at.format("%H:%M:%S")
            )}
            <a href=format!("/deploys/{id}") data-testid="deploy-running-watch">"watch"</a>
            " · "
            <ActionForm action=cancel attr:class="inline">
                <input type="hidden" name="id" value=id/>
                <button type="submit" class="link" data-testid="deploy-running-cancel">"cancel"</button>
            </ActionForm>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confirmation_says_the_stack_goes_offline_and_how_long_it_took_last_time() {
        let lines = what_happens(None, Some(41_200), Some(13_500));
        assert!(
            lines[0].starts_with("EPSM keeps serving while the new images build"),
            "{lines:?}"
        );
        assert!(
            lines[0].contains("took 41.2 s in all, and EPSM was offline for 13.5 s of it"),
            "{lines:?}"
        );
        assert!(lines[0].contains("a maintenance page answers"), "{lines:?}");
        assert_eq!(
            lines[1],
            "What the deploy brings is still being worked out."
        );
        let lines = what_happens(
            Some(&SourceView::NotGit {
                dir: "/opt/epsm".into(),
            }),
            None,
            None,
        );
        assert!(!lines[0].contains("took"), "{lines:?}");
        assert_eq!(
            lines[1],
            "/opt/epsm is not a git checkout: what is on disk is built."
        );
    }
}
