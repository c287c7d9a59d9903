//! The files of `packaging/` as the host uses them: the systemd unit passes `systemd-analyze verify`
//! (no warning) with a low exposure score; the nginx server block passes `nginx -t` and, served by a
//! real nginx in front of the real console, answers over TLS, sends plain HTTP to HTTPS and passes a
//! live view's events through as they come; the production configuration loads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use end2end::{Console, SseReader, free_port, repo_root, self_signed_certificate, with_margin};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

fn packaging(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("packaging").join(name)).unwrap()
}

/// `systemd-analyze verify` and `security --offline` of `unit` (its text) as `epsm-ops.service`
/// in a directory of its own; returns (verify's exit and messages, the exposure score).
fn analyze(unit: &str) -> ((bool, String), f64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("epsm-ops.service");
    std::fs::write(&path, unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score = text
        .lines()
        .find_map(|l| l.split("epsm-ops.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    ((verify.status.success(), said.trim().to_string()), score)
}

#[test]
fn the_unit_verifies_without_a_warning_and_exposes_little() {
    // The unit as shipped, its ExecStart pointed at this build (verify checks the binary is there).
    let unit = packaging("epsm-ops.service")
        .replace("/usr/local/bin/epsm-ops", &bin().display().to_string());
    let ((ok, said), score) = analyze(&unit);
    assert!(ok && said.is_empty(), "systemd-analyze verify: {said}");
    // systemd's scale: 0 (locked down) to 10 (exposed); "OK" is below 5.
    assert!(score <= 2.0, "exposure {score}");
    for line in [
        "User=epsm-ops",
        "SupplementaryGroups=docker",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/opt/epsm /srv/epsm-backups",
        "StateDirectory=epsm-ops",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "UMask=0077",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} not in the unit");
    }
    // The check can fail: a key systemd does not know is said.
    let ((_, said), _) = analyze(&unit.replace("UMask=0077", "UMask=0077\nProtectEverything=yes"));
    assert!(said.contains("Unknown key 'ProtectEverything'"), "{said}");
}

#[test]
fn the_production_configuration_loads() {
    // Its directories and the deploy key are the host's: here the stack's, a temporary directory
    // and files in it stand in for them.
    let data = tempfile::tempdir().unwrap();
    let key = end2end::private_file(data.path(), "deploy_key", "not a key");
    let known = end2end::private_file(data.path(), "known_hosts", "");
    let config = repo_root().join("packaging/epsm-ops.toml");
    let out = Command::new(bin())
        .arg("doctor")
        .arg("--config")
        .arg(&config)
        .env("EPSM_OPS_PROJECT_DIR", repo_root().join("stack"))
        .env("EPSM_OPS_DATA_DIR", data.path())
        .env("EPSM_OPS_BACKUPS_DIR", data.path().join("backups"))
        .env("EPSM_OPS_PROJECT_GIT_SSH_KEY", &key)
        .env("EPSM_OPS_PROJECT_GIT_KNOWN_HOSTS", &known)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("ok    configuration") && first.ends_with("packaging/epsm-ops.toml"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("ok    public URL               https://ops.epsm.chalmers.se/"),
        "{text}"
    );
    assert!(text.contains("ok    development IdP"), "{text}");
    // Its channels' secrets are the host's to write: said, with the fix.
    assert!(
        text.contains("FAIL  alert channels           teams: /etc/epsm-ops/teams.url: "),
        "{text}"
    );
}

/// nginx with the shipped server block, in a directory of its own: its ports and the console's
/// moved to free ones on loopback, a self-signed certificate in place of the host's.
struct Nginx {
    dir: tempfile::TempDir,
    https: u16,
    http: u16,
    child: Option<Child>,
}

impl Nginx {
    fn configure(console_port: u16) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        self_signed_certificate(
            &d.join("tls.key"),
            &d.join("tls.pem"),
            "ops.epsm.chalmers.se",
            2,
        );
        let (https, http) = (free_port(), free_port());
        let block = packaging("nginx/ops.epsm.chalmers.se.conf");
        for expected in [
            "proxy_buffering off;",
            "proxy_read_timeout 24h;",
            "proxy_set_header X-Real-IP $remote_addr;",
            "server 127.0.0.1:3000;",
        ] {
            assert!(block.contains(expected), "{expected} not in the block");
        }
        let block = block
            .replace(
                "server 127.0.0.1:3000;",
                &format!("server 127.0.0.1:{console_port};"),
            )
            .replace("    listen [::]:80;\n", "")
            .replace("    listen [::]:443 ssl http2;\n", "")
            .replace("listen 80;", &format!("listen 127.0.0.1:{http};"))
            .replace(
                "listen 443 ssl http2;",
                &format!("listen 127.0.0.1:{https} ssl http2;"),
            )
            .replace(
                "/etc/ssl/certs/ops.epsm.chalmers.se.pem",
                &d.join("tls.pem").display().to_string(),
            )
            .replace(
                "/etc/ssl/private/ops.epsm.chalmers.se.key",
                &d.join("tls.key").display().to_string(),
            );
        std::fs::write(d.join("site.conf"), block).unwrap();
        let t = d.display();
        std::fs::write(
            d.join("nginx.conf"),
            format!(
                "worker_processes 1;\npid {t}/nginx.pid;\nerror_log {t}/error.log;\nevents {{}}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  \
                 proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n  \
                 uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n  include {t}/site.conf;\n}}\n"
            ),
        )
        .unwrap();
        Nginx {
            dir,
            https,
            http,
            child: None,
        }
    }

    fn args(&self) -> Vec<PathBuf> {
        vec![
            "-p".into(),
            self.dir.path().to_path_buf(),
            "-c".into(),
            self.dir.path().join("nginx.conf"),
        ]
    }

    /// `nginx -t`: its exit and what it said.
    fn test(&self) -> (bool, String) {
        let out = Command::new("nginx")
            .arg("-t")
            .args(self.args())
            .output()
            .expect("nginx (scripts/setup.sh installs it)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts nginx in the foreground, waiting until it listens.
    fn start(&mut self) {
        let child = Command::new("nginx")
            .args(self.args())
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        // A process starting: nothing to wait for but the machine.
        let deadline = Instant::now() + with_margin(Duration::ZERO);
        while std::net::TcpStream::connect(("127.0.0.1", self.https)).is_err() {
            assert!(Instant::now() < deadline, "nginx does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // TERM: the master stops its workers before it exits (a KILL would leave them behind).
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn nginx_serves_the_console_over_tls_and_passes_live_views_through_as_they_come() {
    let console = Console::start(bin(), &[]).await;
    let port: u16 = console.url.rsplit(':').next().unwrap().parse().unwrap();
    let mut nginx = Nginx::configure(port);
    let (ok, said) = nginx.test();
    assert!(
        ok && said.contains("test is successful"),
        "nginx -t: {said}"
    );
    nginx.start();

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let https = format!("https://127.0.0.1:{}", nginx.https);
    let reply = client.get(format!("{https}/healthz")).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    assert!(
        reply.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    let plain = client
        .get(format!("http://127.0.0.1:{}/health", nginx.http))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 301);
    assert!(
        plain.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://")
    );

    // A live view through nginx: the health monitor's first report arrives as it is sent (a
    // buffering proxy would hold it until its buffer filled or the stream ended).
    let (_, cookies) = console.login_trace(end2end::ADMIN).await.unwrap();
    let session = cookies.last().unwrap().clone();
    let logged_in = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .default_headers(
            [(
                reqwest::header::COOKIE,
                reqwest::header::HeaderValue::from_str(&session).unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    let mut events = SseReader::open(&logged_in, &format!("{https}/api/health/events")).await;
    let first = events
        .next_data(with_margin(Duration::ZERO))
        .await
        .expect("the first health report through nginx");
    assert!(first.contains("\"services\""), "{first}");
}
