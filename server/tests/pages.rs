//! Page views read memory: against a running EPSM-like stack, 100 views of every page by a logged-in
//! viewer start no process and write nothing to the console's store. The console runs with `git` and
//! `docker` on its PATH wrapped by scripts that log each start, so every child process it starts
//! (compose, git) is counted from outside; store writes are SQLite's commit hook count (`/metrics`).

use app::health::HealthReport;
use app::store::Store;
use end2end::{Console, HEALTH_INTERVAL, PAGES, SseReader, StackProject, VIEWER, with_margin};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const VIEWS: usize = 100;

/// The first `name` on PATH (the program the console would run).
fn on_path(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").expect("PATH"))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// A directory with `git` and `docker` scripts that append their command line to `log`, then run
/// the real program.
fn counting_wrappers(dir: &Path, log: &Path) {
    for name in ["git", "docker"] {
        let script = dir.join(name);
        fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"{name} $*\" >> '{}'\nexec '{}' \"$@\"\n",
                log.display(),
                on_path(name).display()
            ),
        )
        .unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn started(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn page_views_start_no_process_and_write_nothing() {
    let project = StackProject::new("epsmpages");
    project.compose_ok(&["build"]);
    let up = project.up_wait(&[]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );

    let wrappers = tempfile::tempdir().unwrap();
    let log = wrappers.path().join("started.log");
    counting_wrappers(wrappers.path(), &log);
    let path = format!(
        "{}:{}",
        wrappers.path().display(),
        std::env::var("PATH").unwrap()
    );
    let console = Console::for_stack(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &project,
        // Kept for an hour: the views below must not depend on how fast this machine is.
        &[("PATH", &path), ("EPSM_OPS_PROJECT_RECHECK_SECS", "3600")],
    )
    .await;
    assert!(
        started(&log)
            .iter()
            .any(|l| l.starts_with("docker compose")),
        "the wrappers count: the console's start ran compose through them"
    );
    let viewer = console.login(VIEWER).await.unwrap();
    let logged_in = std::time::Instant::now();
    let view = async |page: &str| {
        let reply = viewer
            .get(format!("{}{page}", console.url))
            .send()
            .await
            .unwrap();
        let status = reply.status();
        let body = reply.text().await.unwrap();
        assert_eq!(status, 200, "{page}: {body}");
        body
    };

    // The audit keys on the containers the health monitor last saw: wait for its report of the
    // running stack (a round starts at most HEALTH_INTERVAL after the last, and publishes at once).
    let mut reports = SseReader::open(&viewer, &format!("{}/api/health/events", console.url)).await;
    let deadline = std::time::Instant::now() + with_margin(HEALTH_INTERVAL);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let data = reports
            .next_data(left)
            .await
            .expect("a report of the stack");
        let report: HealthReport = serde_json::from_str(&data).unwrap();
        if report.round > 0
            && report.services.len() == end2end::STACK_SERVICES.len()
            && report.services.iter().all(|s| s.container.is_some())
        {
            break;
        }
    }
    drop(reports);
    // The first view of each page may read what nothing has read yet (the audit, the change card).
    for page in PAGES {
        view(page).await;
    }
    let before = (
        started(&log),
        console.metric("epsm_ops_store_commits_total").await,
    );
    let queried_before = console.metric("epsm_ops_page_reads_queried_total").await;
    let kept_before = console.metric("epsm_ops_page_reads_kept_total").await;
    // A read within COMMIT_LANDS_WITHIN of a commit (the login's session) is not kept.
    tokio::time::sleep(Store::COMMIT_LANDS_WITHIN).await;
    let views_began = std::time::Instant::now();
    for page in PAGES {
        for _ in 0..VIEWS {
            view(page).await;
        }
    }
    let after = (
        started(&log),
        console.metric("epsm_ops_store_commits_total").await,
    );
    let queried = console.metric("epsm_ops_page_reads_queried_total").await - queried_before;
    let kept = console.metric("epsm_ops_page_reads_kept_total").await - kept_before;
    let new: Vec<&String> = after.0[before.0.len()..].iter().collect();
    assert!(
        new.is_empty(),
        "{} page views started {} processes: {new:#?}",
        PAGES.len() * VIEWS,
        new.len()
    );
    // The session's idle expiry is renewed at most once a minute (one write), nothing else writes.
    let renewals = logged_in.elapsed().as_secs() / 60;
    assert!(
        after.1 - before.1 <= renewals,
        "{} page views wrote to the store {} times ({renewals} idle-expiry renewals allowed)",
        PAGES.len() * VIEWS,
        after.1 - before.1
    );

    // The pages' store reads are read from SQLite once and kept while nothing is committed (a viewer
    // reads four: the Overview's, the history's, the backups' and the audit log's), each for at most
    // PAGE_READ_KEPT_FOR: once per key per that long. (A session renewal's commit would make the
    // reads of the second after it query: then any number may.)
    let keys = 4;
    let windows = views_began.elapsed().as_secs() / Store::PAGE_READ_KEPT_FOR.as_secs() + 1;
    let allowed = match after.1 - before.1 {
        0 => keys * windows,
        _ => u64::MAX,
    };
    assert!(
        queried <= allowed && kept > 0,
        "{} page views queried the store {queried} times (at most {allowed}), answered {kept} from memory",
        PAGES.len() * VIEWS
    );

    // The kept audit is the files' as they are: a change of the env file is seen at the next view,
    // with one audit's processes.
    project.set_env("EPSM_PAGES_PROBE", "changed");
    let body = view("/environment").await;
    assert!(body.contains("EPSM_PAGES_PROBE"), "the new variable shows");
    let audit_again = started(&log).len() - after.0.len();
    assert!(
        audit_again > 0,
        "a changed env file is audited again (compose config)"
    );
}
