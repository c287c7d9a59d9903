//! Child processes of the console (compose, git) in their own process group: a cancelled or failed
//! step ends the whole tree it started (compose's buildx and docker children too).

use std::time::Duration;

/// How long a cancelled child's process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// Kills a child's whole process group when dropped (the step was cancelled or failed), unless the
/// child ended by itself first.
pub struct ProcessGroup(pub Option<u32>);

impl ProcessGroup {
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            use nix::sys::signal::{Signal, killpg};
            use nix::unistd::Pid;
            // compose, and the buildx / docker processes it started.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
            std::thread::spawn(move || {
                std::thread::sleep(KILL_GRACE);
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            });
        }
    }
}
