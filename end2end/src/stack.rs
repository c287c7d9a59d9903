//! A throwaway copy of the EPSM-like stack on the real Docker engine: its own directory, git
//! remote and compose project name; brought down and removed when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::healthcheck::{Healthchecks, with_margin};
use crate::host::{copy_tree, free_port, repo_root};

/// The secret values of the bundled stack's env file (distinctive on purpose): what leak tests look
/// for in every page, reply, stream and log.
pub fn stack_secrets() -> Vec<String> {
    let text =
        fs::read_to_string(repo_root().join("stack/.env.production")).expect("stack env file");
    let secrets: Vec<String> = ["DJANGO_SECRET_KEY", "DB_PASSWORD", "REDIS_PASSWORD"]
        .iter()
        .map(|key| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("{key} not in the stack's env file"))
                .to_string()
        })
        .collect();
    assert!(
        secrets.iter().all(|s| s.len() >= 14),
        "distinctive values expected"
    );
    secrets
}

/// How long migration simulations.0002 takes in a project `StackProject::slow_migration` set up: the
/// project's env file gives the stack this very number (`EPSM_SLOW_MIGRATE_SECS`).
pub const SLOW_MIGRATION: Duration = Duration::from_secs(20);

/// The bundled stack's services, in the order its compose file lists them.
pub const STACK_SERVICES: [&str; 7] = [
    "database",
    "redis",
    "backend",
    "celery_worker",
    "celery_beat",
    "frontend",
    "nginx",
];

/// `docker compose exec <flags> database psql ...` as the stack's database user.
fn psql_command<'a>(flags: &[&'a str], db: &'a str, sql: &'a str) -> Vec<&'a str> {
    let mut command = vec!["exec"];
    command.extend_from_slice(flags);
    command.extend(["database", "psql", "-U", "epsm_user", "-d", db, "-tAc", sql]);
    command
}

/// Whether a Docker engine answers at DOCKER_HOST (or the local socket).
pub fn engine_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The image every Dockerfile of the stack starts from, as `scripts/lib/registry.sh` publishes it.
pub const BASE_IMAGE: &str = "localhost:5055/epsm/base:bookworm";

/// Whether the loopback registry answers with the stack's base image.
fn base_image_published() -> bool {
    Command::new("curl")
        .args([
            "-fsS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-H",
            "Accept: application/vnd.docker.distribution.manifest.v2+json",
            "http://127.0.0.1:5055/v2/epsm/base/manifests/bookworm",
        ])
        .status()
        .is_ok_and(|s| s.success())
}

/// The engine endpoint the tests use, as the console should be configured for it.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// A private copy of the EPSM-like stack under its own compose project name and host ports, so a test
/// may change its env file and break it at will. `docker compose down -v` and its images go on drop.
pub struct StackProject {
    /// A git working tree (branch `main`) cloned from `origin`, as `/opt/epsm` is on the real host;
    /// the env file is ignored, as it is not in EPSM's repository.
    pub dir: tempfile::TempDir,
    /// The bare repository `dir` was cloned from: its remote `origin`.
    pub origin: tempfile::TempDir,
    pub name: String,
    pub nginx_port: u16,
    healthchecks: std::sync::OnceLock<Healthchecks>,
}

impl StackProject {
    pub fn new(name_hint: &str) -> StackProject {
        assert!(
            engine_answers(),
            "no Docker engine answers at {} (scripts/test.sh starts one)",
            docker_host()
        );
        assert!(
            base_image_published(),
            "the stack's base image {BASE_IMAGE} is not in the loopback registry \
             (scripts/test.sh builds and publishes it: scripts/lib/registry.sh)"
        );
        let source = repo_root().join("stack");
        let dir = tempfile::Builder::new()
            .prefix("epsm-stack-")
            .tempdir()
            .expect("temp dir");
        // Not the rootfs tarball and its stamp: the builds pull the base image, and EPSM's
        // repository holds no such file.
        copy_tree(&source, dir.path(), &|name| name.starts_with("rootfs.tar"));
        let origin = tempfile::Builder::new()
            .prefix("epsm-origin-")
            .tempdir()
            .expect("temp dir");
        fs::write(
            dir.path().join(".gitignore"),
            ".env.production\n__pycache__/\n",
        )
        .expect("write .gitignore");
        git(
            origin.path(),
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        );
        git(dir.path(), &["init", "--quiet", "--initial-branch=main"]);
        git(dir.path(), &["add", "--all"]);
        git(
            dir.path(),
            &["commit", "--quiet", "-m", "The EPSM-like stack"],
        );
        git(
            dir.path(),
            &[
                "remote",
                "add",
                "origin",
                &origin.path().display().to_string(),
            ],
        );
        git(dir.path(), &["push", "--quiet", "-u", "origin", "main"]);
        let name = format!("{name_hint}{}", std::process::id());
        let project = StackProject {
            dir,
            origin,
            name,
            nginx_port: free_port(),
            healthchecks: std::sync::OnceLock::new(),
        };
        project.set_env("NGINX_PUBLISH_PORT", &project.nginx_port.to_string());
        project.set_env("DB_PUBLISH_PORT", &free_port().to_string());
        project
    }

    /// A copy shaped like EPSM's real files on the host: the env file sets `COMPOSE_PROJECT_NAME`
    /// (`<hint><pid>_prod`, like EPSM's `epsm_prod`), every service has a fixed `container_name`
    /// (`<hint><pid>_<service>_prod`), and `energyplus` (a registry image) sits under the profile
    /// `tools`. `compose` then runs without `-p`, as EPSM's workflow does.
    pub fn real_host_shape(name_hint: &str) -> StackProject {
        let mut project = StackProject::new(name_hint);
        let base = project.name.clone();
        project.name = format!("{base}_prod");
        project.set_env("COMPOSE_PROJECT_NAME", &project.name);
        let text = fs::read_to_string(project.compose_file()).expect("read compose file");
        let mut in_services = false;
        let mut out = String::new();
        for line in text.lines() {
            out.push_str(line);
            out.push('\n');
            if !line.starts_with(' ') && !line.is_empty() && !line.starts_with('#') {
                in_services = line == "services:";
                continue;
            }
            let service = line
                .strip_prefix("  ")
                .filter(|l| !l.starts_with(' '))
                .and_then(|l| l.strip_suffix(':'));
            if let Some(service) = service.filter(|_| in_services) {
                out.push_str(&format!("    container_name: {base}_{service}_prod\n"));
            }
        }
        // EPSM's simulation engine: a registry image under the `tools` profile, never built, not started
        // by `up` (the backend starts simulations in it through the Docker socket).
        let out = out.replacen(
            "\nvolumes:\n",
            &format!(
                "\n  energyplus:\n    image: nrel/energyplus:23.2.0\n    container_name: \
                 {base}_energyplus_prod\n    profiles: [\"tools\"]\n\nvolumes:\n"
            ),
            1,
        );
        assert!(
            out.contains("energyplus:"),
            "the compose file has a volumes section"
        );
        fs::write(project.compose_file(), out).expect("write compose file");
        // The real host's files are the repository's: commit the change, as EPSM's repository has it.
        git(
            project.dir.path(),
            &["commit", "--quiet", "-am", "container names"],
        );
        git(project.dir.path(), &["push", "--quiet", "origin", "main"]);
        project
    }

    /// Commits `changes` (path relative to the project, new content; None deletes) on origin's `main`
    /// from a clone of its own, as a developer who merged would; returns the new commit's id.
    pub fn push_to_origin(&self, changes: &[(&str, Option<&str>)], message: &str) -> String {
        let clone = tempfile::tempdir().expect("temp dir");
        let origin = self.origin.path().display().to_string();
        git(clone.path(), &["clone", "--quiet", &origin, "."]);
        for (path, content) in changes {
            let file = clone.path().join(path);
            match content {
                Some(text) => {
                    fs::create_dir_all(file.parent().expect("a file in a folder")).expect("mkdir");
                    fs::write(&file, text).expect("write file");
                }
                None => fs::remove_file(&file).expect("remove file"),
            }
        }
        git(clone.path(), &["add", "--all", "--force"]);
        git(clone.path(), &["commit", "--quiet", "-m", message]);
        git(clone.path(), &["push", "--quiet", "origin", "main"]);
        self.git(&[
            "-C",
            &clone.path().display().to_string(),
            "rev-parse",
            "HEAD",
        ])
    }

    /// Rewrites origin's history: `main` goes back one commit and gets `message` instead, force-pushed
    /// (what a rebase and `push --force` do); returns the new commit's id.
    pub fn rewrite_origin(&self, message: &str) -> String {
        let clone = tempfile::tempdir().expect("temp dir");
        let origin = self.origin.path().display().to_string();
        git(clone.path(), &["clone", "--quiet", &origin, "."]);
        git(clone.path(), &["reset", "--quiet", "--hard", "HEAD~1"]);
        git(
            clone.path(),
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        git(
            clone.path(),
            &["push", "--quiet", "--force", "origin", "main"],
        );
        self.git(&[
            "-C",
            &clone.path().display().to_string(),
            "rev-parse",
            "HEAD",
        ])
    }

    /// Runs git in the project directory (`-C` elsewhere first, if given) and returns its trimmed
    /// output.
    pub fn git(&self, args: &[&str]) -> String {
        let out = git(self.dir.path(), args);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The fixed container name `real_host_shape` gave `service`.
    pub fn container_name(&self, service: &str) -> String {
        let base = self.name.strip_suffix("_prod").unwrap_or(&self.name);
        format!("{base}_{service}_prod")
    }

    pub fn compose_file(&self) -> PathBuf {
        self.dir.path().join("docker-compose.production.yml")
    }

    pub fn env_file(&self) -> PathBuf {
        self.dir.path().join(".env.production")
    }

    /// `docker compose -f <compose file> --env-file <env file> -p <name> <args>`, as the guide runs it
    /// (without `-p` when the env file names the project, as EPSM's does). The env file decides: a
    /// variable of the same name in this process's environment (which compose would prefer) is not
    /// passed on.
    pub fn compose(&self, args: &[&str]) -> Output {
        let mut command = Command::new("docker");
        let env_text = fs::read_to_string(self.env_file()).unwrap_or_default();
        for key in env_text
            .lines()
            .filter_map(|l| l.trim_start().split_once('=').map(|(k, _)| k.trim()))
            .filter(|k| !k.is_empty() && !k.starts_with('#'))
        {
            command.env_remove(key);
        }
        command
            .arg("compose")
            .arg("-f")
            .arg(self.compose_file())
            .arg("--env-file")
            .arg(self.env_file());
        if !env_text
            .lines()
            .any(|l| l.trim() == format!("COMPOSE_PROJECT_NAME={}", self.name))
        {
            command.arg("-p").arg(&self.name);
        }
        command
            .args(args)
            .env("COMPOSE_BAKE", "false")
            .output()
            .expect("run docker compose")
    }

    /// The compose file's healthchecks and start order, read once through `docker compose config`.
    pub fn healthchecks(&self) -> &Healthchecks {
        self.healthchecks.get_or_init(|| {
            let out = self.compose_ok(&["config", "--format", "json"]);
            Healthchecks::from_compose_config(&String::from_utf8_lossy(&out.stdout))
                .unwrap_or_else(|e| panic!("compose config of {}: {e}", self.name))
        })
    }

    /// How long to wait for Docker's verdict on `service`'s health after its container (re)started:
    /// its healthcheck's own bound, with margin.
    pub fn verdict_bound(&self, service: &str) -> Duration {
        with_margin(self.healthchecks().verdict_within(service))
    }

    /// How long to wait for `services` to settle after an `up` that (re)starts them with the services
    /// they depend on: the longest healthcheck chain among them, with margin.
    pub fn settle_bound(&self, services: &[&str]) -> Duration {
        let checks = self.healthchecks();
        with_margin(
            services
                .iter()
                .map(|s| checks.settled_within(s))
                .max()
                .unwrap_or_default(),
        )
    }

    /// `settle_bound` of every service: how long the whole stack may take after `up`.
    pub fn stack_settle_bound(&self) -> Duration {
        with_margin(self.healthchecks().all_settled_within())
    }

    /// `up -d --wait` of `services` (all when empty): returns once they run and are healthy, fails at
    /// once when one exits or turns unhealthy, and gives up after the healthchecks' own bound.
    pub fn up_wait(&self, services: &[&str]) -> Output {
        let bound = if services.is_empty() {
            self.stack_settle_bound()
        } else {
            self.settle_bound(services)
        };
        let bound = bound.as_secs().to_string();
        let mut args = vec!["up", "-d", "--wait", "--wait-timeout", bound.as_str()];
        args.extend_from_slice(services);
        self.compose_ok(&args)
    }

    /// `python manage.py <args>` in the running backend (panics when it fails).
    pub fn manage(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", "-T", "backend", "python", "manage.py"];
        all.extend_from_slice(args);
        self.compose_ok(&all)
    }

    /// Queues the stack's stand-in simulation `name`, taking `seconds`.
    pub fn simulate(&self, name: &str, seconds: u64) {
        self.manage(&[
            "shell",
            "-c",
            &format!("from simulations.tasks import simulate; simulate.delay('{name}', {seconds})"),
        ]);
    }

    /// The stored status of simulation `name` ("" when there is no row yet).
    pub fn simulation_status(&self, name: &str) -> String {
        self.psql(
            "epsm_db",
            &format!("SELECT status FROM simulations_simulation WHERE name = '{name}'"),
        )
    }

    /// Queues simulation `name` (taking `seconds`) and waits until the worker runs it: a healthy
    /// worker takes a task within its healthcheck's bound.
    pub async fn start_simulation(&self, name: &str, seconds: u64) {
        self.simulate(name, seconds);
        let takes = self.verdict_bound("celery_worker");
        self.until_simulation(name, "running", takes).await;
    }

    /// Waits until simulation `name` has status `wanted` (panics after `within`).
    pub async fn until_simulation(&self, name: &str, wanted: &str, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let now = self.simulation_status(name);
            if now == wanted {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "simulation {name}: {now:?}, not {wanted:?} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Like `compose`, but panics with compose's output when it fails. A build that failed on
    /// BuildKit's prune race (another test's deploy pruned the engine's build cache beside it; the
    /// console's build step does the same, see `BUILDKIT_PRUNE_RACE` in app's deploy steps) is run
    /// once more.
    pub fn compose_ok(&self, args: &[&str]) -> Output {
        let mut out = self.compose(args);
        let said = |out: &Output| {
            [&out.stdout, &out.stderr]
                .iter()
                .any(|text| String::from_utf8_lossy(text).contains("failed to get dead record"))
        };
        if !out.status.success() && args.first() == Some(&"build") && said(&out) {
            eprintln!(
                "{}: BuildKit's prune race broke the build; building once more",
                self.name
            );
            out = self.compose(args);
        }
        assert!(
            out.status.success(),
            "docker compose {} failed ({}):\n{}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Builds and starts only the `database` service and fills table `big` in `epsm_db` with `rows`
    /// rows of ~70 barely compressible bytes each (for dumps that take a while).
    pub fn database_only_with_rows(&self, rows: u64) {
        self.compose_ok(&["build", "database"]);
        self.up_wait(&["database"]);
        self.psql(
            "epsm_db",
            &format!(
                "CREATE TABLE big AS SELECT g, md5(g::text) || md5((g + 1)::text) AS t \
                 FROM generate_series(1, {rows}) g"
            ),
        );
    }

    /// Runs `sql` with psql as the stack's database user in database `db`; returns its output (`-tA`).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.compose_ok(&psql_command(&["-T"], db, sql));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `sql` in the database's container without waiting for it (a session that holds a lock).
    pub fn psql_in_background(&self, db: &str, sql: &str) {
        self.compose_ok(&psql_command(&["-d", "-T"], db, sql));
    }

    /// Writes `line` into the output of a service's main process (what `docker logs` shows), on
    /// stderr or stdout.
    pub fn write_to_output(&self, service: &str, line: &str, stderr: bool) {
        let fd = if stderr { 2 } else { 1 };
        self.shell_into_output(service, &format!("echo '{line}'"), fd);
    }

    /// Writes `count` lines "`prefix` 1" .. "`prefix` `count`" into `service`'s output (stdout), at once.
    pub fn write_lines_to_output(&self, service: &str, prefix: &str, count: u32) {
        let script =
            format!("i=1; while [ $i -le {count} ]; do echo \"{prefix} $i\"; i=$((i+1)); done");
        self.shell_into_output(service, &script, 1);
    }

    /// Runs `script` in `service` with its output going to the container's own stream `fd`.
    fn shell_into_output(&self, service: &str, script: &str, fd: u8) {
        self.compose_ok(&[
            "exec",
            "-T",
            service,
            "sh",
            "-c",
            &format!("{{ {script}; }} > /proc/1/fd/{fd}"),
        ]);
    }

    /// Makes migration simulations.0002 take [`SLOW_MIGRATION`] (a deploy to watch or cancel mid-way);
    /// returns the line the migration prints as it starts.
    pub fn slow_migration(&self) -> String {
        let seconds = SLOW_MIGRATION.as_secs();
        self.set_env("EPSM_FAILURE", "slow-migrate");
        self.set_env("EPSM_SLOW_MIGRATE_SECS", &seconds.to_string());
        format!("migration simulations.0002 takes {seconds} s")
    }

    /// Sets `key=value` in the project's env file (replacing the line that sets it, or appending).
    pub fn set_env(&self, key: &str, value: &str) {
        let path = self.env_file();
        let text = fs::read_to_string(&path).expect("read env file");
        let mut found = false;
        let mut lines: Vec<String> = text
            .lines()
            .map(|line| {
                if line.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
                    found = true;
                    format!("{key}={value}")
                } else {
                    line.to_string()
                }
            })
            .collect();
        if !found {
            lines.push(format!("{key}={value}"));
        }
        fs::write(&path, lines.join("\n") + "\n").expect("write env file");
    }
}

impl Drop for StackProject {
    fn drop(&mut self) {
        let out = self.compose(&[
            "down",
            "--volumes",
            "--remove-orphans",
            "--rmi",
            "local",
            "--timeout",
            "5",
        ]);
        if !out.status.success() {
            eprintln!(
                "cleanup of {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `git <args>` in `dir` with a fixed identity and no user or system configuration; panics with git's
/// output when it fails.
fn git(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Dana Developer")
        .env("GIT_AUTHOR_EMAIL", "dana@epsm.example")
        .env("GIT_COMMITTER_NAME", "Dana Developer")
        .env("GIT_COMMITTER_EMAIL", "dana@epsm.example")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {} in {} failed: {}",
        args.join(" "),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
