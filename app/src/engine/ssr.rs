//! The one connection to the Docker engine (bollard). Connects lazily and again after a failure, so an
//! engine that starts after the console is found; every failure is a sentence an operator can act on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerInspectResponse, ContainerSummary, EventMessage, ImageInspect};
use bollard::query_parameters::{EventsOptions, ListContainersOptions, LogsOptions};
use futures::{Stream, StreamExt};

use super::SeenContainer;
use super::{EngineInfo, EngineState, EngineStatus};

/// How long one call to the engine may take before the console says it does not answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// For calls that do real work on the engine (prunes): minutes, not seconds.
const LONG_CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Output kept per stream of one exec; more is cut (and said to be cut).
const EXEC_OUTPUT_LIMIT: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Docker engine not reachable at {endpoint}: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("Docker engine at {endpoint}: {what}: {reason}")]
    Call {
        endpoint: String,
        what: String,
        reason: String,
    },
    #[error("{what}: no answer within {} s", .after.as_secs())]
    Timeout { what: String, after: Duration },
}

impl From<EngineError> for crate::error::AppError {
    fn from(e: EngineError) -> Self {
        crate::error::AppError::Unavailable(e.to_string())
    }
}

/// The result of a command run inside a container.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutput {
    /// None when the engine did not report one (the process did not finish).
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

pub struct Engine {
    endpoint: String,
    client: Mutex<Option<Docker>>,
    /// Requests made to the engine since start (what the health benchmark counts per probe round).
    calls: AtomicU64,
}

/// Compose's labels on every container it creates.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
pub const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";

impl Engine {
    /// Does not touch the engine: the first call connects.
    pub fn new(endpoint: impl Into<String>) -> Engine {
        Engine {
            endpoint: endpoint.into(),
            client: Mutex::new(None),
            calls: AtomicU64::new(0),
        }
    }

    /// Requests made to the engine so far.
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self, calls: u64) {
        self.calls.fetch_add(calls, Ordering::Relaxed);
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A connected client whose API version is agreed with the engine (an old engine, such as Debian's
    /// 20.10 with API 1.41, refuses requests made with a newer version).
    pub async fn client(&self) -> Result<Docker, EngineError> {
        if let Some(docker) = self.client.lock().expect("engine lock").clone() {
            return Ok(docker);
        }
        let docker = Docker::connect_with_host(&self.endpoint).map_err(|e| self.unreachable(&e))?;
        let docker = self
            .bounded(
                "version negotiation",
                CALL_TIMEOUT,
                docker.negotiate_version(),
            )
            .await?
            .map_err(|e| self.unreachable(&e))?;
        *self.client.lock().expect("engine lock") = Some(docker.clone());
        Ok(docker)
    }

    /// Reachability and version, as the UI shows it. Never an error: an unreachable engine is a state.
    pub async fn status(&self) -> EngineStatus {
        let state = match self.info().await {
            Ok(info) => EngineState::Reachable(info),
            Err(e) => {
                // Forget the connection: the next call connects (and negotiates) afresh.
                *self.client.lock().expect("engine lock") = None;
                EngineState::Unreachable {
                    reason: e.to_string(),
                }
            }
        };
        EngineStatus {
            endpoint: self.endpoint.clone(),
            state,
        }
    }

    async fn info(&self) -> Result<EngineInfo, EngineError> {
        let docker = self.client().await?;
        let v = self
            .bounded("version", CALL_TIMEOUT, docker.version())
            .await?
            .map_err(|e| self.unreachable(&e))?;
        Ok(EngineInfo {
            version: v.version.unwrap_or_default(),
            api_version: v.api_version.unwrap_or_default(),
            os: v.os.unwrap_or_default(),
            arch: v.arch.unwrap_or_default(),
            kernel_version: v.kernel_version.unwrap_or_default(),
        })
    }

    /// Every container of a compose project (by compose's labels), running or not, one-off runs
    /// (`compose run`) left out.
    pub async fn project_containers(
        &self,
        project: &str,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let label = format!("{PROJECT_LABEL}={project}");
        let list = self.list_containers(Some(label)).await?;
        Ok(list
            .into_iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get(ONEOFF_LABEL))
                    .is_none_or(|v| v != "True")
            })
            .collect())
    }

    /// Every container on the engine, running or not, as the project checks read them (which other
    /// projects hold a service's name or a port).
    pub async fn all_containers(&self) -> Result<Vec<SeenContainer>, EngineError> {
        let list = self.list_containers(None).await?;
        Ok(list.into_iter().map(seen_container).collect())
    }

    /// The engine's container list, running or not, with this label filter if one is given.
    async fn list_containers(
        &self,
        label: Option<String>,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let docker = self.client().await?;
        let options = ListContainersOptions {
            all: true,
            filters: label.map(|l| [("label".to_string(), vec![l])].into()),
            ..Default::default()
        };
        self.request(
            "list containers",
            CALL_TIMEOUT,
            docker.list_containers(Some(options)),
        )
        .await
    }

    /// The container of a compose service, running or not.
    pub async fn service_container(
        &self,
        project: &str,
        service: &str,
    ) -> Result<Option<String>, EngineError> {
        let mut list = self.project_containers(project).await?;
        list.sort_by(|a, b| a.names.cmp(&b.names));
        Ok(list.into_iter().find_map(|c| {
            let labels = c.labels.as_ref()?;
            (labels.get(SERVICE_LABEL)? == service).then_some(c.id?)
        }))
    }

    pub async fn inspect_container(
        &self,
        id: &str,
    ) -> Result<ContainerInspectResponse, EngineError> {
        let docker = self.client().await?;
        let what = format!("inspect container {}", short_id(id));
        self.request(&what, CALL_TIMEOUT, docker.inspect_container(id, None))
            .await
    }

    pub async fn inspect_image(&self, id: &str) -> Result<ImageInspect, EngineError> {
        let docker = self.client().await?;
        let what = format!(
            "inspect image {}",
            short_id(id.trim_start_matches("sha256:"))
        );
        self.request(&what, CALL_TIMEOUT, docker.inspect_image(id))
            .await
    }

    /// The engine's container events for one compose project, as they happen (one long request).
    pub async fn project_events(
        &self,
        project: &str,
    ) -> Result<impl Stream<Item = Result<EventMessage, EngineError>> + use<>, EngineError> {
        let docker = self.client().await?;
        self.count(1);
        let filters = [
            ("type".to_string(), vec!["container".to_string()]),
            (
                "label".to_string(),
                vec![format!("{PROJECT_LABEL}={project}")],
            ),
        ]
        .into();
        let options = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let endpoint = self.endpoint.clone();
        Ok(docker
            .events(Some(options))
            .map(move |e| e.map_err(|e| call_error(&endpoint, "events", &e))))
    }

    /// A container's log: the last `tail` lines, then (with `follow`) new lines as they are written.
    pub async fn logs(
        &self,
        container: &str,
        tail: usize,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<LogOutput, EngineError>> + use<>, EngineError> {
        let docker = self.client().await?;
        self.count(1);
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            timestamps: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        let endpoint = self.endpoint.clone();
        Ok(docker
            .logs(container, Some(options))
            .map(move |e| e.map_err(|e| call_error(&endpoint, "logs", &e))))
    }

    /// Gives the image `source` (an id or a name) the name `repo:tag`.
    pub async fn tag_image(&self, source: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        let docker = self.client().await?;
        let what = format!(
            "tag {} as {repo}:{tag}",
            short_id(source.trim_start_matches("sha256:"))
        );
        let options = bollard::query_parameters::TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
        };
        self.request(&what, CALL_TIMEOUT, docker.tag_image(source, Some(options)))
            .await
    }

    /// Removes the name `name` (the image itself goes only when no other name or container holds it).
    pub async fn untag_image(&self, name: &str) -> Result<(), EngineError> {
        let docker = self.client().await?;
        let what = format!("remove image name {name}");
        let options = None::<bollard::query_parameters::RemoveImageOptions>;
        self.request(
            &what,
            CALL_TIMEOUT,
            docker.remove_image(name, options, None),
        )
        .await
        .map(drop)
    }

    /// Removes the engine's build cache; returns (entries removed, bytes freed).
    pub async fn prune_build_cache(&self) -> Result<(usize, u64), EngineError> {
        let docker = self.client().await?;
        let options = None::<bollard::query_parameters::PruneBuildOptions>;
        let reply = self
            .request(
                "prune build cache",
                LONG_CALL_TIMEOUT,
                docker.prune_build(options),
            )
            .await?;
        Ok(freed(reply.caches_deleted, reply.space_reclaimed))
    }

    /// Removes the project's stopped containers (only this project's: the label filter).
    pub async fn prune_project_containers(
        &self,
        project: &str,
    ) -> Result<(usize, u64), EngineError> {
        let docker = self.client().await?;
        let filters = [(
            "label".to_string(),
            vec![format!("{PROJECT_LABEL}={project}")],
        )]
        .into();
        let options = bollard::query_parameters::PruneContainersOptions {
            filters: Some(filters),
        };
        let reply = self
            .request(
                "prune containers",
                LONG_CALL_TIMEOUT,
                docker.prune_containers(Some(options)),
            )
            .await?;
        Ok(freed(reply.containers_deleted, reply.space_reclaimed))
    }

    /// Removes dangling images (untagged and used by no container).
    pub async fn prune_dangling_images(&self) -> Result<(usize, u64), EngineError> {
        let docker = self.client().await?;
        let filters = [("dangling".to_string(), vec!["true".to_string()])].into();
        let options = bollard::query_parameters::PruneImagesOptions {
            filters: Some(filters),
        };
        let reply = self
            .request(
                "prune images",
                LONG_CALL_TIMEOUT,
                docker.prune_images(Some(options)),
            )
            .await?;
        Ok(freed(reply.images_deleted, reply.space_reclaimed))
    }

    /// Runs `cmd` in a running container through the API (no `docker` CLI), waits up to `timeout` for
    /// it to end, and returns its exit code and output.
    pub async fn exec(
        &self,
        container: &str,
        cmd: &[&str],
        env: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, EngineError> {
        self.exec_following(container, cmd, env, timeout, None)
            .await
    }

    /// Like `exec`, and every chunk of output is also sent to `follow` as it comes (`true` for
    /// stderr), for steps whose output is shown live.
    pub async fn exec_following(
        &self,
        container: &str,
        cmd: &[&str],
        env: &[String],
        timeout: Duration,
        follow: Option<tokio::sync::mpsc::Sender<(bool, Vec<u8>)>>,
    ) -> Result<ExecOutput, EngineError> {
        let docker = self.client().await?;
        let what = format!(
            "exec `{}` in {}",
            cmd.first().copied().unwrap_or(""),
            short_id(container)
        );
        let options = CreateExecOptions {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            env: Some(env.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        // create, start, inspect
        self.count(3);
        let run = async {
            let created = docker
                .create_exec(container, options)
                .await
                .map_err(|e| self.call_error(&what, &e))?;
            let mut out = ExecOutput {
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
            };
            if let StartExecResults::Attached { mut output, .. } = docker
                .start_exec(&created.id, None)
                .await
                .map_err(|e| self.call_error(&what, &e))?
            {
                while let Some(chunk) = output.next().await {
                    let (stderr, message) = match chunk.map_err(|e| self.call_error(&what, &e))? {
                        LogOutput::StdErr { message } => (true, message),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            (false, message)
                        }
                        LogOutput::StdIn { .. } => continue,
                    };
                    append_bounded(
                        if stderr {
                            &mut out.stderr
                        } else {
                            &mut out.stdout
                        },
                        &message,
                    );
                    if let Some(follow) = &follow {
                        // A viewer that went away does not stop the command.
                        let _ = follow.send((stderr, message.to_vec())).await;
                    }
                }
            }
            let inspect = docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| self.call_error(&what, &e))?;
            out.exit_code = inspect.exit_code;
            Ok(out)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(EngineError::Timeout {
                what,
                after: timeout,
            }),
        }
    }

    /// Runs `cmd` in a container with its stdout written to `sink` as it comes (never held in memory)
    /// and, when given, `stdin` fed to it. Returns the exit code and the (bounded) stderr. No timeout:
    /// a dump of a large database takes as long as it takes; the caller may drop the future.
    pub async fn exec_streaming(
        &self,
        container: &str,
        cmd: &[&str],
        sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        stdin: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>,
    ) -> Result<(Option<i64>, String), EngineError> {
        use tokio::io::AsyncWriteExt;
        let docker = self.client().await?;
        let what = format!(
            "exec `{}` in {}",
            cmd.first().copied().unwrap_or(""),
            short_id(container)
        );
        let options = CreateExecOptions {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(stdin.is_some()),
            ..Default::default()
        };
        self.count(3);
        let created = docker
            .create_exec(container, options)
            .await
            .map_err(|e| self.call_error(&what, &e))?;
        let mut stderr = String::new();
        if let StartExecResults::Attached {
            mut output,
            mut input,
        } = docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| self.call_error(&what, &e))?
        {
            // Feeds stdin, then waits forever: the exec is over when its output ends, and a command
            // that exits before reading all its input (pg_restore --list stops after the TOC) must
            // not leave us pushing the rest into a pipe nobody reads.
            let feeding = async {
                if let Some(mut stdin) = stdin {
                    let _ = tokio::io::copy(&mut stdin, &mut input).await;
                    // End of input: the command sees EOF on its stdin. (Without stdin the connection
                    // is left alone: half-closing it could end the output early.)
                    let _ = input.shutdown().await;
                }
                std::future::pending::<std::convert::Infallible>().await
            };
            let reading = async {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| self.call_error(&what, &e))? {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => sink
                            .write_all(&message)
                            .await
                            .map_err(|e| EngineError::Call {
                                endpoint: self.endpoint.clone(),
                                what: what.clone(),
                                reason: format!("writing its output: {e}"),
                            })?,
                        LogOutput::StdErr { message } => append_bounded(&mut stderr, &message),
                        LogOutput::StdIn { .. } => {}
                    }
                }
                Ok::<(), EngineError>(())
            };
            tokio::select! {
                read = reading => read?,
                never = feeding => match never {},
            }
        }
        let inspect = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| self.call_error(&what, &e))?;
        Ok((inspect.exit_code, stderr))
    }

    /// One request to the engine, counted and bounded by `after`.
    async fn bounded<T>(
        &self,
        what: &str,
        after: Duration,
        call: impl Future<Output = T>,
    ) -> Result<T, EngineError> {
        self.count(1);
        tokio::time::timeout(after, call)
            .await
            .map_err(|_| EngineError::Timeout {
                what: format!("Docker engine at {}: {what}", self.endpoint),
                after,
            })
    }

    /// One request whose failure is the operator's sentence "Docker engine at ...: <what>: <why>".
    async fn request<T>(
        &self,
        what: &str,
        after: Duration,
        call: impl Future<Output = Result<T, bollard::errors::Error>>,
    ) -> Result<T, EngineError> {
        self.bounded(what, after, call)
            .await?
            .map_err(|e| self.call_error(what, &e))
    }

    fn unreachable(&self, e: &bollard::errors::Error) -> EngineError {
        EngineError::Unreachable {
            endpoint: self.endpoint.clone(),
            reason: describe(e),
        }
    }

    fn call_error(&self, what: &str, e: &bollard::errors::Error) -> EngineError {
        call_error(&self.endpoint, what, e)
    }
}

/// What a prune reports: how many things went, and the bytes freed.
fn seen_container(c: ContainerSummary) -> SeenContainer {
    let label = |key: &str| c.labels.as_ref().and_then(|l| l.get(key)).cloned();
    SeenContainer {
        name: c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        project: label(PROJECT_LABEL),
        service: label(SERVICE_LABEL),
        working_dir: label(WORKING_DIR_LABEL),
        ports: c
            .ports
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                let public = p.public_port?;
                let ip = p.ip.unwrap_or_else(|| "0.0.0.0".into());
                let kind = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
                Some(format!("{ip}:{public}/{kind}"))
            })
            .collect(),
    }
}

fn freed<T>(deleted: Option<Vec<T>>, space_reclaimed: Option<i64>) -> (usize, u64) {
    (
        deleted.map_or(0, |d| d.len()),
        space_reclaimed.unwrap_or(0).max(0) as u64,
    )
}

fn call_error(endpoint: &str, what: &str, e: &bollard::errors::Error) -> EngineError {
    EngineError::Call {
        endpoint: endpoint.to_string(),
        what: what.to_string(),
        reason: describe(e),
    }
}

fn append_bounded(buf: &mut String, bytes: &[u8]) {
    const CUT: &str = "\n[output cut]\n";
    if buf.len() >= EXEC_OUTPUT_LIMIT {
        return;
    }
    let room = EXEC_OUTPUT_LIMIT - buf.len();
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= room {
        buf.push_str(&text);
    } else {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        buf.push_str(&text[..end]);
        buf.push_str(CUT);
    }
}

pub fn short_id(container: &str) -> &str {
    let is_id = container.len() == 64 && container.bytes().all(|b| b.is_ascii_hexdigit());
    if is_id { &container[..12] } else { container }
}

/// The operator's sentence for a bollard error: the io cause when there is one, else the engine's words.
fn describe(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as B;
    use std::io::ErrorKind;
    if let Some(io) = io_cause(e) {
        return match io.kind() {
            ErrorKind::NotFound => "the socket does not exist (is dockerd running?)".into(),
            ErrorKind::PermissionDenied => {
                "permission denied (the console's user needs access to the socket: root or the docker group)"
                    .into()
            }
            ErrorKind::ConnectionRefused => "connection refused (no engine listens there)".into(),
            _ => io.to_string(),
        };
    }
    match e {
        B::SocketNotFoundError(_) => "the socket does not exist (is dockerd running?)".into(),
        B::DockerResponseServerError {
            status_code,
            message,
        } => {
            format!("the engine answered HTTP {status_code}: {message}")
        }
        B::RequestTimeoutError => "no answer in time".into(),
        other => other.to_string(),
    }
}

/// The io error behind a bollard error. `IOError` is `#[error(transparent)]`, so its `source()` skips
/// the io error itself: look at it first, then walk the chain (hyper wraps connection errors deeper).
fn io_cause(e: &bollard::errors::Error) -> Option<&std::io::Error> {
    if let bollard::errors::Error::IOError { err } = e {
        return Some(err);
    }
    let mut cause = std::error::Error::source(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_the_limit_on_a_char_boundary() {
        let mut buf = String::new();
        append_bounded(&mut buf, "é".repeat(EXEC_OUTPUT_LIMIT).as_bytes());
        assert!(buf.ends_with("[output cut]\n"));
        assert!(buf.len() <= EXEC_OUTPUT_LIMIT + 20);
        let before = buf.len();
        append_bounded(&mut buf, b"more");
        assert_eq!(
            buf.len(),
            before,
            "nothing is added once the limit is reached"
        );
    }

    #[test]
    fn container_ids_are_shortened_names_are_not() {
        let id = "a".repeat(64);
        assert_eq!(short_id(&id), "aaaaaaaaaaaa");
        assert_eq!(short_id("epsm-backend-1"), "epsm-backend-1");
    }

    #[test]
    fn io_causes_are_worded_for_the_operator() {
        use std::io::{Error, ErrorKind};
        // A socket the console's user may not open (the tests run as root, for whom none is forbidden,
        // so the cause is built here the way bollard wraps it).
        let forbidden = bollard::errors::Error::from(Error::from(ErrorKind::PermissionDenied));
        assert_eq!(
            describe(&forbidden),
            "permission denied (the console's user needs access to the socket: root or the docker group)"
        );
        let refused = bollard::errors::Error::from(Error::from(ErrorKind::ConnectionRefused));
        assert_eq!(
            describe(&refused),
            "connection refused (no engine listens there)"
        );
        let answered = bollard::errors::Error::DockerResponseServerError {
            status_code: 403,
            message: "authorization denied by plugin".into(),
        };
        assert_eq!(
            describe(&answered),
            "the engine answered HTTP 403: authorization denied by plugin"
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_reported_as_unreachable_with_the_reason() {
        let engine = Engine::new("unix:///nonexistent/docker.sock");
        let status = engine.status().await;
        assert_eq!(status.endpoint, "unix:///nonexistent/docker.sock");
        match status.state {
            EngineState::Unreachable { reason } => assert_eq!(
                reason,
                "Docker engine not reachable at unix:///nonexistent/docker.sock: \
                 the socket does not exist (is dockerd running?)"
            ),
            other => panic!("expected unreachable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_is_connection_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // leaves a dead socket file
        let engine = Engine::new(format!("unix://{}", path.display()));
        match engine.status().await.state {
            EngineState::Unreachable { reason } => {
                assert!(
                    reason.ends_with("connection refused (no engine listens there)"),
                    "{reason}"
                )
            }
            other => panic!("expected unreachable, got {other:?}"),
        }
    }
}
