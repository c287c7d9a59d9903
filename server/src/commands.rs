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
pub(crate) fn command_line_actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown user".into());
    format!("command line ({user})")
}

pub(crate) async fn deploy(args: DeployArgs) -> Result<ExitCode, StartError> {
    use app::deploy::{DeployEvent, DeployOptions, DeployOutcome, StepStatus};
    use std::io::{IsTerminal, Write};
    let opened = open(&args.config).await?;
    let config = opened.config.clone();
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
