//! The commands an operator runs on the host: the environment audit of any project, a backup now,
//! a deploy followed in the terminal. Each opens the same store and services as the server.

use std::process::ExitCode;

use app::deploy::ssr::Deployer;
use app::environment::secrets::secret_name_parts;
use app::health::ssr::HealthMonitor;

use crate::StartError;
use crate::cli::*;
use crate::start::{Opened, open};

pub(crate) fn audit(args: AuditArgs) -> ExitCode {
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
                "{}",
                app::environment::finding_counts(
                    count(Severity::Error),
                    count(Severity::Warning),
                    count(Severity::Info)
                )
            );
        }
    }
    if findings.iter().any(|f| f.severity == Severity::Error) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// How long `healthz` waits for the console's answer (a container healthcheck's timeout is longer).
const HEALTHZ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `epsm-ops healthz`: the console's own `/healthz`, asked where the configuration says it listens.
pub(crate) async fn healthz(args: ServeArgs) -> ExitCode {
    let config = match app::config::Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("epsm-ops: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let url = format!("http://{addr}/healthz");
    let answer = match reqwest::Client::builder().timeout(HEALTHZ_TIMEOUT).build() {
        Ok(client) => client.get(&url).send().await,
        Err(e) => {
            eprintln!("epsm-ops: {e}");
            return ExitCode::FAILURE;
        }
    };
    match answer {
        Ok(reply) if reply.status().is_success() => {
            println!("{url}: {}", reply.status());
            ExitCode::SUCCESS
        }
        Ok(reply) => {
            let status = reply.status();
            eprintln!("{url}: {status} {}", reply.text().await.unwrap_or_default());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {}", app::error::with_causes(&e));
            ExitCode::FAILURE
        }
    }
}

/// `epsm-ops doctor`: the checks' table on stdout; exit 1 when one failed (a configuration that
/// does not load is the first and only one).
pub(crate) async fn doctor(args: DoctorArgs) -> ExitCode {
    use app::doctor::{Check, Status, run, table};
    let checks = match app::config::Config::load(args.config.config.as_deref()) {
        Ok(config) => {
            let mut checks = vec![Check {
                name: "configuration",
                status: Status::Ok,
                found: args
                    .config
                    .config
                    .as_ref()
                    .map_or("defaults and EPSM_OPS_* variables".into(), |f| {
                        f.display().to_string()
                    }),
                fix: String::new(),
            }];
            checks.extend(run(&config).await);
            checks
        }
        Err(e) => vec![Check {
            name: "configuration",
            status: Status::Fail,
            found: e.to_string(),
            fix: "see epsm-ops.example.toml and the README's Configuration".into(),
        }],
    };
    print!("{}", table(&checks));
    if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

pub(crate) async fn backup(args: BackupArgs) -> Result<(), StartError> {
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
    // Its off-site copy (when configured) ends before the command does.
    backups.wait_for_copies().await;
    let copy = backups
        .get(done.id)
        .await
        .ok()
        .flatten()
        .and_then(|b| b.copy);
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
    match copy {
        Some(c) if c.ok == Some(true) => println!("{}", c.detail),
        Some(c) => {
            return Err(StartError::Backup(format!(
                "backup #{} is kept here, but its off-site copy failed: {}",
                done.id, c.detail
            )));
        }
        None => {}
    }
    Ok(())
}

/// The one who runs a command on the host, as the audit log names them.
pub(crate) fn command_line_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown user".into());
    format!("command line ({user})")
}

pub(crate) async fn deploy(args: DeployArgs) -> Result<ExitCode, StartError> {
    use app::deploy::DeployOptions;
    let options = DeployOptions {
        skip_migrations: args.skip_migrations,
        skip_seed: args.skip_seed,
        no_pull: args.no_pull,
        backup_first: args.backup_first,
        stop_first: args.stop_first,
        no_drain: args.no_drain,
        git_ref: args.git_ref,
        ..DeployOptions::default()
    };
    let opened = open(&args.config).await?;
    let question = format!(
        "Deploy {} to compose project {} ({})? [y/N] ",
        options
            .wanted_ref()
            .unwrap_or(&opened.config.project.git.branch),
        opened.config.project_name(),
        options.describe()
    );
    if !args.yes {
        ask(&question, &["y", "Y", "yes"], "deploy")?;
    }
    run_and_follow(opened, options, None).await
}

/// `epsm-ops restore <backup id | file>`: the Backups page's restore, confirmed by typing the
/// database name at the prompt (or `--yes` without a terminal).
pub(crate) async fn restore(args: RestoreArgs) -> Result<ExitCode, StartError> {
    use app::deploy::{DeployOptions, RestoreFrom, RestoreRequest};
    let from = match args.backup.parse::<i64>() {
        Ok(id) => RestoreFrom::Backup(id),
        Err(_) => {
            let path = std::path::absolute(&args.backup)
                .map_err(|e| StartError::Deploy(format!("{}: {e}", args.backup)))?;
            RestoreFrom::File(path.display().to_string())
        }
    };
    let options = DeployOptions {
        restore: Some(RestoreRequest {
            from,
            migrate: args.migrate,
        }),
        no_drain: args.no_drain,
        ..DeployOptions::default()
    };
    let opened = open(&args.config).await?;
    let env = app::environment::disk::env_values(&opened.config);
    let database = app::backup::ssr::database_login(&env).1;
    if !args.yes {
        let question = format!(
            "{} of compose project {}: the database {database} is replaced, what was written since \
             the backup is lost. Type {database} to confirm: ",
            options.describe(),
            opened.config.project_name()
        );
        ask(&question, &[database.as_str()], "restore")?;
    }
    run_and_follow(opened, options, Some(&database)).await
}

/// Asks `question` on the terminal; anything but one of `yes` stops the command.
fn ask(question: &str, yes: &[&str], what: &str) -> Result<(), StartError> {
    use std::io::{IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err(StartError::Deploy(format!(
            "no terminal to ask on: pass --yes to {what} without asking"
        )));
    }
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    if !yes.contains(&answer.trim()) {
        return Err(StartError::Deploy(format!("no {what}: not confirmed")));
    }
    Ok(())
}

/// Starts a deploy or restore as the page does (same plan, lock, history and audit log) and prints
/// its steps and lines as they come. 0 when it succeeded, 1 when it did not.
async fn run_and_follow(
    opened: Opened,
    options: app::deploy::DeployOptions,
    confirm: Option<&str>,
) -> Result<ExitCode, StartError> {
    use app::deploy::{DeployEvent, DeployOutcome, StepStatus};
    let kind = options.kind();
    // Rounds only when the run asks (verify): the command line needs no live page.
    let health = HealthMonitor::new(
        opened.engine.clone(),
        opened.config.clone(),
        opened.masker.clone(),
    );
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
        // On the host, the one who may run the console's binary may do what it does.
        role: if options.destructive() {
            app::auth::Role::Admin
        } else {
            app::auth::Role::Deployer
        },
    };
    let id = deployer
        .start(&actor, options, confirm)
        .await
        .map_err(|e| StartError::Deploy(e.to_string()))?;
    let Some((history, mut live)) = deployer.follow(id) else {
        return Err(StartError::Deploy(format!(
            "{kind} #{id} ended before it could be followed"
        )));
    };
    println!("{kind} #{id} started");
    let mut events = std::collections::VecDeque::from(history);
    loop {
        let event = match events.pop_front() {
            Some(event) => event,
            None => match live.recv().await {
                Ok(event) => event,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(StartError::Deploy(format!("lost {kind} #{id}")));
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
                println!("{kind} #{id} {}: {summary}", outcome.as_str());
                return Ok(if outcome == DeployOutcome::Succeeded {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
        }
    }
}
