//! Backup benchmark (run by scripts/bench.sh; prints table rows, asserts nothing but success): a
//! database of about 1 GB (pgbench tables) backed up by the release console, against a raw
//! `docker exec database pg_dump -Fc > file` in the same run, and the console's resident memory
//! sampled every 20 ms while it streams the dump (it must not grow with the dump). Then the archive
//! restored through the console (the whole stack up, as a restore stops and checks its writers)
//! against `docker exec -i database pg_restore ... < file` by hand, with the console's memory.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use app::backup::{Backup, BackupOutcome};
use end2end::bench::{row, rss_kib};
use end2end::{Console, StackProject, console_binary};

/// pgbench scale: about 15 MB of tables and indexes per unit (70: ~1.1 GB); `EPSM_BENCH_SCALE` to
/// try another size.
fn scale() -> String {
    std::env::var("EPSM_BENCH_SCALE").unwrap_or_else(|_| "70".into())
}

/// The restore by hand, as the console runs it (one transaction, over the running database).
fn raw_restore(project: &StackProject, file: &std::path::Path) -> Duration {
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker exec -i {}-database-1 pg_restore --clean --if-exists --single-transaction \
             --no-owner -U epsm_user -d epsm_db < {}",
            project.name,
            file.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    started.elapsed()
}

/// Samples the console's VmRSS every 20 ms until the returned flag is set; the thread answers the
/// peak.
fn sample_rss(pid: u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let done = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let done = done.clone();
        move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        }
    });
    (done, sampler)
}

/// A restore of backup `id` through the console, to its end: the whole run, its restore step, the
/// console's peak RSS.
async fn console_restore(console: &Console, id: i64) -> (Duration, Duration, u64) {
    let (done, sampler) = sample_rss(console.pid());
    let started = Instant::now();
    let (status, body) = console
        .call(
            "backup_restore",
            &[("id", &id.to_string()), ("confirm", "epsm_db")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let run = body.clone();
    let finished = loop {
        let (_, body) = console.call("deploy_get", &[("id", &run)]).await;
        let d: app::deploy::Deploy = serde_json::from_str(&body).unwrap();
        if d.outcome != app::deploy::DeployOutcome::Running {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    assert_eq!(
        finished.outcome,
        app::deploy::DeployOutcome::Succeeded,
        "{}",
        finished.summary
    );
    let step = finished
        .steps
        .iter()
        .find(|s| s.name == "restore")
        .and_then(|s| s.duration_ms)
        .unwrap();
    (wall, Duration::from_millis(step), peak)
}

/// The raw dump as an operator types it; returns the time and the file's size.
fn raw_dump(project: &StackProject, out: &std::path::Path) -> (Duration, u64) {
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker exec {}-database-1 pg_dump -U epsm_user -d epsm_db -Fc > {}",
            project.name,
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    (started.elapsed(), std::fs::metadata(out).unwrap().len())
}

async fn console_dump(console: &Console, format: &str) -> (Duration, Backup, u64, u64) {
    let before = rss_kib(console.pid());
    let (done, sampler) = sample_rss(console.pid());
    let started = Instant::now();
    let (status, body) = console.call("backup_start", &[("format", format)]).await;
    let wall = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    assert_eq!(status, 200, "{body}");
    let backup: Backup = serde_json::from_str(&body).unwrap();
    assert_eq!(backup.outcome, BackupOutcome::Succeeded);
    (wall, backup, before, peak)
}

#[tokio::main]
async fn main() {
    let scale = scale();
    let project = StackProject::new("epsmbenchbackup");
    project.compose_ok(&["build", "database"]);
    project.up_wait(&["database"]);
    project.compose_ok(&[
        "exec",
        "-T",
        "database",
        "pgbench",
        "-i",
        "-q",
        "-s",
        &scale,
        "-U",
        "epsm_user",
        "epsm_db",
    ]);
    let db_bytes: u64 = project
        .psql("epsm_db", "SELECT pg_database_size('epsm_db')")
        .parse()
        .unwrap();
    let console = Console::for_stack(
        &console_binary(),
        &project,
        &[("EPSM_OPS_BACKUPS_KEEP_LAST", "1")],
    )
    .await;
    let scratch = tempfile::tempdir().unwrap();
    let raw_file = scratch.path().join("raw.dump");

    // Warm the page cache and the database once, then alternate, two rounds each; best of each.
    raw_dump(&project, &raw_file);
    let mut raw_best = Duration::MAX;
    let mut console_best = Duration::MAX;
    let mut raw_size = 0;
    let mut archive = 0;
    let (mut rss_before, mut rss_peak) = (0, 0);
    let mut last = 0;
    for _ in 0..2 {
        let (t, size) = raw_dump(&project, &raw_file);
        raw_best = raw_best.min(t);
        raw_size = size;
        let (t, backup, before, peak) = console_dump(&console, "Custom").await;
        console_best = console_best.min(t);
        archive = backup.size_bytes.unwrap_or(0);
        last = backup.id;
        rss_before = rss_before.max(before);
        rss_peak = rss_peak.max(peak);
    }
    // Restore: the rest of the stack up (a restore stops its writers and checks the stack), then the
    // same archive by hand and through the console, alternating; best of each.
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    let mut by_hand = Duration::MAX;
    let (mut restore_run, mut restore_step, mut restore_peak) = (Duration::MAX, Duration::MAX, 0);
    for _ in 0..2 {
        by_hand = by_hand.min(raw_restore(&project, &raw_file));
        let (run, step, peak) = console_restore(&console, last).await;
        restore_run = restore_run.min(run);
        restore_step = restore_step.min(step);
        restore_peak = restore_peak.max(peak);
    }

    // Plain SQL of the same database: hundreds of MB pass through the console, not a compressed 20.
    let (plain_time, plain, plain_before, plain_peak) = console_dump(&console, "Plain").await;

    // Where the console's time went (its log line per backup), for the reader of the bench output.
    for line in console
        .log()
        .lines()
        .filter(|l| l.contains("backup written"))
    {
        eprintln!("{line}");
    }
    let mb = |b: u64| b as f64 / 1e6;
    let how = format!(
        "pgbench -s {scale}: database {:.0} MB (pg_database_size), archive {:.0} MB; best of 2",
        mb(db_bytes),
        mb(archive)
    );
    row(
        "backup ~1 GB, console",
        format!(
            "{:.1} s ({:.0} MB/s)",
            console_best.as_secs_f64(),
            mb(db_bytes) / console_best.as_secs_f64()
        ),
        &format!("{how}; click to verified file (pg_restore --list), release console"),
    );
    row(
        "backup ~1 GB, raw docker exec pg_dump",
        format!(
            "{:.1} s ({:.0} MB/s)",
            raw_best.as_secs_f64(),
            mb(db_bytes) / raw_best.as_secs_f64()
        ),
        &format!(
            "docker exec database pg_dump -Fc > file, same run; {:.0} MB written",
            mb(raw_size)
        ),
    );
    row(
        "backup console / raw",
        format!(
            "{:.2}x",
            console_best.as_secs_f64() / raw_best.as_secs_f64()
        ),
        "time ratio, same database, same disk",
    );
    row(
        "server RSS during backup",
        format!(
            "{} MiB peak (before: {} MiB)",
            rss_peak / 1024,
            rss_before / 1024
        ),
        "VmRSS of the console sampled every 20 ms while it streams the dump",
    );
    row(
        "restore ~1 GB, console's restore step",
        format!("{:.1} s", restore_step.as_secs_f64()),
        &format!(
            "{how}; pg_restore --single-transaction fed through the Docker API exec, from the step's \
             recorded time"
        ),
    );
    row(
        "restore ~1 GB, by hand",
        format!("{:.1} s", by_hand.as_secs_f64()),
        "docker exec -i database pg_restore --clean --if-exists --single-transaction --no-owner < file, same run",
    );
    row(
        "restore step / by hand",
        format!("{:.2}x", restore_step.as_secs_f64() / by_hand.as_secs_f64()),
        "time ratio, same archive, same database",
    );
    row(
        "restore ~1 GB, whole console run",
        format!("{:.1} s", restore_run.as_secs_f64()),
        "click to verified: check, safety backup of the same database, drain, maintenance page, writers \
         stopped, restore, writers started, wait for healthy, reopen, verify",
    );
    row(
        "server RSS during restore",
        format!("{} MiB peak", restore_peak / 1024),
        "VmRSS sampled every 20 ms through the whole restore run (the archive is streamed, never held)",
    );
    row(
        "server RSS during plain SQL backup",
        format!(
            "{} MiB peak (before: {} MiB)",
            plain_peak / 1024,
            plain_before / 1024
        ),
        &format!(
            "same database as plain SQL: {:.0} MB through the console in {:.1} s",
            mb(plain.size_bytes.unwrap_or(0)),
            plain_time.as_secs_f64()
        ),
    );
}
