//! The command line: `epsm-ops [serve]`, `audit`, `backup`, `deploy`, `restore`, `doctor`, `healthz`, with their flags (each also
//! settable from the environment where it says so).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "epsm-ops",
    version,
    about = "EPSM Ops: the deploy console of the EPSM compose stack"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Restore the database from a backup (its id on the Backups page) or a dump file, as the
    /// Backups page does: a safety backup first, the writers stopped, the dump restored in one
    /// transaction, the stack checked; in the history and audit log. Asks for the database name
    /// unless --yes. Exits 0 when restored, 1 when it failed (the database as it was), 2 when it could
    /// not start.
    Restore(RestoreArgs),
    /// Check the host before the first login: the configuration, the Docker engine and this user's
    /// access to it, compose and git, the project's files and checkout, the IdP's metadata and the
    /// certificates, the public URL, the private directories and the backups' disk. Prints ok / warn
    /// / FAIL with the fix of each; exits 1 when one failed. Changes nothing.
    Doctor(DoctorArgs),
    /// Ask the console this configuration describes for its `/healthz` (at its listen address, on
    /// loopback when it listens on every address). Exits 0 when it answers ok within 5 s, 1 otherwise:
    /// the container image's healthcheck.
    Healthz(ServeArgs),
}

#[derive(Args)]
pub(crate) struct DoctorArgs {
    #[command(flatten)]
    pub(crate) config: ServeArgs,
}

#[derive(Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    pub(crate) config: ServeArgs,
    /// A backup's id, or the path of a pg_dump file (custom format or plain SQL).
    #[arg(value_name = "BACKUP_ID_OR_FILE")]
    pub(crate) backup: String,
    /// Run `migrate` after the restore (a backup older than the running code's migrations).
    #[arg(long)]
    pub(crate) migrate: bool,
    /// Don't wait for the Celery tasks that run: stopping the worker interrupts them.
    #[arg(long)]
    pub(crate) no_drain: bool,
    /// Do not ask for the database name (needed without a terminal to ask on).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

#[derive(Args)]
pub(crate) struct DeployArgs {
    #[command(flatten)]
    pub(crate) config: ServeArgs,
    /// What to deploy: a branch of the remote, a tag or a commit (default: the configured branch).
    #[arg(long = "ref", value_name = "REF")]
    pub(crate) git_ref: Option<String>,
    #[arg(long)]
    pub(crate) skip_migrations: bool,
    #[arg(long)]
    pub(crate) skip_seed: bool,
    /// Build without `--pull` (where there is no registry).
    #[arg(long)]
    pub(crate) no_pull: bool,
    /// Back up the database before anything is stopped.
    #[arg(long)]
    pub(crate) backup_first: bool,
    /// The guide's order: stop the stack, then build (for a host short of disk or memory).
    #[arg(long)]
    pub(crate) stop_first: bool,
    /// Don't wait for the Celery tasks that run: the switch interrupts them.
    #[arg(long)]
    pub(crate) no_drain: bool,
    /// Do not ask before deploying (needed without a terminal to ask on).
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

#[derive(Args)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    pub(crate) config: ServeArgs,
    /// pg_dump's output format.
    #[arg(long, value_enum, default_value_t = DumpFormat::Custom)]
    pub(crate) format: DumpFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum DumpFormat {
    /// Custom format (-Fc), restored with pg_restore.
    Custom,
    /// Plain SQL.
    Plain,
}

#[derive(Args)]
pub(crate) struct AuditArgs {
    /// The compose project directory (e.g. /opt/epsm).
    #[arg(long, value_name = "DIR")]
    pub(crate) project_dir: PathBuf,
    /// Compose file, relative to the project directory.
    #[arg(long, default_value = "docker-compose.production.yml")]
    pub(crate) compose_file: PathBuf,
    /// Env file, relative to the project directory.
    #[arg(long, default_value = ".env.production")]
    pub(crate) env_file: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
    /// A name part that makes a variable secret, besides the built-in ones (repeatable), as
    /// `secrets.extra_name_parts` in the console's configuration.
    #[arg(long = "secret-name-part", value_name = "PART")]
    pub(crate) secret_name_parts: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

#[derive(Args, Default)]
pub(crate) struct ServeArgs {
    /// TOML configuration file (see epsm-ops.example.toml). Without one, the built-in defaults serve
    /// the bundled EPSM-like stack when run from the repository root.
    #[arg(long, env = "EPSM_OPS_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}
