//! Source benchmark (run by scripts/bench.sh; prints table rows, asserts nothing): the change card for
//! 1 and for 1000 commits ahead, and a fetch + checkout of 1000 new commits, on a git checkout of the
//! EPSM-like stack cloned from a bare origin, as the test bed makes it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use app::compose::ComposeCli;
use app::config::Config;
use app::deploy::changes::ssr::card_for;
use app::deploy::git::Git;
use app::environment::secrets::Scrubber;
use end2end::StackProject;
use end2end::bench::row;

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// `n` commits on origin's main, each adding a file, written with `git fast-import` in a clone.
fn commits_on_origin(project: &StackProject, n: usize) {
    let clone = tempfile::tempdir().unwrap();
    let origin = project.origin.path().display().to_string();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(clone.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {out:?}");
    };
    git(&["clone", "--quiet", &origin, "."]);
    let mut stream = String::new();
    for i in 0..n {
        let message = format!("Change number {i}");
        stream.push_str(&format!(
            "commit refs/heads/main\ncommitter Dana Developer <dana@epsm.example> {} +0000\ndata {}\n{message}\n",
            1_764_000_000 + i,
            message.len() + 1
        ));
        if i == 0 {
            stream.push_str("from refs/heads/main^0\n");
        }
        stream.push_str(&format!(
            "M 644 inline docs/change-{i:04}.md\ndata 2\nx\n\n"
        ));
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(clone.path())
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    git(&["push", "--quiet", "origin", "main"]);
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

#[tokio::main]
async fn main() {
    let project = StackProject::new("epsmsourcebench");
    let mut config = Config::default();
    config.project.name = Some(project.name.clone());
    config.project.dir = project.dir.path().to_path_buf();
    let (git, compose) = (Git::from_config(&config), ComposeCli::from_config(&config));
    let scrubber = Scrubber::new(&[]);
    let running = git.head(&scrubber).await.unwrap();
    let card = |target: String| {
        let (git, compose, running, scrubber) = (&git, &compose, running.clone(), &scrubber);
        async move {
            let mut runs = Vec::new();
            let mut ahead = 0;
            for _ in 0..5 {
                let started = Instant::now();
                let card = card_for(
                    git,
                    compose,
                    "docker-compose.production.yml",
                    "main",
                    Some(&running),
                    &target,
                    scrubber,
                )
                .await
                .unwrap();
                runs.push(started.elapsed());
                ahead = card.ahead;
            }
            (median(runs), ahead)
        }
    };

    commits_on_origin(&project, 1);
    git.fetch(&scrubber).await.unwrap();
    let one = git.resolve("main", &scrubber).await.unwrap();
    let (took, ahead) = card(one).await;
    row(
        "change card, 1 commit ahead",
        ms(took),
        &format!(
            "median of 5: {ahead} commit, git log/diff/show + compose config of both commits' compose file"
        ),
    );

    commits_on_origin(&project, 999);
    let started = Instant::now();
    git.fetch(&scrubber).await.unwrap();
    let fetched = started.elapsed();
    let many = git.resolve("main", &scrubber).await.unwrap();
    let (took, ahead) = card(many.clone()).await;
    row(
        "change card, 1000 commits ahead",
        ms(took),
        &format!("median of 5: {ahead} commits (first 50 listed), 1000 files added"),
    );
    let started = Instant::now();
    git.checkout(&many, true, false, &scrubber).await.unwrap();
    let checked_out = started.elapsed();
    row(
        "fetch + checkout, 1000 new commits",
        ms(fetched + checked_out),
        &format!(
            "fetch {} + checkout {} (local bare origin)",
            ms(fetched),
            ms(checked_out)
        ),
    );
}
