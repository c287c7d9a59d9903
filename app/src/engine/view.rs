//! The engine's and the project's cards (overview, health), and the server functions they read.

use leptos::prelude::*;

use super::{EngineState, EngineStatus, ProjectInfo};
use crate::error::AppError;

/// The engine as the health monitor's last round saw it: every page's badge, without a Docker API call
/// per page view.
#[server(endpoint = "engine_status")]
pub async fn get_engine_status() -> Result<EngineStatus, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    let health = expect_context::<std::sync::Arc<crate::health::ssr::HealthMonitor>>();
    Ok(health.engine_status().await)
}

#[server(endpoint = "project_info")]
pub async fn get_project_info() -> Result<ProjectInfo, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    let config = expect_context::<std::sync::Arc<crate::config::Config>>();
    let (compose, env) = (config.compose_file(), config.env_file());
    Ok(ProjectInfo {
        name: config.project_name(),
        name_source: config.project.name_source,
        dir: config.project.dir.display().to_string(),
        compose_file: compose.display().to_string(),
        env_file: env.display().to_string(),
        compose_file_present: compose.is_file(),
        env_file_present: env.is_file(),
    })
}

/// The engine card of the overview page: green with the version, or red with the reason.
#[component]
pub fn EngineCard() -> impl IntoView {
    let status = Resource::new(|| (), |_| get_engine_status());
    view! {
        <section class="card" data-testid="engine-card">
            <h2>"Docker engine"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Asking the engine…"</p> }>
                <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                    {move || Suspend::new(async move {
                        status.await.map(|s| view! { <EngineDetails status=s/> })
                    })}
                </ErrorBoundary>
            </Suspense>
        </section>
    }
}

#[component]
fn EngineDetails(status: EngineStatus) -> impl IntoView {
    let EngineStatus { endpoint, state } = status;
    match state {
        EngineState::Reachable(info) => view! {
            <div class="status ok" data-testid="engine-state" data-state="reachable">
                <span class="dot"></span>
                "Reachable — Docker " {info.version.clone()}
            </div>
            <dl class="facts">
                <dt>"Endpoint"</dt><dd><code>{endpoint}</code></dd>
                <dt>"Engine"</dt><dd>{info.version}</dd>
                <dt>"API version"</dt><dd>{info.api_version}</dd>
                <dt>"Platform"</dt><dd>{format!("{}/{}", info.os, info.arch)}</dd>
                <dt>"Kernel"</dt><dd>{info.kernel_version}</dd>
            </dl>
        }
        .into_any(),
        EngineState::Unreachable { reason } => view! {
            <div class="status down" data-testid="engine-state" data-state="unreachable" role="alert">
                <span class="dot"></span>
                "Unreachable"
            </div>
            <p class="reason" data-testid="engine-reason">{reason}</p>
            <dl class="facts">
                <dt>"Endpoint"</dt><dd><code>{endpoint}</code></dd>
            </dl>
        }
        .into_any(),
    }
}

/// The configured compose project card of the overview page.
#[component]
pub fn ProjectCard() -> impl IntoView {
    let project = Resource::new(|| (), |_| get_project_info());
    let file = |path: String, present: bool| {
        view! {
            <code>{path}</code>
            {(!present).then(|| view! { <span class="tag down">" missing"</span> })}
        }
    };
    view! {
        <section class="card" data-testid="project-card">
            <h2>"Compose project"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Reading the configuration…"</p> }>
                <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                    {move || Suspend::new(async move {
                        project.await.map(|p| view! {
                            <dl class="facts">
                                <dt>"Project"</dt>
                                <dd>
                                    <span data-testid="project-name">{p.name}</span>
                                    <span class="muted" data-testid="project-name-source">
                                        {format!(" (from {})", p.name_source.describe())}
                                    </span>
                                </dd>
                                <dt>"Directory"</dt><dd><code>{p.dir}</code></dd>
                                <dt>"Compose file"</dt><dd>{file(p.compose_file, p.compose_file_present)}</dd>
                                <dt>"Env file"</dt><dd>{file(p.env_file, p.env_file_present)}</dd>
                            </dl>
                        })
                    })}
                </ErrorBoundary>
            </Suspense>
        </section>
    }
}

/// A small engine indicator for the top bar of every page, from the page's login state (one server
/// function for the whole top bar).
#[component]
pub fn EngineBadge() -> impl IntoView {
    let login = use_context::<crate::auth::view::LoginResource>();
    let waiting = || view! { <span class="badge">"engine …"</span> };
    view! {
        <Suspense fallback=waiting>
            {move || match login.and_then(|l| l.get()).map(|l| l.map(|s| s.engine)) {
                Some(Ok(Some(EngineStatus { state: EngineState::Reachable(info), .. }))) => view! {
                    <span class="badge ok" title="Docker engine reachable">
                        <span class="dot"></span>"Docker " {info.version}
                    </span>
                }.into_any(),
                Some(Ok(Some(EngineStatus { state: EngineState::Unreachable { reason }, .. }))) => view! {
                    <span class="badge down" title=reason>
                        <span class="dot"></span>"Docker unreachable"
                    </span>
                }.into_any(),
                Some(Err(e)) => view! { <span class="badge down" title=e.to_string()>"engine ?"</span> }.into_any(),
                // Nobody logged in, or the state not read yet.
                Some(Ok(None)) | None => waiting().into_any(),
            }}
        </Suspense>
    }
}
