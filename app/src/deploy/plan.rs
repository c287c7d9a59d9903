//! The deploy plan: the deployment guide's procedure as a list of named steps for the chosen options.
//! Plain data; `ssr.rs` carries the steps out.

use super::DeployOptions;

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
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub name: &'static str,
    pub action: Action,
    /// Skipped by an option: shown in the step list, not run.
    pub skipped: bool,
}

/// The guide's steps for `options` (`seed` is the stack's seed command), built first: the new images
/// are built while the running version serves, and the stack stops only for the switch (`down`, `up`),
/// so a build that fails leaves it serving. `stop_first` keeps the guide's own order (down, then
/// build). For a rollback, the images of the earlier deploy brought back and started without a build.
pub fn plan(options: &DeployOptions, seed: &[String]) -> Vec<PlannedStep> {
    if let Some(id) = options.rollback_of {
        return rollback_plan(id);
    }
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let step = |name, action| PlannedStep {
        name,
        action,
        skipped: false,
    };
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
    let mut building = vec![
        step("prune build cache", Action::PruneBuildCache),
        step("build", Action::Compose(build)),
    ];
    let stop = step("down", Action::Compose(down));
    if options.stop_first {
        building.insert(0, stop);
    } else {
        building.push(stop);
    }
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
    steps.extend(building);
    steps.extend([
        step(
            "up",
            Action::Compose(strings(&["up", "-d", "--force-recreate"])),
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
                    cmd: seed.to_vec(),
                },
            )
        },
        step("collectstatic", manage(&["collectstatic", "--noinput"])),
        step("verify", Action::Verify),
        step("keep images", Action::KeepImages),
    ]);
    steps
}

/// A rollback: no build, no migration (a rollback does not undo migrations).
fn rollback_plan(id: i64) -> Vec<PlannedStep> {
    let step = |name, action| PlannedStep {
        name,
        action,
        skipped: false,
    };
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        step("preflight", Action::Preflight),
        step("restore images", Action::RestoreImages(id)),
        step(
            "up",
            Action::Compose(args(&["up", "-d", "--force-recreate", "--no-build"])),
        ),
        step(
            "wait for healthy",
            Action::WaitHealthy(args(&["database", "redis", "backend"])),
        ),
        step("verify", Action::Verify),
        step("keep images", Action::KeepImages),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Vec<String> {
        vec!["python".into(), "manage.py".into(), "seed".into()]
    }

    fn compose_args(steps: &[PlannedStep], name: &str) -> Vec<String> {
        match &steps.iter().find(|s| s.name == name).unwrap().action {
            Action::Compose(args) => args.clone(),
            other => panic!("{name}: {other:?}"),
        }
    }

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
            &seed(),
        );
        assert_eq!(
            names(&guide)[4..7],
            ["down", "prune build cache", "build"],
            "the guide: down, then build"
        );
        let default = plan(&DeployOptions::default(), &seed());
        assert_eq!(
            names(&default)[4..8],
            ["prune build cache", "build", "down", "up"],
            "build first: down only for the switch"
        );
        let mut sorted = names(&default);
        sorted.sort_unstable();
        let mut guide_sorted = names(&guide);
        guide_sorted.sort_unstable();
        assert_eq!(sorted, guide_sorted, "the same steps, in another order");
    }

    #[test]
    fn the_default_plan_is_the_guides_procedure_built_first() {
        let steps = plan(&DeployOptions::default(), &seed());
        let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "preflight",
                "source",
                "back up database",
                "pull images",
                "prune build cache",
                "build",
                "down",
                "up",
                "wait for healthy",
                "migrate",
                "seed",
                "collectstatic",
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
        assert_eq!(compose_args(&steps, "up"), ["up", "-d", "--force-recreate"]);
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
        let steps = plan(&options, &seed());
        let skipped: Vec<&str> = steps.iter().filter(|s| s.skipped).map(|s| s.name).collect();
        assert_eq!(skipped, ["pull images", "migrate", "seed"]);
        assert_eq!(compose_args(&steps, "build"), ["build", "--no-cache"]);
        assert_eq!(
            compose_args(&steps, "down"),
            ["down", "--remove-orphans", "--volumes"]
        );
    }

    #[test]
    fn a_rollback_restores_images_and_starts_without_building_or_migrating() {
        let options = DeployOptions {
            rollback_of: Some(7),
            ..DeployOptions::default()
        };
        let steps = plan(&options, &seed());
        let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "preflight",
                "restore images",
                "up",
                "wait for healthy",
                "verify",
                "keep images"
            ]
        );
        assert_eq!(steps[1].action, Action::RestoreImages(7));
        assert_eq!(
            compose_args(&steps, "up"),
            ["up", "-d", "--force-recreate", "--no-build"]
        );
    }
}
