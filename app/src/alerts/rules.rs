//! When a service's state becomes an alert: pure rules over what each health round saw, so the sense
//! (not the noise) is tested without a clock or an engine.
//!
//! - A service must be bad (down, missing) for `grace` before it is alerted; a shorter blip says
//!   nothing, but three blips within `FLAP_WINDOW` are one "flapping" alert.
//! - One alert per transition: down once, then a reminder every `repeat` while it stays down, and one
//!   recovery when it is healthy again (only after a down was alerted).
//! - While the console's own deploy (or restore) restarts a service, it is not watched: its bad
//!   state is forgotten, and the deploy's own result is the message.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

/// Blips within this long of each other count towards flapping.
pub const FLAP_WINDOW: Duration = Duration::minutes(10);
/// This many short blips within `FLAP_WINDOW` make a flapping alert.
pub const FLAPS: usize = 3;

/// What a health round saw of one service.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Healthy (or running without a check: not a reason to wake anyone).
    Good,
    /// Down or missing, with why.
    Bad(String),
    /// Starting, degraded: neither (a slow probe is not "down").
    Unsure,
}

/// An alert the rules decided on.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    Down {
        service: String,
        reason: String,
        since: DateTime<Utc>,
    },
    StillDown {
        service: String,
        reason: String,
        since: DateTime<Utc>,
    },
    Recovered {
        service: String,
        was_down: Duration,
    },
    Flapping {
        service: String,
        blips: usize,
        within: Duration,
    },
}

#[derive(Debug, Default)]
struct Track {
    /// Since when it is bad (None: not bad now).
    bad_since: Option<DateTime<Utc>>,
    /// When its down (or last reminder) was sent; None: not alerted.
    alerted_at: Option<DateTime<Utc>>,
    /// When short blips ended, newest last (bounded by `FLAPS`).
    blips: Vec<DateTime<Utc>>,
    /// A flapping alert was sent for the blips in the window.
    flap_alerted: bool,
}

/// The rules' memory of each service.
pub struct Rules {
    grace: Duration,
    /// None: no reminders.
    repeat: Option<Duration>,
    tracks: HashMap<String, Track>,
}

impl Rules {
    pub fn new(grace: Duration, repeat: Option<Duration>) -> Rules {
        Rules {
            grace,
            repeat,
            tracks: HashMap::new(),
        }
    }

    /// What `seen` of `service` at `now` makes an alert of. `restarting`: the console's own deploy
    /// is restarting it (not watched).
    pub fn observe(
        &mut self,
        now: DateTime<Utc>,
        service: &str,
        seen: Seen,
        restarting: bool,
    ) -> Option<Decided> {
        let track = self.tracks.entry(service.to_string()).or_default();
        if restarting {
            // The deploy's result is the message; an alert already sent stays open, and its
            // recovery comes when it is seen healthy after the deploy.
            if track.alerted_at.is_none() {
                track.bad_since = None;
            }
            return None;
        }
        match seen {
            Seen::Unsure => None,
            Seen::Bad(reason) => {
                let since = *track.bad_since.get_or_insert(now);
                match track.alerted_at {
                    None if now - since >= self.grace => {
                        track.alerted_at = Some(now);
                        Some(Decided::Down {
                            service: service.into(),
                            reason,
                            since,
                        })
                    }
                    Some(at) if self.repeat.is_some_and(|r| now - at >= r) => {
                        track.alerted_at = Some(now);
                        Some(Decided::StillDown {
                            service: service.into(),
                            reason,
                            since,
                        })
                    }
                    _ => None,
                }
            }
            Seen::Good => {
                let since = track.bad_since.take()?;
                if track.alerted_at.take().is_some() {
                    track.blips.clear();
                    track.flap_alerted = false;
                    return Some(Decided::Recovered {
                        service: service.into(),
                        was_down: now - since,
                    });
                }
                // A blip shorter than the grace: nothing, unless it keeps happening.
                track.blips.retain(|&at| now - at < FLAP_WINDOW);
                track.blips.push(now);
                if track.blips.len() < FLAPS {
                    track.flap_alerted = false;
                    return None;
                }
                if track.flap_alerted {
                    track.blips.remove(0);
                    return None;
                }
                track.flap_alerted = true;
                let within = now - track.blips[0];
                let blips = track.blips.len();
                track.blips.remove(0);
                Some(Decided::Flapping {
                    service: service.into(),
                    blips,
                    within,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn bad() -> Seen {
        Seen::Bad("exited (1)".into())
    }

    #[test]
    fn one_alert_after_the_grace_a_reminder_per_period_and_one_recovery() {
        let mut rules = Rules::new(Duration::seconds(60), Some(Duration::minutes(30)));
        assert_eq!(rules.observe(at(0), "redis", bad(), false), None);
        assert_eq!(
            rules.observe(at(59), "redis", bad(), false),
            None,
            "within the grace"
        );
        assert_eq!(
            rules.observe(at(60), "redis", bad(), false),
            Some(Decided::Down {
                service: "redis".into(),
                reason: "exited (1)".into(),
                since: at(0)
            })
        );
        assert_eq!(rules.observe(at(61), "redis", bad(), false), None, "once");
        assert_eq!(rules.observe(at(200), "redis", Seen::Unsure, false), None);
        assert!(matches!(
            rules.observe(at(60 + 1800), "redis", bad(), false),
            Some(Decided::StillDown { .. })
        ));
        assert_eq!(
            rules.observe(at(2000), "redis", Seen::Good, false),
            Some(Decided::Recovered {
                service: "redis".into(),
                was_down: Duration::seconds(2000)
            })
        );
        assert_eq!(rules.observe(at(2001), "redis", Seen::Good, false), None);
    }

    #[test]
    fn a_zero_grace_alerts_at_once_and_other_services_are_apart() {
        let mut rules = Rules::new(Duration::zero(), Some(Duration::minutes(30)));
        assert!(matches!(
            rules.observe(at(0), "backend", bad(), false),
            Some(Decided::Down { .. })
        ));
        assert!(matches!(
            rules.observe(at(0), "redis", bad(), false),
            Some(Decided::Down { .. })
        ));
    }

    #[test]
    fn short_blips_are_quiet_until_they_flap_and_a_flap_is_said_once() {
        let mut rules = Rules::new(Duration::seconds(60), Some(Duration::minutes(30)));
        let mut said = Vec::new();
        for i in 0..6 {
            let t = i * 60;
            said.push(rules.observe(at(t), "backend", bad(), false));
            said.push(rules.observe(at(t + 10), "backend", Seen::Good, false));
        }
        let alerts: Vec<&Decided> = said.iter().flatten().collect();
        assert_eq!(
            alerts,
            [&Decided::Flapping {
                service: "backend".into(),
                blips: 3,
                within: Duration::seconds(120)
            }],
            "one message for the flapping, not one per blip"
        );
    }

    #[test]
    fn a_deploy_restarting_a_service_says_nothing_of_it() {
        let mut rules = Rules::new(Duration::zero(), Some(Duration::minutes(30)));
        assert_eq!(rules.observe(at(0), "backend", bad(), true), None);
        assert_eq!(rules.observe(at(30), "backend", bad(), true), None);
        assert_eq!(
            rules.observe(at(40), "backend", Seen::Good, false),
            None,
            "no recovery of a restart"
        );
        // Down before the deploy, and still down after it: the alert stays open; its recovery comes.
        assert!(rules.observe(at(50), "redis", bad(), false).is_some());
        assert_eq!(rules.observe(at(60), "redis", bad(), true), None);
        assert!(matches!(
            rules.observe(at(70), "redis", Seen::Good, false),
            Some(Decided::Recovered { .. })
        ));
    }
}
