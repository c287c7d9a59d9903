//! The Deploys page (the Deploy button with the guide's options, the history, a chart of durations)
//! and a deploy's own page (its steps and its log, live while it runs).

use crate::error::AppError;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

use super::card::{ChangeCardView, DeployChanges, deploy_changes};
use super::changes::SourceView;
use super::{
    Deploy, DeployEvent, DeployLine, DeployOptions, DeployOutcome, DeployStep, StepStatus,
};

fn outcome_class(o: DeployOutcome) -> &'static str {
    match o {
        DeployOutcome::Succeeded => "ok",
        DeployOutcome::Running => "warn",
        DeployOutcome::Failed | DeployOutcome::Interrupted => "down",
        DeployOutcome::Cancelled => "refused",
    }
}

/// A duration in milliseconds as the tables show it ("12.3 s").
pub fn seconds(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

#[component]
pub fn DeploysPage() -> impl IntoView {
    let query = use_query_map();
    // `?outcome=failed` and so on; anything else shows all.
    let filter = move || query.with(|q| q.get("outcome")?.parse::<DeployOutcome>().ok());
    // `?before=42`: the page of deploys older than #42.
    let before = move || query.with(|q| q.get("before")?.parse::<i64>().ok());
    let start = ServerAction::<StartDeploy>::new();
    let deploys = Resource::new(
        move || (filter(), before(), start.version().get()),
        |(f, b, _)| list_deploys(f, b),
    );
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(id)) = start.value().get() {
            navigate(&format!("/deploys/{id}"), Default::default());
        }
    });
    // The card follows the ref typed in the form; "Check for updates" fetches, then the card is read again.
    let git_ref = RwSignal::new(String::new());
    let check = ServerAction::<DeployChanges>::new();
    let card = Resource::new(
        move || (git_ref.get(), check.version().get()),
        |(r, _)| deploy_changes(Some(r), false),
    );
    view! {
        <Title text="Deploys"/>
        <h1>"Deploys"</h1>
        <section class="card" data-testid="change-section">
            <h2>"What this deploy changes"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Comparing with what runs…"</p> }>
                <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                    {move || Suspend::new(async move {
                        card.await.map(|view| match view {
                            SourceView::Card(c) => view! { <ChangeCardView card=*c/> }.into_any(),
                            SourceView::NotGit { dir } => view! {
                                <p class="muted" data-testid="change-not-git">
                                    {format!("{dir} is not a git checkout: a deploy builds what is on disk.")}
                                </p>
                            }.into_any(),
                            SourceView::Unavailable { reason } => view! {
                                <p class="error-box" data-testid="change-error">{reason}</p>
                            }.into_any(),
                        })
                    })}
                </ErrorBoundary>
            </Suspense>
            <crate::auth::view::RoleGate role=crate::auth::Role::Deployer>
                <ActionForm action=check attr:class="inline">
                    <input type="hidden" name="git_ref" prop:value=move || git_ref.get()/>
                    <input type="hidden" name="fetch" value="true"/>
                    <button type="submit" data-testid="check-updates" disabled=move || check.pending().get()>
                        {move || if check.pending().get() { "Fetching…" } else { "Check for updates" }}
                    </button>
                </ActionForm>
                {move || check.value().get().and_then(|r| r.err()).map(|e| view! {
                    <p class="error-box" role="alert">{e.to_string()}</p>
                })}
            </crate::auth::view::RoleGate>
        </section>
        <crate::auth::view::RoleGate role=crate::auth::Role::Deployer explain="deploys">
            <super::form::DeployForm start card git_ref/>
        </crate::auth::view::RoleGate>
        <h2 class="section">"History"</h2>
        <nav class="filters small" aria-label="Filter the history" data-testid="deploy-filters">
            "Show: "
            <a href="/deploys" aria-current=move || filter().is_none().then_some("page")>"all"</a>
            {[DeployOutcome::Succeeded, DeployOutcome::Failed, DeployOutcome::Cancelled, DeployOutcome::Interrupted, DeployOutcome::Running]
                .into_iter()
                .map(|o| view! {
                    " · "
                    <a href=format!("/deploys?outcome={}", o.as_str())
                        aria-current=move || (filter() == Some(o)).then_some("page")>{o.as_str()}</a>
                })
                .collect_view()}
        </nav>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                {move || Suspend::new(async move {
                    deploys.await.map(|list| view! {
                        <DurationChart deploys=list.clone()/>
                        <HistoryTable deploys=list filter=filter() before=before()/>
                    })
                })}
            </ErrorBoundary>
        </Suspense>
    }
}

/// The Deploys page's address for a filter and a page (what the pager's links lead to).
fn history_query(filter: Option<DeployOutcome>, before: Option<i64>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(o) = filter {
        query.append_pair("outcome", o.as_str());
    }
    if let Some(b) = before {
        query.append_pair("before", &b.to_string());
    }
    match query.finish() {
        q if q.is_empty() => "/deploys".into(),
        q => format!("/deploys?{q}"),
    }
}

#[component]
fn HistoryTable(
    deploys: Vec<Deploy>,
    filter: Option<DeployOutcome>,
    before: Option<i64>,
) -> impl IntoView {
    if deploys.is_empty() {
        let text = match (filter, before) {
            (_, Some(_)) => "No older deploys. ".to_string(),
            (None, None) => "No deploys yet.".to_string(),
            (Some(o), None) => format!("No {} deploys. ", o.as_str()),
        };
        return view! {
            <p class="muted" data-testid="deploy-history-empty">
                {text}
                {(filter.is_some() || before.is_some()).then(|| view! { <a href="/deploys">"Show all"</a> })}
            </p>
        }
        .into_any();
    }
    // A full page may have older deploys behind it.
    let older = (deploys.len() as u32 == super::HISTORY_PAGE)
        .then(|| history_query(filter, deploys.last().map(|d| d.id)));
    view! {
        <div class="table-wrap" tabindex="0"><table class="table cards-on-phone" data-testid="deploy-history">
            <thead><tr><th>"#"</th><th>"Started (UTC)"</th><th>"By"</th><th>"Outcome"</th><th>"Duration"</th><th>"Offline"</th><th>"Commit"</th><th>"Summary"</th></tr></thead>
            <tbody>
                {deploys.into_iter().map(|d| view! {
                    <tr data-testid="deploy-row" data-outcome=d.outcome.as_str()>
                        <td data-label="#"><a href=format!("/deploys/{}", d.id)>{format!("#{}", d.id)}</a></td>
                        <td data-label="Started (UTC)" class="nowrap">{d.started_at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                        <td data-label="By">{d.actor.clone()}</td>
                        <td data-label="Outcome"><span class=format!("tag {}", outcome_class(d.outcome))>{d.outcome.as_str()}</span></td>
                        <td data-label="Duration" class="nowrap">{d.duration_ms().map(seconds)}</td>
                        <td data-label="Offline" class="nowrap" data-testid="deploy-offline"
                            title=d.downtime.as_ref().map(|t| t.describe())>
                            {d.downtime.as_ref().map(|t| seconds(t.total_ms as i64))}
                        </td>
                        <td data-label="Commit" class="nowrap"><code>{commits(&d)}</code></td>
                        <td data-label="Summary" class="small">{d.summary.clone()}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table></div>
        <p class="pager">
            {before.is_some().then(|| view! {
                <a href=history_query(filter, None) data-testid="deploy-newest">"← Newest"</a>
            })}
            {older.map(|href| view! { <a href=href data-testid="deploy-older">"Older →"</a> })}
        </p>
    }
    .into_any()
}

/// Durations of the finished deploys, oldest left, as bars coloured by outcome.
#[component]
fn DurationChart(deploys: Vec<Deploy>) -> impl IntoView {
    let mut done: Vec<(i64, i64, DeployOutcome)> = deploys
        .iter()
        .filter_map(|d| Some((d.id, d.duration_ms()?, d.outcome)))
        .collect();
    done.reverse();
    let done: Vec<_> = done.into_iter().rev().take(40).rev().collect();
    if done.len() < 2 {
        return ().into_any();
    }
    let longest = done.iter().map(|(_, ms, _)| *ms).max().unwrap_or(1).max(1);
    let (width, height, bar) = (640.0, 120.0, 640.0 / done.len() as f64);
    view! {
        <figure class="card chart" data-testid="duration-chart">
            <svg viewBox=format!("0 0 {width} {}", height + 4.0) role="img" aria-label="Deploy durations">
                {done.iter().enumerate().map(|(i, (id, ms, outcome))| {
                    let h = (*ms as f64 / longest as f64 * height).max(2.0);
                    view! {
                        <rect x=format!("{:.1}", i as f64 * bar + 2.0) y=format!("{:.1}", height - h)
                            width=format!("{:.1}", (bar - 4.0).max(1.0)) height=format!("{h:.1}")
                            class=format!("bar {}", outcome_class(*outcome))>
                            <title>{format!("#{id}: {} ({})", seconds(*ms), outcome.as_str())}</title>
                        </rect>
                    }
                }).collect_view()}
            </svg>
            <figcaption class="muted small">{format!("Duration of the last {} finished deploys (longest {})", done.len(), seconds(longest))}</figcaption>
        </figure>
    }
    .into_any()
}

#[component]
pub fn DeployPage() -> impl IntoView {
    let params = use_params_map();
    // `/deploys/7`; anything else (`/deploys/new`) is no deploy, said as such.
    let raw = move || params.with(|p| p.get("id").unwrap_or_default());
    let id = move || raw().parse::<i64>().ok().filter(|id| *id > 0);
    let deploy = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_deploy(id).await.map(Some),
            None => Ok(None),
        }
    });
    view! {
        <Title text=move || match id() { Some(id) => format!("Deploy #{id}"), None => "Not found".into() }/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                {move || Suspend::new(async move {
                    deploy.await.map(|d| match d {
                        Some(d) => view! { <DeployView deploy=d/> }.into_any(),
                        None => view! { <NoSuchDeploy name=raw()/> }.into_any(),
                    })
                })}
            </ErrorBoundary>
        </Suspense>
    }
}

/// `/deploys/<not a number>`: a 404 page that leads to the Deploys page (where a deploy starts).
#[component]
fn NoSuchDeploy(name: String) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <h1>"Not found"</h1>
        <p data-testid="no-such-deploy">
            {format!("There is no deploy “{name}”: deploys are numbered. ")}
            <a href="/deploys#deploy">"Start one, or pick one from the history"</a>
        </p>
    }
}

#[component]
fn DeployView(deploy: Deploy) -> impl IntoView {
    let id = deploy.id;
    let steps = RwSignal::new(deploy.steps.clone());
    // A failed step's stderr is shown red (what it said last is why it failed); other lines by
    // what they say.
    let failed_step = move |step: usize| {
        steps.with(|s| s.get(step).is_some_and(|s| s.status == StepStatus::Failed))
    };
    let lines = RwSignal::new(std::collections::VecDeque::<DeployLine>::new());
    // Lines before the ones held (the page keeps the newest `LOG_WINDOW`; the raw log has all).
    let earlier = RwSignal::new(0u64);
    let finished = RwSignal::new(
        (deploy.outcome != DeployOutcome::Running)
            .then(|| (deploy.outcome, deploy.summary.clone())),
    );
    Effect::new(move |_| {
        crate::live::follow::<DeployEvent, _, _>(
            format!("/api/deploys/{id}/events"),
            false,
            move |event| match event {
                DeployEvent::Earlier { lines: n } => earlier.set(n),
                DeployEvent::Line(line) => lines.update(|l| {
                    if l.back().is_none_or(|last| last.seq < line.seq) {
                        if l.len() == crate::deploy::LOG_WINDOW {
                            l.pop_front();
                            earlier.update(|e| *e += 1);
                        }
                        l.push_back(line)
                    }
                }),
                DeployEvent::Step { position, step } => steps.update(|s| {
                    if let Some(slot) = s.get_mut(position) {
                        *slot = step;
                    }
                }),
                DeployEvent::Finished { outcome, summary } => {
                    finished.set(Some((outcome, summary)))
                }
            },
            |_| {},
        );
    });
    let cancel = ServerAction::<CancelDeploy>::new();
    let rollback = ServerAction::<RollbackDeploy>::new();
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(new_id)) = rollback.value().get() {
            navigate(&format!("/deploys/{new_id}"), Default::default());
        }
    });
    let can_roll_back =
        RwSignal::new(deploy.outcome == DeployOutcome::Succeeded && !deploy.images.is_empty());
    // A deploy that succeeds while its page is open: read it again for the images it kept, so
    // "Redeploy this one" is offered without a reload.
    Effect::new(move |_| {
        if let Some((DeployOutcome::Succeeded, _)) = finished.get()
            && !can_roll_back.get_untracked()
        {
            leptos::task::spawn_local(async move {
                if let Ok(d) = get_deploy(id).await {
                    can_roll_back
                        .set(d.outcome == DeployOutcome::Succeeded && !d.images.is_empty());
                }
            });
        }
    });
    let options = deploy.options.describe();
    let kind = if deploy.options.restore.is_some() {
        "Restore"
    } else {
        "Deploy"
    };
    view! {
        <h1>{format!("{kind} #{id}")}</h1>
        <section class="card">
            <div role="status" aria-live="polite" data-testid="deploy-outcome" data-outcome=move || finished.get().map_or("running", |(o, _)| o.as_str())>
                {move || match finished.get() {
                    None => view! { <span class="tag warn">"running"</span> }.into_any(),
                    Some((o, summary)) => view! {
                        <span class=format!("tag {}", outcome_class(o))>{o.as_str()}</span>
                        " " <span data-testid="deploy-summary">{summary}</span>
                    }.into_any(),
                }}
            </div>
            <dl class="facts">
                <dt>"Started"</dt><dd>{format!("{} UTC by {}", deploy.started_at.format("%Y-%m-%d %H:%M:%S"), deploy.actor)}</dd>
                <dt>"Options"</dt><dd>{options}</dd>
                {deploy.downtime.clone().map(|t| view! {
                    <dt>"Offline"</dt><dd data-testid="deploy-downtime">{t.describe()}</dd>
                })}
                <dt>"Commit"</dt><dd><code data-testid="deploy-commits">{commits(&deploy)}</code>{deploy.version.clone().map(|v| format!(" · VERSION {v}"))}</dd>
                <dt>"Env file"</dt><dd><code>{deploy.env_sha256.clone().map(|h| format!("sha256 {}", &h[..h.len().min(16)]))}</code></dd>
                <dt>"Compose file"</dt><dd><code>{deploy.compose_sha256.clone().map(|h| format!("sha256 {}", &h[..h.len().min(16)]))}</code></dd>
            </dl>
            <crate::auth::view::RoleGate role=crate::auth::Role::Deployer>
                {move || finished.get().is_none().then(|| view! {
                    <ActionForm action=cancel>
                        <input type="hidden" name="id" value=id/>
                        <button type="submit" data-testid="cancel-button">"Cancel deploy"</button>
                    </ActionForm>
                })}
            </crate::auth::view::RoleGate>
            {move || cancel.value().get().and_then(|r| r.err()).map(|e| view! { <p class="error-box">{e.to_string()}</p> })}
            {move || can_roll_back.get().then(|| view! {
                <crate::auth::view::RoleGate role=crate::auth::Role::Deployer>
                <ActionForm action=rollback attr:class="rollback">
                    <input type="hidden" name="id" value=id/>
                    <button type="submit" data-testid="rollback-button">"Redeploy this one"</button>
                    <span class="muted small">
                        " Brings back exactly this deploy's images (no build) and checks the stack. It does not undo "
                        "database migrations applied since."
                    </span>
                </ActionForm>
                </crate::auth::view::RoleGate>
            })}
            {move || rollback.value().get().and_then(|r| r.err()).map(|e| view! {
                <p class="error-box" role="alert">{e.to_string()}</p>
            })}
        </section>
        {(deploy.outcome == DeployOutcome::Succeeded && deploy.options.kind() == "deploy").then(|| view! {
            <super::undo::UndoCard id/>
        })}
        {deploy.change_card.clone().map(|card| view! {
            <section class="card">
                <h2>"What this deploy changed"</h2>
                <ChangeCardView card/>
            </section>
        })}
        <div class="deploy-body">
            <ol class="steps" data-testid="deploy-steps">
                {move || steps.get().into_iter().map(step_item).collect_view()}
            </ol>
            <div class="deploy-log-box">
                <crate::follow::FollowingLog newest=Signal::derive(move || lines.with(|l| l.back().map_or(0, |l| l.seq)))
                    class="deploy-log" testid="deploy-log" label=format!("Deploy #{id} log")>
                    {move || (earlier.get() > 0).then(|| view! {
                        <div class="line muted" data-testid="deploy-earlier">
                            {format!("{} earlier lines are not shown here: ", earlier.get())}
                            <a href=format!("/deploys/{id}/log.txt") rel="external">"the whole log"</a>
                        </div>
                    })}
                    <For each=move || lines.get() key=|l| l.seq let(line)>
                        <div class={
                            let (text, stderr, step) = (line.text.clone(), line.stderr, line.step);
                            move || crate::tone::line_class(&text, stderr, failed_step(step))
                        } data-testid="deploy-line">
                            <span class="text">{line.text.clone()}</span>
                        </div>
                    </For>
                </crate::follow::FollowingLog>
            </div>
        </div>
        {(!deploy.images.is_empty()).then(|| view! {
            <h2 class="section">"Images after this deploy"</h2>
            <div class="table-wrap" tabindex="0"><table class="table compact">
                <tbody>
                    {deploy.images.iter().map(|(service, image)| view! {
                        <tr><td>{service.clone()}</td><td><code>{image.clone()}</code></td></tr>
                    }).collect_view()}
                </tbody>
            </table></div>
        })}
    }
}

/// "from -> to" when the deploy checked out another commit, else the one commit it ran.
fn commits(d: &Deploy) -> String {
    let short = |c: &str| c.chars().take(10).collect::<String>();
    match (d.git_commit.as_deref(), d.to_commit.as_deref()) {
        (Some(from), Some(to)) if from != to => format!("{} → {}", short(from), short(to)),
        (_, Some(to)) => short(to),
        (Some(from), None) => short(from),
        (None, None) => "—".into(),
    }
}

fn step_item(step: DeployStep) -> impl IntoView {
    let class = match step.status {
        StepStatus::Succeeded => "ok",
        StepStatus::Running => "warn",
        StepStatus::Failed => "down",
        StepStatus::Cancelled => "refused",
        StepStatus::Pending | StepStatus::Skipped => "",
    };
    view! {
        <li data-testid="deploy-step" data-status=step.status.as_str()>
            <span class=format!("tag {class}")>{step.status.as_str()}</span>
            " " {step.name}
            <span class="muted small">
                {step.duration_ms.map(|ms| format!(" {}", seconds(ms as i64)))}
                {step.exit_code.filter(|c| *c != 0).map(|c| format!(" exit {c}"))}
            </span>
        </li>
    }
}

/// The deployer of this server (server functions only).
#[cfg(feature = "ssr")]
fn deployer() -> std::sync::Arc<super::ssr::Deployer> {
    leptos::prelude::expect_context()
}

#[leptos::server(endpoint = "deploy_start")]
pub async fn start_deploy(
    // A form with no box ticked sends no `options[...]` field at all.
    #[server(default)] options: DeployOptions,
    confirm: Option<String>,
) -> Result<i64, AppError> {
    use crate::auth::Role;
    use crate::auth::gate::require;
    let role = if options.destructive() {
        Role::Admin
    } else {
        Role::Deployer
    };
    let actor = require(role).await?;
    deployer()
        .start(&actor, options, confirm.as_deref())
        .await
        .map_err(|e| e.into_app_error().replied())
}

/// "Redeploy this one": the images of successful deploy `id` brought back, as a new deploy.
#[leptos::server(endpoint = "deploy_rollback")]
pub async fn rollback_deploy(id: i64) -> Result<i64, AppError> {
    let actor = crate::auth::gate::require(crate::auth::Role::Deployer).await?;
    let options = DeployOptions {
        rollback_of: Some(id),
        ..DeployOptions::default()
    };
    deployer()
        .start(&actor, options, None)
        .await
        .map_err(|e| e.into_app_error().replied())
}

#[leptos::server(endpoint = "deploy_cancel")]
pub async fn cancel_deploy(id: i64) -> Result<(), AppError> {
    let actor = crate::auth::gate::require(crate::auth::Role::Deployer).await?;
    deployer()
        .cancel(&actor, id)
        .await
        .map_err(|e| e.into_app_error().replied())
}

/// A page of the history (`HISTORY_PAGE` deploys, the newest older than deploy `before` when given) as
/// its rows show them: without their steps, change cards and images, which a deploy's own page reads
/// (`deploy_get`). A change card lists commits and files; kept in, a year of history went into every
/// view of the Deploys page as hydration data.
#[leptos::server(endpoint = "deploy_list")]
pub async fn list_deploys(
    #[server(default)] outcome: Option<DeployOutcome>,
    #[server(default)] before: Option<i64>,
) -> Result<Vec<Deploy>, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    let deployer = deployer();
    let read = || deployer.history_rows(outcome, before, super::HISTORY_PAGE);
    // The page as most views open it (the newest, unfiltered) is kept between commits.
    if outcome.is_none() && before.is_none() {
        let store = leptos::prelude::expect_context::<crate::store::Store>();
        let kept = store.read_kept("deploy history", read);
        return Ok(kept.await?.to_vec());
    }
    Ok(read().await?)
}

#[leptos::server(endpoint = "deploy_get")]
pub async fn get_deploy(id: i64) -> Result<Deploy, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    match deployer().get(id).await? {
        Some(deploy) => Ok(deploy),
        None => Err(AppError::NotFound(format!("there is no deploy #{id}")).replied()),
    }
}
