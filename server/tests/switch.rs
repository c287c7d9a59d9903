//! The deploy's switch against the real engine and a private EPSM-like stack, through the real server:
//! built first, EPSM answers until the switch and a maintenance page answers during it (the guide's
//! order is offline for the build too); the Celery worker is drained before the switch, so a running
//! simulation finishes, or is named when the drain times out; a deploy that stops before the switch
//! gives the worker its queues back. Every deploy's downtime, as the console measured it, is kept.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::deploy::{Deploy, DeployEvent, DeployOutcome, DeployStep};
use chrono::{DateTime, Utc};
use end2end::{Console, SseReader, StackProject, with_margin};

/// One stack test at a time in this binary (the nextest group bounds the rest).
static ONE_STACK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

/// What the test's own probe of the public URL got.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Ok,
    /// The maintenance page: 503, `Retry-After`, the console's header and its words.
    Maintenance,
    /// No connection, or another status.
    Down,
}

/// A probe's bound, as the console's own downtime probe has it: a slower answer counts as not
/// answering (it decides a probe's verdict, not how long the test waits).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the probe got, and when.
type Seens = Arc<Mutex<Vec<(DateTime<Utc>, Seen)>>>;

/// Probes `url` every 100 ms, as a user would, until dropped.
struct Prober {
    seen: Seens,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    fn start(url: String) -> Prober {
        let seen: Seens = Arc::default();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let client = reqwest::Client::builder()
                    .timeout(PROBE_TIMEOUT)
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                loop {
                    let at = Utc::now();
                    let got = match client.get(&url).send().await {
                        Ok(r) if r.status() == 200 => Seen::Ok,
                        Ok(r) if r.status() == 503 => {
                            let retry = r.headers().contains_key("retry-after");
                            let marked = r.headers().contains_key("x-epsm-ops-maintenance");
                            let body = r.text().await.unwrap_or_default();
                            if retry && marked && body.contains("EPSM is being updated") {
                                Seen::Maintenance
                            } else {
                                Seen::Down
                            }
                        }
                        _ => Seen::Down,
                    };
                    seen.lock().unwrap().push((at, got));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Prober { seen, task }
    }

    fn between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, s)| *s)
            .collect()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(console: &Console, form: &[(&str, &str)]) -> i64 {
    let (status, body) = console.call("deploy_start", form).await;
    assert_eq!(status, 200, "deploy_start: {body}");
    body.parse().unwrap_or_else(|_| panic!("an id: {body}"))
}

/// How long a deploy of `project` may take: every service settling after `up`, a drain of up to
/// `drain`, with margin (the builds and in-container steps of this stack take seconds).
fn whole_deploy(project: &StackProject, drain: Duration) -> Duration {
    project.stack_settle_bound() + with_margin(drain)
}

/// Follows deploy `id` until `until` holds for an event, or to its end (each event within `bound`);
/// the log so far.
async fn follow(
    console: &Console,
    id: i64,
    bound: Duration,
    until: impl Fn(&DeployEvent) -> bool,
) -> String {
    let mut stream = SseReader::open(
        console.client(),
        &format!("{}/api/deploys/{id}/events", console.url),
    )
    .await;
    let mut log = String::new();
    while let Some(data) = stream.next_data(bound).await {
        let event: DeployEvent = serde_json::from_str(&data).unwrap();
        if let DeployEvent::Line(l) = &event {
            log.push_str(&l.text);
            log.push('\n');
        }
        if until(&event) || matches!(event, DeployEvent::Finished { .. }) {
            break;
        }
    }
    log
}

/// Runs a deploy with `form` to its end (within `bound`): the deploy as the history keeps it, and its
/// log.
async fn deploy_to_end(
    console: &Console,
    bound: Duration,
    form: &[(&str, &str)],
) -> (Deploy, String) {
    let id = start(console, form).await;
    let log = follow(console, id, bound, |_| false).await;
    (get(console, id).await, log)
}

async fn get(console: &Console, id: i64) -> Deploy {
    let (status, body) = console.call("deploy_get", &[("id", &id.to_string())]).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn step<'a>(d: &'a Deploy, name: &str) -> &'a DeployStep {
    d.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}: {:?}", d.steps))
}

/// When a step began and ended.
fn span(d: &Deploy, name: &str) -> (DateTime<Utc>, DateTime<Utc>) {
    let s = step(d, name);
    let began = s.started_at.expect("it ran");
    let ms = s.duration_ms.expect("it ended") as i64;
    (began, began + chrono::Duration::milliseconds(ms))
}

const FORM: [(&str, &str); 2] = [("options[no_pull]", "true"), ("options[skip_seed]", "true")];

#[tokio::test]
async fn built_first_epsm_serves_through_the_build_and_a_maintenance_page_answers_during_the_switch()
 {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmswitch");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    let console = Console::for_stack(bin(), &project, &[]).await;
    let prober = Prober::start(format!("http://127.0.0.1:{}/", project.nginx_port));

    // Built first.
    let bound = whole_deploy(&project, Duration::ZERO);
    let (d, log) = deploy_to_end(&console, bound, &FORM).await;
    assert_eq!(d.outcome, DeployOutcome::Succeeded, "{log}");
    let (build_from, build_to) = span(&d, "build");
    let (switch_from, _) = span(&d, "maintenance page");
    let (_, reopened) = span(&d, "reopen");
    let before_switch = prober.between(d.started_at, switch_from);
    assert!(
        before_switch.len() >= 5 && !prober.between(build_from, build_to).is_empty(),
        "probes ran through the build: {before_switch:?}"
    );
    assert!(
        before_switch.iter().all(|s| *s == Seen::Ok),
        "EPSM answered 200 until the switch: {before_switch:?}"
    );
    let during = prober.between(switch_from, reopened);
    assert!(
        during.contains(&Seen::Maintenance),
        "the maintenance page answered during the switch: {during:?}\n{log}"
    );
    assert!(
        log.contains("the maintenance page answers at http://127.0.0.1:"),
        "{log}"
    );
    assert!(log.contains("the maintenance page stopped"), "{log}");
    let downtime = d.downtime.clone().expect("the downtime is measured");
    assert!(
        downtime.total_ms > 0 && downtime.maintenance_ms > 0,
        "{downtime:?}"
    );
    assert!(
        (downtime.total_ms as i64) < (reopened - switch_from).num_milliseconds() + 3000,
        "offline only around the switch: {downtime:?}"
    );
    assert!(log.contains("downtime: http://127.0.0.1:"), "{log}");
    // Once verified, EPSM answers again; the stand-in is gone.
    let after = prober.between(span(&d, "verify").1, Utc::now());
    assert!(after.iter().all(|s| *s == Seen::Ok), "{after:?}");
    let stand_in = std::process::Command::new("docker")
        .args(["ps", "-a", "--quiet", "--filter"])
        .arg(format!("label=epsm-ops.maintenance={}", project.name))
        .output()
        .unwrap();
    assert!(stand_in.status.success());
    assert_eq!(
        String::from_utf8_lossy(&stand_in.stdout).trim(),
        "",
        "the stand-in is removed"
    );
    let history = console.get_text("/deploys").await;
    assert!(
        history.contains("data-testid=\"deploy-offline\""),
        "{history}"
    );

    // The guide's order: offline for the build too.
    let (guide, log) = deploy_to_end(
        &console,
        bound,
        &[FORM[0], FORM[1], ("options[stop_first]", "true")],
    )
    .await;
    assert_eq!(guide.outcome, DeployOutcome::Succeeded, "{log}");
    let (build_from, build_to) = span(&guide, "build");
    let during_build = prober.between(build_from, build_to);
    assert!(
        !during_build.is_empty() && during_build.iter().all(|s| *s != Seen::Ok),
        "stopped first, EPSM does not answer 200 while it builds: {during_build:?}"
    );
    let guide_downtime = guide.downtime.clone().expect("measured");
    assert!(
        guide_downtime.total_ms as i64 >= (build_to - build_from).num_milliseconds(),
        "{guide_downtime:?}"
    );
    let steps = |d: &Deploy| {
        d.steps
            .iter()
            .map(|s| {
                format!(
                    "{} {:.1} s",
                    s.name,
                    s.duration_ms.unwrap_or(0) as f64 / 1000.0
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "built first: {}\n  {}\nthe guide's order: {}\n  {}",
        downtime.describe(),
        steps(&d),
        guide_downtime.describe(),
        steps(&guide)
    );
}

#[tokio::test]
async fn a_running_simulation_finishes_before_the_switch_or_is_named_when_the_drain_times_out() {
    let _turn = ONE_STACK_AT_A_TIME.lock().await;
    let project = StackProject::new("epsmdrain");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    project.manage(&["migrate", "--noinput"]);
    // A simulation runs for 20 s, started just before the deploy.
    let console = Console::for_stack(bin(), &project, &[]).await;
    let long_run = Duration::from_secs(20);
    project
        .start_simulation("long-run", long_run.as_secs())
        .await;
    let (d, log) = deploy_to_end(&console, whole_deploy(&project, long_run), &FORM).await;
    assert_eq!(d.outcome, DeployOutcome::Succeeded, "{log}");
    assert!(
        log.lines().any(|l| l.starts_with("waiting for ")
            && l.contains("simulations.tasks.simulate[")
            && l.contains("(running ")),
        "{log}"
    );
    assert!(
        log.contains("no task running: the worker is drained"),
        "{log}"
    );
    assert_eq!(project.simulation_status("long-run"), "finished", "{log}");
    let (drain_from, drain_to) = span(&d, "drain tasks");
    assert!(
        drain_to - drain_from >= chrono::Duration::seconds(5),
        "the drain waited for the simulation: {drain_from} .. {drain_to}"
    );

    // With nothing running the drain is short, and with a 5 s bound the switch goes ahead.
    drop(console);
    let drain_timeout = Duration::from_secs(5);
    let console = Console::for_stack(
        bin(),
        &project,
        &[(
            "EPSM_OPS_DEPLOY_DRAIN_TIMEOUT_SECS",
            &drain_timeout.as_secs().to_string(),
        )],
    )
    .await;
    project.start_simulation("cut-short", 60).await;
    let (d, log) = deploy_to_end(&console, whole_deploy(&project, drain_timeout), &FORM).await;
    assert_eq!(d.outcome, DeployOutcome::Succeeded, "{log}");
    assert!(
        log.contains(&format!(
            "drain timeout ({} s): the switch interrupts simulations.tasks.simulate[",
            drain_timeout.as_secs()
        )),
        "{log}"
    );
    assert_eq!(
        project.simulation_status("cut-short"),
        "running",
        "interrupted, never finished"
    );

    // A deploy cancelled while it drains gives the worker its queue back: a new task runs.
    let holds = Duration::from_secs(25);
    project
        .start_simulation("holds-the-drain", holds.as_secs())
        .await;
    let id = start(&console, &FORM).await;
    // Cancelled once the drain says it waits for the task (the worker took no new tasks by then).
    let said = follow(
        &console,
        id,
        whole_deploy(&project, Duration::ZERO),
        |e| matches!(e, DeployEvent::Line(l) if l.text.starts_with("waiting for ")),
    )
    .await;
    assert!(said.contains("takes no new tasks from celery"), "{said}");
    let (code, body) = console
        .call("deploy_cancel", &[("id", &id.to_string())])
        .await;
    assert_eq!(code, 200, "{body}");
    let log = follow(&console, id, whole_deploy(&project, holds), |_| false).await;
    assert_eq!(get(&console, id).await.outcome, DeployOutcome::Cancelled);
    assert!(log.contains("consuming from celery"), "{log}");
    project.simulate("after-the-cancel", 0);
    let takes = project.verdict_bound("celery_worker");
    project
        .until_simulation("holds-the-drain", "finished", holds + takes)
        .await;
    project
        .until_simulation("after-the-cancel", "finished", takes)
        .await;
}
