//! `epsm-ops doctor`: every check an operator needs before the first login, each ok, warn or fail
//! with what it found and, when it is not ok, the fix. Read-only: nothing is created, started or
//! written (the IdP's metadata is read from its source, not kept).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use chrono::Utc;

use crate::alerts::conditions::{CERT_WARN_DAYS, days_left};
use crate::config::Config;
use crate::deploy::git::Git;
use crate::engine::EngineState;
use crate::engine::ssr::Engine;
use crate::environment::secrets::Scrubber;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the doctor's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub found: String,
    /// What to do (empty when ok).
    pub fix: String,
}

fn ok(name: &'static str, found: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Ok,
        found: found.into(),
        fix: String::new(),
    }
}

fn warn(name: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Warn,
        found: found.into(),
        fix: fix.into(),
    }
}

fn fail(name: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name,
        status: Status::Fail,
        found: found.into(),
        fix: fix.into(),
    }
}

/// Every check of `config`, in the order an operator fixes them.
pub async fn run(config: &Config) -> Vec<Check> {
    let scrubber = Scrubber::new(&[]);
    let mut checks = vec![docker(config).await];
    checks.push(tool_version(
        "compose",
        &config.docker.cli,
        &["compose", "version", "--short"],
        |v| v.trim_start_matches('v').starts_with('2'),
        "install the Docker Compose v2 plugin (Debian: docker-compose-plugin or docker-compose-v2)",
    ));
    checks.push(tool_version(
        "git",
        Path::new("git"),
        &["--version"],
        |v| v.starts_with("git version"),
        "install git (Debian: apt install git)",
    ));
    checks.push(env_file(config));
    checks.extend(git_checkout(config, &scrubber).await);
    checks.extend(identity_provider(config).await);
    checks.push(sp_certificate(config));
    checks.push(public_url(config));
    checks.push(private_dir(
        "data directory",
        &config.data_dir,
        "created (0700) at the first start",
    ));
    checks.push(backups_room(config));
    checks.push(alert_channels(config));
    checks.push(if config.auth.dev_idp {
        fail(
            "development IdP",
            "auth.dev_idp = true: anybody can log in as anyone",
            "set auth.dev_idp = false (EPSM_OPS_AUTH_DEV_IDP unset) on the real host",
        )
    } else {
        ok("development IdP", "off")
    });
    checks
}

async fn docker(config: &Config) -> Check {
    let engine = Engine::new(config.docker.host.clone());
    match engine.status().await.state {
        EngineState::Reachable(info) => ok(
            "Docker engine",
            format!("Docker {} at {}", info.version, config.docker.host),
        ),
        EngineState::Unreachable { reason } => {
            let fix = engine_fix(&reason);
            fail("Docker engine", reason, fix)
        }
    }
}

/// What to do about an engine that did not answer, by the engine's own sentence for it
/// (`crate::engine::ssr` says "permission denied" when the socket refuses this user).
fn engine_fix(reason: &str) -> &'static str {
    if reason.to_lowercase().contains("permission denied") {
        "let the console's user use the socket: add it to the docker group \
         (SupplementaryGroups=docker in its systemd unit)"
    } else {
        "start the Docker engine, or set docker.host (EPSM_OPS_DOCKER_HOST) to its socket"
    }
}

/// A tool's version line, and whether `good` holds of it.
fn tool_version(
    name: &'static str,
    program: &Path,
    args: &[&str],
    good: impl Fn(&str) -> bool,
    fix: &str,
) -> Check {
    match std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if good(&version) {
                ok(
                    name,
                    format!("{} {}: {version}", program.display(), args.join(" ")),
                )
            } else {
                fail(
                    name,
                    format!("{} {}: {version}", program.display(), args.join(" ")),
                    fix,
                )
            }
        }
        Ok(out) => fail(
            name,
            format!(
                "{} {} exited {}: {}",
                program.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            fix,
        ),
        Err(e) => fail(name, format!("cannot run {}: {e}", program.display()), fix),
    }
}

/// Why a file or directory is not private to the console's user, if it is not: others may read
/// it (its mode), or another user owns it.
fn not_private(meta: &std::fs::Metadata) -> Option<String> {
    let mode = meta.mode() & 0o777;
    let me = nix::unistd::geteuid().as_raw();
    let mut why = Vec::new();
    if mode & 0o077 != 0 {
        why.push(format!("mode {mode:04o}: others may read it"));
    }
    if meta.uid() != me {
        why.push(format!(
            "owned by uid {}, not the console's uid {me}",
            meta.uid()
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The env file: there, and private to the console's user. (The project directory and its compose
/// file are the configuration's own checks: it does not load without them.)
fn env_file(config: &Config) -> Check {
    let project = &config.project;
    let env = project.dir.join(&project.env_file);
    match std::fs::metadata(&env) {
        Ok(m) if !m.is_file() => fail(
            "env file",
            format!("{} is not a file", env.display()),
            "create it from EPSM's .env.example",
        ),
        Ok(m) => {
            if let Some(why) = not_private(&m) {
                fail(
                    "env file",
                    format!("{}: {why}", env.display()),
                    format!(
                        "chown <the console's user> {0} && chmod 600 {0}: it holds the database \
                         and Django secrets",
                        env.display()
                    ),
                )
            } else {
                ok("env file", format!("{} (0600, this user's)", env.display()))
            }
        }
        Err(e) => fail(
            "env file",
            format!("{}: {e}", env.display()),
            "create it from EPSM's .env.example (one .env.production, the guide's source of truth)",
        ),
    }
}

/// The project directory as a git checkout, and its remote answering.
async fn git_checkout(config: &Config, scrubber: &Scrubber) -> Vec<Check> {
    let git = Git::from_config(config);
    if !git.is_checkout(scrubber).await {
        return vec![fail(
            "git checkout",
            format!("{} is not a git checkout", config.project.dir.display()),
            "clone EPSM into project.dir: a deploy brings the new code with git",
        )];
    }
    let head = git.head(scrubber).await.unwrap_or_default();
    let mut checks = vec![ok(
        "git checkout",
        format!(
            "{} at {}",
            config.project.dir.display(),
            head.chars().take(12).collect::<String>()
        ),
    )];
    let args = ["ls-remote", "--exit-code", &git.remote, &git.branch];
    checks.push(match git.run(&args, scrubber).await {
        Ok(out) => ok(
            "git remote",
            format!(
                "{} has {} at {}",
                git.remote,
                git.branch,
                out.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(12)
                    .collect::<String>()
            ),
        ),
        Err(e) => fail(
            "git remote",
            e.to_string(),
            "check project.git.remote and .branch, the deploy key (project.git.ssh_key, 0600) and \
             known_hosts",
        ),
    });
    checks
}

/// The IdP's metadata from its source, and its signing certificates' expiry.
async fn identity_provider(config: &Config) -> Vec<Check> {
    if config.auth.dev_idp {
        return Vec::new();
    }
    match crate::auth::metadata::read_source(config).await {
        Err(e) => vec![fail(
            "IdP metadata",
            e,
            "check auth.idp_metadata (Chalmers: https://www.ita.chalmers.se/idp.chalmers.se.xml), \
             the host's way out to it, and auth.idp_metadata_cert",
        )],
        Ok((_, info)) => {
            let mut checks = vec![ok(
                "IdP metadata",
                format!(
                    "{}: {} signing certificate(s), SSO at {}",
                    info.trust.entity_id,
                    info.trust.signing_certs.len(),
                    info.sso_url
                ),
            )];
            for der in &info.trust.signing_certs {
                checks.push(certificate_check(
                    "IdP signing certificate",
                    der,
                    "ask the IdP's operators (Chalmers IT) for its rollover; the metadata refresh \
                     picks up the new certificate",
                ));
            }
            checks
        }
    }
}

fn certificate_check(name: &'static str, der: &[u8], fix: &str) -> Check {
    let Ok(cert) = openssl::x509::X509::from_der(der) else {
        return fail(name, "not a certificate", fix);
    };
    let until = cert.not_after().to_string();
    match days_left(&cert, Utc::now()) {
        None => fail(name, "its expiry cannot be read", fix),
        Some((_, true)) => fail(name, format!("expired ({until})"), fix),
        Some((days, false)) if days < CERT_WARN_DAYS => {
            warn(name, format!("expires in {days} days ({until})"), fix)
        }
        Some((days, false)) => ok(name, format!("valid {days} more days ({until})")),
    }
}

/// The console's own SAML certificate (generated at the first start when absent).
fn sp_certificate(config: &Config) -> Check {
    let path = config.data_path(&config.auth.sp_cert);
    let fix = "make a new key and certificate (delete both files: the next start generates them) \
               and send the new metadata (<public_url>/saml/metadata) to Chalmers IT";
    match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => warn(
            "SP certificate",
            format!("{} is not there yet", path.display()),
            "it is generated at the first start: then register <public_url>/saml/metadata with \
             Chalmers IT",
        ),
        Err(e) => fail("SP certificate", format!("{}: {e}", path.display()), fix),
        Ok(pem) => match openssl::x509::X509::from_pem(&pem).and_then(|c| c.to_der()) {
            Ok(der) => certificate_check("SP certificate", &der, fix),
            Err(_) => fail(
                "SP certificate",
                format!("{} is not a PEM certificate", path.display()),
                fix,
            ),
        },
    }
}

fn public_url(config: &Config) -> Check {
    let url = &config.public_url;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match (url.scheme(), loopback) {
        ("https", _) => ok("public URL", url.as_str()),
        (_, true) => warn(
            "public URL",
            format!("{url} (loopback, plain HTTP)"),
            "set public_url to the https:// address nginx serves (e.g. https://ops.epsm.chalmers.se/)",
        ),
        _ => fail(
            "public URL",
            format!("{url}: logins and sessions would cross the network in the clear"),
            "serve the console behind nginx with TLS and set public_url to its https:// address",
        ),
    }
}

/// A directory that holds private data: this user's, mode 0700 (absent: said when it is made).
fn private_dir(name: &'static str, dir: &Path, when_absent: &str) -> Check {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => warn(
            name,
            format!("{} is not there yet", dir.display()),
            when_absent,
        ),
        Err(e) => fail(
            name,
            format!("{}: {e}", dir.display()),
            "check the path and its permissions",
        ),
        Ok(m) if !m.is_dir() => fail(
            name,
            format!("{} is not a directory", dir.display()),
            "point the setting at a directory",
        ),
        Ok(m) => {
            if let Some(why) = not_private(&m) {
                fail(
                    name,
                    format!("{}: {why}", dir.display()),
                    format!(
                        "chown -R <the console's user> {0} && chmod 700 {0}: database dumps and \
                         keys are in it",
                        dir.display()
                    ),
                )
            } else {
                ok(name, format!("{} (0700, this user's)", dir.display()))
            }
        }
    }
}

/// The backups directory: private, and room for at least two more of the largest backup in it.
fn backups_room(config: &Config) -> Check {
    let dir = config.backups_dir();
    let private = private_dir(
        "backups directory",
        &dir,
        "created (0700) with the first backup; make sure its disk has room for several dumps",
    );
    if private.status != Status::Ok {
        return private;
    }
    let largest = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    let Ok(stat) = nix::sys::statvfs::statvfs(&dir) else {
        return warn(
            "backups directory",
            format!("{}: its free space cannot be read", dir.display()),
            "check the disk it is on",
        );
    };
    let free = stat.blocks_available() as u128 * stat.fragment_size() as u128;
    let gib = |b: u128| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    if free < 2 * largest as u128 {
        fail(
            "backups directory",
            format!(
                "{}: {} free, the largest backup is {}",
                dir.display(),
                gib(free),
                gib(largest as u128)
            ),
            "free disk space or move backups.dir to a larger disk: two more backups must fit",
        )
    } else {
        ok(
            "backups directory",
            format!(
                "{} (0700): {} free, the largest backup {}",
                dir.display(),
                gib(free),
                gib(largest as u128)
            ),
        )
    }
}

/// The alert channels: some configured, each secret file there and private.
fn alert_channels(config: &Config) -> Check {
    let channels = &config.alerts.channels;
    if channels.is_empty() {
        return warn(
            "alert channels",
            "none: nobody is told when a service goes down or a backup fails",
            "add [[alerts.channels]] (mail, Teams, Slack or a signed webhook): see the README's Alerts",
        );
    }
    for channel in channels {
        for file in channel.secret_files() {
            let path = config.data_path(file);
            let problem = match std::fs::metadata(&path) {
                Err(e) => Some(e.to_string()),
                Ok(m) => not_private(&m),
            };
            if let Some(problem) = problem {
                return fail(
                    "alert channels",
                    format!("{}: {}: {problem}", channel.name, path.display()),
                    format!(
                        "write the secret to {0}, then chown <the console's user> {0} && chmod 600 {0}",
                        path.display()
                    ),
                );
            }
        }
    }
    let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
    ok(
        "alert channels",
        format!("{} (their secret files private)", names.join(", ")),
    )
}

/// The table the command prints: one line per check, its fix below when not ok.
pub fn table(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{:<5} {:<24} {}\n",
            c.status.as_str(),
            c.name,
            c.found
        ));
        if !c.fix.is_empty() {
            out.push_str(&format!("{:<30}fix: {}\n", "", c.fix));
        }
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "{} ok, {} warning(s), {} failed\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_that_refuses_this_user_points_to_the_docker_group() {
        // The engine's sentence for a socket this user may not open (engine::ssr::errors).
        let refused = "Docker engine not reachable at unix:///var/run/docker.sock: permission denied \
                       (the console's user needs access to the socket: root or the docker group)";
        assert!(engine_fix(refused).contains("SupplementaryGroups=docker"));
        let absent = "Docker engine not reachable at unix:///x.sock: the socket does not exist";
        assert!(engine_fix(absent).starts_with("start the Docker engine"));
    }

    #[test]
    fn public_urls_are_https_loopback_is_a_warning_the_rest_fails() {
        let mut config = Config {
            public_url: "https://ops.epsm.chalmers.se/".parse().unwrap(),
            ..Config::default()
        };
        assert_eq!(public_url(&config).status, Status::Ok);
        config.public_url = "http://127.0.0.1:3000/".parse().unwrap();
        assert_eq!(public_url(&config).status, Status::Warn);
        config.public_url = "http://ops.epsm.chalmers.se/".parse().unwrap();
        let check = public_url(&config);
        assert_eq!(check.status, Status::Fail);
        assert!(check.fix.contains("https://"));
    }

    #[test]
    fn a_private_directory_is_this_users_and_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(private_dir("d", dir.path(), "").status, Status::Ok);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let check = private_dir("d", dir.path(), "");
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.found.ends_with("mode 0755: others may read it"),
            "{}",
            check.found
        );
        assert!(check.fix.contains("chmod 700"), "{}", check.fix);
        let gone = dir.path().join("nope");
        assert_eq!(private_dir("d", &gone, "made later").status, Status::Warn);
    }

    #[test]
    fn the_table_says_each_fix_under_its_line_and_counts() {
        let text = table(&[
            ok("Docker engine", "Docker 28.2"),
            fail("env file", "mode 0644", "chmod 600"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ok    Docker engine            Docker 28.2");
        assert_eq!(lines[1], "FAIL  env file                 mode 0644");
        assert_eq!(lines[2], format!("{}fix: chmod 600", " ".repeat(30)));
        assert_eq!(lines[3], "1 ok, 0 warning(s), 1 failed");
    }
}
