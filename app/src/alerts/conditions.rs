//! Conditions looked at every `EVERY`, not events: the backups' disk nearly full, a SAML certificate
//! (the console's own, or one the IdP signs with) expiring within `CERT_WARN_DAYS`, the IdP metadata
//! getting old or unreadable. Each is alerted when it starts, reminded daily while it lasts, and
//! forgotten when it ends (so it is alerted again if it comes back).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use super::events::{Origin, notify};
use super::{EventKind, Message, Severity};
use crate::auth::ssr::ServiceProvider;
use crate::config::Config;
use crate::store::Store;

/// How often the conditions are looked at.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// A condition that lasts is said again this often.
pub const REMIND: Duration = Duration::hours(24);
/// A certificate is alerted this many days before it expires; an error from a week before.
pub const CERT_WARN_DAYS: i64 = 30;
const CERT_ERROR_DAYS: i64 = 7;

/// What was said of each lasting condition, and when.
#[derive(Debug, Default)]
pub struct Latch {
    said: HashMap<String, DateTime<Utc>>,
}

impl Latch {
    /// Of the conditions that hold now (key, message), those to send: the new ones and those last
    /// said `REMIND` ago. Conditions that no longer hold are forgotten.
    pub fn pass(&mut self, now: DateTime<Utc>, holding: Vec<(String, Message)>) -> Vec<Message> {
        self.said
            .retain(|key, _| holding.iter().any(|(k, _)| k == key));
        let mut send = Vec::new();
        for (key, message) in holding {
            let due = self.said.get(&key).is_none_or(|at| now - *at >= REMIND);
            if due {
                self.said.insert(key, now);
                send.push(message);
            }
        }
        send
    }
}

/// The backups' disk, when less than `percent` of it is free.
pub fn disk(dir: &Path, percent: u8, origin: &Origin, now: DateTime<Utc>) -> Option<Message> {
    if percent == 0 {
        return None;
    }
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    let unit = stat.fragment_size() as u128;
    let total = stat.blocks() as u128 * unit;
    let free = stat.blocks_available() as u128 * unit;
    if total == 0 || free * 100 >= total * percent as u128 {
        return None;
    }
    let gib = |b: u128| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    Some(Message {
        kind: EventKind::DiskNearlyFull,
        severity: Severity::Warning,
        at: now,
        title: format!("{}: the backups' disk is nearly full", origin.project),
        text: format!(
            "{} has {} free of {} ({}%); the next backup may not fit",
            dir.display(),
            gib(free),
            gib(total),
            free * 100 / total
        ),
        facts: vec![("free".into(), gib(free))],
        link: Some(format!("{}/backups", origin.base)),
    })
}

/// Whole days from `now` until `cert` expires (negative once it has), and whether it has.
pub fn days_left(cert: &openssl::x509::X509Ref, now: DateTime<Utc>) -> Option<(i64, bool)> {
    let today = openssl::asn1::Asn1Time::from_unix(now.timestamp()).ok()?;
    let left = today.diff(cert.not_after()).ok()?;
    let days = left.days as i64;
    Some((days, days < 0 || (days == 0 && left.secs < 0)))
}

/// A certificate (DER) that expires within `CERT_WARN_DAYS` of `now`, or has expired.
pub fn certificate(what: &str, der: &[u8], origin: &Origin, now: DateTime<Utc>) -> Option<Message> {
    let cert = openssl::x509::X509::from_der(der).ok()?;
    let (days, expired) = days_left(&cert, now)?;
    if days >= CERT_WARN_DAYS {
        return None;
    }
    let when = if expired {
        format!("expired {} days ago", -days)
    } else {
        format!("expires in {days} days")
    };
    Some(Message {
        kind: EventKind::CertificateExpiring,
        severity: if days < CERT_ERROR_DAYS {
            Severity::Error
        } else {
            Severity::Warning
        },
        at: now,
        title: format!("{}: {what} {when}", origin.project),
        text: format!(
            "{what} ({}) is valid until {}; logins fail once it has expired",
            cert.subject_name()
                .entries()
                .filter_map(|e| e.data().to_string().ok())
                .collect::<Vec<_>>()
                .join(", "),
            cert.not_after()
        ),
        facts: Vec::new(),
        link: Some(format!("{}/saml/metadata", origin.base)),
    })
}

/// Every condition that holds now, keyed.
pub fn holding(
    config: &Config,
    sp: &ServiceProvider,
    now: DateTime<Utc>,
) -> Vec<(String, Message)> {
    let origin = Origin::of(config);
    let mut found = Vec::new();
    if let Some(m) = disk(
        &config.backups_dir(),
        config.alerts.disk_free_percent,
        &origin,
        now,
    ) {
        found.push(("disk".to_string(), m));
    }
    if let Some(m) = certificate(
        "the console's SAML certificate",
        &sp.keys.cert_der(),
        &origin,
        now,
    ) {
        found.push(("sp-cert".to_string(), m));
    }
    for (i, der) in sp.idp_signing_certs().iter().enumerate() {
        if let Some(m) = certificate("the IdP's signing certificate", der, &origin, now) {
            found.push((format!("idp-cert-{i}"), m));
        }
    }
    if let Some(warning) = sp.idp_warning() {
        found.push((
            "metadata".to_string(),
            Message {
                kind: EventKind::MetadataStale,
                severity: Severity::Warning,
                at: now,
                title: format!("{}: the IdP metadata needs attention", origin.project),
                text: warning,
                facts: Vec::new(),
                link: Some(format!("{}/", origin.base)),
            },
        ));
    }
    found
}

/// Looks at the conditions every `EVERY` until `stop`, queueing what the latch lets through.
pub async fn watch(
    config: Arc<Config>,
    store: Store,
    sp: Arc<ServiceProvider>,
    stop: CancellationToken,
) {
    let mut latch = Latch::default();
    loop {
        let now = Utc::now();
        let holding = {
            let (config, sp) = (config.clone(), sp.clone());
            // statvfs and certificate parsing: blocking work, off the runtime's threads.
            tokio::task::spawn_blocking(move || holding(&config, &sp, now))
                .await
                .unwrap_or_default()
        };
        for message in latch.pass(now, holding) {
            notify(&config, &store, message).await;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::example()
    }

    fn message(title: &str) -> Message {
        Message {
            kind: EventKind::DiskNearlyFull,
            severity: Severity::Warning,
            at: Utc::now(),
            title: title.into(),
            text: String::new(),
            facts: vec![],
            link: None,
        }
    }

    #[test]
    fn a_condition_is_said_when_it_starts_daily_while_it_lasts_and_again_when_it_returns() {
        let mut latch = Latch::default();
        let t0 = Utc::now();
        let disk = || vec![("disk".to_string(), message("disk"))];
        assert_eq!(latch.pass(t0, disk()).len(), 1);
        assert!(latch.pass(t0 + Duration::minutes(10), disk()).is_empty());
        assert_eq!(
            latch.pass(t0 + REMIND, disk()).len(),
            1,
            "the daily reminder"
        );
        assert!(
            latch
                .pass(t0 + REMIND + Duration::minutes(10), vec![])
                .is_empty()
        );
        assert_eq!(
            latch
                .pass(t0 + REMIND + Duration::minutes(20), disk())
                .len(),
            1,
            "back after it ended"
        );
    }

    #[test]
    fn a_certificate_is_alerted_within_thirty_days_and_an_error_within_seven() {
        let pair = crate::auth::keys::KeyPair::generate("sp.example").unwrap();
        let der = pair.cert_der();
        let now = Utc::now();
        // Generated certificates are valid ten years.
        assert_eq!(certificate("the cert", &der, &origin(), now), None);
        let soon = now + Duration::days(3650 - 20);
        let m = certificate("the cert", &der, &origin(), soon).unwrap();
        assert_eq!(m.severity, Severity::Warning);
        assert!(
            m.title.starts_with("epsm: the cert expires in "),
            "{}",
            m.title
        );
        assert!(m.text.contains("sp.example"), "{}", m.text);
        let late = now + Duration::days(3650 + 3);
        let m = certificate("the cert", &der, &origin(), late).unwrap();
        assert_eq!(m.severity, Severity::Error);
        assert!(m.title.contains("expired"), "{}", m.title);
        assert_eq!(certificate("junk", b"not der", &origin(), now), None);
    }

    #[test]
    fn the_disk_is_alerted_below_its_threshold_only() {
        let dir = tempfile::tempdir().unwrap();
        // No disk is 100% free, and every disk is at least 0% free.
        let m = disk(dir.path(), 100, &origin(), Utc::now()).unwrap();
        assert_eq!(m.kind, EventKind::DiskNearlyFull);
        assert!(m.text.starts_with(&dir.path().display().to_string()));
        assert_eq!(disk(dir.path(), 0, &origin(), Utc::now()), None);
        assert_eq!(
            disk(Path::new("/no/such/dir"), 100, &origin(), Utc::now()),
            None
        );
    }
}
