//! Pages benchmark (run by scripts/bench.sh; prints table rows, asserts nothing): every page, logged
//! in, under 32 concurrent clients against a running EPSM-like stack, side by side with `/healthz` in
//! the same run as the floor, with the console's own CPU time per reply; the console's RSS before
//! and after; store writes during the load. Real stack, real engine, the release console
//! (`EPSM_CONSOLE_BIN`).

use std::time::Duration;

use end2end::bench::{cpu_time, row, status_kib};
use end2end::{Console, PAGES, StackProject, VIEWER, console_binary};

const CLIENTS: usize = 32;
const LOAD_FOR: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() {
    let project = StackProject::new("epsmpagesbench");
    project.compose_ok(&["build"]);
    project.up_wait(&[]);
    // The default probe interval (the tests' 2 s would measure docker exec, not the pages).
    let console = Console::for_stack(
        &console_binary(),
        &project,
        &[("EPSM_OPS_HEALTH_INTERVAL_SECS", "5")],
    )
    .await;
    let viewer = console.login(VIEWER).await.unwrap();
    // One view of each page first; its size goes in its row (HTML with the hydration data).
    let mut sizes = std::collections::HashMap::new();
    for page in std::iter::once("/healthz").chain(PAGES) {
        let url = format!("{}{page}", console.url);
        let body = viewer
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        sizes.insert(page, body.len());
    }
    let mib = |field| status_kib(console.pid(), field) as f64 / 1024.0;
    let (rss_before, anon_before) = (mib("VmRSS"), mib("RssAnon"));
    let commits_before = console.metric("epsm_ops_store_commits_total").await;

    let how = format!(
        "logged in, {CLIENTS} concurrent clients on loopback for {} s each, release build, a running stack probed every 5 s",
        LOAD_FOR.as_secs()
    );
    let (mut floor, mut floor_cpu) = (None, None);
    // `/healthz` first: the floor every page is read against.
    for page in std::iter::once("/healthz").chain(PAGES) {
        let url = format!("{}{page}", console.url);
        let cpu_before = cpu_time(console.pid());
        let run = end2end::bench::load(&viewer, &url, CLIENTS, LOAD_FOR).await;
        // The console's own CPU per reply: the load generator shares the machine, so req/s also
        // moves with what the client costs; this does not.
        let cpu =
            (cpu_time(console.pid()) - cpu_before).as_secs_f64() * 1e6 / run.times.len() as f64;
        let rate = run.per_second();
        let floor = *floor.get_or_insert(rate);
        let floor_cpu = *floor_cpu.get_or_insert(cpu);
        row(
            &format!("page {page}"),
            format!(
                "{rate:.0} req/s (floor/{:.1}), p50 {:.1} ms, p99 {:.1} ms, {:.1} KiB, console CPU {cpu:.0} µs/reply (floor x{:.1})",
                floor / rate,
                run.percentile(0.5).as_secs_f64() * 1e3,
                run.percentile(0.99).as_secs_f64() * 1e3,
                sizes[page] as f64 / 1024.0,
                cpu / floor_cpu
            ),
            &how,
        );
    }
    let commits = console.metric("epsm_ops_store_commits_total").await - commits_before;
    row(
        "store writes during the page load",
        commits.to_string(),
        "epsm_ops_store_commits_total (SQLite's commit hook) across the runs above",
    );
    row(
        "server RSS before / after the page load",
        format!("{rss_before:.1} / {:.1} MiB", mib("VmRSS")),
        "VmRSS of the release console, logged in, after one view of each page / after the runs above",
    );
    row(
        "of it, the process's own memory before / after",
        format!("{anon_before:.1} / {:.1} MiB", mib("RssAnon")),
        "RssAnon (heap, stacks): the rest is the binary's and libraries' mapped pages",
    );

    // A soak, when asked for (`EPSM_PAGES_SOAK_MINUTES`): the same load for minutes on end, every
    // page in turn, the memory read after each minute. Memory that grows with the minutes is a leak.
    let minutes: u64 = std::env::var("EPSM_PAGES_SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if minutes == 0 {
        return;
    }
    let each = Duration::from_secs(60) / PAGES.len() as u32;
    let (mut views, mut after_minute) = (0, Vec::new());
    for _ in 0..minutes {
        for page in PAGES {
            let url = format!("{}{page}", console.url);
            views += end2end::bench::load(&viewer, &url, CLIENTS, each)
                .await
                .times
                .len();
        }
        after_minute.push((mib("VmRSS"), mib("RssAnon")));
    }
    // Every minute's figure: a leak climbs minute after minute, an allocator settling levels off.
    let said = |pick: fn(&(f64, f64)) -> f64| {
        let minutes: Vec<String> = after_minute
            .iter()
            .map(|m| format!("{:.1}", pick(m)))
            .collect();
        format!("{} MiB", minutes.join(", "))
    };
    let how = format!(
        "after each of {minutes} min of {CLIENTS} clients on every page in turn ({views} views)"
    );
    row("soak: server RSS", said(|m| m.0), &how);
    row("soak: the process's own memory", said(|m| m.1), &how);
}
