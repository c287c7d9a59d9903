//! The deploy plan: the deployment guide's procedure as a list of named steps for the chosen options.
//! Plain data; `ssr.rs` carries the steps out.

use super::{DeployOptions, RestoreRequest};
use crate::config::{Config, DeployConfig};

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Files parse, compose accepts them, the engine answers, the audit has no error (unless overridden),
    /// no other project holds a container name or port; the remote fetched, the ref resolved, nothing
    /// on the server a checkout would overwrite.
    Preflight,
    /// Check out the commit preflight resolved (skipped when the project is not a git checkout).
    Source,
    /// `docker compose <args>` as a child process.
    Compose(Vec<String>),
    /// The engine's build cache, removed through the API (`docker builder prune -af`).
    PruneBuildCache,
    /// The registry images of services that are not built (those of the configured profiles too),
    /// pulled one by one while the old version still runs.
    PullImages,
    /// Until these services' containers are healthy (bounded).
    WaitHealthy(Vec<String>),
    /// A command in a service's container through the API; its exit code decides.
    Exec { service: String, cmd: Vec<String> },
    /// Every service up and healthy, deep probes included.
    Verify,
    /// Name the kept images of deploy `.0` as the images compose runs (a rollback).
    RestoreImages(i64),
    /// Name this deploy's images so a rollback can find them; forget those of old deploys.
    KeepImages,
    /// A database backup (pg_dump), before anything is stopped.
    Backup,
    /// The Celery worker stops taking tasks; the running ones are waited for (bounded).
    Drain,
    /// The public service stops and a maintenance page answers on its ports.
    MaintenanceOn,
    /// The dump a restore brings back exists, is whole (its size and sha256 as recorded) and is a
    /// custom archive or plain SQL; the database container runs.
    CheckDump,
    /// The dump streamed into the database in one transaction (`pg_restore` or `psql`).
    RestoreDatabase,
    /// The maintenance page goes and `docker compose <args>` starts the public service.
    Reopen(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub name: &'static str,
    pub action: Action,
    /// Skipped by an option: shown in the step list, not run.
    pub skipped: bool,
}

/// The guide's steps for `options`, built first: the new images are built while the running version
/// serves, and the stack stops only for the switch. `stop_first` keeps the guide's own order (down,
/// then build). The switch: the worker drained, the public service (nginx) replaced by a maintenance
/// page, `down`, `up` of everything else, migrate, seed, collectstatic, and then nginx again. For a
/// rollback, the images of the earlier deploy brought back and started without a build.
pub fn plan(options: &DeployOptions, deploy: &DeployConfig) -> Vec<PlannedStep> {
    let switch = Switch::of(options, deploy);
    if let Some(id) = options.rollback_of {
        return rollback_plan(id, &switch);
    }
    let mut down = strings(&["down", "--remove-orphans"]);
    if options.recreate_volumes {
        // The guide's "DELETES ALL DATA": the named volumes really go.
        down.push("--volumes".into());
    }
    let mut build = strings(&["build", "--no-cache"]);
    if !options.no_pull {
        build.push("--pull".into());
    }
    let manage = |args: &[&str]| Action::Exec {
        service: "backend".into(),
        cmd: strings(&[&["python", "manage.py"], args].concat()),
    };
    let building = [
        step("prune build cache", Action::PruneBuildCache),
        step("build", Action::Compose(build)),
    ];
    let mut stopping = switch.begin();
    stopping.push(step("down", Action::Compose(down)));
    let mut steps = vec![
        step("preflight", Action::Preflight),
        step("source", Action::Source),
        PlannedStep {
            skipped: !options.backup_first,
            ..step("back up database", Action::Backup)
        },
        PlannedStep {
            skipped: options.no_pull,
            ..step("pull images", Action::PullImages)
        },
    ];
    if options.stop_first {
        steps.extend(stopping);
        steps.extend(building);
    } else {
        steps.extend(building);
        steps.extend(stopping);
    }
    steps.extend([
        step(
            "up",
            Action::Compose(switch.up(&["up", "-d", "--force-recreate"])),
        ),
        step(
            "wait for healthy",
            Action::WaitHealthy(strings(&["database", "redis", "backend"])),
        ),
        PlannedStep {
            skipped: options.skip_migrations,
            ..step("migrate", manage(&["migrate", "--noinput"]))
        },
        PlannedStep {
            skipped: options.skip_seed,
            ..step(
                "seed",
                Action::Exec {
                    service: "backend".into(),
                    cmd: deploy.seed_command.clone(),
                },
            )
        },
        step("collectstatic", manage(&["collectstatic", "--noinput"])),
    ]);
    steps.extend(switch.end(&[]));
    steps.extend([
        step("verify", Action::Verify),
        step("keep images", Action::KeepImages),
    ]);
    steps
}

/// The plan of any run: a restore's when `options` ask for one, else a deploy's (or rollback's).
pub fn plan_for(options: &DeployOptions, config: &Config) -> Vec<PlannedStep> {
    match &options.restore {
        Some(restore) => restore_plan(
            restore,
            options,
            &config.deploy,
            &config.backups.restore_stop_services,
        ),
        None => plan(options, &config.deploy),
    }
}

/// A restore: a safety backup first; the services that write to the database stopped (behind the
/// maintenance page, the worker drained first) while the dump replaces the database in one
/// transaction; then started again, migrated when asked, checked.
fn restore_plan(
    restore: &RestoreRequest,
    options: &DeployOptions,
    deploy: &DeployConfig,
    writers: &[String],
) -> Vec<PlannedStep> {
    let switch = Switch::of(options, deploy);
    let with_writers = |verb: &str| {
        let mut args = vec![verb.to_string()];
        args.extend(writers.iter().cloned());
        Action::Compose(args)
    };
    let mut steps = vec![
        step("check backup", Action::CheckDump),
        step("safety backup", Action::Backup),
    ];
    // A rollback with its data: an earlier deploy's images come back with the database.
    if let Some(id) = options.rollback_of {
        steps.push(step("restore images", Action::RestoreImages(id)));
    }
    steps.extend(switch.begin());
    steps.extend([
        step("stop writers", with_writers("stop")),
        step("restore", Action::RestoreDatabase),
    ]);
    if options.rollback_of.is_some() {
        steps.push(step(
            "up",
            Action::Compose(switch.up(&["up", "-d", "--force-recreate", "--no-build"])),
        ));
    } else {
        steps.extend([
            step("start writers", with_writers("start")),
            PlannedStep {
                skipped: !restore.migrate,
                ..step(
                    "migrate",
                    Action::Exec {
                        service: "backend".into(),
                        cmd: strings(&["python", "manage.py", "migrate", "--noinput"]),
                    },
                )
            },
        ]);
    }
    steps.push(step(
        "wait for healthy",
        Action::WaitHealthy(strings(&["database", "redis", "backend"])),
    ));
    steps.extend(switch.end(&["--no-build"]));
    steps.push(step("verify", Action::Verify));
    if options.rollback_of.is_some() {
        steps.push(step("keep images", Action::KeepImages));
    }
    steps
}

/// How the switch is made for the configured worker and public service.
struct Switch<'a> {
    /// The worker to drain (None: no worker configured, or the deployer chose not to wait).
    drain: Option<&'a str>,
    /// The public service recreated last behind a maintenance page (None: no maintenance page).
    public: Option<&'a str>,
}

impl<'a> Switch<'a> {
    fn of(options: &DeployOptions, deploy: &'a DeployConfig) -> Switch<'a> {
        let named = |s: &'a str| Some(s.trim()).filter(|s| !s.is_empty());
        Switch {
            drain: named(&deploy.worker_service).filter(|_| !options.no_drain),
            public: named(&deploy.public_service),
        }
    }

    /// The steps before the stack stops: drain, maintenance page.
    fn begin(&self) -> Vec<PlannedStep> {
        let mut steps = Vec::new();
        if self.drain.is_some() {
            steps.push(step("drain tasks", Action::Drain));
        }
        if self.public.is_some() {
            steps.push(step("maintenance page", Action::MaintenanceOn));
        }
        steps
    }

    /// `up` of everything but the public service, which comes back at the end.
    fn up(&self, args: &[&str]) -> Vec<String> {
        let mut args = strings(args);
        if let Some(public) = self.public {
            args.extend(["--scale".into(), format!("{public}=0")]);
        }
        args
    }

    /// The public service started again, in place of the maintenance page.
    fn end(&self, extra: &[&str]) -> Vec<PlannedStep> {
        self.public
            .map(|public| {
                let mut args = strings(&["up", "-d", "--force-recreate", "--no-deps"]);
                args.extend(strings(extra));
                args.push(public.to_string());
                step("reopen", Action::Reopen(args))
            })
            .into_iter()
            .collect()
    }
}

fn step(name: &'static str, action: Action) -> PlannedStep {
    PlannedStep {
        name,
        action,
        skipped: false,
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A rollback: no build, no migration (a rollback does not undo migrations), no drain (the tasks of
/// a version being rolled back from are not waited for).
fn rollback_plan(id: i64, switch: &Switch) -> Vec<PlannedStep> {
    let switch = Switch {
        drain: None,
        public: switch.public,
    };
    let mut steps = vec![
        step("preflight", Action::Preflight),
        step("restore images", Action::RestoreImages(id)),
    ];
    steps.extend(switch.begin());
    steps.extend([
        step(
            "up",
            Action::Compose(switch.up(&["up", "-d", "--force-recreate", "--no-build"])),
        ),
        step(
            "wait for healthy",
            Action::WaitHealthy(strings(&["database", "redis", "backend"])),
        ),
    ]);
    steps.extend(switch.end(&["--no-build"]));
    steps.extend([
        step("verify", Action::Verify),
        step("keep images", Action::KeepImages),
    ]);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy() -> DeployConfig {
        crate::config::Config::default().deploy
    }

    fn compose_args(steps: &[PlannedStep], name: &str) -> Vec<String> {
        match &steps.iter().find(|s| s.name == name).unwrap().action {
            Action::Compose(args) | Action::Reopen(args) => args.clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

    /// `up` of a rollback: the kept images, nothing built, nginx behind the maintenance page.
    const UP_NO_BUILD: [&str; 6] = [
        "up",
        "-d",
        "--force-recreate",
        "--no-build",
        "--scale",
        "nginx=0",
    ];

    fn names(steps: &[PlannedStep]) -> Vec<&'static str> {
        steps.iter().map(|s| s.name).collect()
    }

    #[test]
    fn stop_first_is_the_guides_order_and_the_default_builds_while_the_old_version_serves() {
        let guide = plan(
            &DeployOptions {
                stop_first: true,
                ..DeployOptions::default()
            },
            &deploy(),
        );
        assert_eq!(
            names(&guide)[4..9],
            [
                "drain tasks",
                "maintenance page",
                "down",
                "prune build cache",
                "build"
            ],
            "the guide: down, then build"
        );
        let default = plan(&DeployOptions::default(), &deploy());
        assert_eq!(
            names(&default)[4..10],
            [
                "prune build cache",
                "build",
                "drain tasks",
                "maintenance page",
                "down",
                "up"
            ],
            "build first: down only for the switch"
        );
        let mut sorted = names(&default);
        sorted.sort_unstable();
        let mut guide_sorted = names(&guide);
        guide_sorted.sort_unstable();
        assert_eq!(sorted, guide_sorted, "the same steps, in another order");
    }

    #[test]
    fn the_default_plan_is_the_guides_procedure_built_first_with_nginx_back_last() {
        let steps = plan(&DeployOptions::default(), &deploy());
        assert_eq!(
            names(&steps),
            [
                "preflight",
                "source",
                "back up database",
                "pull images",
                "prune build cache",
                "build",
                "drain tasks",
                "maintenance page",
                "down",
                "up",
                "wait for healthy",
                "migrate",
                "seed",
                "collectstatic",
                "reopen",
                "verify",
                "keep images"
            ]
        );
        let skipped: Vec<&str> = steps.iter().filter(|s| s.skipped).map(|s| s.name).collect();
        assert_eq!(skipped, ["back up database"], "no backup unless asked");
        assert_eq!(compose_args(&steps, "down"), ["down", "--remove-orphans"]);
        assert_eq!(
            compose_args(&steps, "build"),
            ["build", "--no-cache", "--pull"]
        );
        assert_eq!(
            compose_args(&steps, "up"),
            ["up", "-d", "--force-recreate", "--scale", "nginx=0"],
            "everything but nginx: the maintenance page holds its ports"
        );
        assert_eq!(
            compose_args(&steps, "reopen"),
            ["up", "-d", "--force-recreate", "--no-deps", "nginx"]
        );
    }

    #[test]
    fn no_worker_or_public_service_configured_is_the_plain_switch() {
        let bare = DeployConfig {
            worker_service: String::new(),
            public_service: " ".into(),
            ..deploy()
        };
        let steps = plan(&DeployOptions::default(), &bare);
        assert!(
            !names(&steps)
                .iter()
                .any(|n| ["drain tasks", "maintenance page", "reopen"].contains(n))
        );
        assert_eq!(compose_args(&steps, "up"), ["up", "-d", "--force-recreate"]);
        let no_wait = plan(
            &DeployOptions {
                no_drain: true,
                ..DeployOptions::default()
            },
            &deploy(),
        );
        assert!(!names(&no_wait).contains(&"drain tasks"));
        assert!(names(&no_wait).contains(&"maintenance page"));
    }

    #[test]
    fn options_skip_steps_and_change_arguments() {
        let options = DeployOptions {
            skip_migrations: true,
            skip_seed: true,
            no_pull: true,
            recreate_volumes: true,
            backup_first: true,
            ..DeployOptions::default()
        };
        let steps = plan(&options, &deploy());
        let skipped: Vec<&str> = steps.iter().filter(|s| s.skipped).map(|s| s.name).collect();
        assert_eq!(skipped, ["pull images", "migrate", "seed"]);
        assert_eq!(compose_args(&steps, "build"), ["build", "--no-cache"]);
        assert_eq!(
            compose_args(&steps, "down"),
            ["down", "--remove-orphans", "--volumes"]
        );
    }

    #[test]
    fn a_restore_backs_up_first_and_stops_only_the_writers_around_the_restore() {
        let mut config = Config::default();
        config.backups.restore_stop_services = strings(&["backend", "celery_worker"]);
        let mut options = DeployOptions {
            restore: Some(RestoreRequest {
                from: super::super::RestoreFrom::Backup(3),
                migrate: false,
            }),
            ..DeployOptions::default()
        };
        let steps = plan_for(&options, &config);
        assert_eq!(
            names(&steps),
            [
                "check backup",
                "safety backup",
                "drain tasks",
                "maintenance page",
                "stop writers",
                "restore",
                "start writers",
                "migrate",
                "wait for healthy",
                "reopen",
                "verify"
            ]
        );
        assert_eq!(
            compose_args(&steps, "stop writers"),
            ["stop", "backend", "celery_worker"]
        );
        assert_eq!(
            compose_args(&steps, "start writers"),
            ["start", "backend", "celery_worker"]
        );
        let skipped: Vec<&str> = steps.iter().filter(|s| s.skipped).map(|s| s.name).collect();
        assert_eq!(skipped, ["migrate"], "migrate only when asked");
        options.restore.as_mut().unwrap().migrate = true;
        assert!(plan_for(&options, &config).iter().all(|s| !s.skipped));
        assert!(options.destructive(), "admin only, confirmed");
        assert_eq!(options.kind(), "restore");

        // With a rollback: the earlier images come back with the data, started by one `up`.
        options.rollback_of = Some(2);
        let steps = plan_for(&options, &config);
        assert_eq!(
            names(&steps),
            [
                "check backup",
                "safety backup",
                "restore images",
                "drain tasks",
                "maintenance page",
                "stop writers",
                "restore",
                "up",
                "wait for healthy",
                "reopen",
                "verify",
                "keep images"
            ]
        );
        assert_eq!(steps[2].action, Action::RestoreImages(2));
        assert_eq!(compose_args(&steps, "up"), UP_NO_BUILD);
        assert_eq!(options.kind(), "deploy", "it changes the images: a deploy");
    }

    #[test]
    fn a_rollback_restores_images_and_starts_without_building_or_migrating() {
        let options = DeployOptions {
            rollback_of: Some(7),
            ..DeployOptions::default()
        };
        let steps = plan(&options, &deploy());
        assert_eq!(
            names(&steps),
            [
                "preflight",
                "restore images",
                "maintenance page",
                "up",
                "wait for healthy",
                "reopen",
                "verify",
                "keep images"
            ]
        );
        assert_eq!(steps[1].action, Action::RestoreImages(7));
        assert_eq!(compose_args(&steps, "up"), UP_NO_BUILD);
        assert_eq!(
            compose_args(&steps, "reopen"),
            [
                "up",
                "-d",
                "--force-recreate",
                "--no-deps",
                "--no-build",
                "nginx"
            ]
        );
    }
}
