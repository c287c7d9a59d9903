//! A real SFTP server on loopback for the off-site copy's tests: Debian's OpenSSH `sshd`, started by
//! the test with its own host key, password logins off and one client key allowed (the tests run as
//! root: root with `prohibit-password` is a key-only user), serving a temporary directory. Stopped
//! (and its files removed) on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::free_port;

pub struct SftpServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

impl SftpServer {
    pub fn start() -> SftpServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .output()
                .expect("ssh-keygen");
            assert!(out.status.success(), "{out:?}");
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        std::fs::create_dir(d.join("store")).unwrap();
        let port = free_port();
        let host_key = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", host_key.join(" ")),
        )
        .unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
                 StrictModes no\nPidFile {dir}/sshd.pid\nSubsystem sftp internal-sftp\n",
                dir = d.display()
            ),
        )
        .unwrap();
        // sshd wants its privilege-separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let mut server = SftpServer {
            dir,
            port,
            child: None,
        };
        server.resume();
        server
    }

    /// Starts sshd (again), waiting until it accepts connections.
    pub fn resume(&mut self) {
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .arg("-E")
            .arg(self.dir.path().join("sshd.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("sshd (Debian's openssh-server)");
        self.child = Some(child);
        // A process starting: nothing to wait for but the machine (the margin alone).
        let deadline = Instant::now() + crate::with_margin(Duration::ZERO);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "sshd does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops sshd: the remote is unreachable.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The directory the server stores into.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// An rclone configuration with this server as the remote `name`.
    pub fn rclone_config(&self, name: &str) -> String {
        let d = self.dir.path();
        format!(
            "[{name}]\ntype = sftp\nhost = 127.0.0.1\nport = {}\nuser = root\nkey_file = {}\n\
             known_hosts_file = {}\nshell_type = unix\nmd5sum_command = md5sum\nsha1sum_command = sha1sum\n",
            self.port,
            d.join("client_key").display(),
            d.join("known_hosts").display()
        )
    }

    /// The files in the store, sorted.
    pub fn stored(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.store())
            .map(|d| {
                d.filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        self.stop();
    }
}
