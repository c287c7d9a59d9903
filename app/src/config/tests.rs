//! The configuration's loading and validation against real files and environments.

use super::*;

/// A project directory holding the two files the guide requires, inside a temporary directory.
fn project_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.production.yml"),
        "services: {}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env.production"), "DEBUG=False\n").unwrap();
    dir
}

fn load(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), toml).unwrap();
    // A private prefix per call, so tests never see each other's (or the machine's) variables.
    let prefix = format!("EPSM_OPS_TEST_{}_", std::process::id() ^ rand_suffix());
    for (k, v) in env {
        // SAFETY: each test uses its own variable names; nothing else reads them.
        unsafe { std::env::set_var(format!("{prefix}{k}"), v) };
    }
    Config::load_from(Some(file.path()), Env::prefixed(&prefix))
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed) << 20
}

fn base_toml(project: &Path, data: &Path) -> String {
    format!(
        "data_dir = {data:?}\n[project]\ndir = {project:?}\n",
        data = data.display().to_string(),
        project = project.display().to_string()
    )
}

#[test]
fn file_values_override_defaults_and_environment_overrides_file() {
    let project = project_dir();
    let data = tempfile::tempdir().unwrap();
    let toml =
        base_toml(project.path(), data.path()) + "[docker]\nhost = \"tcp://127.0.0.1:2375\"\n";
    let config = load(
        &format!("listen = \"127.0.0.1:4000\"\n{toml}"),
        &[
            ("LISTEN", "127.0.0.1:5000"),
            ("PROJECT_NAME", "epsm-staging"),
        ],
    )
    .unwrap();
    assert_eq!(config.listen, "127.0.0.1:5000".parse().unwrap());
    let sections = load(
        &toml,
        &[
            ("BACKUPS_KEEP_LAST", "1"),
            ("HEALTH_INTERVAL_SECS", "2"),
            ("DEPLOY_KEEP_IMAGES", "3"),
        ],
    )
    .unwrap();
    assert_eq!(sections.backups.keep_last, 1);
    assert_eq!(sections.health.interval_secs, 2);
    assert_eq!(sections.deploy.keep_images, 3);
    let git = load(
        &toml,
        &[
            ("PROJECT_GIT_BRANCH", "release"),
            ("PROJECT_GIT_REMOTE", "upstream"),
        ],
    )
    .unwrap();
    assert_eq!(git.project.git.branch, "release");
    assert_eq!(git.project.git.remote, "upstream");
    assert_eq!(git.project.git.timeout_secs, 120, "the default stays");
    assert_eq!(config.project.name.as_deref(), Some("epsm-staging"));
    assert_eq!(config.project_name(), "epsm-staging");
    assert_eq!(config.docker.host, "tcp://127.0.0.1:2375");
    assert_eq!(config.project.env_file, PathBuf::from(".env.production"));
    assert_eq!(
        config.compose_file(),
        project.path().join("docker-compose.production.yml")
    );
}

#[test]
fn without_a_configured_name_the_directory_names_the_project_as_compose_would() {
    for (dir, want) in [
        ("epsm", "epsm"),
        ("EPSM Prod.2", "epsmprod2"),
        ("_epsm-x", "epsm-x"),
    ] {
        assert_eq!(normalize_project_name(dir), want, "{dir}");
    }
    let config = Config {
        project: ProjectConfig {
            dir: PathBuf::from("/opt/EPSM"),
            ..Config::default().project
        },
        ..Config::default()
    };
    assert_eq!(config.project.name, None);
    assert_eq!(config.project_name(), "epsm");
}

#[test]
fn a_missing_config_file_is_named() {
    let err = Config::load_from(
        Some(Path::new("/nonexistent/epsm-ops.toml")),
        Env::prefixed("X_"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "configuration file /nonexistent/epsm-ops.toml: not found"
    );
}

#[test]
fn an_unknown_key_is_named_with_the_keys_that_exist() {
    let project = project_dir();
    let data = tempfile::tempdir().unwrap();
    let toml = format!(
        "lisen = \"127.0.0.1:1\"\n{}",
        base_toml(project.path(), data.path())
    );
    let msg = load(&toml, &[]).unwrap_err().to_string();
    assert!(msg.contains("unknown field: found `lisen`"), "{msg}");
    assert!(msg.contains("`listen`"), "{msg}");
}

#[test]
fn a_value_of_the_wrong_type_names_key_and_source() {
    let project = project_dir();
    let data = tempfile::tempdir().unwrap();
    let msg = load(
        &base_toml(project.path(), data.path()),
        &[("LISTEN", "not-an-address")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.starts_with("invalid socket address syntax for key \"LISTEN\""),
        "{msg}"
    );
    assert!(
        msg.contains("EPSM_OPS_TEST_"),
        "the variables it came from are named: {msg}"
    );
}

#[test]
fn validation_names_key_problem_and_expectation() {
    let project = project_dir();
    let data = tempfile::tempdir().unwrap();
    let toml = base_toml(project.path(), data.path());
    let cases: &[(&str, &str, &str)] = &[
        (
            "PROJECT_NAME",
            "EPSM",
            "`project.name` = \"EPSM\": does not start with a lowercase letter",
        ),
        (
            "PROJECT_NAME",
            "epsm prod",
            "has a character compose does not allow",
        ),
        (
            "PROJECT_DIR",
            "/nonexistent/epsm",
            "`project.dir` = \"/nonexistent/epsm\": is not an existing directory",
        ),
        ("PROJECT_ENV_FILE", ".env", "`project.env_file`"),
        (
            "DOCKER_HOST",
            "unix://var/run/docker.sock",
            "the socket path is not absolute",
        ),
        (
            "DOCKER_HOST",
            "ssh://host",
            "`docker.host` = \"ssh://host\": unsupported scheme; expected unix://",
        ),
        ("PUBLIC_URL", "ftp://ops.example", "`public_url`"),
        (
            "BACKUPS_SCHEDULE",
            "0 25 * * *",
            "`backups.schedule` = \"0 25 * * *\": is not a cron expression",
        ),
    ];
    let open_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::set_permissions(
        open_key.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let open_key = open_key.path().display().to_string();
    let msg = load(&toml, &[("PROJECT_GIT_SSH_KEY", &open_key)])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`project.git.ssh_key`") && msg.contains("is readable by others (mode 644)"),
        "{msg}"
    );
    for (var, value, want) in cases {
        let msg = load(&toml, &[(var, value)]).unwrap_err().to_string();
        assert!(
            msg.contains(want),
            "{var}={value}: got {msg:?}, want {want:?}"
        );
    }
    // The development IdP logs anyone in: never on an address others can reach.
    let msg = load(
        &toml,
        &[("AUTH_DEV_IDP", "true"), ("LISTEN", "0.0.0.0:3000")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("`auth.dev_idp`")
            && msg.contains("only allowed when the console listens on loopback"),
        "{msg}"
    );
    // The IdP's keys come from its metadata: not over plain http unless asked for.
    let http = [("AUTH_IDP_METADATA", "http://idp.example.org/metadata.xml")];
    let msg = load(&toml, &http).unwrap_err().to_string();
    assert!(
        msg.contains("`auth.idp_metadata`") && msg.contains("is plain http"),
        "{msg}"
    );
    assert!(load(&toml, &[http[0], ("AUTH_ALLOW_HTTP_METADATA", "true")]).is_ok());
    // Nor behind a proxy that others reach: listening on loopback is the production shape.
    for public_url in [
        "https://127.0.0.1:3000/",
        "http://ops.epsm.chalmers.se/",
        "https://ops.epsm.chalmers.se/",
        "http://10.0.0.5:3000/",
    ] {
        let msg = load(
            &toml,
            &[("AUTH_DEV_IDP", "true"), ("PUBLIC_URL", public_url)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("`auth.dev_idp`") && msg.contains("plain-http loopback"),
            "{public_url}: {msg}"
        );
    }
    for public_url in [
        "http://127.0.0.1:3000/",
        "http://localhost:3000/",
        "http://[::1]:3000/",
    ] {
        assert!(
            load(
                &toml,
                &[("AUTH_DEV_IDP", "true"), ("PUBLIC_URL", public_url)]
            )
            .is_ok(),
            "{public_url} is fine"
        );
    }
}

#[test]
fn a_schedule_is_five_fields_or_six_with_seconds_and_the_backups_dir_follows_data_dir() {
    let project = project_dir();
    let data = tempfile::tempdir().unwrap();
    let toml = base_toml(project.path(), data.path());
    let none = load(&toml, &[("BACKUPS_SCHEDULE", " ")]).unwrap();
    assert!(none.backups.cron().is_none(), "blank: no schedule");
    assert_eq!(none.backups_dir(), data.path().join("backups"));
    let daily = load(&toml, &[("BACKUPS_SCHEDULE", "30 3 * * *")]).unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T04:00:00Z")
        .unwrap()
        .to_utc();
    let next = daily
        .backups
        .cron()
        .unwrap()
        .find_next_occurrence(&now, false)
        .unwrap();
    assert_eq!(next.to_rfc3339(), "2026-11-26T03:30:00+00:00");
    let seconds = load(
        &toml,
        &[
            ("BACKUPS_SCHEDULE", "*/2 * * * * *"),
            ("BACKUPS_DIR", "/srv/b"),
        ],
    )
    .unwrap();
    let next = seconds
        .backups
        .cron()
        .unwrap()
        .find_next_occurrence(&now, false)
        .unwrap();
    assert_eq!(next.to_rfc3339(), "2026-11-25T04:00:02+00:00");
    assert_eq!(seconds.backups_dir(), PathBuf::from("/srv/b"));
}

#[test]
fn an_uncreatable_data_dir_is_a_clear_error() {
    let project = project_dir();
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let data = blocker.path().join("data");
    let msg = load(&base_toml(project.path(), &data), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("`data_dir`"), "{msg}");
    assert!(msg.contains("cannot be created"), "{msg}");
}

#[test]
fn docker_host_defaults_to_docker_host_variable_then_local_socket() {
    assert_eq!(default_docker_host(Some("tcp://h:1".into())), "tcp://h:1");
    assert_eq!(
        default_docker_host(Some(" ".into())),
        "unix:///var/run/docker.sock"
    );
    assert_eq!(default_docker_host(None), "unix:///var/run/docker.sock");
}

#[test]
fn the_example_config_file_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../epsm-ops.example.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let parsed: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::string(&text))
        .extract()
        .unwrap();
    assert_eq!(
        parsed.project.compose_file,
        PathBuf::from("docker-compose.production.yml")
    );
    assert_eq!(
        parsed.health.probes["celery_beat"],
        crate::health::probe::default_probe("celery_beat"),
        "probes are configured by kind"
    );
}

#[test]
fn the_variable_that_names_the_file_is_not_read_as_a_key() {
    let project = project_dir();
    let data = tempfile::tempdir().unwrap();
    let toml = base_toml(project.path(), data.path());
    let config = load(&toml, &[("CONFIG", "/etc/epsm-ops.toml")]).unwrap();
    assert_eq!(config.data_dir, data.path());
}

#[test]
fn alert_channels_need_what_their_kind_needs_and_unique_names() {
    let project = project_dir();
    let data = tempfile::tempdir().unwrap();
    let base = base_toml(project.path(), data.path());
    let good = format!(
        "{base}[alerts]\ngrace_secs = 0\n\
         [[alerts.channels]]\nname = \"team mail\"\nkind = \"email\"\nsmtp_host = \"smtp.chalmers.se\"\n\
         smtp_port = 587\nfrom = \"ops@epsm.chalmers.se\"\nto = [\"epsm-team@chalmers.se\"]\n\
         events = [\"service_down\", \"deploy_ended\"]\nmin_severity = \"warning\"\n\
         [[alerts.channels]]\nname = \"teams\"\nkind = \"teams\"\nurl_file = \"teams.url\"\n"
    );
    let config = load(&good, &[]).unwrap();
    assert_eq!(config.alerts.grace_secs, 0);
    assert_eq!(config.alerts.repeat_minutes, 60, "the default");
    let mail = &config.alerts.channels[0];
    assert_eq!(mail.kind, ChannelKind::Email);
    assert_eq!(mail.tls, SmtpTls::Starttls, "the default");
    assert_eq!(
        mail.events,
        [
            crate::alerts::EventKind::ServiceDown,
            crate::alerts::EventKind::DeployEnded
        ]
    );
    assert_eq!(mail.min_severity, crate::alerts::Severity::Warning);

    let wrong = |extra: &str| {
        load(&format!("{base}{extra}"), &[])
            .unwrap_err()
            .to_string()
    };
    let said =
        wrong("[[alerts.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = \"u\"\n");
    assert!(said.contains("needs secret_file"), "{said}");
    let said = wrong(
        "[[alerts.channels]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"a@b\"\n",
    );
    assert!(said.contains("needs to"), "{said}");
    let said = wrong(
        "[[alerts.channels]]\nname = \"t\"\nkind = \"teams\"\nurl_file = \"a\"\n\
         [[alerts.channels]]\nname = \"t\"\nkind = \"slack\"\nurl_file = \"b\"\n",
    );
    assert!(said.contains("names two channels"), "{said}");
    let said = wrong("[[alerts.channels]]\nname = \"t\"\nkind = \"pager\"\nurl_file = \"a\"\n");
    assert!(said.contains("pager"), "{said}");
    let said = wrong("[[alerts.channels]]\nname = \"t\"\nkind = \"teams\"\nurl = \"https://x\"\n");
    assert!(said.contains("url"), "an inline URL is refused: {said}");
}
