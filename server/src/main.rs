//! The epsm-ops process: read the configuration, open the store, build the router, serve until
//! SIGINT/SIGTERM, then finish the requests in flight.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use app::audit::{AuditEvent, Outcome};
use app::config::{Config, ConfigError};
use app::deploy::ssr::Deployer;
use app::engine::EngineState;
use app::engine::ssr::Engine;
use app::environment::secrets::{Masker, secret_name_parts};
use app::environment::ssr::fingerprint_key;
use app::health::ssr::HealthMonitor;
use app::state::AppState;
use app::store::{Store, StoreError};
use clap::{Args, Parser, Subcommand};
use leptos::config::{Env, LeptosOptions};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

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
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(args).await,
        Command::Audit(args) => return audit(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("epsm-ops: {e}");
            ExitCode::from(2)
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

async fn serve(args: ServeArgs) -> Result<(), StartError> {
    let config = Config::load(args.config.as_deref())?;
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
    let config = Arc::new(config);
    let health = HealthMonitor::start(engine.clone(), config.clone(), masker.clone());
    let deployer = Deployer::new(
        config.clone(),
        store.clone(),
        engine.clone(),
        masker.clone(),
        health.clone(),
    )
    .await?;
    let state = AppState {
        leptos_options,
        config,
        store: store.clone(),
        engine,
        masker,
        health,
        deployer,
    };
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!("EPSM Ops listening on http://{addr}");
    record(
        &store,
        AuditEvent::system(
            "console.start",
            Outcome::Ok,
            &format!("listening on {addr}"),
        ),
    )
    .await;

    axum::serve(listener, router::build(state, shutdown.clone()))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Open streams (live pages) end now, so the requests in flight can finish.
            shutdown.cancel();
        })
        .await
        .map_err(StartError::Serve)?;

    record(
        &store,
        AuditEvent::system("console.stop", Outcome::Ok, "stopped on signal"),
    )
    .await;
    tracing::info!("EPSM Ops stopped");
    Ok(())
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
