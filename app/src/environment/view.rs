//! The Environment page: the env file's variables (masked) and the audit's findings, and the server
//! function that reads them.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{EnvironmentReport, Severity};
use crate::error::AppError;

#[server(endpoint = "environment_report")]
pub async fn get_environment_report() -> Result<EnvironmentReport, AppError> {
    crate::auth::gate::require(crate::auth::Role::Viewer).await?;
    let audit = expect_context::<std::sync::Arc<super::ssr::EnvironmentAudit>>();
    Ok(audit.report().await?)
}

#[component]
pub fn EnvironmentPage() -> impl IntoView {
    let report = Resource::new(|| (), |_| get_environment_report());
    view! {
        <Title text="Environment"/>
        <h1>"Environment"</h1>
        <Suspense fallback=|| view! { <p class="muted">"Reading the env file and the compose file…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                {move || Suspend::new(async move { report.await.map(|r| view! { <Report report=r/> }) })}
            </ErrorBoundary>
        </Suspense>
    }
}

#[component]
fn Report(report: EnvironmentReport) -> impl IntoView {
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    let (errors, warnings, notes) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
    );
    let verdict = if errors > 0 {
        "status down"
    } else {
        "status ok"
    };
    view! {
        <p class="muted">
            <code>{report.env_file}</code> " with " <code>{report.compose_file}</code>
            ". Secrets are masked; equal fingerprints mean equal values."
        </p>
        <p class="muted small" data-testid="audit-checked-at">
            {format!(
                "Checked at {} UTC; checked again when a file or a container changes, at the latest a minute later.",
                report.checked_at.format("%H:%M:%S"),
            )}
        </p>
        <div class=verdict data-testid="audit-verdict">
            <span class="dot"></span>
            {crate::environment::finding_counts(errors, warnings, notes)}
        </div>
        <h2 class="section">"Findings"</h2>
        <div class="table-wrap" tabindex="0"><table class="table cards-on-phone" data-testid="findings">
            <thead><tr><th>"Severity"</th><th>"Rule"</th><th>"Where"</th><th>"What"</th><th>"Fix"</th></tr></thead>
            <tbody>
                {report.findings.into_iter().map(|f| {
                    let place = match f.line { Some(l) => format!("{}:{l}", f.file), None => f.file.clone() };
                    let rule = f.rule.clone();
                    view! {
                        <tr data-rule=rule>
                            <td data-label="Severity"><span class=format!("tag {}", f.severity.as_str())>{f.severity.as_str()}</span></td>
                            <td data-label="Rule"><code>{f.rule}</code></td>
                            <td data-label="Where" class="nowrap"><code>{place}</code></td>
                            <td data-label="What"><strong>{f.key}</strong>" "{f.message}</td>
                            <td data-label="Fix">{f.fix}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table></div>
        <h2 class="section">"Variables"</h2>
        <div class="table-wrap" tabindex="0"><table class="table cards-on-phone" data-testid="variables">
            <thead><tr><th>"Line"</th><th>"Variable"</th><th>"Value"</th><th>"Secret"</th></tr></thead>
            <tbody>
                {report.variables.into_iter().map(|v| {
                    let secret = v.value.fingerprint.clone().map(|fp| {
                        format!("{} chars · fingerprint {fp}", v.value.length)
                    });
                    let key = v.key.clone();
                    view! {
                        <tr data-key=key>
                            <td data-label="Line">{v.line}</td>
                            <td data-label="Variable"><code>{v.key}</code></td>
                            <td data-label="Value" class="value"><code>{v.value.shown}</code></td>
                            <td data-label="Secret" class="muted">{secret}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table></div>
    }
}
