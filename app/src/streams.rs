//! How many live streams (health, logs, deploy output) are open, per session and in total. Each open
//! stream holds a ticket; over a limit a new one is refused with a sentence saying which limit and
//! what to do, so one person's tabs or one script cannot hold every connection of the console.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often an open stream asks the session store whether its session still holds (a stream
/// outlives its session by at most this long).
pub const SESSION_CHECK: Duration = Duration::from_secs(5);

/// Why a stream was not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooMany {
    #[error(
        "this session already has {0} live views open, the most one session may have: close one \
         (another tab or window) and reload"
    )]
    Session(usize),
    #[error("the console already serves {0} live views, its limit: try again in a moment")]
    Total(usize),
}

/// The limits and the streams open now.
#[derive(Debug)]
pub struct StreamLimits {
    per_session: usize,
    total: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    by_session: HashMap<String, usize>,
    total: usize,
}

/// One open stream; dropping it (the stream ended) frees its place.
#[derive(Debug)]
pub struct StreamTicket {
    limits: Arc<StreamLimits>,
    session: String,
}

impl StreamLimits {
    pub fn new(per_session: usize, total: usize) -> Arc<StreamLimits> {
        Arc::new(StreamLimits {
            per_session,
            total,
            open: Mutex::new(Open::default()),
        })
    }

    /// A place for one more stream of `session`, or why not.
    pub fn admit(self: &Arc<Self>, session: &str) -> Result<StreamTicket, TooMany> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.total {
            return Err(TooMany::Total(self.total));
        }
        let mine = open.by_session.entry(session.to_string()).or_default();
        if *mine >= self.per_session {
            return Err(TooMany::Session(self.per_session));
        }
        *mine += 1;
        open.total += 1;
        Ok(StreamTicket {
            limits: self.clone(),
            session: session.to_string(),
        })
    }

    /// Streams open now (all sessions).
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_session.get_mut(&self.session) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.by_session.remove(&self.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_session_and_the_whole_console_have_a_limit_and_a_closed_stream_frees_its_place() {
        let limits = StreamLimits::new(2, 3);
        let a1 = limits.admit("a").unwrap();
        let _a2 = limits.admit("a").unwrap();
        assert_eq!(limits.admit("a").unwrap_err(), TooMany::Session(2));
        let _b1 = limits.admit("b").unwrap();
        assert_eq!(limits.admit("c").unwrap_err(), TooMany::Total(3));
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _a3 = limits.admit("a").unwrap();
        assert!(TooMany::Session(2).to_string().contains("close one"));
    }
}
