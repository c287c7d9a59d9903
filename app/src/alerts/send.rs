//! Delivery: the outbox's due messages sent to their channels (SMTP through lettre; Teams, Slack and
//! the signed webhook over HTTPS through reqwest), each attempt recorded, a failure retried with the
//! outbox's backoff. Secrets are read from their files when a message is sent, so a rotated password
//! needs no restart.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Delivery, EventKind, Message, Severity, render};
use crate::audit::{AuditEvent, AuditOutcome};
use crate::config::{ChannelConfig, ChannelKind, Config, SmtpTls};
use crate::error::AppError;
use crate::store::Store;

/// How long one delivery may take.
const SEND_WITHIN: Duration = Duration::from_secs(30);
/// How often the outbox is looked at for retries that came due (a new message is sent at once:
/// the store wakes the sender when one is queued).
const EVERY: Duration = Duration::from_secs(5);
/// At most this many deliveries per look (the rest wait for the next one).
const PER_ROUND: u32 = 50;
/// Delivered and given-up rows are kept this long.
const KEEP: chrono::Duration = chrono::Duration::days(30);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Sender {
    config: Arc<Config>,
    store: Store,
    http: reqwest::Client,
}

impl Sender {
    pub fn new(config: Arc<Config>, store: Store) -> Arc<Sender> {
        let http = reqwest::Client::builder()
            .timeout(SEND_WITHIN)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        Arc::new(Sender {
            config,
            store,
            http,
        })
    }

    /// Sends what is due until `stop`. The first look, at start, tries every waiting message at
    /// once: a restart is when a fixed receiver or configuration is most likely. Rows ended more
    /// than `KEEP` ago are deleted once an hour.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        self.send_due_at(chrono::Utc::now() + super::store::LONGEST_WAIT)
            .await;
        let mut pruned_at = std::time::Instant::now() - PRUNE_EVERY;
        loop {
            if pruned_at.elapsed() >= PRUNE_EVERY {
                pruned_at = std::time::Instant::now();
                match self.store.prune_alerts(chrono::Utc::now() - KEEP).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("alerts: deleted {n} outbox rows older than 30 days"),
                    Err(e) => tracing::error!("alerts: cannot prune the outbox: {e}"),
                }
            }
            self.send_due().await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.store.alert_queued() => {}
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }

    /// One look at the outbox: every due message sent (or its failure recorded). Returns how many
    /// were delivered.
    pub async fn send_due(&self) -> usize {
        self.send_due_at(chrono::Utc::now()).await
    }

    /// `send_due` as if it were `now` (a test need not wait out the backoff).
    pub async fn send_due_at(&self, now: chrono::DateTime<chrono::Utc>) -> usize {
        let due = match self.store.due_alerts(now, PER_ROUND).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!("alerts: cannot read the outbox: {e}");
                return 0;
            }
        };
        let mut delivered = 0;
        for pending in due {
            let result = match self
                .config
                .alerts
                .channels
                .iter()
                .find(|c| c.name == pending.channel)
            {
                Some(channel) => self.deliver(channel, &pending.message).await,
                None => Err(format!("no channel {} is configured", pending.channel)),
            };
            if result.is_ok() {
                delivered += 1;
            }
            let error = result.err();
            if let Some(e) = &error {
                tracing::warn!(channel = %pending.channel, "alert not delivered: {e}");
            }
            if let Err(e) = self
                .store
                .alert_attempted(
                    &pending,
                    chrono::Utc::now(),
                    error.as_deref(),
                    self.config.alerts.attempts,
                )
                .await
            {
                tracing::error!("alerts: cannot record a delivery: {e}");
            }
        }
        delivered
    }

    /// "Send a test message": a message to the channel named `name` alone, through the outbox (so
    /// it is listed with the rest), delivered now; a failure is given up at once with its reason.
    pub async fn test(&self, name: &str, actor: &str) -> Result<Delivery, AppError> {
        let channel = self
            .config
            .alerts
            .channels
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| AppError::NotFound(format!("no channel is named {name}")))?;
        let origin = super::events::Origin::of(&self.config);
        let now = chrono::Utc::now();
        let message = Message {
            kind: EventKind::Test,
            severity: Severity::Info,
            at: now,
            title: format!("{}: a test message from EPSM Ops", origin.project),
            text: format!(
                "{actor} sent this from the Notifications page to check the channel {name}."
            ),
            facts: vec![("by".into(), actor.to_string())],
            link: Some(format!("{}/notifications", origin.base)),
        };
        let id = self.store.record_test_alert(&message, name).await?;
        let result = self.deliver(channel, &message).await;
        let pending = super::store::Pending {
            id,
            channel: name.to_string(),
            message,
            attempts: 0,
        };
        match &result {
            Ok(()) => {
                self.store
                    .alert_attempted(&pending, now, None, self.config.alerts.attempts)
                    .await?
            }
            Err(e) => self.store.alert_test_failed(id, e).await?,
        }
        self.store
            .record(AuditEvent {
                actor: actor.to_string(),
                action: "notifications.test".into(),
                target: format!("channel {name}"),
                outcome: if result.is_ok() {
                    AuditOutcome::Ok
                } else {
                    AuditOutcome::Failed
                },
                detail: result.err().unwrap_or_else(|| "delivered".into()),
            })
            .await?;
        self.store
            .delivery(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("delivery #{id} is gone")))
    }

    /// Sends `message` to `channel` now.
    pub async fn deliver(&self, channel: &ChannelConfig, message: &Message) -> Result<(), String> {
        match channel.kind {
            ChannelKind::Email => self.mail(channel, message).await,
            ChannelKind::Teams => self.post_json(channel, &render::teams_card(message)).await,
            ChannelKind::Slack => self.post_json(channel, &render::slack(message)).await,
            ChannelKind::Webhook => {
                let secret = self.secret(channel.secret_file.as_deref(), "secret_file")?;
                let (body, signature) = render::signed_webhook(message, secret.as_bytes());
                let url = self.secret(channel.url_file.as_deref(), "url_file")?;
                let request = self
                    .http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(render::SIGNATURE_HEADER, signature)
                    .body(body);
                answered(request.send().await)
            }
        }
    }

    async fn post_json(
        &self,
        channel: &ChannelConfig,
        body: &serde_json::Value,
    ) -> Result<(), String> {
        let url = self.secret(channel.url_file.as_deref(), "url_file")?;
        answered(self.http.post(url).json(body).send().await)
    }

    async fn mail(&self, channel: &ChannelConfig, message: &Message) -> Result<(), String> {
        use lettre::message::{Mailbox, MultiPart};
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
        let mailbox = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| format!("{a} is not a mail address: {e}"))
        };
        let mut builder = lettre::Message::builder()
            .from(mailbox(channel.from.as_deref().unwrap_or_default())?)
            .subject(&message.title);
        for to in &channel.to {
            builder = builder.to(mailbox(to)?);
        }
        let (text, html) = render::mail_parts(message);
        let mail = builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| format!("cannot build the mail: {e}"))?;
        let host = channel.smtp_host.as_deref().unwrap_or_default();
        let mut transport = match channel.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host),
            SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                host,
            )),
        }
        .map_err(|e| format!("SMTP server {host}: {e}"))?
        .timeout(Some(SEND_WITHIN));
        if let Some(port) = channel.smtp_port {
            transport = transport.port(port);
        }
        if let Some(user) = &channel.username {
            let password = self.secret(channel.password_file.as_deref(), "password_file")?;
            transport = transport.credentials(Credentials::new(user.clone(), password));
        }
        transport
            .build()
            .send(mail)
            .await
            .map(drop)
            .map_err(|e| format!("SMTP server {host}: {e}"))
    }

    /// A secret from its file (trimmed), or why it cannot be read.
    fn secret(&self, file: Option<&Path>, key: &str) -> Result<String, String> {
        let path = self
            .config
            .data_path(file.ok_or_else(|| format!("the channel has no {key}"))?);
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read {key} {}: {e}", path.display()))
    }
}

/// An HTTP answer as a delivery: 2xx delivered, anything else failed with its status (never the URL:
/// its path is the credential).
fn answered(reply: reqwest::Result<reqwest::Response>) -> Result<(), String> {
    match reply {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("the receiver answered {}", r.status())),
        Err(e) => {
            // reqwest's own line is "error sending request"; the cause (refused, timed out, a
            // certificate) is in its sources. None of them carries the URL once it is removed.
            Err(format!(
                "the receiver did not answer: {}",
                crate::error::with_causes(&e.without_url())
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU16, Ordering};

    use axum::http::{HeaderMap, StatusCode};

    use super::*;

    type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

    /// A receiver on loopback: keeps every POST's headers and body, answers with `status`.
    async fn receiver(status: Arc<AtomicU16>) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post({
                let seen = seen.clone();
                move |headers: HeaderMap, body: axum::body::Bytes| async move {
                    seen.lock().unwrap().push((headers, body.to_vec()));
                    StatusCode::from_u16(status.load(Ordering::Relaxed)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn channel(name: &str, kind: ChannelKind) -> ChannelConfig {
        ChannelConfig {
            name: name.into(),
            kind,
            events: vec![],
            min_severity: Severity::Info,
            smtp_host: None,
            smtp_port: None,
            tls: SmtpTls::Starttls,
            username: None,
            password_file: None,
            from: None,
            to: vec![],
            url_file: Some(format!("{name}.url").into()),
            secret_file: (kind == ChannelKind::Webhook).then(|| "hook.secret".into()),
        }
    }

    #[tokio::test]
    async fn a_receiver_that_is_down_gets_the_message_when_it_is_back_signed_and_carded() {
        let status = Arc::new(AtomicU16::new(503));
        let (url, seen) = receiver(status.clone()).await;
        let data = tempfile::tempdir().unwrap();
        std::fs::write(data.path().join("hook.url"), format!("{url}/hook/abc\n")).unwrap();
        std::fs::write(
            data.path().join("teams.url"),
            format!("{url}/workflows/xyz"),
        )
        .unwrap();
        std::fs::write(data.path().join("hook.secret"), "s3cret\n").unwrap();
        let mut config = Config {
            data_dir: data.path().to_path_buf(),
            ..Config::default()
        };
        config.alerts.channels = vec![
            channel("hook", ChannelKind::Webhook),
            channel("teams", ChannelKind::Teams),
        ];
        let store = Store::open(data.path()).await.unwrap();
        let message = Message {
            kind: EventKind::ServiceDown,
            severity: Severity::Error,
            at: chrono::Utc::now(),
            title: "epsm: redis is down".into(),
            text: "redis has been down for 60 s".into(),
            facts: vec![("service".into(), "redis".into())],
            link: None,
        };
        store
            .enqueue_alert(&message, &["hook".into(), "teams".into()])
            .await
            .unwrap();
        let sender = Sender::new(Arc::new(config), store.clone());

        // Down: nothing delivered, each failure recorded with the answer (never the URL).
        let now = chrono::Utc::now() + chrono::Duration::seconds(1);
        assert_eq!(sender.send_due_at(now).await, 0);
        let list = store.deliveries(10).await.unwrap();
        assert!(
            list.iter()
                .all(|d| d.attempts == 1 && d.delivered_at.is_none())
        );
        assert!(
            list.iter()
                .all(|d| d.last_error == "the receiver answered 503 Service Unavailable")
        );
        assert!(
            list.iter()
                .all(|d| !d.last_error.contains("abc") && !d.last_error.contains("xyz"))
        );
        assert_eq!(sender.send_due_at(now).await, 0, "not before its backoff");

        // Back: both delivered at the next attempt.
        status.store(200, Ordering::Relaxed);
        seen.lock().unwrap().clear();
        let later = now + super::super::store::wait_after(1) + chrono::Duration::seconds(1);
        assert_eq!(sender.send_due_at(later).await, 2);
        let seen = seen.lock().unwrap();
        let (headers, body) = seen
            .iter()
            .find(|(h, _)| h.contains_key(render::SIGNATURE_HEADER))
            .expect("the webhook's request");
        assert_eq!(
            headers[render::SIGNATURE_HEADER].to_str().unwrap(),
            render::signature(b"s3cret", body),
            "signed with the secret, the file's newline trimmed"
        );
        let back: Message = serde_json::from_slice(body).unwrap();
        assert_eq!(back.title, message.title);
        let (_, card) = seen
            .iter()
            .find(|(h, _)| !h.contains_key(render::SIGNATURE_HEADER))
            .expect("the Teams request");
        let card: serde_json::Value = serde_json::from_slice(card).unwrap();
        assert_eq!(
            card["attachments"][0]["content"]["body"][0]["text"],
            "epsm: redis is down"
        );
    }
}
