//! The Docker engine as the console sees it: reachability, version and the configured project,
//! shown on the overview and as a badge on every page. Server-side work is in `ssr.rs`.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[cfg(feature = "ssr")]
pub mod ssr;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    pub endpoint: String,
    pub state: EngineState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EngineState {
    Reachable(EngineInfo),
    Unreachable { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    pub version: String,
    pub api_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
}

/// Where the compose project's name came from, in compose's own order of precedence: what the console
/// is told, else what compose itself would call the project (`docker compose` without `-p`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameSource {
    /// `project.name` in the console's configuration.
    #[default]
    Configuration,
    /// `COMPOSE_PROJECT_NAME` in the console's own environment.
    ConsoleEnvironment,
    /// `COMPOSE_PROJECT_NAME` in the env file (EPSM's sets `epsm_prod`).
    EnvFile,
    /// The compose file's top-level `name:`.
    ComposeFile,
    /// The project directory's name, as compose normalises it.
    Directory,
}

impl NameSource {
    pub fn describe(self) -> &'static str {
        match self {
            NameSource::Configuration => "project.name in the console's configuration",
            NameSource::ConsoleEnvironment => "COMPOSE_PROJECT_NAME in the console's environment",
            NameSource::EnvFile => "COMPOSE_PROJECT_NAME in the env file",
            NameSource::ComposeFile => "name: in the compose file",
            NameSource::Directory => "the project directory's name",
        }
    }
}

/// The compose project the console is configured for (paths only: nothing from inside the files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectInfo {
    pub name: String,
    pub name_source: NameSource,
    pub dir: String,
    pub compose_file: String,
    pub env_file: String,
    pub compose_file_present: bool,
    pub env_file_present: bool,
}

#[server(endpoint = "engine_status")]
pub async fn get_engine_status() -> Result<EngineStatus, AppError> {
    crate::auth::require(crate::auth::Role::Viewer).await?;
    let state = expect_context::<crate::state::AppState>();
    Ok(state.engine.status().await)
}

#[server(endpoint = "project_info")]
pub async fn get_project_info() -> Result<ProjectInfo, AppError> {
    crate::auth::require(crate::auth::Role::Viewer).await?;
    let state = expect_context::<crate::state::AppState>();
    let config = &state.config;
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

/// A small engine indicator for the top bar of every page.
#[component]
pub fn EngineBadge() -> impl IntoView {
    let status = Resource::new(|| (), |_| get_engine_status());
    view! {
        <Suspense fallback=|| view! { <span class="badge">"engine …"</span> }>
            {move || Suspend::new(async move {
                match status.await {
                    Ok(EngineStatus { state: EngineState::Reachable(info), .. }) => view! {
                        <span class="badge ok" title="Docker engine reachable">
                            <span class="dot"></span>"Docker " {info.version}
                        </span>
                    }.into_any(),
                    Ok(EngineStatus { state: EngineState::Unreachable { reason }, .. }) => view! {
                        <span class="badge down" title=reason>
                            <span class="dot"></span>"Docker unreachable"
                        </span>
                    }.into_any(),
                    Err(e) => view! { <span class="badge down" title=e.to_string()>"engine ?"</span> }.into_any(),
                }
            })}
        </Suspense>
    }
}
