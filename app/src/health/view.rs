//! The Health page: the engine and its disk usage on top, one row per service, orphans, the log
//! viewer and maintenance. Rendered with the newest report, then follows `/api/health/events`.

use std::collections::VecDeque;

use leptos::prelude::*;
use leptos_meta::Title;

use super::{
    ContainerFacts, HealthReport, LogEvent, LogLine, ProbeResult, ServiceHealth, human_duration,
};
use crate::engine::EngineState;
use crate::error::AppError;

/// Lines a log view keeps; older ones scroll away.
const LOG_LINES_KEPT: usize = 1000;

/// The health report as a page shows it: the one the server has when it renders (`initial`), then
/// every one the monitor publishes (`live`, over `/api/health/events`), and whether that stream is
/// open (`following`).
pub struct FollowedReport {
    pub initial: Resource<Result<HealthReport, crate::error::AppError>>,
    pub live: RwSignal<Option<HealthReport>>,
    pub following: RwSignal<bool>,
}

/// Starts following the health monitor for the calling page (the stream closes with the page).
pub fn follow_health() -> FollowedReport {
    let initial = Resource::new(|| (), |_| get_health_report());
    let live = RwSignal::new(None::<HealthReport>);
    let following = RwSignal::new(false);
    Effect::new(move |_| {
        crate::live::follow::<HealthReport, _, _>(
            "/api/health/events".into(),
            true,
            move |report| live.set(Some(report)),
            move |open| following.set(open),
        );
    });
    FollowedReport {
        initial,
        live,
        following,
    }
}

#[component]
pub fn HealthPage() -> impl IntoView {
    let FollowedReport {
        initial,
        live,
        following,
    } = follow_health();
    view! {
        <Title text="Health"/>
        <h1>"Health"</h1>
        <Suspense fallback=|| view! { <p class="muted">"Looking at the stack…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                {move || Suspend::new(async move {
                    initial.await.map(|first| {
                        let report = Signal::derive(move || live.get().unwrap_or_else(|| first.clone()));
                        view! {
                            <HealthView report following/>
                            <LogPanel report/>
                            <crate::auth::view::RoleGate role=crate::auth::Role::Admin explain="prunes of images and build cache"><super::maintenance::MaintenanceCard/></crate::auth::view::RoleGate>
                        }
                    })
                })}
            </ErrorBoundary>
        </Suspense>
    }
}

#[component]
fn HealthView(report: Signal<HealthReport>, following: RwSignal<bool>) -> impl IntoView {
    move || {
        let r = report.get();
        let engine_down = match &r.engine.state {
            EngineState::Unreachable { reason } => Some(reason.clone()),
            EngineState::Reachable(_) => None,
        };
        let healthy = r
            .services
            .iter()
            .filter(|s| s.verdict.word() == "healthy")
            .count();
        let unchecked = r
            .services
            .iter()
            .filter(|s| s.verdict == super::Verdict::Unchecked)
            .count();
        let summary = match unchecked {
            0 => format!("{healthy} of {} services healthy", r.services.len()),
            n => format!(
                "{healthy} of {} services healthy, {n} running without a check",
                r.services.len()
            ),
        };
        let taken = r.taken_at;
        view! {
            <section class="card" data-testid="health-engine" data-round=r.round>
                {match (&r.engine.state, engine_down.clone()) {
                    (_, Some(reason)) => view! {
                        <div class="status down" role="alert" data-testid="health-engine-state" data-state="unreachable">
                            <span class="dot"></span>"Docker engine unreachable"
                        </div>
                        <p class="reason" data-testid="health-engine-reason">{reason}</p>
                    }.into_any(),
                    (EngineState::Reachable(info), None) => view! {
                        <div class="status ok" data-testid="health-engine-state" data-state="reachable">
                            <span class="dot"></span>{format!("Docker {} (API {})", info.version, info.api_version)}
                        </div>
                        <span class="muted">" " {summary}</span>
                    }.into_any(),
                    _ => ().into_any(),
                }}
                <p class="muted small">
                    "Project " <span data-testid="health-project">{r.project.clone()}</span>
                    <span data-testid="health-project-source">{format!(" (from {})", r.project_source.describe())}</span>
                    {format!(" · looked at {} UTC · ", taken.format("%H:%M:%S"))}
                    <span data-testid="live" data-live=move || following.get().to_string()>
                        {move || if following.get() { "live" } else { "not live (reconnecting)" }}
                    </span>
                </p>
                {r.disk.clone().map(|disk| view! {
                    <div class="table-wrap" tabindex="0"><table class="table compact" data-testid="disk-usage">
                        <thead><tr><th>"Disk"</th><th>"Count"</th><th>"Active"</th><th>"Size"</th><th>"Reclaimable"</th></tr></thead>
                        <tbody>
                            {disk.rows.into_iter().map(|d| view! {
                                <tr><td>{d.kind}</td><td>{d.total}</td><td>{d.active}</td><td>{d.size}</td><td>{d.reclaimable}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table></div>
                })}
            </section>
            {r.compose_error.clone().map(|e| view! {
                <div class="error-box" role="alert" data-testid="compose-error">
                    "The compose file cannot be read, so the services below are the last ones it declared: " {e}
                </div>
            })}
            <h2 class="section">"Services"</h2>
            <div class="table-wrap" tabindex="0"><table class="table cards-on-phone" data-testid="services">
                <thead>
                    <tr>
                        <th>"Service"</th><th>"Verdict"</th><th>"Container"</th><th>"Health"</th>
                        <th>"Restarts"</th><th>"Up"</th><th>"Image"</th><th>"Deep probe"</th>
                    </tr>
                </thead>
                <tbody>
                    {r.services.iter().map(|s| service_row(s, taken)).collect_view()}
                </tbody>
            </table></div>
            {(!r.orphans.is_empty()).then(|| view! {
                <h2 class="section">"Orphans"</h2>
                <p class="muted">"Containers of this project whose service the compose file no longer declares (remove them with `up --remove-orphans`)."</p>
                <div class="table-wrap" tabindex="0"><table class="table" data-testid="orphans">
                    <thead><tr><th>"Container"</th><th>"Service label"</th><th>"State"</th><th>"Image"</th></tr></thead>
                    <tbody>
                        {r.orphans.iter().map(|c| view! {
                            <tr data-testid="orphan-row" data-service=c.service.clone()>
                                <td><code>{c.name.clone()}</code></td><td>{c.service.clone()}</td>
                                <td>{c.state.clone()}</td><td><code>{c.image.clone()}</code></td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table></div>
            })}
        }
    }
}

fn service_row(s: &ServiceHealth, taken: chrono::DateTime<chrono::Utc>) -> impl IntoView + use<> {
    let c: Option<&ContainerFacts> = s.container.as_ref();
    let up = c
        .filter(|c| c.state == "running")
        .and_then(|c| c.started_at)
        .map(|t| human_duration((taken - t).num_seconds().max(0) as u64))
        .unwrap_or_else(|| "—".into());
    let replicas = (s.replicas > 1).then(|| format!(" ×{}", s.replicas));
    view! {
        <tr data-testid="service-row" data-service=s.name.clone() data-verdict=s.verdict.word()>
            <td data-label="Service"><strong>{s.name.clone()}</strong>{replicas}</td>
            <td data-label="Verdict">
                <span class=format!("tag {}", s.verdict.css_class())>{s.verdict.word()}</span>
                {s.verdict.reason().map(|r| view! {
                    // The reason takes its verdict's colour: red only for what is down.
                    <div class=format!("reason small {}", s.verdict.css_class()) data-testid="verdict-reason">{r}</div>
                })}
            </td>
            <td data-label="Container">
                {c.map(|c| view! {
                    <code>{c.name.clone()}</code>
                    <div class="muted small">{c.state.clone()}</div>
                    {(!c.ports.is_empty()).then(|| view! {
                        <div class="small" data-testid="ports">{c.ports.join(", ")}</div>
                    })}
                })}
            </td>
            <td data-label="Health">
                {c.map(|c| view! {
                    {c.health.clone().unwrap_or_else(|| "no healthcheck".into())}
                    {c.health_output.clone().map(|o| view! { <div class="muted small" data-testid="health-output">{o}</div> })}
                })}
            </td>
            <td data-label="Restarts">
                {c.map(|c| view! {
                    {c.restarts}
                    {c.restart_loop.then(|| view! { <span class="tag down">" restart loop"</span> })}
                })}
            </td>
            <td data-label="Up" class="nowrap">{up}</td>
            <td data-label="Image">
                {c.map(|c| view! {
                    <code>{c.image.clone()}</code>
                    <div class="muted small">
                        {c.image_id.trim_start_matches("sha256:").chars().take(12).collect::<String>()}
                        {c.image_created.map(|t| format!(" · built {}", t.format("%Y-%m-%d %H:%M")))}
                    </div>
                })}
            </td>
            <td data-label="Deep probe" data-testid="probe">{probe_cell(&s.probe)}</td>
        </tr>
    }
}

fn probe_cell(probe: &ProbeResult) -> impl IntoView + use<> {
    match probe.clone() {
        ProbeResult::NotConfigured => {
            view! { <span class="muted">"none configured"</span> }.into_any()
        }
        ProbeResult::NotRun { reason } => {
            view! { <span class="muted">"not run: " {reason}</span> }.into_any()
        }
        ProbeResult::Passed {
            detail, latency_ms, ..
        } => view! {
            <span class="tag ok">"passed"</span>
            <span class="muted small">{format!(" {latency_ms} ms")}</span>
            <div class="small probe-detail">{detail}</div>
        }
        .into_any(),
        ProbeResult::Failed {
            reason, latency_ms, ..
        } => view! {
            <span class="tag down">"failed"</span>
            <span class="muted small">{format!(" {latency_ms} ms")}</span>
            <div class="reason small probe-detail">{reason}</div>
        }
        .into_any(),
    }
}

/// Pick a service, see its last lines, then follow; a filter narrows what is shown.
#[component]
fn LogPanel(report: Signal<HealthReport>) -> impl IntoView {
    let selected = RwSignal::new(None::<String>);
    let filter = RwSignal::new(String::new());
    // The service list of the first report: rebuilding the options on every update would reset the choice.
    let services: Vec<String> = report
        .get_untracked()
        .services
        .iter()
        .map(|s| s.name.clone())
        .collect();
    view! {
        <section class="card logs" data-testid="logs">
            <h2>"Logs"</h2>
            <div class="toolbar">
                <label>"Service "
                    <select data-testid="log-service" on:change=move |ev| {
                        let value = event_target_value(&ev);
                        selected.set((!value.is_empty()).then_some(value));
                    }>
                        <option value="">"— choose —"</option>
                        {services.into_iter().map(|s| view! { <option value=s.clone()>{s.clone()}</option> }).collect_view()}
                    </select>
                </label>
                <label class="visually-hidden" for="log-filter">"Filter the log's lines"</label>
                <input type="search" id="log-filter" placeholder="Filter lines" data-testid="log-filter"
                    on:input=move |ev| filter.set(event_target_value(&ev))/>
            </div>
            {move || selected.get().map(|service| view! { <LogView service filter/> })}
        </section>
    }
}

#[component]
fn LogView(service: String, filter: RwSignal<String>) -> impl IntoView {
    let lines = RwSignal::new(VecDeque::<LogLine>::new());
    let ended = RwSignal::new(None::<String>);
    let open = RwSignal::new(false);
    let attempt = RwSignal::new(0u32);
    let url = format!("/api/logs/{service}?tail=200");
    Effect::new(move |_| {
        attempt.track();
        lines.set(VecDeque::new());
        ended.set(None);
        crate::live::follow::<LogEvent, _, _>(
            url.clone(),
            false,
            move |event| match event {
                LogEvent::Line(line) => lines.update(|q| {
                    q.push_back(line);
                    while q.len() > LOG_LINES_KEPT {
                        q.pop_front();
                    }
                }),
                LogEvent::End { reason } => ended.set(Some(reason)),
            },
            move |is_open| {
                open.set(is_open);
                if !is_open && ended.get_untracked().is_none() {
                    ended.set(Some("the connection was lost".into()));
                }
            },
        );
    });
    let shown = Memo::new(move |_| {
        let needle = filter.get().trim().to_lowercase();
        lines.with(|q| {
            q.iter()
                .filter(|l| needle.is_empty() || l.text.to_lowercase().contains(&needle))
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    let label = format!("{service} log");
    view! {
        <p class="muted small" data-testid="log-state">
            {move || match ended.get() {
                Some(reason) => format!("{service}: stopped following: {reason}"),
                None if open.get() => format!("{service}: following"),
                None => format!("{service}: connecting…"),
            }}
            " "
            {move || ended.get().is_some().then(|| view! {
                <button class="link" on:click=move |_| attempt.update(|n| *n += 1)>"Follow again"</button>
            })}
        </p>
        <crate::follow::FollowingLog newest=Signal::derive(move || lines.with(|q| q.back().map_or(0, |l| l.seq)))
            testid="log-view" label>
            <For each=move || shown.get() key=|l| l.seq let(line)>
                <div class=crate::tone::line_class(&line.text, line.stderr, false) data-testid="log-line">
                    <span class="ts">{line.time.get(11..19).unwrap_or("").to_string()}</span>
                    <span class="stream">{if line.stderr { "err" } else { "out" }}</span>
                    <span class="text">{line.text.clone()}</span>
                </div>
            </For>
            {move || {
                let needle = filter.get();
                let (held, matching) = (lines.with(VecDeque::len), shown.with(Vec::len));
                match (held, matching) {
                    (0, _) if ended.get().is_none() => Some(view! {
                        <div class="empty" data-testid="log-empty">"No lines yet: waiting for the service to write one."</div>
                    }.into_any()),
                    (0, _) => Some(view! { <div class="empty" data-testid="log-empty">"The service wrote no lines."</div> }.into_any()),
                    (held, 0) => Some(view! {
                        <div class="empty" data-testid="log-no-match">
                            {format!("No line of the last {held} matches “{}”.", needle.trim())}
                        </div>
                    }.into_any()),
                    _ => None,
                }
            }}
        </crate::follow::FollowingLog>
    }
}

#[leptos::server(endpoint = "health_report")]
pub async fn get_health_report() -> Result<HealthReport, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    let health = leptos::prelude::expect_context::<std::sync::Arc<super::ssr::HealthMonitor>>();
    Ok((*health.latest()).clone())
}
