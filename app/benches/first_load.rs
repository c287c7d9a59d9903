//! First-load benchmark (run by scripts/bench.sh with the release console; prints table rows): the
//! bytes Chromium takes over the wire to show the Overview the first time (right after login: the
//! site's files are not in its cache yet) and again on a reload, as its Resource Timing reports
//! them (`transferSize`: headers and the body as sent, compressed or not). Then the same binary
//! serving the same files from `target/site` (`site_root`), compressed on the fly, for comparison.

use end2end::bench::row;
use end2end::{ADMIN, Browser, Console, console_binary, docker_host};

/// The Overview's HTML and each file it loaded, as (path, bytes over the wire).
async fn transferred(browser: &Browser) -> Vec<(String, u64)> {
    let entries = browser
        .client
        .execute(
            "return performance.getEntries()
                .filter(e => e.entryType === 'navigation' || e.entryType === 'resource')
                .map(e => [new URL(e.name).pathname, e.transferSize]);",
            vec![],
        )
        .await
        .expect("resource timing");
    serde_json::from_value(entries).expect("(path, bytes) pairs")
}

fn kib(bytes: u64) -> String {
    format!("{} KiB", (bytes + 512) / 1024)
}

/// A copy of target/site without its brotli and gzip copies.
fn plain_site() -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    let site = end2end::repo_root().join("target/site");
    end2end::copy_tree(&site, copy.path(), &|name| {
        name.ends_with(".br") || name.ends_with(".gz")
    });
    copy
}

/// The Overview's first load and a reload, by a console started with `env`.
async fn loads(env: &[(&str, &str)]) -> (Vec<(String, u64)>, Vec<(String, u64)>) {
    let engine = docker_host();
    let mut all = vec![("EPSM_OPS_DOCKER_HOST", engine.as_str())];
    all.extend_from_slice(env);
    let console = Console::start(&console_binary(), &all).await;
    let browser = Browser::start().await;
    // Login ends on the Overview, hydrated: its first load.
    browser.login(&console, ADMIN).await;
    let first = transferred(&browser).await;
    browser.client.refresh().await.expect("reload");
    browser.wait_for("[data-hydrated=true]").await;
    (first, transferred(&browser).await)
}

#[tokio::main]
async fn main() {
    let (first, again) = loads(&[]).await;
    let plain = plain_site();
    let (from_dir, _) = loads(&[("EPSM_OPS_SITE_ROOT", &plain.path().display().to_string())]).await;

    let total = |entries: &[(String, u64)]| entries.iter().map(|(_, b)| b).sum::<u64>();
    let of = |ext: &str| {
        first
            .iter()
            .filter(|(p, _)| p.ends_with(ext))
            .map(|(_, b)| b)
            .sum::<u64>()
    };
    row(
        "Overview, first load, over the wire",
        kib(total(&first)),
        "Chromium's Resource Timing (transferSize) of the page and its files, right after login",
    );
    row(
        "  of it the wasm",
        kib(of(".wasm")),
        "sent as the binary's brotli copy (cargo leptos --precompress)",
    );
    row(
        "  of it the JS and CSS",
        kib(of(".js") + of(".css")),
        "the same",
    );
    row(
        "Overview, first load, not precompressed",
        kib(total(&from_dir)),
        "the same binary serving the same files from a directory (`site_root`) without their \
         brotli and gzip copies: compressed on the fly by the server's compression layer",
    );
    row(
        "Overview, reload, over the wire",
        kib(total(&again)),
        "the page alone: the site's files come from the cache (hashed names, immutable)",
    );
}
