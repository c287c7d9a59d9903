//! The change card as the Deploys page and a deploy's own page show it, and the server function
//! that works it out.

use leptos::prelude::*;

use super::changes::{ChangeCard, CommitInfo, SourceView, env_summary};
use crate::error::AppError;

/// The card for `git_ref` (the configured branch when empty); with `fetch`, the remote is fetched
/// first ("Check for updates": deployers, audited). Nothing is checked out.
#[server(endpoint = "deploy_changes")]
pub async fn deploy_changes(
    #[server(default)] git_ref: Option<String>,
    #[server(default)] fetch: bool,
) -> Result<SourceView, AppError> {
    use crate::auth::Role;
    use crate::auth::gate::require;
    let actor = require(if fetch { Role::Deployer } else { Role::Viewer }).await?;
    let deployer = expect_context::<std::sync::Arc<crate::deploy::ssr::Deployer>>();
    let wanted = git_ref.as_deref().map(str::trim).filter(|r| !r.is_empty());
    Ok(deployer.change_card(&actor, wanted, fetch).await)
}

/// The card as the Deploys page and a deploy's own page show it.
#[component]
pub fn ChangeCardView(card: ChangeCard) -> impl IntoView {
    let link = {
        let card = card.clone();
        move |c: &CommitInfo| {
            let short: String = c.id.chars().take(10).collect();
            match card.commit_link(&c.id) {
                Some(href) => view! { <a href=href><code>{short}</code></a> }.into_any(),
                None => view! { <code>{short}</code> }.into_any(),
            }
        }
    };
    let running = card.running.clone();
    let summary = match (&running, card.up_to_date()) {
        (_, true) => "Production runs this commit already: a deploy rebuilds it.".to_string(),
        (Some(_), false) if card.descends => format!(
            "{} commit{} ahead of what production runs.",
            card.ahead,
            crate::health::plural(card.ahead as usize)
        ),
        (Some(_), false) => "The target does not contain what production runs: history was rewritten, or it is older. \
             A deploy drops the commits production has that it lacks."
            .to_string(),
        (None, false) => "Production runs no commit yet.".to_string(),
    };
    let more_commits = card.ahead.saturating_sub(card.commits.len() as u64);
    // Each part is erased to `AnyView`: one nested view type this deep is more than the compiler's
    // recursion limit allows in the wasm build.
    let head = view! {
        <dl class="facts">
            <dt>"Production runs"</dt>
            <dd data-testid="card-running">
                {running.as_ref().map(|r| view! { {link(r)} " " {r.subject.clone()} })}
                {card.running_deploy.map(|id| format!(" (deploy #{id})"))}
            </dd>
            <dt>"This deploy brings"</dt>
            <dd data-testid="card-target">{link(&card.target)} " " {card.target.subject.clone()} {format!(" ({})", card.wanted)}</dd>
        </dl>
        <p class=if card.descends || card.up_to_date() { "muted" } else { "error-box" }
            data-testid="card-summary">{summary}</p>
    }
    .into_any();
    let commits = (!card.commits.is_empty()).then(|| {
        view! {
            <details open=card.commits.len() <= 10>
                <summary>{format!("Commits ({})", card.ahead)}</summary>
                <ul class="commits" data-testid="card-commits">
                    {card.commits.iter().map(|c| view! {
                        <li data-testid="card-commit">{link(c)} " " <span>{c.subject.clone()}</span>
                            <span class="muted small">{format!(" {} · {}", c.author, c.date.get(..10).unwrap_or(&c.date))}</span></li>
                    }).collect_view()}
                </ul>
                {(more_commits > 0).then(|| view! { <p class="muted small">{format!("and {more_commits} more")}</p> })}
            </details>
        }
        .into_any()
    });
    let migrations = (!card.migrations.is_empty()).then(|| {
        view! {
            <div data-testid="card-migrations">
                <h3>"Migrations it adds"</h3>
                <ul>
                    {card.migrations.iter().map(|m| view! {
                        <li data-testid="card-migration" data-risky=(!m.data_losing.is_empty()).to_string()>
                            <code>{m.path.clone()}</code>
                            {(!m.data_losing.is_empty()).then(|| view! {
                                " " <span class="tag down">{format!("can lose data: {}", m.data_losing.join(", "))}</span>
                            })}
                        </li>
                    }).collect_view()}
                </ul>
            </div>
        }
        .into_any()
    });
    let compose = (!card.compose.is_empty() || card.compose_error.is_some()).then(|| {
        view! {
            <div data-testid="card-compose">
                <h3>"Compose file"</h3>
                {card.compose_error.clone().map(|e| view! { <p class="error-box">{e}</p> })}
                <ul>
                    {card.compose.iter().map(|s| view! {
                        <li data-testid="card-service"><strong>{s.service.clone()}</strong>{format!(" {}", s.change)}
                            {(!s.details.is_empty()).then(|| view! {
                                <ul class="small">{s.details.iter().map(|d| view! { <li>{d.clone()}</li> }).collect_view()}</ul>
                            })}
                        </li>
                    }).collect_view()}
                </ul>
            </div>
        }
        .into_any()
    });
    let env = view! {
        <div data-testid="card-env">
            <h3>"Env file keys"</h3>
            <p class="small">{env_summary(&card.env)}</p>
        </div>
    }
    .into_any();
    let files = (card.files_total > 0).then(|| {
        view! {
            <details>
                <summary>{format!("Files changed ({})", card.files_total)}</summary>
                <ul class="small" data-testid="card-files">
                    {card.folders.iter().map(|f| view! {
                        <li><strong>{f.folder.clone()}</strong>{format!(" ({})", f.total)}
                            <span class="muted">{format!(" {}{}", f.files.join(", "), if f.total > f.files.len() { " …" } else { "" })}</span></li>
                    }).collect_view()}
                </ul>
            </details>
        }
        .into_any()
    });
    let fetched = card.fetched_at.map_or_else(
        || {
            "The remote was not fetched by the console yet: \"Check for updates\" fetches it."
                .to_string()
        },
        |at| format!("Remote fetched {} UTC.", at.format("%Y-%m-%d %H:%M:%S")),
    );
    view! {
        <div class="change-card" data-testid="change-card" data-ahead=card.ahead.to_string()
            data-descends=card.descends.to_string() data-backup-advised=card.backup_advised.to_string()>
            {head}
            {commits}
            {migrations}
            {compose}
            {env}
            {files}
            <p class="muted small">{fetched}</p>
        </div>
    }
}
