//! The audit log: who did what, when, and how it ended. Every button's action lands here; this page
//! shows the newest entries. Writing and reading the table is in `ssr.rs`.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[cfg(feature = "ssr")]
mod ssr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Ok,
    Failed,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
        }
    }

    /// The store only holds the three names (a CHECK constraint); anything else reads as failed.
    pub fn parse(s: &str) -> Outcome {
        match s {
            "ok" => Outcome::Ok,
            "refused" => Outcome::Refused,
            _ => Outcome::Failed,
        }
    }
}

/// An event to record. `detail` must already be scrubbed of secrets.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub detail: String,
}

impl AuditEvent {
    /// An action of the console itself (start, stop, scheduled work).
    pub fn system(action: &str, outcome: Outcome, detail: &str) -> AuditEvent {
        AuditEvent {
            actor: "system".into(),
            action: action.into(),
            target: String::new(),
            outcome,
            detail: detail.into(),
        }
    }
}

/// A recorded event as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    pub detail: String,
}

#[server(endpoint = "audit_log")]
pub async fn get_audit_log() -> Result<Vec<AuditEntry>, AppError> {
    /// How many entries the page shows.
    const PAGE_SIZE: u32 = 200;
    crate::auth::require(crate::auth::Role::Viewer).await?;
    let state = expect_context::<crate::state::AppState>();
    Ok(state.store.audit_log(PAGE_SIZE).await?)
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let entries = Resource::new(|| (), |_| get_audit_log());
    view! {
        <h1>"Audit log"</h1>
        <p class="muted">"Every action taken through the console: who, what, when and how it ended. Newest first."</p>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                {move || Suspend::new(async move {
                    entries.await.map(|entries| view! { <AuditTable entries/> })
                })}
            </ErrorBoundary>
        </Suspense>
    }
}

#[component]
fn AuditTable(entries: Vec<AuditEntry>) -> impl IntoView {
    if entries.is_empty() {
        return view! { <p class="muted">"Nothing recorded yet."</p> }.into_any();
    }
    view! {
        <table class="table" data-testid="audit-table">
            <thead>
                <tr><th>"When (UTC)"</th><th>"Who"</th><th>"Action"</th><th>"Target"</th><th>"Outcome"</th><th>"Detail"</th></tr>
            </thead>
            <tbody>
                {entries.into_iter().map(|e| view! {
                    <tr>
                        <td class="nowrap">{e.at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                        <td>{e.actor}</td>
                        <td><code>{e.action}</code></td>
                        <td>{e.target}</td>
                        <td><span class=format!("tag {}", e.outcome.as_str())>{e.outcome.as_str()}</span></td>
                        <td>{e.detail}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}
