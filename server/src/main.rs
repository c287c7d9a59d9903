//! The epsm-ops process: parse the command line, then serve (`start.rs`) or run one command
//! (`commands.rs`). Exit codes: 0 done, 1 the work ran and failed, 2 it could not start.

use std::path::PathBuf;
use std::process::ExitCode;

use app::config::ConfigError;
use app::store::StoreError;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, ServeArgs};

/// mimalloc: a page render is allocation-bound (many small, short-lived allocations across the
/// runtime's threads), where glibc's malloc spent ~40% of the instructions (callgrind).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod auth;
mod cli;
mod client;
mod commands;
mod refusals;
mod router;
mod site;
mod start;
mod streams;

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
        Command::Serve(args) => start::serve(args).await,
        Command::Audit(args) => return commands::audit(args),
        Command::Doctor(args) => return commands::doctor(args).await,
        Command::Healthz(args) => return commands::healthz(args).await,
        Command::Backup(args) => commands::backup(args).await,
        Command::Deploy(args) => match commands::deploy(args).await {
            Ok(code) => return code,
            Err(e) => Err(e),
        },
        Command::Restore(args) => match commands::restore(args).await {
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
