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

/// Which entries to show; every part optional, all of them must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// An action (`deploy.start`) or its family (`deploy`: every `deploy.*`).
    pub action: Option<String>,
    /// Part of who did it, in any case (a name or an id).
    pub actor: Option<String>,
    pub outcome: Option<Outcome>,
    /// Only entries older than this one: the next page.
    pub before: Option<i64>,
}

/// The families of actions the console records, for the page's filter.
pub const ACTION_FAMILIES: [(&str, &str); 5] = [
    ("auth", "logins, logouts, refusals"),
    ("deploy", "deploys, cancels, rollbacks"),
    ("backup", "backups, downloads, deletions"),
    ("maintenance", "prunes"),
    ("console", "the console's start and stop"),
];

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
    /// Refusals of one client folded into this entry: how many more, and the last one's time.
    #[serde(default)]
    pub repeats: u32,
    #[serde(default)]
    pub last_at: Option<DateTime<Utc>>,
}

/// How many entries a page of the log shows.
pub const PAGE_SIZE: u32 = 200;

/// The newest entries matching the filter (all when none is given), `PAGE_SIZE` at most.
#[server(endpoint = "audit_log")]
pub async fn get_audit_log(
    #[server(default)] action: Option<String>,
    #[server(default)] actor: Option<String>,
    #[server(default)] outcome: Option<Outcome>,
    #[server(default)] before: Option<i64>,
) -> Result<Vec<AuditEntry>, AppError> {
    crate::auth::require(crate::auth::Role::Viewer).await?;
    let state = expect_context::<crate::state::AppState>();
    let filter = AuditFilter {
        action,
        actor,
        outcome,
        before,
    };
    Ok(state.store.audit_log(&filter, PAGE_SIZE).await?)
}

/// The filter the page's address asks for (`?action=deploy&actor=anna&outcome=refused&before=42`).
fn filter_from_query(query: &leptos_router::params::ParamsMap) -> AuditFilter {
    let text = |key| query.get(key).filter(|v| !v.trim().is_empty());
    AuditFilter {
        action: text("action"),
        actor: text("actor"),
        outcome: text("outcome").and_then(|o| {
            let outcome = Outcome::parse(&o);
            (outcome.as_str() == o).then_some(outcome)
        }),
        before: text("before").and_then(|b| b.parse().ok()),
    }
}

/// The page's address for `filter` (what the "older" link leads to).
fn query_of(filter: &AuditFilter) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(a) = &filter.action {
        query.append_pair("action", a);
    }
    if let Some(a) = &filter.actor {
        query.append_pair("actor", a);
    }
    if let Some(o) = filter.outcome {
        query.append_pair("outcome", o.as_str());
    }
    if let Some(b) = filter.before {
        query.append_pair("before", &b.to_string());
    }
    match query.finish() {
        q if q.is_empty() => "/audit".into(),
        q => format!("/audit?{q}"),
    }
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let filter = Memo::new(move |_| query.with(filter_from_query));
    let entries = Resource::new(
        move || filter.get(),
        |f| get_audit_log(f.action, f.actor, f.outcome, f.before),
    );
    view! {
        <leptos_meta::Title text="Audit log"/>
        <h1>"Audit log"</h1>
        <p class="muted">"Every action taken through the console: who, what, when and how it ended. Newest first."</p>
        <FilterForm filter/>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                {move || Suspend::new(async move {
                    let f = filter.get_untracked();
                    entries.await.map(|entries| view! { <AuditTable entries filter=f/> })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

/// Filters as a GET form: the address carries them, so a filtered view can be bookmarked or shared.
#[component]
fn FilterForm(filter: Memo<AuditFilter>) -> impl IntoView {
    let f = filter.get_untracked();
    let outcome = f.outcome.map(Outcome::as_str).unwrap_or("");
    view! {
        <leptos_router::components::Form method="GET" action="/audit">
            <div class="filters" data-testid="audit-filter">
                <label>"Action "
                    <select name="action" data-testid="audit-filter-action">
                        <option value="" selected=f.action.is_none()>"all"</option>
                        {ACTION_FAMILIES.iter().map(|(family, what)| view! {
                            <option value=*family selected=f.action.as_deref() == Some(*family)>
                                {format!("{family}.* ({what})")}
                            </option>
                        }).collect_view()}
                    </select>
                </label>
                <label>"Who "
                    <input type="search" name="actor" value=f.actor.clone().unwrap_or_default()
                        placeholder="name or id" data-testid="audit-filter-actor"/>
                </label>
                <label>"Outcome "
                    <select name="outcome" data-testid="audit-filter-outcome">
                        {[("", "all"), ("ok", "ok"), ("failed", "failed"), ("refused", "refused")].into_iter().map(|(value, label)| view! {
                            <option value=value selected=outcome == value>{label}</option>
                        }).collect_view()}
                    </select>
                </label>
                <button type="submit" data-testid="audit-filter-apply">"Show"</button>
                <a href="/audit">"Clear"</a>
            </div>
        </leptos_router::components::Form>
    }
}

#[component]
fn AuditTable(entries: Vec<AuditEntry>, filter: AuditFilter) -> impl IntoView {
    if entries.is_empty() {
        let what = if filter == AuditFilter::default() {
            "Nothing recorded yet."
        } else {
            "Nothing recorded matches these filters."
        };
        return view! { <p class="muted" data-testid="audit-empty">{what}</p> }.into_any();
    }
    // A full page may have older entries behind it.
    let older = (entries.len() as u32 == PAGE_SIZE).then(|| {
        let last = entries.last().map(|e| e.id);
        query_of(&AuditFilter {
            before: last,
            ..filter.clone()
        })
    });
    view! {
        <table class="table" data-testid="audit-table">
            <thead>
                <tr><th>"When (UTC)"</th><th>"Who"</th><th>"Action"</th><th>"Target"</th><th>"Outcome"</th><th>"Detail"</th></tr>
            </thead>
            <tbody>
                {entries.into_iter().map(|e| view! {
                    <tr data-testid="audit-row" data-action=e.action.clone() data-outcome=e.outcome.as_str()>
                        <td class="nowrap">{e.at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                        <td>{e.actor}</td>
                        <td><code>{e.action.clone()}</code></td>
                        <td>{e.target}</td>
                        <td><span class=format!("tag {}", e.outcome.as_str())>{e.outcome.as_str()}</span></td>
                        <td>
                            {e.detail}
                            {(e.repeats > 0).then(|| view! {
                                <span class="muted" data-testid="audit-repeats">
                                    {format!(
                                        " (and {} more time{}, the last at {})",
                                        e.repeats,
                                        if e.repeats == 1 { "" } else { "s" },
                                        e.last_at.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default(),
                                    )}
                                </span>
                            })}
                        </td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
        <p class="pager">
            {filter.before.is_some().then(|| view! {
                <a href=query_of(&AuditFilter { before: None, ..filter.clone() })>"← Newest"</a>
            })}
            {older.map(|href| view! { <a href=href data-testid="audit-older">"Older →"</a> })}
        </p>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_older_link_keeps_the_filters_and_encodes_them() {
        assert_eq!(query_of(&AuditFilter::default()), "/audit");
        let filter = AuditFilter {
            action: Some("deploy".into()),
            actor: Some("Anna A&B".into()),
            outcome: Some(Outcome::Refused),
            before: Some(42),
        };
        assert_eq!(
            query_of(&filter),
            "/audit?action=deploy&actor=Anna+A%26B&outcome=refused&before=42"
        );
        let mut query = leptos_router::params::ParamsMap::new();
        for (k, v) in [
            ("action", "deploy"),
            ("actor", "Anna A&B"),
            ("outcome", "refused"),
            ("before", "42"),
        ] {
            query.insert(k, v.to_string());
        }
        assert_eq!(filter_from_query(&query), filter);
        // Empty fields (what the form sends when nothing is chosen) and nonsense filter nothing.
        let mut query = leptos_router::params::ParamsMap::new();
        for (k, v) in [("action", ""), ("outcome", "maybe"), ("before", "x")] {
            query.insert(k, v.to_string());
        }
        assert_eq!(filter_from_query(&query), AuditFilter::default());
    }
}
