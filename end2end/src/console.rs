//! The real `epsm-ops` binary on a free loopback port, logged in as a test user through the
//! development IdP, with its own data directory; stopped (SIGTERM, then kill) when dropped.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use crate::host::{free_port, repo_root};
use crate::stack::StackProject;

/// The `epsm-ops` binary the tests run: `EPSM_CONSOLE_BIN` (a relative path is the repository's),
/// else the debug build the tests' build made.
/// (Not `EPSM_OPS_*`: the console would read that prefix as its own configuration and refuse it.)
pub fn console_binary() -> PathBuf {
    std::env::var_os("EPSM_CONSOLE_BIN")
        .map(|bin| repo_root().join(bin))
        .unwrap_or_else(|| repo_root().join("target/debug/epsm-ops"))
}

/// A running `epsm-ops serve`, with its own data directory, on a free port; stopped on drop.
pub struct Console {
    child: Option<Child>,
    pub url: String,
    pub data_dir: tempfile::TempDir,
    log: PathBuf,
    /// How it was started, and the configuration it was started with (for `run`).
    launch: Launch,
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

/// The health monitor's interval in the consoles `Console::for_stack` starts: a new round starts at
/// most this long after the last one.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// How long the test bed's console keeps a connection that sends no request
/// (`limits.header_read_timeout_secs`, set here unless a test sets its own).
pub const IDLE_CLOSE: Duration = Duration::from_secs(10);

/// Every page of the console without a parameter in its path (the router's routes but `/deploys/:id`).
pub const PAGES: [&str; 7] = [
    "/",
    "/health",
    "/deploys",
    "/backups",
    "/environment",
    "/audit",
    "/notifications",
];

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
        Console::launch(Launch::Process(bin.to_path_buf()), env).await
    }

    /// `start`, the console in its container: `docker compose up` of `compose_files` (the shipped
    /// `packaging/compose.yml` and a test's override) as the compose project `project`. Its
    /// configuration is the same `EPSM_OPS_*` variables, which the override passes through; its log
    /// is the container's. Dropping it takes the project down.
    pub async fn in_container(
        compose_files: &[PathBuf],
        project: &str,
        env: &[(&str, &str)],
    ) -> Console {
        let mut console = Console::launch(
            Launch::Container {
                compose_files: compose_files.to_vec(),
                project: project.to_string(),
            },
            env,
        )
        .await;
        console.client = console
            .login(ADMIN)
            .await
            .unwrap_or_else(|e| panic!("logging in as {ADMIN} failed: {e}\n{}", console.log()));
        console
    }

    async fn launch(mut launch: Launch, env: &[(&str, &str)]) -> Console {
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
            ("EPSM_OPS_PROJECT_DIR", path(root.join("stack"))),
            (
                "EPSM_OPS_LIMITS_HEADER_READ_TIMEOUT_SECS",
                IDLE_CLOSE.as_secs().to_string(),
            ),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .chain(AUTH_ENV.iter().map(|(k, v)| (*k, v.to_string())))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        if let Launch::Container { compose_files, .. } = &mut launch {
            compose_files.push(pass_through(data_dir.path(), &all));
        }
        let mut cmd = launch.command();
        // Not the repository: the binary carries its site and needs no file beside it.
        cmd.current_dir(data_dir.path())
            .envs(all.iter().map(|(k, v)| (k, v)))
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {launch:?}: {e}"));
        let mut console = Console {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
            log,
            launch,
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
    /// stack, with health rounds every [`HEALTH_INTERVAL`]; `env` adds or overrides.
    pub async fn for_stack(bin: &Path, project: &StackProject, env: &[(&str, &str)]) -> Console {
        let stack = stack_env(project);
        let mut all: Vec<(&str, &str)> = stack.iter().map(|(k, v)| (*k, v.as_str())).collect();
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

    /// The header read timeout this console runs with (the last setting of it wins, as in its
    /// environment).
    fn idle_close(&self) -> Duration {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == "EPSM_OPS_LIMITS_HEADER_READ_TIMEOUT_SECS")
            .and_then(|(_, v)| v.parse().ok())
            .map_or(IDLE_CLOSE, Duration::from_secs)
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
            // The console closes a connection that sends no request for its header read timeout; a
            // pooled connection kept as long can be picked just as it closes, and the call fails
            // with "IncompleteMessage" (a test that waited on a command line did). Half of it.
            .pool_idle_timeout(self.idle_close() / 2)
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
        let Launch::Process(bin) = &self.launch else {
            panic!("`run` runs the binary: this console is in a container");
        };
        let mut command = Command::new(bin);
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
        if let Launch::Container { .. } = self.launch {
            let _ = self
                .launch
                .compose(&["down", "--volumes", "--timeout", "10"])
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .output();
        }
    }
}

/// The configuration that points a console at `project` (its directory, name and public URL), with
/// health rounds every [`HEALTH_INTERVAL`].
pub fn stack_env(project: &StackProject) -> [(&'static str, String); 4] {
    [
        (
            "EPSM_OPS_PROJECT_DIR",
            project.dir.path().display().to_string(),
        ),
        ("EPSM_OPS_PROJECT_NAME", project.name.clone()),
        (
            "EPSM_OPS_PROJECT_PUBLIC_URL",
            format!("http://127.0.0.1:{}/", project.nginx_port),
        ),
        (
            "EPSM_OPS_HEALTH_INTERVAL_SECS",
            HEALTH_INTERVAL.as_secs().to_string(),
        ),
    ]
}

/// A compose file that gives the container console the configuration a test console runs with: each
/// of `env`'s `EPSM_OPS_*` variables (and `RUST_LOG`), its value taken from `docker compose`'s own
/// environment.
fn pass_through(dir: &Path, env: &[(String, String)]) -> PathBuf {
    let mut names: Vec<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("EPSM_OPS_") || *k == "RUST_LOG")
        .collect();
    names.sort_unstable();
    names.dedup();
    let file = dir.join("environment.yml");
    let list: String = names.iter().map(|n| format!("      - {n}\n")).collect();
    fs::write(
        &file,
        format!("services:\n  console:\n    environment:\n{list}"),
    )
    .expect("write the environment's compose file");
    file
}

/// How a test console runs: the binary as a child process, or its image in a compose project.
#[derive(Debug)]
enum Launch {
    Process(PathBuf),
    Container {
        compose_files: Vec<PathBuf>,
        project: String,
    },
}

impl Launch {
    /// The command that serves in the foreground (its output is the console's log).
    fn command(&self) -> Command {
        match self {
            Launch::Process(bin) => {
                let mut cmd = Command::new(bin);
                cmd.arg("serve");
                cmd
            }
            Launch::Container { .. } => self.compose(&["up", "--no-log-prefix", "--no-color"]),
        }
    }

    /// `docker compose` of a container console's project with `args`.
    fn compose(&self, args: &[&str]) -> Command {
        let Launch::Container {
            compose_files,
            project,
        } = self
        else {
            panic!("not a console in a container");
        };
        let mut cmd = Command::new("docker");
        cmd.arg("compose");
        for file in compose_files {
            cmd.arg("-f").arg(file);
        }
        cmd.args(["-p", project]).args(args);
        cmd
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

/// The console's request timeout (`REQUEST_TIMEOUT` in server/src/router.rs, kept equal by a test
/// there): a page or server function that takes longer is answered 408.
pub const CONSOLE_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
