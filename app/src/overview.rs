//! The overview: the state of everything on one screen, each part linking to its page. The services
//! follow the health monitor live; the last deploy, the backups and the environment audit are read
//! when the page loads (one server function, its parts read at the same time).

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::backup::{Backup, BackupOutcome};
use crate::deploy::{Deploy, DeployOutcome};
use crate::engine::EngineState;
use crate::engine::view::{EngineCard, ProjectCard};
use crate::error::AppError;
use crate::health::{HealthReport, human_duration, plural};
#[cfg(feature = "ssr")]
use crate::store::Store;

/// What the overview shows besides the live services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// When the server read it: ages are counted from here, so server and browser render the same.
    pub read_at: DateTime<Utc>,
    /// The newest deploy (running, or how it ended).
    pub last_deploy: Option<Deploy>,
    /// The newest backup that can be downloaded.
    pub last_good_backup: Option<Backup>,
    /// The newest backup attempt, when it is not that one (running or failed since).
    pub newer_attempt: Option<Backup>,
    pub next_backup: Option<DateTime<Utc>>,
    /// The newest restore drill, with its backup's id.
    #[serde(default)]
    pub last_drill: Option<(i64, crate::backup::Check)>,
    /// The newest backup's off-site copy, when copies are made.
    #[serde(default)]
    pub last_copy: Option<(i64, crate::backup::Check)>,
    /// Findings by severity (errors, warnings), or why the audit could not run.
    pub audit: Result<(usize, usize), String>,
    /// Login trouble ahead or now (the IdP's metadata unreadable or getting old).
    #[serde(default)]
    pub login_warning: Option<String>,
    /// Alerts given up in the last week (how many, and the newest few): nobody heard of them.
    #[serde(default)]
    pub undelivered: (u64, Vec<crate::alerts::Delivery>),
}

/// Alerts given up within this long show on the Overview.
pub const UNDELIVERED_SHOWN_DAYS: i64 = 7;

#[server(endpoint = "overview")]
pub async fn get_overview() -> Result<Overview, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    // The one page made of other services' answers: each read from its own service, at once.
    let deployer = expect_context::<std::sync::Arc<crate::deploy::ssr::Deployer>>();
    let backups = expect_context::<std::sync::Arc<crate::backup::ssr::Backups>>();
    let saml = expect_context::<std::sync::Arc<crate::auth::ssr::ServiceProvider>>();
    let store = expect_context::<Store>();
    // The store's part, as the last view read it while nothing has been committed since.
    let kept = store.read_kept("overview", || async {
        let week_ago = Utc::now() - chrono::Duration::days(UNDELIVERED_SHOWN_DAYS);
        let (deploys, listed, undelivered) = tokio::join!(
            deployer.history_rows(None, None, 1),
            backups.list(50),
            store.undelivered(week_ago, 3),
        );
        Ok::<_, crate::store::StoreError>(StoreReads {
            last_deploy: deploys?.into_iter().next(),
            listed: listed?,
            undelivered: undelivered?,
        })
    });
    let (kept, report) = tokio::join!(kept, crate::environment::view::get_environment_report());
    let kept = kept?;
    let listed = &kept.listed;
    let last_drill = listed
        .iter()
        .filter_map(|b| Some((b.id, b.drill.clone()?)))
        .max_by_key(|(_, d)| d.at);
    let last_copy = listed
        .iter()
        .filter(|b| b.outcome == BackupOutcome::Succeeded)
        .find_map(|b| Some((b.id, b.copy.clone()?)));
    let mut not_deleted = listed
        .iter()
        .filter(|b| b.outcome != BackupOutcome::Deleted);
    let newer_attempt = not_deleted
        .clone()
        .next()
        .filter(|b| b.outcome != BackupOutcome::Succeeded)
        .cloned();
    let last_good_backup = not_deleted
        .find(|b| b.outcome == BackupOutcome::Succeeded)
        .cloned();
    let read_at = Utc::now();
    let count = |findings: &[crate::environment::Finding], severity| {
        findings.iter().filter(|f| f.severity == severity).count()
    };
    Ok(Overview {
        read_at,
        last_deploy: kept.last_deploy.clone(),
        last_good_backup,
        newer_attempt,
        next_backup: backups.policy().next_run,
        last_drill,
        last_copy,
        audit: report
            .map(|r| {
                (
                    count(&r.findings, crate::environment::Severity::Error),
                    count(&r.findings, crate::environment::Severity::Warning),
                )
            })
            .map_err(|e| e.to_string()),
        login_warning: saml.idp_warning(),
        undelivered: kept.undelivered.clone(),
    })
}

/// What the Overview reads from the store.
#[cfg(feature = "ssr")]
struct StoreReads {
    last_deploy: Option<Deploy>,
    /// The newest 50 backups (deleted ones too: a drill or copy may be on any of them).
    listed: Vec<Backup>,
    undelivered: (u64, Vec<crate::alerts::Delivery>),
}

#[component]
pub fn OverviewPage() -> impl IntoView {
    let overview = Resource::new(|| (), |_| get_overview());
    let health = crate::health::view::follow_health();
    let (initial, live) = (health.initial, health.live);
    view! {
        <Title text="Overview"/>
        <h1>"Overview"</h1>
        <div class="cards glance">
            <section class="card" data-testid="overview-services">
                <h2><a href="/health">"Services"</a></h2>
                <Suspense fallback=|| view! { <p class="muted">"Looking at the stack…"</p> }>
                    <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                        {move || Suspend::new(async move {
                            initial.await.map(|first| view! { <ServicesGlance first live/> })
                        })}
                    </ErrorBoundary>
                </Suspense>
            </section>
            <Suspense fallback=|| view! { <section class="card"><p class="muted">"Loading…"</p></section> }>
                <ErrorBoundary fallback=|errors| view! { <section class="card"><crate::error::ErrorList errors/></section> }>
                    {move || Suspend::new(async move {
                        overview.await.map(|o| view! {
                            {o.login_warning.clone().map(|w| view! {
                                <section class="card wide warn" role="alert" data-testid="overview-login-warning">
                                    <h2>"Login"</h2>
                                    <p>{w}</p>
                                </section>
                            })}
                            <UndeliveredGlance undelivered=o.undelivered.clone()/>
                            <DeployGlance deploy=o.last_deploy.clone() now=o.read_at/>
                            <BackupGlance overview=o.clone()/>
                            <AuditGlance audit=o.audit.clone()/>
                        })
                    })}
                </ErrorBoundary>
            </Suspense>
        </div>
        <div class="cards">
            <EngineCard/>
            <ProjectCard/>
        </div>
    }
}

/// Alerts that could not be delivered after their retries: the team was not told.
#[component]
fn UndeliveredGlance(undelivered: (u64, Vec<crate::alerts::Delivery>)) -> impl IntoView {
    let (count, newest) = undelivered;
    (count > 0).then(|| {
        view! {
            <section class="card wide warn" role="alert" data-testid="overview-undelivered" data-count=count.to_string()>
                <h2><a href="/notifications">"Alerts not delivered"</a></h2>
                <p>{format!(
                    "{count} alert{} of the last {UNDELIVERED_SHOWN_DAYS} days could not be delivered after every retry:",
                    plural(count as usize)
                )}</p>
                <ul>
                    {newest.into_iter().map(|d| view! {
                        <li>{format!("{} (to {}): {}", d.title, d.channel, d.last_error)}</li>
                    }).collect_view()}
                </ul>
            </section>
        }
    })
}

/// "7 of 7 healthy", and each service that is not, with the reason; follows the live report.
#[component]
fn ServicesGlance(first: HealthReport, live: RwSignal<Option<HealthReport>>) -> impl IntoView {
    move || {
        let r = live.get().unwrap_or_else(|| first.clone());
        if let EngineState::Unreachable { reason } = &r.engine.state {
            return view! {
                <div class="status down" data-testid="overview-services-state" data-state="unreachable">
                    <span class="dot"></span>"Docker engine unreachable"
                </div>
                <p class="reason small">{reason.clone()}</p>
            }
            .into_any();
        }
        let not_healthy: Vec<_> = r
            .services
            .iter()
            .filter(|s| s.verdict.needs_attention())
            .collect();
        let healthy = r
            .services
            .iter()
            .filter(|s| s.verdict == crate::health::Verdict::Healthy)
            .count();
        // Running with nothing to check it by: said, never counted as healthy.
        let unchecked = r.services.len() - healthy - not_healthy.len();
        let class = if not_healthy.is_empty() { "ok" } else { "down" };
        let unchecked_text = match unchecked {
            0 => String::new(),
            n => format!(", {n} running without a check"),
        };
        view! {
            <div class=format!("status {class}") data-testid="overview-services-state"
                data-state=if not_healthy.is_empty() { "healthy" } else { "unhealthy" }>
                <span class="dot"></span>{format!("{healthy} of {} healthy{unchecked_text}", r.services.len())}
            </div>
            <ul class="plain small">
                {not_healthy.into_iter().map(|s| view! {
                    <li data-testid="overview-service" data-service=s.name.clone()>
                        <span class=format!("tag {}", s.verdict.css_class())>{s.verdict.word()}</span>" "
                        <strong>{s.name.clone()}</strong>
                        {s.verdict.reason().map(|reason| format!(": {reason}"))}
                    </li>
                }).collect_view()}
            </ul>
            <p class="muted small">{format!("Looked at {} UTC", r.taken_at.format("%H:%M:%S"))}</p>
        }
        .into_any()
    }
}

fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    format!(
        "{} ago",
        human_duration((now - then).num_seconds().max(0) as u64)
    )
}

#[component]
fn DeployGlance(deploy: Option<Deploy>, now: DateTime<Utc>) -> impl IntoView {
    let body = match deploy {
        None => view! {
            <p data-testid="overview-deploy-state" data-outcome="none">
                "No deploy yet. " <a href="/deploys#deploy" data-testid="overview-first-deploy">"Deploy"</a>
                " the newest code: the change card there says what it brings first."
            </p>
        }
        .into_any(),
        Some(d) => {
            let class = match d.outcome {
                DeployOutcome::Succeeded => "ok",
                DeployOutcome::Running => "warn",
                _ => "down",
            };
            let when = if d.outcome == DeployOutcome::Running {
                format!("running since {}", ago(now, d.started_at))
            } else {
                format!(
                    "{} {}",
                    d.outcome.as_str(),
                    ago(now, d.finished_at.unwrap_or(d.started_at))
                )
            };
            view! {
                <div class=format!("status {class}") data-testid="overview-deploy-state" data-outcome=d.outcome.as_str()>
                    <span class="dot"></span>
                    <span><a href=format!("/deploys/{}", d.id)>{format!("Deploy #{}", d.id)}</a>" "{when}</span>
                </div>
                <p class="small">
                    {format!("by {}", d.actor)}
                    {d.duration_ms().map(|ms| format!(", took {}", crate::deploy::view::seconds(ms)))}
                </p>
                {(!d.summary.is_empty()).then(|| {
                    let class = if d.outcome == DeployOutcome::Succeeded { "muted small" } else { "reason small" };
                    view! { <p class=class>{d.summary.clone()}</p> }
                })}
            }
            .into_any()
        }
    };
    view! {
        <section class="card" data-testid="overview-deploy">
            <h2><a href="/deploys">"Last deploy"</a></h2>
            {body}
        </section>
    }
}

#[component]
fn BackupGlance(overview: Overview) -> impl IntoView {
    let now = overview.read_at;
    let good = match overview.last_good_backup {
        None => view! {
            <div class="status warn" data-testid="overview-backup-state" data-state="none">
                <span class="dot"></span>"No backup to restore from"
            </div>
        }
        .into_any(),
        Some(b) => view! {
            <div class="status ok" data-testid="overview-backup-state" data-state="succeeded">
                <span class="dot"></span>{format!("Backup #{} {}", b.id, ago(now, b.finished_at.unwrap_or(b.started_at)))}
            </div>
            <p class="small">
                {b.size_bytes.map(crate::health::maintenance::human_bytes)}
                {format!(" · {} · by {}", b.format.as_str(), b.actor)}
            </p>
        }
        .into_any(),
    };
    let attempt = overview.newer_attempt.map(|b| {
        let what = match b.outcome {
            BackupOutcome::Running => format!("Backup #{} is running", b.id),
            _ => format!("Backup #{} failed: {}", b.id, b.reason),
        };
        view! { <p class="reason small" data-testid="overview-backup-attempt" data-outcome=b.outcome.as_str()>{what}</p> }
    });
    let next = overview
        .next_backup
        .map(|t| format!("Next scheduled: {} UTC", t.format("%Y-%m-%d %H:%M")))
        .unwrap_or_else(|| "No schedule".into());
    let drill = overview.last_drill.map(|(id, d)| {
        let (class, state, text) = match d.ok {
            None => ("warn", "running", format!("Restore test of backup #{id} is running")),
            Some(true) => ("ok", "ok", format!("Restore tested {}: backup #{id} ok", ago(now, d.at))),
            Some(false) => ("down", "failed", format!("Restore test {} failed: backup #{id}: {}", ago(now, d.at), d.detail)),
        };
        view! { <p class=format!("small drill {class}") data-testid="overview-drill" data-state=state>{text}</p> }
    });
    let copy = overview.last_copy.map(|(id, c)| {
        let (class, state, text) = match c.ok {
            None => ("warn", "running", format!("Backup #{id} is being copied off site")),
            Some(true) => ("ok", "ok", format!("Off site: backup #{id} copied and checked")),
            Some(false) => ("down", "failed", format!("Off-site copy of backup #{id} failed: {}", c.detail)),
        };
        view! { <p class=format!("small drill {class}") data-testid="overview-copy" data-state=state>{text}</p> }
    });
    view! {
        <section class="card" data-testid="overview-backup">
            <h2><a href="/backups">"Backups"</a></h2>
            {good}
            {attempt}
            {drill}
            {copy}
            <p class="muted small">{next}</p>
        </section>
    }
}

#[component]
fn AuditGlance(audit: Result<(usize, usize), String>) -> impl IntoView {
    let body = match audit {
        Err(reason) => view! {
            <div class="status down" data-testid="overview-audit-state" data-errors="?">
                <span class="dot"></span>"The audit could not run"
            </div>
            <p class="reason small">{reason}</p>
        }
        .into_any(),
        Ok((errors, warnings)) => {
            let class = match (errors, warnings) {
                (0, 0) => "ok",
                (0, _) => "warn",
                _ => "down",
            };
            view! {
                <div class=format!("status {class}") data-testid="overview-audit-state"
                    data-errors=errors.to_string() data-warnings=warnings.to_string()>
                    <span class="dot"></span>{format!("{errors} error{}, {warnings} warning{}", plural(errors), plural(warnings))}
                </div>
                <p class="muted small">".env.production and the compose file, drift included"</p>
            }
            .into_any()
        }
    };
    view! {
        <section class="card" data-testid="overview-audit">
            <h2><a href="/environment">"Environment audit"</a></h2>
            {body}
        </section>
    }
}
