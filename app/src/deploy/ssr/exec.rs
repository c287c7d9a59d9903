//! Steps that run a command inside a service's container (migrate, seed, collectstatic) through the
//! Docker API, and the guard that keeps a cancelled command's output in the log.

use super::*;

impl Deployer {
    pub(super) async fn exec_step(
        &self,
        service: &str,
        cmd: &[String],
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<i64, StepFailure> {
        let container = self
            .container_of(service)
            .await?
            .ok_or_else(|| StepFailure::new(format!("service {service} has no container")))?;
        out.line(
            position,
            false,
            &format!("$ exec {service} {}", cmd.join(" ")),
        )
        .await;
        // The command's output is shown as it comes; the result (exit code, bounded output) at the end.
        // It runs as a task of its own: a cancel cannot stop a command inside a container, so when
        // this step is dropped the command's guard says so and writes its end into the log.
        let (tx, rx) = tokio::sync::mpsc::channel::<(bool, Vec<u8>)>(64);
        let timeout = Duration::from_secs(self.config.deploy.exec_timeout_secs);
        let task = tokio::spawn({
            let (engine, container) = (self.engine.clone(), container.clone());
            let cmd = cmd.to_vec();
            async move {
                let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
                engine
                    .exec_following(&container, &cmd, &[], timeout, Some(tx))
                    .await
            }
        });
        let mut running = ExecInContainer {
            task: Some(task),
            rx,
            splitters: [
                lines::LineSplitter::new(MAX_LINE),
                lines::LineSplitter::new(MAX_LINE),
            ],
            what: format!("`{}` in {service}", cmd.join(" ")),
            position,
            store: self.store.clone(),
            id: out.id,
            seq: out.seq.clone(),
            scrubber: out.scrubber.clone(),
            left: out.left.clone(),
        };
        let result = loop {
            let task = running.task.as_mut().expect("held until the step ends");
            tokio::select! {
                result = task => {
                    running.task = None;
                    break match result {
                        Ok(done) => done.map_err(|e| e.to_string()),
                        Err(e) => Err(format!("the command's task ended: {e}")),
                    };
                }
                Some((stderr, bytes)) = running.rx.recv() => {
                    for line in running.splitters[usize::from(stderr)].push(&bytes) {
                        out.line(position, stderr, &line).await;
                    }
                }
            }
        };
        for (stderr, line) in running.rest() {
            out.line(position, stderr, &line).await;
        }
        let result = result.map_err(StepFailure::new)?;
        match result.exit_code {
            Some(0) => Ok(0),
            code => {
                let last = result
                    .stderr
                    .lines()
                    .chain(result.stdout.lines())
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("no output")
                    .trim()
                    .to_string();
                Err(StepFailure {
                    reason: format!(
                        "`{}` exited {}: {last}",
                        cmd.join(" "),
                        code.map_or("without a code".into(), |c| c.to_string())
                    ),
                    exit_code: code,
                    cancelled: false,
                })
            }
        }
    }
}

/// A command running in a container for a step. Dropped while the command still runs (the step was
/// cancelled), it says so and hands the command to a task that writes the rest of its output and its
/// exit code into the deploy's log when it ends.
pub(super) struct ExecInContainer {
    pub(super) task: Option<
        tokio::task::JoinHandle<
            Result<crate::engine::ssr::ExecOutput, crate::engine::ssr::EngineError>,
        >,
    >,
    pub(super) rx: tokio::sync::mpsc::Receiver<(bool, Vec<u8>)>,
    pub(super) splitters: [lines::LineSplitter; 2],
    pub(super) what: String,
    pub(super) position: usize,
    pub(super) store: Store,
    pub(super) id: i64,
    pub(super) seq: Arc<AtomicU64>,
    pub(super) scrubber: Arc<Scrubber>,
    pub(super) left: LeftBehind,
}

impl ExecInContainer {
    /// What is left of the output once the command ended: chunks still queued, unfinished lines.
    pub(super) fn rest(&mut self) -> Vec<(bool, String)> {
        let mut lines = Vec::new();
        while let Ok((stderr, bytes)) = self.rx.try_recv() {
            lines.extend(
                self.splitters[usize::from(stderr)]
                    .push(&bytes)
                    .into_iter()
                    .map(|l| (stderr, l)),
            );
        }
        let splitters = std::mem::replace(
            &mut self.splitters,
            [
                lines::LineSplitter::new(MAX_LINE),
                lines::LineSplitter::new(MAX_LINE),
            ],
        );
        for (stderr, splitter) in [false, true].into_iter().zip(splitters) {
            lines.extend(splitter.finish().map(|l| (stderr, l)));
        }
        lines
    }
}

impl Drop for ExecInContainer {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        if task.is_finished() {
            return;
        }
        self.left.say(format!(
            "{} is still running: a cancel does not stop a command inside a container (a migration \
             stopped half-way could leave the schema between versions); its output and exit code \
             are added to this log when it ends",
            self.what
        ));
        let (rx, splitters) = (
            std::mem::replace(&mut self.rx, tokio::sync::mpsc::channel(1).1),
            std::mem::replace(
                &mut self.splitters,
                [
                    lines::LineSplitter::new(MAX_LINE),
                    lines::LineSplitter::new(MAX_LINE),
                ],
            ),
        );
        let mut rest = ExecInContainer {
            task: None,
            rx,
            splitters,
            what: self.what.clone(),
            position: self.position,
            store: self.store.clone(),
            id: self.id,
            seq: self.seq.clone(),
            scrubber: self.scrubber.clone(),
            left: LeftBehind::default(),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut task = task;
            let ended = loop {
                tokio::select! {
                    result = &mut task => break result,
                    Some((stderr, bytes)) = rest.rx.recv() => {
                        for line in rest.splitters[usize::from(stderr)].push(&bytes) {
                            rest.append(stderr, &line).await;
                        }
                    }
                }
            };
            for (stderr, line) in rest.rest() {
                rest.append(stderr, &line).await;
            }
            let end = match ended {
                Ok(Ok(output)) => format!(
                    "{} (left running by the cancel) ended: exit {}",
                    rest.what,
                    output
                        .exit_code
                        .map_or("without a code".into(), |c| c.to_string())
                ),
                Ok(Err(e)) => format!("{} (left running by the cancel) ended: {e}", rest.what),
                Err(e) => format!("{} (left running by the cancel): {e}", rest.what),
            };
            rest.append(true, &end).await;
        });
    }
}

impl ExecInContainer {
    pub(super) async fn append(&self, stderr: bool, text: &str) {
        let line = DeployLine {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            step: self.position,
            stderr,
            text: self.scrubber.scrub(text.trim_end()),
        };
        if let Err(e) = self.store.append_deploy_line(self.id, &line).await {
            tracing::error!("deploy #{}: cannot store a log line: {e}", self.id);
        }
    }
}
