//! The epsm-ops process: read the configuration, open the store, build the router, serve until
//! SIGINT/SIGTERM, then finish the requests in flight.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use app::audit::{AuditEvent, AuditOutcome};
use app::auth::gate::Gate;
use app::auth::ssr::ServiceProvider;
use app::backup::ssr::Backups;
use app::config::{Config, ConfigError};
use app::deploy::ssr::Deployer;
use app::engine::EngineState;
use app::engine::ssr::Engine;
use app::environment::disk::fingerprint_key;
use app::environment::secrets::{Masker, secret_name_parts};
use app::environment::ssr::EnvironmentAudit;
use app::health::maintenance::Maintenance;
use app::health::ssr::HealthMonitor;
use app::state::AppState;
use app::store::{Store, StoreError};
use clap::{Args, Parser, Subcommand};
use leptos::config::{Env, LeptosOptions};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

mod auth;
mod client;
mod router;
mod streams;

#[derive(Parser)]
#[command(
    name = "epsm-ops",
    version,
    about = "EPSM Ops: the deploy console of the EPSM compose stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the console (what runs when no command is given).
    Serve(ServeArgs),
    /// Audit a compose project's env file and compose file. Prints the findings (never a value) and
    /// exits 1 when one is an error, so a CI pipeline can run it before a deploy.
    Audit(AuditArgs),
    /// Back up the project's database now, as the Backups page does (same directory, records, checks,
    /// retention and audit log), e.g. from a cron job on the host. Exits 1 when the backup failed.
    Backup(BackupArgs),
    /// Deploy as the Deploy button does (same plan, one-at-a-time lock, history and audit log), printing
    /// the steps as they run, e.g. from EPSM's own runner. Exits 0 when the deploy ended verified, 1
    /// when it failed, 2 when another deploy runs (named) or it could not start.
    Deploy(DeployArgs),
}

#[derive(Args)]
struct DeployArgs {
    #[command(flatten)]
    config: ServeArgs,
    /// What to deploy: a branch of the remote, a tag or a commit (default: the configured branch).
    #[arg(long = "ref", value_name = "REF")]
    git_ref: Option<String>,
    #[arg(long)]
    skip_migrations: bool,
    #[arg(long)]
    skip_seed: bool,
    /// Build without `--pull` (where there is no registry).
    #[arg(long)]
    no_pull: bool,
    /// Back up the database before anything is stopped.
    #[arg(long)]
    backup_first: bool,
    /// Do not ask before deploying (needed without a terminal to ask on).
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Args)]
struct BackupArgs {
    #[command(flatten)]
    config: ServeArgs,
    /// pg_dump's output format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Custom)]
    format: DumpFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DumpFormat {
    /// Custom format (-Fc), restored with pg_restore.
    Custom,
    /// Plain SQL.
    Plain,
}

#[derive(Args)]
struct AuditArgs {
    /// The compose project directory (e.g. /opt/epsm).
    #[arg(long, value_name = "DIR")]
    project_dir: PathBuf,
    /// Compose file, relative to the project directory.
    #[arg(long, default_value = "docker-compose.production.yml")]
    compose_file: PathBuf,
    /// Env file, relative to the project directory.
    #[arg(long, default_value = ".env.production")]
    env_file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// A name part that makes a variable secret, besides the built-in ones (repeatable), as
    /// `secrets.extra_name_parts` in the console's configuration.
    #[arg(long = "secret-name-part", value_name = "PART")]
    secret_name_parts: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Args, Default)]
struct ServeArgs {
    /// TOML configuration file (see epsm-ops.example.toml). Without one, the built-in defaults serve
    /// the bundled EPSM-like stack when run from the repository root.
    #[arg(long, env = "EPSM_OPS_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("data directory {path}: cannot keep the fingerprint key: {source}")]
    FingerprintKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Backup(String),
    #[error("{0}")]
    Deploy(String),
    #[error("login: {0}")]
    Auth(#[from] app::auth::AuthError),
    #[error("session store: {0}")]
    Sessions(String),
    #[error("private files: {0}")]
    Private(#[from] app::files::TooOpen),
}

#[tokio::main]
async fn main() -> ExitCode {
    // Everything this process creates (store, keys, dumps) is its owner's alone.
    app::files::restrict_umask();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Logs on stderr: stdout is the commands' output (`audit --format json`, `backup`).
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args).await,
        Command::Audit(args) => return audit(args),
        Command::Backup(args) => backup(args).await,
        Command::Deploy(args) => match deploy(args).await {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("epsm-ops: {e}");
            // 1: the backup ran and failed; 2: the console could not start (configuration, store).
            if matches!(e, StartError::Backup(_)) {
                ExitCode::FAILURE
            } else {
                ExitCode::from(2)
            }
        }
    }
}

fn audit(args: AuditArgs) -> ExitCode {
    use app::environment::Severity;
    let findings = match app::environment::ssr::audit_project(
        &args.project_dir,
        &args.compose_file,
        &args.env_file,
        &secret_name_parts(&args.secret_name_parts),
    ) {
        Ok(audit) => audit.findings,
        Err(e) => {
            eprintln!("epsm-ops audit: {e}");
            return ExitCode::from(2);
        }
    };
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&findings).unwrap_or_default()
        ),
        Format::Table => {
            for f in &findings {
                let place = match f.line {
                    Some(line) => format!("{}:{line}", f.file),
                    None => f.file.clone(),
                };
                println!(
                    "{:<8} {:<26} {place}  {} {}",
                    f.severity.as_str(),
                    f.rule,
                    f.key,
                    f.message
                );
                println!("{:<36}fix: {}", "", f.fix);
            }
            let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
            println!(
                "{} errors, {} warnings, {} notes",
                count(Severity::Error),
                count(Severity::Warning),
                count(Severity::Info)
            );
        }
    }
    if findings.iter().any(|f| f.severity == Severity::Error) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What both the server and the command line build first, once.
struct Opened {
    config: Arc<Config>,
    store: Store,
    engine: Arc<Engine>,
    masker: Arc<Masker>,
    backups: Arc<Backups>,
}

/// What both the server and the command line need: the configuration, the store, the engine, the
/// masker and the backups service; backups a stopped process left running are marked interrupted.
async fn open(args: &ServeArgs) -> Result<Opened, StartError> {
    let mut config = Config::load(args.config.as_deref())?;
    app::files::check_private_paths(&config)?;
    let store = Store::open(&config.data_dir).await?;
    let engine = Arc::new(Engine::new(config.docker.host.clone()));
    let key = fingerprint_key(&config.data_dir).map_err(|source| StartError::FingerprintKey {
        path: config.data_dir.clone(),
        source,
    })?;
    let masker = Arc::new(Masker::new(
        secret_name_parts(&config.secrets.extra_name_parts),
        &key,
    ));
    // The project as compose names it (the running stack's containers carry that name).
    let scrubber = masker.scrubber(
        app::environment::disk::env_values(&config)
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let (name, source, problem) = app::compose::resolve_project_name(&config, &scrubber).await;
    if let Some(problem) = problem {
        tracing::warn!("compose could not name the project ({problem}): using {name:?}");
    }
    tracing::info!("compose project {name:?} (from {})", source.describe());
    config.project.name = Some(name);
    config.project.name_source = source;
    let config = Arc::new(config);
    let backups = Backups::new(
        config.clone(),
        store.clone(),
        engine.clone(),
        masker.clone(),
    );
    let interrupted = app::backup::ssr::recover_interrupted(&backups).await?;
    if interrupted > 0 {
        tracing::warn!("{interrupted} backup(s) left running by a stopped process marked failed");
    }
    Ok(Opened {
        config,
        store,
        engine,
        masker,
        backups,
    })
}

async fn backup(args: BackupArgs) -> Result<(), StartError> {
    use app::backup::BackupFormat;
    let Opened {
        config, backups, ..
    } = open(&args.config).await?;
    let format = match args.format {
        DumpFormat::Custom => BackupFormat::Custom,
        DumpFormat::Plain => BackupFormat::Plain,
    };
    let done = app::backup::ssr::backup_now(&backups, &command_line_actor(), format)
        .await
        .map_err(|e| StartError::Backup(e.to_string()))?;
    println!(
        "backup #{} {}: {} bytes, sha256 {}, {} ms",
        done.id,
        config
            .backups_dir()
            .join(done.file_name.unwrap_or_default())
            .display(),
        done.size_bytes.unwrap_or(0),
        done.sha256.unwrap_or_default(),
        done.duration_ms.unwrap_or(0)
    );
    Ok(())
}

/// The one who runs a command on the host, as the audit log names them.
fn command_line_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown user".into());
    format!("command line ({user})")
}

async fn deploy(args: DeployArgs) -> Result<ExitCode, StartError> {
    use app::deploy::{DeployEvent, DeployOptions, DeployOutcome, StepStatus};
    use std::io::{IsTerminal, Write};
    let opened = open(&args.config).await?;
    let config = opened.config.clone();
    let options = DeployOptions {
        skip_migrations: args.skip_migrations,
        skip_seed: args.skip_seed,
        no_pull: args.no_pull,
        backup_first: args.backup_first,
        git_ref: args.git_ref,
        ..DeployOptions::default()
    };
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(StartError::Deploy(
                "no terminal to ask on: pass --yes to deploy without asking".into(),
            ));
        }
        print!(
            "Deploy {} to compose project {} ({})? [y/N] ",
            options.wanted_ref().unwrap_or(&config.project.git.branch),
            config.project_name(),
            options.describe()
        );
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(StartError::Deploy("not deployed: not confirmed".into()));
        }
    }
    // Rounds only when the deploy asks (verify): the command line needs no live page.
    let health = HealthMonitor::new(opened.engine.clone(), config.clone(), opened.masker.clone());
    let deployer = Deployer::new(
        opened.config,
        opened.store,
        opened.engine,
        opened.masker,
        health,
        opened.backups,
    )
    .await?;
    let actor = app::auth::Actor {
        name: command_line_actor(),
        role: app::auth::Role::Deployer,
    };
    let id = deployer
        .start(&actor, options, None)
        .await
        .map_err(|e| StartError::Deploy(e.to_string()))?;
    let Some((history, mut live)) = deployer.follow(id) else {
        return Err(StartError::Deploy(format!(
            "deploy #{id} ended before it could be followed"
        )));
    };
    println!("deploy #{id} started");
    let mut events = std::collections::VecDeque::from(history);
    loop {
        let event = match events.pop_front() {
            Some(event) => event,
            None => match live.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(StartError::Deploy(format!("lost deploy #{id}")));
                }
            },
        };
        match event {
            DeployEvent::Line(line) if line.stderr => eprintln!("  {}", line.text),
            DeployEvent::Line(line) => println!("  {}", line.text),
            DeployEvent::Step { step, .. } if step.status != StepStatus::Pending => println!(
                "==> {}: {}{}",
                step.name,
                step.status.as_str(),
                step.duration_ms
                    .map(|ms| format!(" ({:.1} s)", ms as f64 / 1000.0))
                    .unwrap_or_default()
            ),
            DeployEvent::Step { .. } => {}
            DeployEvent::Earlier { lines } => {
                println!("  [{lines} earlier lines: see the raw log]")
            }
            DeployEvent::Finished { outcome, summary } => {
                println!("deploy #{id} {}: {summary}", outcome.as_str());
                return Ok(if outcome == DeployOutcome::Succeeded {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), StartError> {
    let Opened {
        config,
        store,
        engine,
        masker,
        backups,
    } = open(&args).await?;
    match engine.status().await.state {
        EngineState::Reachable(info) => {
            tracing::info!(
                endpoint = engine.endpoint(),
                version = info.version,
                "docker engine reachable"
            )
        }
        // Not fatal: the console exists to show this, and finds the engine when it comes back.
        EngineState::Unreachable { reason } => tracing::warn!("{reason}"),
    }
    let wasm = config.site_root.join("pkg/epsm-ops.wasm");
    if !wasm.is_file() {
        tracing::warn!(
            "{} not found: pages are served but not interactive (build the site with `cargo leptos build`)",
            wasm.display()
        );
    }
    let leptos_options = LeptosOptions::builder()
        .output_name("epsm-ops")
        .site_root(config.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .site_addr(config.listen)
        .env(if cfg!(debug_assertions) {
            Env::DEV
        } else {
            Env::PROD
        })
        .build();
    let addr = config.listen;
    let health = HealthMonitor::start(engine.clone(), config.clone(), masker.clone());
    let deployer = Deployer::new(
        config.clone(),
        store.clone(),
        engine.clone(),
        masker.clone(),
        health.clone(),
        backups.clone(),
    )
    .await?;
    let sessions = tower_sessions_sqlx_store::SqliteStore::new(store.pool().clone());
    sessions
        .migrate()
        .await
        .map_err(|e| StartError::Sessions(e.to_string()))?;
    tokio::spawn({
        use tower_sessions::session_store::ExpiredDeletion;
        sessions
            .clone()
            .continuously_delete_expired(std::time::Duration::from_secs(600))
    });
    let gate = Arc::new(Gate::new(
        config.auth.clone(),
        store.clone(),
        Arc::new(sessions.clone()),
    ));
    let saml = ServiceProvider::start(&config, gate.clone(), store.clone()).await?;
    tokio::spawn(saml.clone().refresh_metadata(config.clone()));
    if config.auth.dev_idp {
        tracing::warn!("the development IdP is on: anybody can log in as anyone (loopback only)");
    }
    let state = AppState {
        leptos_options,
        maintenance: Maintenance::new(
            config.clone(),
            store.clone(),
            engine.clone(),
            health.clone(),
        ),
        environment: EnvironmentAudit::new(
            config.clone(),
            masker.clone(),
            engine.clone(),
            store.clone(),
        ),
        streams: app::streams::StreamLimits::new(
            config.limits.streams_per_session,
            config.limits.streams_total,
        ),
        config,
        store: store.clone(),
        engine,
        masker,
        gate,
        saml,
        health,
        deployer,
        backups: backups.clone(),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(prune_audit_log(
        state.store.clone(),
        state.config.audit.keep_days,
    ));
    tokio::spawn(app::backup::ssr::run_schedule(backups, shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!("EPSM Ops listening on http://{addr}");
    record(
        &store,
        AuditEvent::system(
            "console.start",
            AuditOutcome::Ok,
            &format!("listening on {addr}"),
        ),
    )
    .await;

    // axum-server rather than axum::serve: it lets hyper close a connection that does not send its
    // request headers in time (a slow client holding connections open).
    let header_timeout =
        std::time::Duration::from_secs(state.config.limits.header_read_timeout_secs);
    let app = router::build(state, shutdown.clone(), sessions);
    let handle = axum_server::Handle::new();
    let mut server = axum_server::from_tcp(listener.into_std().map_err(StartError::Serve)?)
        .map_err(StartError::Serve)?
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    tokio::spawn(async move {
        shutdown_signal().await;
        // Open streams (live pages) end now, so the requests in flight can finish.
        shutdown.cancel();
        handle.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    server
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
        .map_err(StartError::Serve)?;

    record(
        &store,
        AuditEvent::system("console.stop", AuditOutcome::Ok, "stopped on signal"),
    )
    .await;
    tracing::info!("EPSM Ops stopped");
    Ok(())
}

/// Keeps the audit log to `audit.keep_days`: at start, then daily.
async fn prune_audit_log(store: Store, keep_days: u32) {
    loop {
        match store.prune_audit_log(keep_days).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("audit log: {n} entries older than {keep_days} days deleted"),
            Err(e) => tracing::error!("audit log: pruning failed: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)).await;
    }
}

/// The console's own start/stop events must not stop it when the store has trouble: log instead.
async fn record(store: &Store, event: AuditEvent) {
    if let Err(e) = store.record(event).await {
        tracing::error!("audit log: {e}");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested: finishing requests in flight");
}
