//! A real SMTP server on loopback for the alerts' mail tests: aiosmtpd (PyPI, in the virtualenv
//! `scripts/setup.sh` makes at `.tools/aiosmtpd`) with its Mailbox handler, which keeps every mail
//! it accepts as a file of a maildir. Stopped (and its files removed) on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::{free_port, repo_root};

pub struct SmtpServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut server = SmtpServer {
            dir,
            port,
            child: None,
        };
        server.resume();
        server
    }

    fn maildir(&self) -> PathBuf {
        self.dir.path().join("maildir")
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn resume(&mut self) {
        let python = repo_root().join(".tools/aiosmtpd/bin/python");
        let log = std::fs::File::create(self.dir.path().join("aiosmtpd.log")).expect("log file");
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(self.maildir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} (run scripts/setup.sh): {e}", python.display()));
        self.child = Some(child);
        // Python starting: nothing to wait for but the machine (the margin alone).
        let deadline = Instant::now() + crate::with_margin(Duration::ZERO);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd does not listen: {}",
                std::fs::read_to_string(self.dir.path().join("aiosmtpd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server: mail cannot be delivered.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every mail received so far, as its raw text (headers and body), oldest first.
    pub fn mails(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, String)> =
            std::fs::read_dir(self.maildir().join("new"))
                .map(|d| {
                    d.filter_map(|e| {
                        let e = e.ok()?;
                        let at = e.metadata().ok()?.modified().ok()?;
                        Some((at, std::fs::read_to_string(e.path()).ok()?))
                    })
                    .collect()
                })
                .unwrap_or_default();
        files.sort();
        files.into_iter().map(|(_, text)| text).collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
