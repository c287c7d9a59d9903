//! The audit log page: the newest entries, filtered by the page's address, and the server function
//! that reads them.

use leptos::prelude::*;

use super::{ACTION_FAMILIES, AuditEntry, AuditFilter, AuditOutcome, PAGE_SIZE};
use crate::error::AppError;

/// The newest entries matching the filter (all when none is given), `PAGE_SIZE` at most.
#[server(endpoint = "audit_log")]
pub async fn get_audit_log(
    #[server(default)] action: Option<String>,
    #[server(default)] actor: Option<String>,
    #[server(default)] outcome: Option<AuditOutcome>,
    #[server(default)] before: Option<i64>,
) -> Result<Vec<AuditEntry>, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    let filter = AuditFilter {
        action,
        actor,
        outcome,
        before,
    };
    let store = expect_context::<crate::store::Store>();
    let read = || store.audit_log(&filter, PAGE_SIZE);
    // The log as most views open it (the newest, unfiltered) is kept between commits.
    if filter == AuditFilter::default() {
        let kept = store.read_kept("audit log", read);
        return Ok(kept.await?.to_vec());
    }
    Ok(read().await?)
}

/// The filter the page's address asks for (`?action=deploy&actor=anna&outcome=refused&before=42`).
fn filter_from_query(query: &leptos_router::params::ParamsMap) -> AuditFilter {
    let text = |key| query.get(key).filter(|v| !v.trim().is_empty());
    AuditFilter {
        action: text("action"),
        actor: text("actor"),
        outcome: text("outcome").and_then(|o| o.parse().ok()),
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
    let outcome = f.outcome.map(AuditOutcome::as_str).unwrap_or("");
    view! {
        // The router's form adds its submit button to the query even without a name ("&="): dropped.
        <leptos_router::components::Form method="GET" action="/audit"
            on_form_data=std::sync::Arc::new(|data: &leptos::web_sys::FormData| data.delete(""))>
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
        <div class="table-wrap" tabindex="0"><table class="table cards-on-phone" data-testid="audit-table">
            <thead>
                <tr><th>"When (UTC)"</th><th>"Who"</th><th>"Action"</th><th>"Target"</th><th>"Outcome"</th><th>"Detail"</th></tr>
            </thead>
            <tbody>
                {entries.into_iter().map(|e| view! {
                    <tr data-testid="audit-row" data-action=e.action.clone() data-outcome=e.outcome.as_str()>
                        <td data-label="When (UTC)" class="nowrap">{e.at.format("%Y-%m-%d %H:%M:%S").to_string()}</td>
                        <td data-label="Who">{e.actor}</td>
                        <td data-label="Action"><code>{e.action.clone()}</code></td>
                        <td data-label="Target" class="prose">{e.target}</td>
                        <td data-label="Outcome"><span class=format!("tag {}", e.outcome.as_str())>{e.outcome.as_str()}</span></td>
                        <td data-label="Detail" class="prose">
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
        </table></div>
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
            outcome: Some(AuditOutcome::Refused),
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
