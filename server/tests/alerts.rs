//! Alerts through the real server, to real receivers on loopback: a signed webhook and a Teams
//! endpoint (an HTTP server that keeps what it is sent), and aiosmtpd for mail.
//!
//! - Against a private EPSM-like stack on the real engine (grace 0): a deploy that restarts every
//!   service says only its own result; redis stopped is one alert, started again one recovery.
//! - Without a stack: test messages to mail, Teams and a webhook that is down; a backup that fails is
//!   queued for the webhook, waits in the outbox while it is down and is delivered by the next
//!   console on the same store once it is back.

use std::path::Path;
use std::time::{Duration, Instant};

use app::alerts::Delivery;
use app::alerts::view::Notifications;
use app::deploy::{DeployEvent, DeployOutcome};
use end2end::receiver::Receiver;
use end2end::{
    Console, HEALTH_INTERVAL, StackProject, private_file as private, smtp::SmtpServer,
    stack_secrets, with_margin,
};

mod runs;

/// A queued message wakes the console's sender at once (`Store::enqueue_alert`): delivering it has
/// nothing to wait for but the machine (and a receiver on loopback).
const SENT_WITHIN: Duration = with_margin(Duration::ZERO);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

/// `sha256=<hex>` of HMAC-SHA256, computed with OpenSSL (not the console's code).
fn hmac(secret: &str, body: &[u8]) -> String {
    let key = openssl::pkey::PKey::hmac(secret.as_bytes()).unwrap();
    let mut signer =
        openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &key).unwrap();
    format!(
        "sha256={}",
        hex::encode(signer.sign_oneshot_to_vec(body).unwrap())
    )
}

/// The Notifications page's data: the outbox, newest first.
async fn notifications(console: &Console) -> Notifications {
    let (status, body) = console.call("notifications", &[]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The outbox's titles, oldest first.
async fn outbox(console: &Console) -> Vec<String> {
    let mut titles: Vec<String> = notifications(console)
        .await
        .deliveries
        .into_iter()
        .map(|d| d.title)
        .collect();
    titles.reverse();
    titles
}

/// Waits until the health monitor has run `more` rounds after now: whatever those rounds saw has
/// been through the alert rules (each round's report is watched as it is published).
async fn rounds_pass(console: &Console, more: u64) {
    let name = "epsm_ops_health_rounds_total";
    let target = console.metric(name).await + more;
    let deadline = Instant::now() + with_margin(HEALTH_INTERVAL * more as u32);
    while console.metric(name).await < target {
        assert!(
            Instant::now() < deadline,
            "{more} health rounds did not run"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the outbox holds a title ending with `end`, within `bound`.
async fn until_queued(console: &Console, end: &str, bound: Duration) {
    let deadline = Instant::now() + bound;
    loop {
        let titles = outbox(console).await;
        if titles.iter().any(|t| t.ends_with(end)) {
            return;
        }
        assert!(Instant::now() < deadline, "no {end:?} in {titles:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every row of the outbox is delivered.
async fn until_all_delivered(console: &Console) -> Vec<Delivery> {
    let deadline = Instant::now() + SENT_WITHIN;
    loop {
        let rows = notifications(console).await.deliveries;
        if rows.iter().all(|d| d.delivered_at.is_some()) {
            return rows;
        }
        assert!(Instant::now() < deadline, "not all delivered: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_deploy_says_only_its_result_a_stopped_service_one_alert_and_its_recovery_one() {
    let hook = Receiver::start().await;
    let url = &hook.url;
    let secrets = tempfile::tempdir().unwrap();
    // The machine's own disk is not these tests' subject: `disk_free_percent = 0`.
    let url_file = private(secrets.path(), "hook.url", &format!("{url}/hook/t0ken"));
    let secret_file = private(secrets.path(), "hook.secret", "s3cret-of-the-hook\n");
    let config = private(
        secrets.path(),
        "epsm-ops.toml",
        &format!(
            "[alerts]\ngrace_secs = 0\ndisk_free_percent = 0\n[[alerts.channels]]\nname = \"hook\"\nkind = \"webhook\"\n\
             url_file = {url_file:?}\nsecret_file = {secret_file:?}\n"
        ),
    );
    let project = StackProject::new("epsmalerts");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    let console =
        Console::for_stack(bin(), &project, &[("EPSM_OPS_CONFIG", config.as_str())]).await;

    // A healthy stack: nothing to say.
    rounds_pass(&console, 2).await;
    assert_eq!(outbox(&console).await, Vec::<String>::new());

    // A deploy restarts every service: its result is the one message.
    let quick = [("options[no_pull]", "true"), ("options[skip_seed]", "true")];
    let id = runs::start(&console, &quick).await;
    let (_, events) = runs::follow_to_end(&console, id).await;
    assert!(
        matches!(
            events.last(),
            Some(DeployEvent::Finished {
                outcome: DeployOutcome::Succeeded,
                ..
            })
        ),
        "{}",
        runs::lines(&events)
    );
    rounds_pass(&console, 2).await;
    assert_eq!(
        outbox(&console).await,
        [format!("{}: deploy #{id} succeeded", project.name)]
    );

    // Redis stopped: one alert, at the first round that sees it (grace 0). The worker, which needs
    // redis, may go down with it: its own one alert.
    project.compose_ok(&["stop", "redis"]);
    until_queued(&console, ": redis is down", with_margin(HEALTH_INTERVAL)).await;
    rounds_pass(&console, 3).await;
    let titles = outbox(&console).await;
    let count = |titles: &[String], end: &str| titles.iter().filter(|t| t.ends_with(end)).count();
    assert_eq!(count(&titles, ": redis is down"), 1, "{titles:?}");
    assert_eq!(
        count(&titles, " is down") + 1,
        titles.len(),
        "only the deploy and services down: {titles:?}"
    );

    // Started again: one recovery once its healthcheck passes.
    project.compose_ok(&["start", "redis"]);
    until_queued(
        &console,
        ": redis is healthy again",
        with_margin(project.verdict_bound("redis")),
    )
    .await;
    rounds_pass(&console, 3).await;
    let titles = outbox(&console).await;
    assert_eq!(count(&titles, ": redis is healthy again"), 1, "{titles:?}");
    assert_eq!(count(&titles, ": redis is down"), 1, "{titles:?}");

    // Every message reached the webhook, signed with the channel's secret (its file's newline
    // trimmed), and the deploy's with who, how long and a link to its page.
    let rows = until_all_delivered(&console).await;
    let got = hook.received();
    assert_eq!(got.len(), rows.len(), "{got:?}");
    for r in &got {
        assert_eq!(r.path, "/hook/t0ken");
        assert_eq!(
            r.signature.as_deref(),
            Some(hmac("s3cret-of-the-hook", &r.body).as_str())
        );
    }
    let deploy = &got[0].json();
    assert_eq!(deploy["kind"], "deploy_ended");
    assert_eq!(
        deploy["link"],
        format!("{}/deploys/{id}", console.url.trim_end_matches('/'))
    );
    let facts = deploy["facts"].to_string();
    assert!(
        facts.contains("admin@dev.idp") && facts.contains("took"),
        "{facts}"
    );
    let all: String = got
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    for secret in stack_secrets() {
        assert!(
            !all.contains(&secret),
            "a message carries a secret of the env file"
        );
    }
}

#[tokio::test]
async fn test_messages_reach_mail_and_teams_and_a_queued_alert_survives_a_restart_until_its_receiver_is_back()
 {
    let mut smtp = SmtpServer::start();
    let teams = Receiver::start().await;
    let teams_url = &teams.url;
    // The webhook's receiver is down: its port is taken now and served only later.
    let hook_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hook/t0ken", hook_listener.local_addr().unwrap());
    drop(hook_listener);

    let secrets = tempfile::tempdir().unwrap();
    let teams_file = private(
        secrets.path(),
        "teams.url",
        &format!("{teams_url}/workflows/sig=abc"),
    );
    let hook_file = private(secrets.path(), "hook.url", &hook_url);
    let secret_file = private(secrets.path(), "hook.secret", "s3cret-of-the-hook");
    let config = private(
        secrets.path(),
        "epsm-ops.toml",
        &format!(
            "[alerts]\ngrace_secs = 3600\ndisk_free_percent = 0\n\
             [[alerts.channels]]\nname = \"mail\"\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\n\
             smtp_port = {port}\ntls = \"none\"\nfrom = \"epsm-ops@chalmers.example\"\n\
             to = [\"epsm-team@chalmers.example\"]\n\
             [[alerts.channels]]\nname = \"teams\"\nkind = \"teams\"\nurl_file = {teams_file:?}\n\
             [[alerts.channels]]\nname = \"hook\"\nkind = \"webhook\"\nevents = [\"backup_failed\"]\n\
             url_file = {hook_file:?}\nsecret_file = {secret_file:?}\n",
            port = smtp.port
        ),
    );
    // No stack runs for this project: a backup fails (no database container).
    let env = [("EPSM_OPS_CONFIG", config.as_str())];
    let mut console = Console::start(bin(), &env).await;

    // The page lists the channels, each URL as its scheme and host only.
    let page = notifications(&console).await;
    let targets: Vec<(String, String)> = page
        .channels
        .iter()
        .map(|c| (c.name.clone(), c.target.clone()))
        .collect();
    assert_eq!(targets.len(), 3);
    assert!(
        targets[0]
            .1
            .starts_with("to epsm-team@chalmers.example via 127.0.0.1:"),
        "{targets:?}"
    );
    assert!(
        targets[1].1.starts_with(&format!("{teams_url}/… (in ")),
        "{targets:?}"
    );
    assert!(
        !format!("{targets:?}").contains("sig=abc") && !format!("{targets:?}").contains("t0ken")
    );

    // A test message per channel: mail and Teams delivered, the webhook not (given up at once).
    let test = |channel: &'static str| {
        let console = &console;
        async move {
            let (status, body) = console
                .call("notifications_test", &[("channel", channel)])
                .await;
            assert_eq!(status, 200, "{body}");
            serde_json::from_str::<Delivery>(&body).unwrap()
        }
    };
    let mail = test("mail").await;
    assert_eq!(mail.state(), "delivered", "{mail:?}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let sent = &mails[0];
    assert!(
        sent.contains("Subject: epsm: a test message from EPSM Ops"),
        "{sent}"
    );
    assert!(sent.contains("To: epsm-team@chalmers.example"), "{sent}");
    assert!(
        sent.contains("Content-Type: text/plain") && sent.contains("Content-Type: text/html"),
        "{sent}"
    );
    // Quoted-printable: lines end in "=" where they were folded.
    let unfolded = sent.replace("=\n", "").replace("=3D", "=");
    assert!(
        unfolded.contains("(admin@dev.idp) sent this from the Notifications page"),
        "{sent}"
    );
    assert!(
        unfolded.contains("<a href=\"http://127.0.0.1:"),
        "a link in the HTML part: {sent}"
    );

    let card = test("teams").await;
    assert_eq!(card.state(), "delivered", "{card:?}");
    let received = teams.received();
    assert_eq!(received[0].path, "/workflows/sig=abc");
    let body = received[0].json();
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(attachment["content"]["type"], "AdaptiveCard");
    assert_eq!(
        attachment["content"]["body"][0]["text"],
        "epsm: a test message from EPSM Ops"
    );

    let down = test("hook").await;
    assert_eq!(down.state(), "given up", "{down:?}");
    assert!(
        down.last_error.starts_with("the receiver did not answer"),
        "{down:?}"
    );
    assert!(!down.last_error.contains("t0ken"), "{down:?}");
    let (status, body) = console
        .call("notifications_test", &[("channel", "nope")])
        .await;
    assert_eq!(status, 404, "{body}");

    // Each test is in the audit log, with its outcome.
    let audit = runs::audit_actions(&console).await;
    let tests: Vec<&(String, String)> = audit
        .iter()
        .filter(|(a, _)| a == "notifications.test")
        .collect();
    assert_eq!(tests.len(), 3, "{audit:?}");

    // A backup fails: its alert goes to every channel that takes it, the webhook (down) among them.
    let (status, body) = console.call("backup_start", &[]).await;
    assert_ne!(
        status, 200,
        "the backup should fail without a database: {body}"
    );
    until_queued(&console, "backup #1 failed", with_margin(Duration::ZERO)).await;
    let waiting = |rows: &[Delivery]| {
        rows.iter()
            .find(|d| d.channel == "hook" && d.title.ends_with("backup #1 failed"))
            .cloned()
            .expect("the backup's alert for the webhook")
    };
    let deadline = Instant::now() + SENT_WITHIN;
    let row = loop {
        let row = waiting(&notifications(&console).await.deliveries);
        if row.attempts > 0 {
            break row;
        }
        assert!(Instant::now() < deadline, "never attempted: {row:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(row.state(), "retrying", "{row:?}");
    assert!(smtp.mails().iter().any(|m| m.contains("backup #1 failed")));
    smtp.stop();

    // The console stops; the webhook's receiver comes back; the next console on the same store
    // delivers the waiting alert at its start (not after the backoff).
    let data = console.data_path().display().to_string();
    console.stop();
    let listener = tokio::net::TcpListener::bind(
        hook_url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap(),
    )
    .await
    .unwrap();
    let hook = Receiver::on(listener);
    let mut again_env = env.to_vec();
    again_env.push(("EPSM_OPS_DATA_DIR", data.as_str()));
    let again = Console::start(bin(), &again_env).await;
    let deadline = Instant::now() + with_margin(Duration::ZERO);
    while hook.received().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the waiting alert was not delivered:\n{}",
            again.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = hook.received().remove(0);
    assert_eq!(got.path, "/hook/t0ken");
    assert_eq!(got.json()["kind"], "backup_failed");
    assert_eq!(
        got.signature.as_deref(),
        Some(hmac("s3cret-of-the-hook", &got.body).as_str())
    );
    let row = waiting(&notifications(&again).await.deliveries);
    assert_eq!(row.state(), "delivered", "{row:?}");
    assert_eq!(row.attempts, 2, "{row:?}");
}
