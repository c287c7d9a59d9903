//! What the benchmarks (`app/benches`) share: a row of the table `scripts/bench.sh` prints, a process's
//! resident memory, and load: `clients` concurrent loops GETting one URL for a while, on loopback, each
//! reply read to its end (asserting only that every reply succeeded).

use std::time::{Duration, Instant};

/// One row of the benchmark table: `| figure | value | how |`.
pub fn row(figure: &str, value: String, how: &str) {
    println!("| {figure} | {value} | {how} |");
}

/// The resident memory of process `pid` in KiB (`VmRSS`); 0 when it cannot be read.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `RssAnon`, `RssFile`); 0 when it cannot be read.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The CPU time the process `pid` has used so far, all its threads (live and ended), user and
/// system: `utime + stime` of `/proc/<pid>/stat` in the kernel's clock ticks. Zero when it cannot
/// be read.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (100 on Linux, asked rather than assumed).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// What one load run measured.
pub struct Load {
    /// Every request's time, sorted.
    pub times: Vec<Duration>,
    pub elapsed: Duration,
}

impl Load {
    /// The `p` quantile (0..=1) of the request times.
    pub fn percentile(&self, p: f64) -> Duration {
        self.times[((self.times.len() as f64 - 1.0) * p).round() as usize]
    }

    pub fn per_second(&self) -> f64 {
        self.times.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// `clients` loops GETting `url` with `client` (its cookies: a logged-in session) for `how_long`.
pub async fn load(client: &reqwest::Client, url: &str, clients: usize, how_long: Duration) -> Load {
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let mut times = Vec::new();
                while started.elapsed() < how_long {
                    let t = Instant::now();
                    let reply = client.get(&url).send().await.unwrap();
                    assert!(reply.status().is_success(), "{url}: {}", reply.status());
                    reply.bytes().await.unwrap();
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for w in workers {
        times.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    times.sort();
    Load { times, elapsed }
}
