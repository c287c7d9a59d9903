//! The deploy's downtime as EPSM's users meet it: the public URL probed from the console every 250 ms
//! while the deploy runs, each stretch that did not answer 200 added up.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::super::Downtime;
use super::maintenance::MAINTENANCE_HEADER;

/// How often the public URL is probed.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(250);
/// One probe that takes longer than this counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What one probe got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Ok,
    /// The console's maintenance page (503 with its header).
    Maintenance,
    /// Another status, no connection, or no answer in time.
    Down,
}

/// One probe: when it was sent (since the probing began, and on the clock) and what it got.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    pub(super) at: Duration,
    pub(super) wall: DateTime<Utc>,
    pub(super) answer: Answer,
}

/// The probing task of one deploy; `finish` stops it and returns the figures.
pub(super) struct DowntimeProbe {
    stop: CancellationToken,
    task: Option<JoinHandle<Downtime>>,
}

impl DowntimeProbe {
    pub(super) fn start(url: url::Url) -> DowntimeProbe {
        let stop = CancellationToken::new();
        let task = tokio::spawn(probe_until(url, stop.clone()));
        DowntimeProbe {
            stop,
            task: Some(task),
        }
    }

    pub(super) async fn finish(mut self) -> Option<Downtime> {
        self.stop.cancel();
        self.task.take()?.await.ok()
    }
}

impl Drop for DowntimeProbe {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn probe_until(url: url::Url, stop: CancellationToken) -> Downtime {
    let began = Instant::now();
    let mut tally = Tally::new(url.as_str());
    let client = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        // A fresh connection per probe: a kept-alive one to a container that is gone says nothing.
        .pool_max_idle_per_host(0)
        .build();
    let Ok(client) = client else {
        return tally.finish(began.elapsed());
    };
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let at = began.elapsed();
        let wall = Utc::now();
        let answer = tokio::select! {
            _ = stop.cancelled() => break,
            answer = client.get(url.clone()).send() => match answer {
                Ok(r) if r.status() == reqwest::StatusCode::OK => Answer::Ok,
                Ok(r) if r.headers().contains_key(MAINTENANCE_HEADER) => Answer::Maintenance,
                _ => Answer::Down,
            },
        };
        tally.push(Probe { at, wall, answer });
    }
    tally.finish(began.elapsed())
}

/// The figures, kept as the probes come (a deploy that runs for a day holds no list of probes): each
/// probe's answer holds until the next probe, the last one's until the end.
pub(super) struct Tally {
    figures: Downtime,
    last: Option<Probe>,
    /// The stretch without a 200 that runs now, in ms.
    stretch: u64,
}

impl Tally {
    pub(super) fn new(url: &str) -> Tally {
        Tally {
            figures: Downtime {
                url: url.to_string(),
                ..Downtime::default()
            },
            last: None,
            stretch: 0,
        }
    }

    pub(super) fn push(&mut self, probe: Probe) {
        self.close(probe.at);
        let d = &mut self.figures;
        d.probes += 1;
        match probe.answer {
            Answer::Ok => {
                if self.stretch > 0 {
                    d.back_at = Some(probe.wall);
                }
                self.stretch = 0;
            }
            Answer::Maintenance | Answer::Down => {
                d.failed_probes += 1;
                d.first_down.get_or_insert(probe.wall);
                d.back_at = None;
            }
        }
        self.last = Some(probe);
    }

    /// The last probe's answer held until `until`.
    fn close(&mut self, until: Duration) {
        let Some(last) = self.last else { return };
        let ms = until.saturating_sub(last.at).as_millis() as u64;
        let d = &mut self.figures;
        if last.answer != Answer::Ok {
            d.total_ms += ms;
            if last.answer == Answer::Maintenance {
                d.maintenance_ms += ms;
            }
            self.stretch += ms;
            d.longest_ms = d.longest_ms.max(self.stretch);
        }
    }

    pub(super) fn finish(mut self, ended: Duration) -> Downtime {
        self.close(ended);
        self.figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probes(answers: &[Answer]) -> Vec<Probe> {
        answers
            .iter()
            .enumerate()
            .map(|(i, &answer)| Probe {
                at: PROBE_EVERY * i as u32,
                wall: DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap(),
                answer,
            })
            .collect()
    }

    fn account(url: &str, probes: &[Probe], ended: Duration) -> Downtime {
        let mut tally = Tally::new(url);
        for p in probes {
            tally.push(*p);
        }
        tally.finish(ended)
    }

    #[test]
    fn each_answer_holds_until_the_next_probe_and_stretches_add_up() {
        use Answer::*;
        let p = probes(&[Ok, Down, Maintenance, Maintenance, Ok, Down, Ok]);
        let d = account("http://epsm/", &p, PROBE_EVERY * 7);
        assert_eq!(d.total_ms, 4 * 250);
        assert_eq!(
            d.longest_ms,
            3 * 250,
            "down, then the maintenance page: one stretch"
        );
        assert_eq!(d.maintenance_ms, 2 * 250);
        assert_eq!((d.probes, d.failed_probes), (7, 4));
        assert_eq!(d.first_down, Some(p[1].wall));
        assert_eq!(d.back_at, Some(p[6].wall), "back after the last stretch");
        assert!(
            d.describe().contains("did not answer 200 for 1.0 s"),
            "{}",
            d.describe()
        );
    }

    #[test]
    fn a_deploy_that_ends_down_has_no_back_at_and_counts_to_the_end() {
        use Answer::*;
        let p = probes(&[Ok, Down]);
        let d = account("http://epsm/", &p, Duration::from_millis(1250));
        assert_eq!(d.total_ms, 1000);
        assert_eq!(d.back_at, None);
        let up = account("http://epsm/", &probes(&[Ok, Ok]), PROBE_EVERY * 2);
        assert_eq!(up.total_ms, 0);
        assert!(up.describe().contains("answered 200 throughout"));
    }
}
