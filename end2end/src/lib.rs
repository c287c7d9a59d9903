//! The test bed every integration and browser test stands on: the real `epsm-ops` binary on a free
//! loopback port, a throwaway copy of the EPSM-like stack on the real Docker engine, and Chromium.
//! Nothing here is a fake: each piece is the thing a user meets, started and cleaned up per test.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub mod healthcheck;
pub mod pysaml2;
pub mod saml_attacks;

pub use healthcheck::{Healthchecks, with_margin};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("end2end/ sits in the repository")
        .to_path_buf()
}

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

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on loopback")
}

/// The `epsm-ops` binary the tests run: `EPSM_CONSOLE_BIN`, else the debug build `cargo leptos build` made.
/// (Not `EPSM_OPS_*`: the console would read that prefix as its own configuration and refuse it.)
pub fn console_binary() -> PathBuf {
    std::env::var_os("EPSM_CONSOLE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/debug/epsm-ops"))
}

/// A running `epsm-ops serve`, with its own data directory, on a free port; stopped on drop.
pub struct Console {
    child: Option<Child>,
    pub url: String,
    pub data_dir: tempfile::TempDir,
    log: PathBuf,
    /// The binary and the configuration it was started with (for `run`).
    bin: PathBuf,
    env: Vec<(String, String)>,
    /// Logged in as the development IdP's admin (see `login`).
    client: reqwest::Client,
}

/// The people of the development IdP, by the role the test bed's configuration gives them.
pub const ADMIN: &str = "admin@dev.idp";
pub const DEPLOYER: &str = "deployer@dev.idp";
pub const VIEWER: &str = "viewer@dev.idp";
/// Logs in at the IdP, but no rule admits them.
pub const OUTSIDER: &str = "outsider@elsewhere.example";

/// The role rules and development IdP every test console runs with (and a login rate limit no test
/// meets unless it sets its own: every test logs in from 127.0.0.1).
pub const AUTH_ENV: [(&str, &str); 5] = [
    ("EPSM_OPS_LIMITS_SAML_PER_MINUTE", "100000"),
    ("EPSM_OPS_AUTH_DEV_IDP", "true"),
    ("EPSM_OPS_AUTH_ADMINS", "{ids=[\"admin@dev.idp\"]}"),
    ("EPSM_OPS_AUTH_DEPLOYERS", "{ids=[\"deployer@dev.idp\"]}"),
    ("EPSM_OPS_AUTH_VIEWERS", "{ids=[\"viewer@dev.idp\"]}"),
];

impl Console {
    /// Starts `bin` serving the repository's stack (unless `env` says otherwise) and waits until its
    /// `/healthz` answers. `env` adds or overrides `EPSM_OPS_*` variables.
    pub async fn start(bin: &Path, env: &[(&str, &str)]) -> Console {
        let mut console = Console::start_anonymous(bin, env).await;
        console.client = console
            .login(ADMIN)
            .await
            .unwrap_or_else(|e| panic!("logging in as {ADMIN} failed: {e}\n{}", console.log()));
        console
    }

    /// `start` without the admin's login (for a console trusting another IdP than the development
    /// one): `client()` is an anonymous client.
    pub async fn start_anonymous(bin: &Path, env: &[(&str, &str)]) -> Console {
        let port = free_port();
        let data_dir = tempfile::tempdir().expect("temp dir");
        let log = data_dir.path().join("console.log");
        let log_file = fs::File::create(&log).expect("console log file");
        let root = repo_root();
        let path = |p: PathBuf| p.display().to_string();
        let mut all: Vec<(String, String)> = [
            ("EPSM_OPS_LISTEN", format!("127.0.0.1:{port}")),
            ("EPSM_OPS_PUBLIC_URL", format!("http://127.0.0.1:{port}/")),
            ("EPSM_OPS_DATA_DIR", path(data_dir.path().join("data"))),
            ("EPSM_OPS_SITE_ROOT", path(root.join("target/site"))),
            ("EPSM_OPS_PROJECT_DIR", path(root.join("stack"))),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .chain(AUTH_ENV.iter().map(|(k, v)| (*k, v.to_string())))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .current_dir(&root)
            .envs(all.iter().map(|(k, v)| (k, v)))
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut console = Console {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
            log,
            bin: bin.to_path_buf(),
            env: all,
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let healthz = format!("{}/healthz", console.url);
        loop {
            if reqwest::get(&healthz)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                console.client = console.anonymous_client();
                return console;
            }
            if let Some(status) = console
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("epsm-ops exited at start ({status}):\n{}", console.log());
            }
            assert!(
                Instant::now() < deadline,
                "epsm-ops did not answer /healthz in 60 s:\n{}",
                console.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `bin` managing `project` (its directory, name and public URL) instead of the repository's
    /// stack, with health rounds every 2 s; `env` adds or overrides.
    pub async fn for_stack(bin: &Path, project: &StackProject, env: &[(&str, &str)]) -> Console {
        let dir = project.dir.path().display().to_string();
        let public = format!("http://127.0.0.1:{}/", project.nginx_port);
        let mut all = vec![
            ("EPSM_OPS_PROJECT_DIR", dir.as_str()),
            ("EPSM_OPS_PROJECT_NAME", project.name.as_str()),
            ("EPSM_OPS_PROJECT_PUBLIC_URL", public.as_str()),
            ("EPSM_OPS_HEALTH_INTERVAL_SECS", "2"),
        ];
        all.extend_from_slice(env);
        Console::start(bin, &all).await
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process (SIGKILL), as a crash or an OOM kill would, and waits for it. The data
    /// directory stays until the `Console` is dropped.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("console still running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The process id (to read its memory use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("console still running").id()
    }

    /// The data directory the process was given (to start another console on the same store).
    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().join("data")
    }

    /// A counter or gauge of the console's `/metrics`.
    pub async fn metric(&self, name: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.url))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
    }

    /// A client logged in as the development IdP's admin, sending this console's Origin.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A new client (own cookie jar, this console's Origin on every request, redirects not
    /// followed), logged in through the development IdP as `subject_id`: the whole SAML flow, as a
    /// browser runs it. Err with the page's message when the console refuses.
    pub async fn login(&self, subject_id: &str) -> Result<reqwest::Client, String> {
        self.login_trace(subject_id).await.map(|(client, _)| client)
    }

    /// `login`, also returning the session cookies the console set on the way (`name=value`, in
    /// order: the one the login started, then the one of the logged-in session).
    pub async fn login_trace(
        &self,
        subject_id: &str,
    ) -> Result<(reqwest::Client, Vec<String>), String> {
        self.login_flow(subject_id, "/")
            .await
            .map(|(client, cookies, _)| (client, cookies))
    }

    /// A login that starts at `/saml/login?return_to=<return_to>`: where the ACS sends the browser.
    pub async fn login_returning_to(
        &self,
        subject_id: &str,
        return_to: &str,
    ) -> Result<String, String> {
        self.login_flow(subject_id, return_to)
            .await
            .map(|(_, _, location)| location)
    }

    async fn login_flow(
        &self,
        subject_id: &str,
        return_to: &str,
    ) -> Result<(reqwest::Client, Vec<String>, String), String> {
        let client = self.anonymous_client();
        let mut cookies = Vec::new();
        let mut keep_cookie = |reply: &reqwest::Response| {
            if let Some(cookie) = reply
                .headers()
                .get("set-cookie")
                .and_then(|c| c.to_str().ok())
            {
                cookies.push(cookie.split(';').next().unwrap_or_default().to_string());
            }
        };
        let to_idp = client
            .get(format!("{}/saml/login", self.url))
            .query(&[("return_to", return_to)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        keep_cookie(&to_idp);
        let location = to_idp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .ok_or("no redirect to the IdP")?
            .to_string();
        let form = page_text(client.get(&location)).await?;
        let request_id = html_value(&form, "request_id").ok_or("no request id on the IdP page")?;
        let response = self
            .dev_idp_response(&client, &request_id, subject_id)
            .await?;
        let acs = client
            .post(format!("{}/saml/acs", self.url))
            .form(&[("SAMLResponse", response.as_str())])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        keep_cookie(&acs);
        if acs.status().as_u16() != 303 {
            return Err(format!(
                "ACS answered {}: {}",
                acs.status(),
                acs.text().await.unwrap_or_default()
            ));
        }
        let location = acs
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Ok((client, cookies, location))
    }

    /// The SAMLResponse the development IdP issues for `subject_id` (with the attributes its page
    /// offers for that person) answering `request_id` ("" for an IdP-initiated login).
    pub async fn dev_idp_response(
        &self,
        client: &reqwest::Client,
        request_id: &str,
        subject_id: &str,
    ) -> Result<String, String> {
        let (name, affiliation) = match subject_id {
            ADMIN => ("Ada Admin", "employee@dev.idp"),
            DEPLOYER => ("Dan Deployer", "employee@dev.idp"),
            VIEWER => ("Vera Viewer", "student@dev.idp"),
            _ => ("Otto Outsider", "member@elsewhere.example"),
        };
        let page = page_text(client.post(format!("{}/dev-idp/sso", self.url)).form(&[
            ("request_id", request_id),
            ("subject_id", subject_id),
            ("display_name", name),
            ("mail", subject_id),
            ("affiliations", affiliation),
        ]))
        .await?;
        html_value(&page, "SAMLResponse")
            .ok_or_else(|| format!("no SAMLResponse from the IdP: {page}"))
    }

    /// A client with no login (own cookie jar, this console's Origin, no redirects followed).
    pub fn anonymous_client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "origin",
            reqwest::header::HeaderValue::from_str(&self.url).expect("URL is a header value"),
        );
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("HTTP client")
    }

    /// GETs `path` (logged in as admin) and returns the body.
    pub async fn get_text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// POSTs a server function with form fields (logged in as admin) and returns the status and body.
    pub async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> (u16, String) {
        let reply = self
            .client
            .post(format!("{}/api/{endpoint}", self.url))
            .form(form)
            .send()
            .await
            .expect("server function call");
        let status = reply.status().as_u16();
        (status, reply.text().await.unwrap_or_default())
    }

    /// Runs the same binary with `args` and the configuration this console was started with (the
    /// same store and project), to completion: the command-line side of the console.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run epsm-ops")
    }

    /// The command `run` runs, to start it in the background.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .current_dir(repo_root())
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Asks the process to stop (SIGTERM) and waits for it.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("console still running");
        signal(child.id(), "TERM");
        child.wait().expect("wait for epsm-ops")
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// The body of a page, or the transport error as text.
async fn page_text(request: reqwest::RequestBuilder) -> Result<String, String> {
    let reply = request.send().await.map_err(|e| e.to_string())?;
    reply.text().await.map_err(|e| e.to_string())
}

/// The `value` of the first `<input name="{name}" value="...">` of a page (HTML-unescaped).
pub fn html_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let value = rest.split("value=\"").nth(1)?.split('"').next()?;
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// Runs `epsm-ops` with `args` and `env` to completion (for start-up failures).
pub fn run_console(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(repo_root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run epsm-ops")
}

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

/// The engine endpoint the tests use, as the console should be configured for it.
pub fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

/// A private copy of the EPSM-like stack under its own compose project name and host ports, so a test
/// may change its env file and break it at will. `docker compose down -v` and its images go on drop.
pub struct StackProject {
    /// A git working tree (branch `main`) cloned from `origin`, as `/opt/epsm` is on the real host;
    /// the env file and the rootfs tarball are ignored, as they are not in EPSM's repository.
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
        let source = repo_root().join("stack");
        let rootfs = source.join("base/rootfs.tar");
        assert!(
            rootfs.is_file(),
            "{} is missing: build it with stack/base/build-rootfs.sh",
            rootfs.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("epsm-stack-")
            .tempdir()
            .expect("temp dir");
        copy_tree(&source, dir.path());
        let origin = tempfile::Builder::new()
            .prefix("epsm-origin-")
            .tempdir()
            .expect("temp dir");
        fs::write(
            dir.path().join(".gitignore"),
            ".env.production\nbase/rootfs.tar\nbase/rootfs.tar.sha256\n__pycache__/\n",
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

    /// Like `compose`, but panics with compose's output when it fails.
    pub fn compose_ok(&self, args: &[&str]) -> Output {
        let out = self.compose(args);
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
        self.compose_ok(&[
            "exec",
            "-T",
            service,
            "sh",
            "-c",
            &format!("echo '{line}' > /proc/1/fd/{fd}"),
        ]);
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

/// Copies a directory tree; the big rootfs tarball is hard-linked when the file system allows.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_tree(&src, &dst);
        } else if src.extension().is_some_and(|e| e == "tar") {
            fs::hard_link(&src, &dst)
                .or_else(|_| fs::copy(&src, &dst).map(drop))
                .expect("link or copy");
        } else {
            fs::copy(&src, &dst).expect("copy file");
        }
    }
}

/// Reads a server-sent event stream: `next_data` returns the `data:` of the next event.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
    /// Every byte received so far, for leak checks.
    pub raw: String,
}

impl SseReader {
    /// GETs `url` with `client` (a console's logged-in client) and checks it answers 200 with
    /// `text/event-stream`.
    pub async fn open(client: &reqwest::Client, url: &str) -> SseReader {
        let reply = client.get(url).send().await.expect("GET event stream");
        assert_eq!(reply.status(), 200, "{url}");
        let kind = reply
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(kind.starts_with("text/event-stream"), "{url}: {kind}");
        SseReader {
            body: Box::pin(reply.bytes_stream()),
            buffer: String::new(),
            raw: String::new(),
        }
    }

    /// The data of the next event (keep-alive comments skipped), or None when the stream ended or
    /// nothing came within `within`.
    pub async fn next_data(&mut self, within: Duration) -> Option<String> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if !data.is_empty() {
                    return Some(data.join("\n"));
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            let text = String::from_utf8_lossy(&chunk.ok()?).into_owned();
            self.raw.push_str(&text);
            self.buffer.push_str(&text);
        }
    }
}

/// The console's request timeout (`REQUEST_TIMEOUT` in server/src/router.rs, kept equal by a test
/// there): a page or server function that takes longer is answered 408.
pub const CONSOLE_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest hydration of the debug build's wasm seen: over 20 s with both cores busy (a stack
/// build and a CPU hog beside the test; milliseconds on a quiet machine).
pub const HYDRATION_SEEN: Duration = Duration::from_secs(20);

/// How long the browser waits for an element to appear or be clickable: the page within the
/// console's request timeout, then hydration, with margin. The wait ends when the element is there,
/// so the bound costs only a failing test's time.
pub const BROWSER_WAIT: Duration = with_margin(Duration::from_secs(
    CONSOLE_REQUEST_TIMEOUT.as_secs() + HYDRATION_SEEN.as_secs(),
));

/// Headless Chromium through chromedriver, both from Debian's packages. Killed (with every child
/// process) on drop, so a failing test leaves no browser behind. (fantoccini's `close()` would wait for
/// every clone of the client to be dropped first; the process-group kill needs no such care.)
pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver (apt-get install chromium-driver; scripts/setup.sh does)");
        let profile = tempfile::tempdir().expect("temp dir");
        let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,860",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }))
        .expect("capabilities");
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match fantoccini::ClientBuilder::native()
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("chromedriver did not start: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        Browser {
            client,
            driver,
            profile,
        }
    }

    /// Opens `url` and waits until the app has hydrated (the layout's `data-hydrated` turns true).
    /// Logs in to `console` as `subject_id` through the development IdP's pages, as a person would:
    /// the login link, the IdP's "Log in as", "Continue"; ends on the console's overview.
    pub async fn login(&self, console: &Console, subject_id: &str) {
        self.client
            .goto(&format!("{}/saml/login?return_to=/", console.url))
            .await
            .expect("navigate");
        self.pick_dev_user(subject_id).await;
    }

    /// On the development IdP's page: "Log in as" `subject_id`, then "Continue"; waits until the
    /// console's page it returns to is live.
    pub async fn pick_dev_user(&self, subject_id: &str) {
        self.wait_for(&format!("[data-testid=\"dev-login-{subject_id}\"]"))
            .await
            .click()
            .await
            .expect("click log in as");
        self.wait_for("[data-testid=dev-continue]")
            .await
            .click()
            .await
            .expect("click continue");
        self.wait_for("[data-hydrated=true]").await;
    }

    /// Clicks `css` once it can be clicked: a list that is re-read (a live page) may replace the
    /// element between finding and clicking it; each try finds it anew, for up to `BROWSER_WAIT`.
    pub async fn click_when_ready(&self, css: &str) {
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let clicked = match self.client.find(fantoccini::Locator::Css(css)).await {
                Ok(element) => element.click().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match clicked {
                Ok(()) => return,
                Err(e) => assert!(Instant::now() < deadline, "cannot click {css:?}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn open_hydrated(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
        self.wait_for("[data-hydrated=true]").await;
    }

    /// Waits up to `BROWSER_WAIT` for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(BROWSER_WAIT)
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css:?} within {BROWSER_WAIT:?}: {e}"))
    }

    /// Waits up to `within` until `css` matches exactly `count` elements.
    pub async fn wait_for_count(&self, css: &str, count: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let found = self
                .client
                .find_all(fantoccini::Locator::Css(css))
                .await
                .map_or(0, |v| v.len());
            if found == count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?}: {found} elements, not {count}, after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits up to `within` until the text of the element `css` satisfies `done`; returns that text.
    pub async fn wait_for_text(
        &self,
        css: &str,
        within: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let text = match self.client.find(fantoccini::Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} after {within:?}: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves a PNG of the page to `target/screenshots/<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = repo_root().join("target/screenshots");
        fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        let png = self.client.screenshot().await.expect("screenshot");
        fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole process group: chromedriver and the Chromium it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // chromedriver starts Chromium in a process group of its own: find it by its unique profile.
        let _ = Command::new("pkill")
            .args([
                "-KILL",
                "-f",
                // `--`: the pattern itself starts with dashes.
                "--",
                &format!("--user-data-dir={}", self.profile.path().display()),
            ])
            .status();
    }
}
