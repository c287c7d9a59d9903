//! The deploy plan: the deployment guide's procedure as a list of named steps for the chosen options.
//! Plain data; `ssr.rs` carries the steps out.

use super::DeployOptions;

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Files parse, compose accepts them, the engine answers, the audit has no error (unless overridden).
    Preflight,
    /// `docker compose <args>` as a child process.
    Compose(Vec<String>),
    /// The engine's build cache, removed through the API (`docker builder prune -af`).
    PruneBuildCache,
    /// Until these services' containers are healthy (bounded).
    WaitHealthy(Vec<String>),
    /// A command in a service's container through the API; its exit code decides.
    Exec { service: String, cmd: Vec<String> },
    /// Every service up and healthy, deep probes included.
    Verify,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub name: &'static str,
    pub action: Action,
    /// Skipped by an option: shown in the step list, not run.
    pub skipped: bool,
}

/// The guide's ten steps for `options`. `seed` is the stack's seed command.
pub fn plan(options: &DeployOptions, seed: &[String]) -> Vec<PlannedStep> {
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
    vec![
        step("preflight", Action::Preflight),
        step("down", Action::Compose(down)),
        step("prune build cache", Action::PruneBuildCache),
        step("build", Action::Compose(build)),
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

    #[test]
    fn the_default_plan_is_the_guides_procedure() {
        let steps = plan(&DeployOptions::default(), &seed());
        let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "preflight",
                "down",
                "prune build cache",
                "build",
                "up",
                "wait for healthy",
                "migrate",
                "seed",
                "collectstatic",
                "verify"
            ]
        );
        assert!(steps.iter().all(|s| !s.skipped));
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
            ..DeployOptions::default()
        };
        let steps = plan(&options, &seed());
        let skipped: Vec<&str> = steps.iter().filter(|s| s.skipped).map(|s| s.name).collect();
        assert_eq!(skipped, ["migrate", "seed"]);
        assert_eq!(compose_args(&steps, "build"), ["build", "--no-cache"]);
        assert_eq!(
            compose_args(&steps, "down"),
            ["down", "--remove-orphans", "--volumes"]
        );
    }
}
