//! Maintenance of the engine the stack runs on: prune the build cache, the project's stopped
//! containers and dangling images. Admin only; what was freed is shown and recorded in the audit log.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PruneTarget {
    BuildCache,
    StoppedContainers,
    DanglingImages,
}

impl PruneTarget {
    #[cfg_attr(not(feature = "ssr"), allow(dead_code))]
    fn action(self) -> &'static str {
        match self {
            PruneTarget::BuildCache => "maintenance.prune_build_cache",
            PruneTarget::StoppedContainers => "maintenance.prune_stopped_containers",
            PruneTarget::DanglingImages => "maintenance.prune_dangling_images",
        }
    }

    /// Removing containers or images cannot be undone: the operator types the project's name.
    fn needs_confirmation(self) -> bool {
        !matches!(self, PruneTarget::BuildCache)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    pub target: PruneTarget,
    pub removed: usize,
    pub freed_bytes: u64,
}

#[server(endpoint = "maintenance_prune")]
pub async fn prune(target: PruneTarget, confirm: Option<String>) -> Result<PruneReport, AppError> {
    let actor = crate::auth::gate::require(crate::auth::Role::Admin).await?;
    expect_context::<std::sync::Arc<Maintenance>>()
        .prune(&actor.name, target, confirm.as_deref())
        .await
        .map_err(AppError::replied)
}

/// The clean-ups of the Health page (admin only), each in the audit log.
#[cfg(feature = "ssr")]
pub struct Maintenance {
    config: std::sync::Arc<crate::config::Config>,
    store: crate::store::Store,
    engine: std::sync::Arc<crate::engine::ssr::Engine>,
    health: std::sync::Arc<super::ssr::HealthMonitor>,
}

#[cfg(feature = "ssr")]
impl Maintenance {
    pub fn new(
        config: std::sync::Arc<crate::config::Config>,
        store: crate::store::Store,
        engine: std::sync::Arc<crate::engine::ssr::Engine>,
        health: std::sync::Arc<super::ssr::HealthMonitor>,
    ) -> std::sync::Arc<Maintenance> {
        std::sync::Arc::new(Maintenance {
            config,
            store,
            engine,
            health,
        })
    }

    /// Prunes `target` (the destructive ones only with the project name typed as `confirm`).
    pub async fn prune(
        self: &std::sync::Arc<Self>,
        actor: &str,
        target: PruneTarget,
        confirm: Option<&str>,
    ) -> Result<PruneReport, AppError> {
        use crate::audit::{AuditEvent, AuditOutcome};
        let project = self.config.project_name();
        let event = {
            let (actor, project) = (actor.to_string(), project.clone());
            move |outcome, detail: String| AuditEvent {
                actor: actor.clone(),
                action: target.action().into(),
                target: project.clone(),
                outcome,
                detail,
            }
        };
        if target.needs_confirmation() && confirm.map(str::trim) != Some(project.as_str()) {
            self.store
                .record(event(
                    AuditOutcome::Refused,
                    "the project name was not typed".into(),
                ))
                .await?;
            return Err(AppError::Invalid(format!(
                "type the project name ({project}) to confirm"
            )));
        }
        // The prune runs to its end, and into the audit log, in a task of its own: a request that
        // goes away first (a closed tab, the request timeout) would otherwise leave a prune the
        // engine finishes and nobody records.
        let me = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            let result = match target {
                PruneTarget::BuildCache => me.engine.prune_build_cache().await,
                PruneTarget::StoppedContainers => {
                    me.engine.prune_project_containers(&project).await
                }
                PruneTarget::DanglingImages => me.engine.prune_dangling_images().await,
            };
            match result {
                Ok((removed, freed_bytes)) => {
                    me.store
                        .record(event(
                            AuditOutcome::Ok,
                            format!("removed {removed}, freed {}", human_bytes(freed_bytes)),
                        ))
                        .await?;
                    me.health.refresh();
                    Ok(PruneReport {
                        target,
                        removed,
                        freed_bytes,
                    })
                }
                Err(e) => {
                    me.store
                        .record(event(AuditOutcome::Failed, e.to_string()))
                        .await?;
                    Err(e.into())
                }
            }
        })
        .await
        .map_err(|e| AppError::Unavailable(format!("the prune stopped: {e}")))?
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[component]
pub fn MaintenanceCard() -> impl IntoView {
    let prune = ServerAction::<Prune>::new();
    let form = |target: PruneTarget, label: &'static str, what: &'static str| {
        view! {
            <ActionForm action=prune attr:class="prune">
                <input type="hidden" name="target" value=format!("{target:?}")/>
                <div>
                    <strong>{label}</strong>
                    <div class="muted small">{what}</div>
                </div>
                {target.needs_confirmation().then(|| view! {
                    <input type="text" name="confirm" placeholder="type the project name" autocomplete="off"
                        aria-label=format!("{label}: type the project name to confirm") data-testid=format!("confirm-{target:?}")/>
                })}
                <button type="submit" data-testid=format!("prune-{target:?}")>"Prune"</button>
            </ActionForm>
        }
    };
    view! {
        <section class="card" data-testid="maintenance">
            <h2>"Maintenance"</h2>
            <p class="muted small">"Admin only. Every prune is recorded in the audit log."</p>
            {form(PruneTarget::BuildCache, "Build cache", "What `docker builder prune` removes; the next build is slower.")}
            {form(PruneTarget::StoppedContainers, "Stopped containers", "This project's containers that are not running (volumes are kept).")}
            {form(PruneTarget::DanglingImages, "Dangling images", "Untagged images no container uses (left behind by rebuilds).")}
            <div data-testid="prune-result">
                {move || prune.value().get().map(|result| match result {
                    Ok(r) => view! {
                        <p class="status ok">{format!("{:?}: removed {}, freed {}", r.target, r.removed, human_bytes(r.freed_bytes))}</p>
                    }.into_any(),
                    Err(e) => view! { <p class="error-box" role="alert">{e.to_string()}</p> }.into_any(),
                })}
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_read_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 KB");
        assert_eq!(human_bytes(2_340_000_000), "2.3 GB");
    }
}
