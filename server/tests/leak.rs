//! No secret leaves the server: with the EPSM-like stack's env file (whose secret values are
//! distinctive on purpose) and alert channels whose URLs, signing secret and SMTP password are
//! distinctive too, send a test message to each channel (every receiver is unreachable, so every
//! error is written), fetch every page, call every server function and read the server's own log,
//! and find none of the secret values anywhere.

use std::path::Path;

use end2end::{Console, private_file, stack_secrets};

const PAGES: &[&str] = &[
    "/",
    "/health",
    "/deploys",
    "/environment",
    "/backups",
    "/audit",
    "/notifications",
    "/healthz",
    "/nope",
];
const SERVER_FNS: &[&str] = &[
    "engine_status",
    "project_info",
    "audit_log",
    "environment_report",
    "health_report",
    "deploy_list",
    "backup_list",
    "overview",
    "deploy_changes",
    "notifications",
];

/// The alert channels' secrets, each in a file of its own: URLs whose path and query are the
/// credential, a signing secret, an SMTP password. Nothing answers at 127.0.0.1:9.
const CHANNEL_SECRETS: [(&str, &str); 4] = [
    (
        "teams.url",
        "http://127.0.0.1:9/workflows/teams-sig-Qx7LeakCheck",
    ),
    (
        "hook.url",
        "http://127.0.0.1:9/hook/hook-token-Zr4LeakCheck",
    ),
    ("hook.secret", "hmac-secret-Wv2LeakCheck"),
    ("smtp.password", "smtp-password-Jm8LeakCheck"),
];

/// A configuration with one channel of each kind, its secrets in private files under `dir`.
fn channels_config(dir: &Path) -> String {
    let paths: Vec<String> = CHANNEL_SECRETS
        .iter()
        .map(|(name, value)| private_file(dir, name, value))
        .collect();
    let text = format!(
        "[alerts]\n\
         [[alerts.channels]]\nname = \"teams\"\nkind = \"teams\"\nurl_file = {:?}\n\
         [[alerts.channels]]\nname = \"slack\"\nkind = \"slack\"\nurl_file = {:?}\n\
         [[alerts.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = {:?}\nsecret_file = {:?}\n\
         [[alerts.channels]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = 9\n\
         username = \"epsm\"\npassword_file = {:?}\nfrom = \"ops@example.org\"\nto = [\"team@example.org\"]\n",
        paths[0], paths[0], paths[1], paths[2], paths[3]
    );
    private_file(dir, "epsm-ops.toml", &text)
}

#[tokio::test]
async fn no_page_server_function_or_log_line_carries_a_secret() {
    let secrets = tempfile::tempdir().unwrap();
    let config = channels_config(secrets.path());
    let console = Console::start(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &[("EPSM_OPS_CONFIG", config.as_str())],
    )
    .await;
    let client = console.client();
    let mut seen = Vec::new();
    // A test message to each channel: none answers, so each failure is in the reply, the outbox,
    // the audit log and the server's log.
    for channel in ["teams", "slack", "hook", "mail"] {
        let (status, body) = console
            .call("notifications_test", &[("channel", channel)])
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"given_up_at\":\""), "{channel}: {body}");
        seen.push((format!("test message to {channel}"), body));
    }
    for page in PAGES {
        let body = client
            .get(format!("{}{page}", console.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        seen.push((format!("page {page}"), body));
    }
    for name in SERVER_FNS {
        let reply = client
            .post(format!("{}/api/{name}", console.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 200, "server function {name}");
        seen.push((format!("server fn {name}"), reply.text().await.unwrap()));
    }
    // The environment report did read the secrets: it must show them masked, with fingerprints.
    let report = &seen
        .iter()
        .find(|(what, _)| what == "server fn environment_report")
        .unwrap()
        .1;
    assert!(report.contains("redis://:••••@redis:6379/0"), "{report}");
    assert!(report.contains("\"fingerprint\":\""), "{report}");
    seen.push(("server log".into(), console.log()));
    let channel_secrets = CHANNEL_SECRETS.iter().flat_map(|(_, value)| {
        // The whole value, and the part of a URL that is the credential.
        [
            value.to_string(),
            value.rsplit('/').next().unwrap().to_string(),
        ]
    });
    for secret in stack_secrets().into_iter().chain(channel_secrets) {
        for (what, text) in &seen {
            assert!(!text.contains(&secret), "{what} carries a secret value");
        }
    }
}
