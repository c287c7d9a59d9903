//! No secret leaves the server: with the EPSM-like stack's env file (whose secret values are
//! distinctive on purpose), fetch every page, call every server function and read the server's own
//! log, and find none of the secret values anywhere.

use std::path::Path;

use end2end::{Console, stack_secrets};

const PAGES: &[&str] = &[
    "/",
    "/health",
    "/deploys",
    "/environment",
    "/backups",
    "/audit",
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
];

#[tokio::test]
async fn no_page_server_function_or_log_line_carries_a_secret() {
    let console = Console::start(Path::new(env!("CARGO_BIN_EXE_epsm-ops")), &[]).await;
    let client = console.client();
    let mut seen = Vec::new();
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
    for secret in stack_secrets() {
        for (what, text) in &seen {
            assert!(!text.contains(&secret), "{what} carries a secret value");
        }
    }
}
