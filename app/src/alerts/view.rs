//! The Notifications page (admins): the channels as configured, secrets masked; "send a test
//! message" for each; the newest deliveries with their state. And the server functions behind it.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use super::{Delivery, Severity};
use crate::error::AppError;

/// A channel as the page shows it: where it goes, never the secret that gets it there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelView {
    pub name: String,
    pub kind: String,
    /// The event kinds it gets, or "all".
    pub events: String,
    pub min_severity: Severity,
    /// Where it goes: the mail's server and addresses, or the URL's scheme and host (its path and
    /// query are the credential).
    pub target: String,
    /// Why it cannot send now (a secret file unreadable), if so.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notifications {
    pub read_at: DateTime<Utc>,
    pub grace_secs: u64,
    pub repeat_minutes: u64,
    pub channels: Vec<ChannelView>,
    pub deliveries: Vec<Delivery>,
}

/// How many deliveries the page lists.
pub const LISTED: u32 = 50;

#[server(endpoint = "notifications")]
pub async fn get_notifications() -> Result<Notifications, AppError> {
    crate::auth::gate::require(crate::auth::Role::Admin).await?;
    let config = expect_context::<std::sync::Arc<crate::config::Config>>();
    let store = expect_context::<crate::store::Store>();
    Ok(Notifications {
        read_at: Utc::now(),
        grace_secs: config.alerts.grace_secs,
        repeat_minutes: config.alerts.repeat_minutes,
        channels: config
            .alerts
            .channels
            .iter()
            .map(|c| ssr::channel_view(&config, c))
            .collect(),
        deliveries: store.deliveries(LISTED).await?,
    })
}

/// "Send a test message" to one channel: delivered now, listed, audited.
#[server(endpoint = "notifications_test")]
pub async fn send_test_message(channel: String) -> Result<Delivery, AppError> {
    let actor = crate::auth::gate::require(crate::auth::Role::Admin).await?;
    let sender = expect_context::<std::sync::Arc<super::send::Sender>>();
    sender
        .test(&channel, &actor.name)
        .await
        .map_err(AppError::replied)
}

#[cfg(feature = "ssr")]
mod ssr {
    use super::ChannelView;
    use crate::config::{ChannelConfig, ChannelKind, Config, SmtpTls};

    /// The URL in `file` as scheme and host only ("https://hooks.slack.com/…"), or why it cannot
    /// be read.
    fn url_shown(config: &Config, file: &std::path::Path) -> Result<String, String> {
        let path = config.data_path(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let url = url::Url::parse(text.trim())
            .map_err(|_| format!("{} does not hold a URL", path.display()))?;
        Ok(format!(
            "{}://{}{}/… (in {})",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            path.display()
        ))
    }

    pub fn channel_view(config: &Config, c: &ChannelConfig) -> ChannelView {
        let (kind, target) = match c.kind {
            ChannelKind::Email => {
                let tls = match c.tls {
                    SmtpTls::Starttls => "STARTTLS",
                    SmtpTls::Tls => "TLS",
                    SmtpTls::None => "no encryption",
                };
                let host = c.smtp_host.clone().unwrap_or_default();
                let port = c.smtp_port.map(|p| format!(":{p}")).unwrap_or_default();
                let login = c
                    .username
                    .as_ref()
                    .map(|u| format!(", as {u}"))
                    .unwrap_or_default();
                (
                    "mail",
                    Ok(format!(
                        "to {} via {host}{port} ({tls}{login})",
                        c.to.join(", ")
                    )),
                )
            }
            ChannelKind::Teams => ("Teams", url_of(config, c)),
            ChannelKind::Slack => ("Slack", url_of(config, c)),
            ChannelKind::Webhook => ("signed webhook", url_of(config, c)),
        };
        // Every secret file must be readable for the channel to work.
        let unreadable = c.secret_files().find_map(|f| {
            let path = config.data_path(f);
            std::fs::metadata(&path)
                .err()
                .map(|e| format!("cannot read {}: {e}", path.display()))
        });
        let (target, problem) = match target {
            Ok(t) => (t, unreadable),
            Err(e) => (String::new(), Some(e)),
        };
        ChannelView {
            name: c.name.clone(),
            kind: kind.into(),
            events: if c.events.is_empty() {
                "every event".into()
            } else {
                c.events
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            min_severity: c.min_severity,
            target,
            problem,
        }
    }

    fn url_of(config: &Config, c: &ChannelConfig) -> Result<String, String> {
        match &c.url_file {
            Some(file) => url_shown(config, file),
            None => Err("no url_file".into()),
        }
    }
}

#[component]
pub fn NotificationsPage() -> impl IntoView {
    view! {
        <Title text="Notifications"/>
        <h1>"Notifications"</h1>
        <crate::auth::view::RoleGate role=crate::auth::Role::Admin explain="The notifications page">
            <NotificationsBody/>
        </crate::auth::view::RoleGate>
    }
}

#[component]
fn NotificationsBody() -> impl IntoView {
    let test = ServerAction::<SendTestMessage>::new();
    let page = Resource::new(move || test.version().get(), |_| get_notifications());
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            <ErrorBoundary fallback=|errors| view! { <crate::error::ErrorList errors/> }>
                {move || Suspend::new(async move {
                    page.await.map(|n| view! {
                        <p class="muted" data-testid="notifications-rules">{format!(
                            "A service is alerted after it has been down for {}, reminded every {}, \
                             and its recovery said once. A deploy's own restarts are not alerted: its \
                             result is the message.",
                            crate::health::human_duration(n.grace_secs),
                            if n.repeat_minutes == 0 { "— (no reminders)".to_string() } else { format!("{} min", n.repeat_minutes) }
                        )}</p>
                        <Channels channels=n.channels.clone() test/>
                        <Deliveries deliveries=n.deliveries.clone() now=n.read_at/>
                    })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

#[component]
fn Channels(channels: Vec<ChannelView>, test: ServerAction<SendTestMessage>) -> impl IntoView {
    if channels.is_empty() {
        return view! {
            <section class="card wide" data-testid="channels-none">
                <h2>"Channels"</h2>
                <p>"No channel is configured: nobody is told when something needs them. Add an "
                   <code>"[[alerts.channels]]"</code>" (mail, Teams, Slack or a signed webhook) to the "
                   "configuration; the README's Alerts section shows each."</p>
            </section>
        }
        .into_any();
    }
    view! {
        <section class="card wide" data-testid="channels">
            <h2>"Channels"</h2>
            <div class="table-wrap" tabindex="0"><table class="table cards-on-phone">
                <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Gets"</th><th>"Where"</th><th></th></tr></thead>
                <tbody>
                    {channels.into_iter().map(|c| {
                        let name = c.name.clone();
                        view! {
                            <tr data-testid="channel" data-name=c.name.clone()>
                                <td data-label="Name">{c.name.clone()}</td>
                                <td data-label="Kind">{c.kind.clone()}</td>
                                <td data-label="Gets">{format!("{}, {} and above", c.events, c.min_severity)}</td>
                                <td data-label="Where" class="prose">
                                    <span data-testid="channel-target">{c.target.clone()}</span>
                                    {c.problem.clone().map(|p| view! { <div class="reason">{p}</div> })}
                                </td>
                                <td data-label="">
                                    <ActionForm action=test>
                                        <input type="hidden" name="channel" value=name.clone()/>
                                        <button type="submit" data-testid="channel-test" disabled=move || test.pending().get()>
                                            "Send a test message"
                                        </button>
                                    </ActionForm>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table></div>
            {move || test.value().get().map(|r| match r {
                Ok(d) if d.delivered_at.is_some() => view! {
                    <p class="muted" role="status" data-testid="test-result" data-state="delivered">
                        {format!("Delivered to {}.", d.channel)}
                    </p>
                }.into_any(),
                Ok(d) => view! {
                    <p class="error-box" role="alert" data-testid="test-result" data-state=d.state()>
                        {format!("Not delivered to {}: {}", d.channel, d.last_error)}
                    </p>
                }.into_any(),
                Err(e) => view! { <p class="error-box" role="alert" data-testid="test-result" data-state="error">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
    .into_any()
}

#[component]
fn Deliveries(deliveries: Vec<Delivery>, now: DateTime<Utc>) -> impl IntoView {
    view! {
        <section class="card wide" data-testid="deliveries">
            <h2>"Last messages"</h2>
            {if deliveries.is_empty() {
                view! { <p class="muted">"Nothing sent yet."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap" tabindex="0"><table class="table cards-on-phone">
                        <thead><tr><th>"Queued"</th><th>"Channel"</th><th>"Message"</th><th>"State"</th></tr></thead>
                        <tbody>
                            {deliveries.into_iter().map(|d| {
                                let state = d.state();
                                let class = match state {
                                    "delivered" => "tag ok",
                                    "given up" => "tag failed",
                                    _ => "tag warn",
                                };
                                let detail = match state {
                                    "delivered" => d.delivered_at.map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_default(),
                                    "queued" => String::new(),
                                    _ => format!("after {} attempt{}: {}", d.attempts, if d.attempts == 1 { "" } else { "s" }, d.last_error),
                                };
                                view! {
                                    <tr data-testid="delivery" data-state=state data-channel=d.channel.clone()>
                                        <td data-label="Queued" title=d.created_at.to_rfc3339()>{crate::health::human_duration((now - d.created_at).num_seconds().max(0) as u64)}" ago"</td>
                                        <td data-label="Channel">{d.channel.clone()}</td>
                                        <td data-label="Message" class="prose">{d.title.clone()}</td>
                                        <td data-label="State" class="prose"><span class=class>{state}</span>" "<span class="muted small">{detail}</span></td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table></div>
                }.into_any()
            }}
        </section>
    }
}
