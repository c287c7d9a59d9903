//! Alerts benchmark (run by scripts/bench.sh; prints table rows, asserts nothing but arrival): the
//! time from a container dying (`docker compose kill redis`) to a signed webhook on loopback
//! receiving "redis is down", through the release console with `alerts.grace_secs = 0` and the
//! default health interval (5 s): the Docker event starts a round, the round's decision is queued,
//! the queue wakes the sender. Five kills, redis started again (and its recovery received) between.

use std::time::{Duration, Instant};

use end2end::bench::row;
use end2end::receiver::Receiver;
use end2end::{Console, StackProject, console_binary, private_file as private};

const KILLS: usize = 5;

/// Waits (up to 2 min) for a message whose title ends with `end` that arrived after `since`.
async fn arrival(receiver: &Receiver, end: &str, since: Instant) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(got) = receiver
            .received()
            .into_iter()
            .find(|r| r.at >= since && r.title().ends_with(end))
        {
            return got.at;
        }
        assert!(Instant::now() < deadline, "no {end:?} within 2 min");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let receiver = Receiver::start().await;
    let url = format!("{}/hook", receiver.url);
    let secrets = tempfile::tempdir().unwrap();
    let url_file = private(secrets.path(), "hook.url", &url);
    let secret_file = private(secrets.path(), "hook.secret", "bench-secret");
    let config = private(
        secrets.path(),
        "epsm-ops.toml",
        &format!(
            "[alerts]\ngrace_secs = 0\ndisk_free_percent = 0\n[[alerts.channels]]\nname = \"hook\"\n\
             kind = \"webhook\"\nurl_file = {url_file:?}\nsecret_file = {secret_file:?}\n"
        ),
    );
    let project = StackProject::new("epsmbenchalerts");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    let _console = Console::for_stack(
        &console_binary(),
        &project,
        &[
            ("EPSM_OPS_CONFIG", config.as_str()),
            // The default interval, not the test bed's: a round between events comes this often.
            ("EPSM_OPS_HEALTH_INTERVAL_SECS", "5"),
        ],
    )
    .await;
    // A few rounds on the healthy stack first.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let (mut took, mut after_kill) = (Vec::new(), Vec::new());
    for _ in 0..KILLS {
        let killed = Instant::now();
        project.compose_ok(&["kill", "redis"]);
        let returned = Instant::now();
        let alerted = arrival(&receiver, ": redis is down", killed).await;
        took.push(alerted - killed);
        after_kill.push(alerted.saturating_duration_since(returned));
        let started = Instant::now();
        project.compose_ok(&["start", "redis"]);
        arrival(&receiver, ": redis is healthy again", started).await;
        // Let the worker (which needs redis) settle too before the next kill.
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    took.sort();
    after_kill.sort();
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
    let how = format!(
        "docker compose kill redis until a signed webhook on loopback receives \"redis is down\"; \
         grace 0, health interval 5 s, release console; {KILLS} kills"
    );
    row(
        "alert: container death to webhook, median",
        ms(took[KILLS / 2]),
        &how,
    );
    row(
        "alert: container death to webhook, slowest",
        ms(took[KILLS - 1]),
        &how,
    );
    row(
        "alert: after `docker compose kill` returned, median",
        ms(after_kill[KILLS / 2]),
        "the same runs, from the kill command's exit (the container is dead) to the webhook",
    );
}
