//! The real `epsm-ops` binary: start-up, pages, `/healthz`, security headers, the engine shown or its
//! absence explained, graceful shutdown into the audit log, and configuration errors at start.

use std::path::Path;

use app::audit::AuditOutcome;
use app::store::Store;
use end2end::{Console, engine_answers, run_console};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

/// GET as the logged-in admin of `console`: the status, headers and body of `url`; the body without Leptos' hydration markers (`<!>`, where
/// an erased component's view ends), so a test reads the HTML as a browser shows it.
async fn get(console: &Console, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = console.client().get(url).send().await.expect("GET");
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = response.text().await.expect("body");
    (status, headers, body.replace("<!>", ""))
}

#[tokio::test]
async fn pages_render_with_the_shell_and_strict_security_headers() {
    let console = Console::start(bin(), &[]).await;
    let (status, headers, body) = get(&console, &format!("{}/", console.url)).await;
    assert_eq!(status, 200);
    for link in [
        "Overview",
        "Health",
        "Deploys",
        "Environment",
        "Backups",
        "Audit log",
    ] {
        assert!(
            body.contains(&format!(">{link}</a>")),
            "nav link {link} missing"
        );
    }
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = headers["content-security-policy"].to_str().unwrap();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("nonce in CSP");
    assert!(
        body.contains(&format!("nonce=\"{nonce}\"")),
        "the hydration script carries the CSP nonce"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");

    let (status, _, body) = get(&console, &format!("{}/healthz", console.url)).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"ok","store":"ok"}"#)
    );

    let (status, _, body) = get(&console, &format!("{}/no/such/page", console.url)).await;
    assert_eq!(status, 404);
    assert!(body.contains("There is no page at this address"));

    // Nothing a login shows is kept by a browser or proxy; the compiled site's files may be.
    assert_eq!(headers["cache-control"], "no-store", "a page");
    let reply = console
        .client()
        .post(format!("{}/api/login_state", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        reply.headers()["cache-control"],
        "no-store",
        "a server function"
    );
    // The icon's name does not change with its content: kept, but asked again by its ETag.
    let (status, headers, _) = get(&console, &format!("{}/favicon.svg", console.url)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-cache", "{headers:?}");
    assert!(headers.contains_key("etag"), "{headers:?}");
    // The icon is there for pages nobody is logged in to (the login's, the IdP's), and under the
    // name browsers ask for by themselves.
    let anonymous = |path: &str| {
        console
            .anonymous_client()
            .get(format!("{}{path}", console.url))
            .send()
    };
    let icon = anonymous("/favicon.svg").await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    let ico = anonymous("/favicon.ico").await.unwrap();
    assert_eq!(ico.status(), 308);
    assert_eq!(ico.headers()["location"], "/favicon.svg");
    // Plain http (development): no HSTS, no __Host- cookie.
    assert!(reply.headers().get("strict-transport-security").is_none());
}

#[tokio::test]
async fn over_https_the_console_sends_hsts_and_a_host_only_secure_session_cookie() {
    let idp = end2end::pysaml2::PySaml2Idp::new(&[]);
    let metadata = idp.metadata_file().display().to_string();
    let console = Console::start_anonymous(
        bin(),
        &[
            ("EPSM_OPS_PUBLIC_URL", "https://ops.epsm.chalmers.se/"),
            ("EPSM_OPS_AUTH_DEV_IDP", "false"),
            ("EPSM_OPS_AUTH_IDP_METADATA", metadata.as_str()),
        ],
    )
    .await;
    let reply = console
        .anonymous_client()
        .get(format!("{}/saml/login", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 303);
    let headers = reply.headers();
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    assert_eq!(headers["cache-control"], "no-store");
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("__Host-epsm_ops_session="), "{cookie}");
    for part in ["Secure", "HttpOnly", "Path=/", "SameSite=Lax"] {
        assert!(cookie.contains(part), "{part} missing: {cookie}");
    }
    assert!(!cookie.contains("Domain="), "{cookie}");
}

#[tokio::test]
async fn an_unreachable_engine_is_explained_on_the_page_and_by_the_server_function() {
    let console = Console::start(
        bin(),
        &[("EPSM_OPS_DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    )
    .await;
    let reason = "Docker engine not reachable at unix:///nonexistent/docker.sock: \
                  the socket does not exist (is dockerd running?)";
    let (status, _, body) = get(&console, &format!("{}/", console.url)).await;
    assert_eq!(
        status, 200,
        "a dead engine is a state to show, not a server error"
    );
    assert!(
        body.contains(reason),
        "page does not explain the dead engine:\n{body}"
    );

    let reply = console
        .client()
        .post(format!("{}/api/engine_status", console.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let json: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(json["state"]["Unreachable"]["reason"], reason);

    // The top bar's badge says it on every page, from the page's login state: a login's reply
    // carries the engine, an anonymous one does not (the engine's state is for viewers).
    let (_, _, body) = get(&console, &format!("{}/audit", console.url)).await;
    assert!(
        body.contains(&format!(r#"title="{reason}" class="badge down""#))
            && body.contains(">Docker unreachable</span>"),
        "the top bar does not show the dead engine:\n{body}"
    );
    let login_state = |client: reqwest::Client| {
        let url = format!("{}/api/login_state", console.url);
        async move {
            let reply = client.post(url).send().await.unwrap();
            assert_eq!(reply.status(), 200);
            reply.json::<serde_json::Value>().await.unwrap()
        }
    };
    let logged_in = login_state(console.client().clone()).await;
    assert_eq!(
        logged_in["engine"]["state"]["Unreachable"]["reason"],
        reason
    );
    let anonymous = login_state(console.anonymous_client()).await;
    assert_eq!(anonymous["user"], serde_json::Value::Null);
    assert_eq!(anonymous["engine"], serde_json::Value::Null, "{anonymous}");
    assert!(
        console.log().contains(reason),
        "the start-up log says it too"
    );
}

#[tokio::test]
async fn the_engine_version_is_shown_when_the_engine_answers() {
    assert!(
        engine_answers(),
        "this test needs the Docker engine (scripts/test.sh starts one)"
    );
    let version = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout)
        .unwrap()
        .trim()
        .to_string();
    let console = Console::start(bin(), &[("EPSM_OPS_DOCKER_HOST", &end2end::docker_host())]).await;
    let (_, _, body) = get(&console, &format!("{}/", console.url)).await;
    assert!(body.contains(r#"data-state="reachable""#), "{body}");
    assert!(
        body.contains(&format!("<dt>Engine</dt><dd>{version}</dd>")),
        "{body}"
    );
}

/// The deploy ids of the history's rows on page `path` (newest first), and the page.
async fn history_page(console: &Console, path: &str) -> (Vec<String>, String) {
    let (status, _, body) = get(console, &format!("{}{path}", console.url)).await;
    assert_eq!(status, 200, "{path}: {body}");
    let rows = body
        .split("data-testid=\"deploy-row\"")
        .skip(1)
        .filter_map(|row| {
            Some(
                row.split_once("href=\"/deploys/")?
                    .1
                    .split('"')
                    .next()?
                    .into(),
            )
        })
        .collect();
    (rows, body)
}

#[tokio::test]
async fn the_deploy_history_comes_a_page_at_a_time_with_links_to_older_and_newest() {
    let console = Console::start(bin(), &[]).await;
    // 60 finished deploys in the console's store, every tenth failed.
    let store = Store::open(&console.data_path()).await.unwrap();
    for id in 1..=60 {
        sqlx::query(
            "INSERT INTO deploys (id, actor, started_at, finished_at, options, outcome, summary)
             VALUES (?, 'Ada Admin', '2026-01-01T10:00:00Z', '2026-01-01T10:04:00Z', '{}', ?, 'done')",
        )
        .bind(id)
        .bind(if id % 10 == 0 { "failed" } else { "succeeded" })
        .execute(store.pool())
        .await
        .unwrap();
    }
    let ids = |from: i64, to: i64| (to..=from).rev().map(|i| i.to_string()).collect::<Vec<_>>();

    // The newest 50, and a link to the older ones (after the page's last row); none to the newest.
    let (rows, body) = history_page(&console, "/deploys").await;
    assert_eq!(rows, ids(60, 11));
    assert!(
        body.contains(r#"<a href="/deploys?before=11" data-testid="deploy-older">"#),
        "{body}"
    );
    assert!(!body.contains("deploy-newest"));
    // The older page: the last 10, a link back, none further.
    let (rows, body) = history_page(&console, "/deploys?before=11").await;
    assert_eq!(rows, ids(10, 1));
    assert!(
        body.contains(r#"<a href="/deploys" data-testid="deploy-newest">"#),
        "{body}"
    );
    assert!(!body.contains("deploy-older"));
    // Past the oldest: said, with the way back.
    let (rows, body) = history_page(&console, "/deploys?before=1").await;
    assert!(
        rows.is_empty() && body.contains("No older deploys."),
        "{body}"
    );
    // A filter is kept across pages; a short page has no older link.
    let (rows, body) = history_page(&console, "/deploys?outcome=failed").await;
    assert_eq!(rows, ["60", "50", "40", "30", "20", "10"]);
    assert!(!body.contains("deploy-older"));
    let (rows, _) = history_page(&console, "/deploys?outcome=succeeded&before=20").await;
    assert_eq!(
        rows,
        ids(19, 11).into_iter().chain(ids(9, 1)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn start_and_graceful_stop_are_recorded_in_the_audit_log() {
    let mut console = Console::start(bin(), &[]).await;
    let status = console.stop();
    assert!(
        status.success(),
        "SIGTERM ends the console cleanly, got {status}"
    );
    let store = Store::open(&console.data_dir.path().join("data"))
        .await
        .unwrap();
    let log = store.audit_log(&Default::default(), 10).await.unwrap();
    let actions: Vec<_> = log
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.outcome))
        .collect();
    // The test bed logs in (through the development IdP) as soon as the console answers.
    assert_eq!(
        actions,
        [
            ("console.stop", "system", AuditOutcome::Ok),
            ("auth.login", "Ada Admin (admin@dev.idp)", AuditOutcome::Ok),
            ("console.start", "system", AuditOutcome::Ok),
        ]
    );
    assert!(
        log[2].detail.starts_with("listening on 127.0.0.1:"),
        "{}",
        log[2].detail
    );
}

/// Arguments and environment of one start, and what its error output must contain.
type StartCase<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, String);

#[test]
fn bad_configuration_stops_the_start_with_a_message_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad_key = dir.path().join("bad-key.toml");
    std::fs::write(
        &bad_key,
        "listen = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n",
    )
    .unwrap();
    let bad_key = bad_key.display().to_string();
    let missing = dir.path().join("missing.toml").display().to_string();
    let cases: Vec<StartCase> = vec![
        (
            vec!["serve", "--config", &missing],
            vec![],
            format!("epsm-ops: configuration error: configuration file {missing}: not found"),
        ),
        (
            vec!["serve", "--config", &bad_key],
            vec![],
            "epsm-ops: configuration error: unknown field: found `listen_adress`".into(),
        ),
        (
            vec!["serve"],
            vec![("EPSM_OPS_PROJECT_DIR", "/nonexistent/epsm")],
            "epsm-ops: configuration error: `project.dir` = \"/nonexistent/epsm\": is not an existing directory; \
             expected the compose project directory (e.g. /opt/epsm)"
                .into(),
        ),
        (
            vec!["serve"],
            vec![("EPSM_OPS_DOCKER_HOST", "docker.sock")],
            "epsm-ops: configuration error: `docker.host` = \"docker.sock\": unsupported scheme".into(),
        ),
    ];
    for (args, env, want) in cases {
        let out = run_console(bin(), &args, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains(&want),
            "{args:?} {env:?}:\n got: {stderr}\nwant: {want}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The mode bits of `path` (without the file type).
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[tokio::test]
async fn private_files_are_the_owners_alone_and_a_looser_data_directory_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut console = Console::start(bin(), &[]).await;
    let data = console.data_path();
    // The test bed has logged in: the store holds a session by now.
    let expected = [
        ("", 0o700),
        ("epsm-ops.sqlite", 0o600),
        ("epsm-ops.sqlite-wal", 0o600),
        ("epsm-ops.sqlite-shm", 0o600),
        ("saml", 0o700),
        ("saml/sp.key", 0o600),
        ("saml/sp.crt", 0o600),
        ("saml/dev-idp.key", 0o600),
        ("fingerprint.key", 0o600),
        ("backups", 0o700),
        ("backups/.lock", 0o600),
    ];
    for (path, want) in expected {
        assert_eq!(
            mode(&data.join(path)),
            want,
            "{path}: {:o}",
            mode(&data.join(path))
        );
    }
    assert!(console.stop().success());
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = console.command(&["backup"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is open to other local users (mode 0755)",
            data.display()
        )) && stderr.contains(&format!("chmod 700 {}", data.display())),
        "{stderr}"
    );
    // A dump made readable by others is found too.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dump = data.join("backups/epsm-20261201T000000Z-1.dump");
    std::fs::write(&dump, "x").unwrap();
    std::fs::set_permissions(&dump, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = console.command(&["backup"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("holds a database dump"), "{stderr}");
}

#[tokio::test]
async fn a_slow_or_oversized_request_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let header_timeout = std::time::Duration::from_secs(2);
    let seconds = header_timeout.as_secs().to_string();
    let console = Console::start(
        bin(),
        &[("EPSM_OPS_LIMITS_HEADER_READ_TIMEOUT_SECS", seconds.as_str())],
    )
    .await;
    // A client that starts a request and never finishes its headers is disconnected.
    let address = console.url.trim_start_matches("http://").to_string();
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // Bound, not target: the console closes after the header timeout; an unbounded server never does.
    let bound = end2end::with_margin(header_timeout);
    let read = tokio::time::timeout(bound, slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {bound:?}"
    );
    // A body over the limit (1 MiB by default) is refused before anything reads it: the answer
    // comes to the headers alone (a client still sending the body may find the connection closed).
    let mut big = tokio::net::TcpStream::connect(&address).await.unwrap();
    big.write_all(
        format!(
            "POST /api/deploy_list HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            2 * 1024 * 1024
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = [0u8; 12];
    tokio::time::timeout(bound, big.read_exact(&mut answer))
        .await
        .expect("an answer to the headers")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
}
