//! The environment of the compose project: `.env.production` parsed as compose parses it, the
//! `${VAR}` interpolation compose applies, and secrets: what is secret, how it is masked, and the one
//! scrubber all output passes. Pure functions over text; the audit rules and the page build on these.

use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[cfg(feature = "ssr")]
pub mod audit;
#[cfg(feature = "ssr")]
pub mod drift;
pub mod envfile;
pub mod interpolate;
#[cfg(feature = "ssr")]
pub mod secrets;
#[cfg(feature = "ssr")]
pub mod ssr;

/// A value as it may be shown: the text with every secret part masked, and for a secret its length
/// and fingerprint (equal fingerprints mean equal values, without showing either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedValue {
    pub shown: String,
    pub secret: bool,
    pub length: usize,
    pub fingerprint: Option<String>,
}

/// Why a value counts as secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretKind {
    /// The variable's name says so (PASSWORD, KEY, ...).
    Name,
    /// A password inside a URL; the rest of the URL is not secret.
    UrlPassword,
    /// A long, random-looking value under an innocent name.
    HighEntropy,
}

/// Ordered: `Error` is the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing the audit found. Never carries a value: `message` says what is wrong in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable rule id (`placeholder-secret`, `mismatch`, ...).
    pub rule: String,
    /// The variable concerned, or empty for a finding about a file.
    pub key: String,
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}

/// One variable of the env file as the page shows it (its final value, masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub key: String,
    pub line: usize,
    pub value: MaskedValue,
    pub secret_kind: Option<SecretKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentReport {
    pub env_file: String,
    pub compose_file: String,
    pub variables: Vec<Variable>,
    pub findings: Vec<Finding>,
}

#[cfg(feature = "ssr")]
impl From<ssr::AuditError> for AppError {
    fn from(e: ssr::AuditError) -> Self {
        AppError::Unavailable(e.to_string())
    }
}

#[server(endpoint = "environment_report")]
pub async fn get_environment_report() -> Result<EnvironmentReport, AppError> {
    crate::auth::require(crate::auth::Role::Viewer).await?;
    let state = expect_context::<crate::state::AppState>();
    let (config, masker) = (state.config.clone(), state.masker.clone());
    let report = tokio::task::spawn_blocking(move || ssr::environment_report(&config, &masker))
        .await
        .map_err(|e| AppError::Unavailable(format!("environment audit did not finish: {e}")))??;
    let mut report = report;
    report.findings.extend(ssr::drift_findings(&state).await);
    Ok(report)
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
        <div class=verdict data-testid="audit-verdict">
            <span class="dot"></span>
            {format!("{errors} errors, {warnings} warnings, {notes} notes")}
        </div>
        <h2 class="section">"Findings"</h2>
        <table class="table" data-testid="findings">
            <thead><tr><th>"Severity"</th><th>"Rule"</th><th>"Where"</th><th>"What"</th><th>"Fix"</th></tr></thead>
            <tbody>
                {report.findings.into_iter().map(|f| {
                    let place = match f.line { Some(l) => format!("{}:{l}", f.file), None => f.file.clone() };
                    let rule = f.rule.clone();
                    view! {
                        <tr data-rule=rule>
                            <td><span class=format!("tag {}", f.severity.as_str())>{f.severity.as_str()}</span></td>
                            <td><code>{f.rule}</code></td>
                            <td class="nowrap"><code>{place}</code></td>
                            <td><strong>{f.key}</strong>" "{f.message}</td>
                            <td>{f.fix}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        <h2 class="section">"Variables"</h2>
        <table class="table" data-testid="variables">
            <thead><tr><th>"Line"</th><th>"Variable"</th><th>"Value"</th><th>"Secret"</th></tr></thead>
            <tbody>
                {report.variables.into_iter().map(|v| {
                    let secret = v.value.fingerprint.clone().map(|fp| {
                        format!("{} chars · fingerprint {fp}", v.value.length)
                    });
                    let key = v.key.clone();
                    view! {
                        <tr data-key=key>
                            <td>{v.line}</td>
                            <td><code>{v.key}</code></td>
                            <td class="value"><code>{v.value.shown}</code></td>
                            <td class="muted">{secret}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}
