//! Draining the Celery worker before the switch: the worker stops taking tasks from its queues and
//! the deploy waits for the tasks it runs (EPSM's simulations, up to `SIMULATION_TIMEOUT`) to end, up
//! to `deploy.drain_timeout_secs`; then the switch goes ahead and names what it interrupts.
//!
//! Celery's own control API does the work, in one short Python process inside the worker's container
//! (it has Celery and the app): `cancel_consumer` per queue, then `inspect active` and `inspect
//! reserved` every second, one JSON line per look. A deploy that stops before the switch has its
//! worker take tasks again (`add_consumer`).

use serde::Deserialize;

use super::*;

/// The drain, as the worker's Python runs it: argv is app, worker node name, timeout in seconds.
const DRAIN: &str = r#"
import json, sys, time
from celery.app.utils import find_app
app, node, timeout = find_app(sys.argv[1]), sys.argv[2], float(sys.argv[3])
dest = dict(destination=[node], timeout=2.0, limit=1)
inspect = app.control.inspect(**dest)
say = lambda **kw: print(json.dumps(kw), flush=True)
reply = inspect.active_queues()
if not reply or node not in reply:
    say(event="idle", why=node + " did not answer within 2 s: its tasks cannot be seen, so none are waited for")
    sys.exit(0)
queues = [q["name"] for q in reply[node] or []]
if not queues:
    say(event="idle", why=node + " consumes from no queue")
    sys.exit(0)
for q in queues:
    app.control.cancel_consumer(q, reply=True, **dest)
say(event="stopped", queues=queues)
deadline = time.monotonic() + timeout
while True:
    running, waiting = inspect.active(), inspect.reserved()
    late = time.monotonic() >= deadline
    if running is None or waiting is None or node not in running:
        say(event="silent", timeout=late)
    else:
        tasks = [dict(id=t.get("id"), name=t.get("name"), running=True) for t in running.get(node) or []]
        tasks += [dict(id=t.get("id"), name=t.get("name"), running=False) for t in waiting.get(node) or []]
        say(event="tasks", tasks=tasks, timeout=late and bool(tasks))
        if not tasks:
            break
    if late:
        break
    time.sleep(1)
"#;

/// Consumption again, after a deploy that stopped before the switch: argv is app, node, queues.
const RESUME: &str = r#"
import sys
from celery.app.utils import find_app
app, node = find_app(sys.argv[1]), sys.argv[2]
for q in sys.argv[3:]:
    app.control.add_consumer(q, reply=True, destination=[node], timeout=2.0, limit=1)
print("consuming from " + ", ".join(sys.argv[3:]), flush=True)
"#;

/// One line of the drain's output.
#[derive(Debug, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
enum Said {
    Idle {
        why: String,
    },
    Stopped {
        queues: Vec<String>,
    },
    Tasks {
        tasks: Vec<Task>,
        timeout: bool,
    },
    /// The worker did not answer a look (busy or hung); `timeout`: and the time is up.
    Silent {
        timeout: bool,
    },
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Task {
    id: Option<String>,
    name: Option<String>,
    /// Running (else taken by the worker and waiting for its turn there).
    running: bool,
}

impl Task {
    /// Its name and id, and with `since` how long it has been seen running.
    fn describe(&self, since: Option<Instant>) -> String {
        let name = self.name.as_deref().unwrap_or("a task");
        let id = self.id.as_deref().map(short).unwrap_or_default();
        match since {
            Some(t) if self.running => {
                format!("{name}[{id}] (running {} s)", t.elapsed().as_secs())
            }
            Some(_) => format!("{name}[{id}] (next in the worker)"),
            None => format!("{name}[{id}]"),
        }
    }
}

/// The worker's queues while it does not consume from them: given back unless the switch began.
pub(super) struct Drained {
    pub(super) container: String,
    pub(super) node: String,
    pub(super) queues: Vec<String>,
}

impl Deployer {
    pub(super) async fn drain(
        &self,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let deploy = &self.config.deploy;
        let failed = |e: crate::engine::ssr::EngineError| StepFailure::new(e.to_string());
        let Some(container) = self.container_of(&deploy.worker_service).await? else {
            out.line(
                position,
                false,
                &format!(
                    "{} has no container: nothing to drain",
                    deploy.worker_service
                ),
            )
            .await;
            return Ok(());
        };
        let inspect = self
            .engine
            .inspect_container(&container)
            .await
            .map_err(failed)?;
        if !inspect
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false)
        {
            out.line(
                position,
                false,
                &format!("{} is not running: nothing to drain", deploy.worker_service),
            )
            .await;
            return Ok(());
        }
        // Celery's default node name is celery@<hostname>, and the hostname is the container's.
        let node = format!(
            "celery@{}",
            inspect.config.and_then(|c| c.hostname).unwrap_or_default()
        );
        let timeout = deploy.drain_timeout_secs.to_string();
        let cmd = [
            "python",
            "-c",
            DRAIN,
            deploy.celery_app.as_str(),
            node.as_str(),
            timeout.as_str(),
        ];
        out.line(
            position,
            false,
            &format!(
                "$ exec {}: the worker stops taking tasks; waiting up to {} s for the running ones",
                deploy.worker_service, deploy.drain_timeout_secs
            ),
        )
        .await;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(bool, Vec<u8>)>(64);
        let within = Duration::from_secs(deploy.drain_timeout_secs + 60);
        // A task of its own, as the other in-container steps: the output ends when the command does.
        let task = tokio::spawn({
            let (engine, container) = (self.engine.clone(), container.clone());
            let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            async move {
                let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
                engine
                    .exec_following(&container, &cmd, &[], within, Some(tx))
                    .await
            }
        });
        let mut splitter = [
            lines::LineSplitter::new(MAX_LINE),
            lines::LineSplitter::new(MAX_LINE),
        ];
        let mut seen: Vec<(Task, Instant)> = Vec::new();
        let mut last_said = String::new();
        let mut said_at = Instant::now();
        let mut answered = false;
        while let Some((stderr, bytes)) = rx.recv().await {
            for line in splitter[usize::from(stderr)].push(&bytes) {
                if stderr {
                    out.line(position, true, &line).await;
                    continue;
                }
                let said = match serde_json::from_str::<Said>(&line) {
                    Ok(said) => said,
                    Err(_) => {
                        out.line(position, false, &line).await;
                        continue;
                    }
                };
                let text = match said {
                    Said::Idle { why } => {
                        answered = true;
                        format!("nothing to drain: {why}")
                    }
                    Said::Stopped { queues } => {
                        let text = format!("{node} takes no new tasks from {}", queues.join(", "));
                        // Kept at once: a deploy cancelled from here on gives the queues back.
                        *self.drained.lock().unwrap_or_else(|e| e.into_inner()) = Some(Drained {
                            container: container.clone(),
                            node: node.clone(),
                            queues,
                        });
                        text
                    }
                    Said::Silent { timeout: true } => {
                        answered = true;
                        format!(
                            "drain timeout ({} s): {node} does not answer; the switch goes ahead",
                            deploy.drain_timeout_secs
                        )
                    }
                    Said::Silent { timeout: false } if last_said != "silent" => {
                        last_said = "silent".into();
                        format!("{node} did not answer; asking again")
                    }
                    Said::Silent { .. } => continue,
                    Said::Tasks { tasks, timeout } => {
                        seen.retain(|(t, _)| tasks.contains(t));
                        for t in &tasks {
                            if !seen.iter().any(|(s, _)| s == t) {
                                seen.push((t.clone(), Instant::now()));
                            }
                        }
                        let running: Vec<String> = seen
                            .iter()
                            .map(|(t, since)| t.describe(Some(*since)))
                            .collect();
                        let names: Vec<String> =
                            seen.iter().map(|(t, _)| t.describe(None)).collect();
                        let names = names.join(", ");
                        if tasks.is_empty() {
                            answered = true;
                            "no task running: the worker is drained".to_string()
                        } else if timeout {
                            answered = true;
                            format!(
                                "drain timeout ({} s): the switch interrupts {}",
                                deploy.drain_timeout_secs,
                                running.join(", ")
                            )
                        } else if names != last_said || said_at.elapsed() >= Duration::from_secs(10)
                        {
                            // Said when the set changes, and every 10 s with the run times.
                            last_said = names;
                            said_at = Instant::now();
                            format!(
                                "waiting for {} task(s): {}",
                                tasks.len(),
                                running.join(", ")
                            )
                        } else {
                            continue;
                        }
                    }
                };
                out.line(position, false, &text).await;
            }
        }
        for (stderr, splitter) in [false, true].into_iter().zip(splitter) {
            if let Some(line) = splitter.finish() {
                out.line(position, stderr, &line).await;
            }
        }
        let result = task
            .await
            .map_err(|e| StepFailure::new(format!("the drain's task ended: {e}")))?;
        match result {
            Ok(done) if answered && done.succeeded() => Ok(()),
            Ok(done) => Err(StepFailure {
                reason: format!(
                    "the drain in {} ended without an answer (exit code {}; deploy.celery_app names \
                     the Celery app, and the option \"don't wait for running tasks\" skips the drain)",
                    deploy.worker_service,
                    done.exit_code.map_or("none".into(), |c| c.to_string())
                ),
                exit_code: done.exit_code,
                cancelled: false,
            }),
            Err(e) => Err(StepFailure::new(e.to_string())),
        }
    }

    /// After a deploy that ended before its switch: the drained worker takes tasks again.
    pub(super) async fn resume_worker(&self, position: usize, out: &mut Output<'_>) {
        let drained = self
            .drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(drained) = drained else { return };
        let mut cmd = vec![
            "python",
            "-c",
            RESUME,
            self.config.deploy.celery_app.as_str(),
            drained.node.as_str(),
        ];
        cmd.extend(drained.queues.iter().map(String::as_str));
        let said = match self
            .engine
            .exec(&drained.container, &cmd, &[], Duration::from_secs(30))
            .await
        {
            Ok(done) if done.succeeded() => format!(
                "the deploy stopped before the switch: {} {}",
                drained.node,
                done.stdout.trim()
            ),
            Ok(done) => format!(
                "the worker could not be told to take tasks again (exit code {:?}): restart {}",
                done.exit_code, self.config.deploy.worker_service
            ),
            Err(e) => format!(
                "the worker could not be told to take tasks again ({e}): restart {}",
                self.config.deploy.worker_service
            ),
        };
        out.line(position, false, &said).await;
    }

    /// The switch began: the drained worker is replaced, nothing to give back.
    pub(super) fn forget_drain(&self) {
        self.drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_the_drain_prints_is_understood() {
        let lines = [
            r#"{"event": "idle", "why": "celery@x consumes from no queue"}"#,
            r#"{"event": "stopped", "queues": ["celery"]}"#,
            r#"{"event": "tasks", "tasks": [{"id": "3f2a", "name": "t.sim", "running": true}], "timeout": false}"#,
            r#"{"event": "silent", "timeout": true}"#,
        ];
        let said: Vec<Said> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        assert!(matches!(&said[1], Said::Stopped { queues } if queues == &["celery"]));
        let Said::Tasks { tasks, timeout } = &said[2] else {
            panic!("{:?}", said[2])
        };
        assert!(!timeout);
        assert_eq!(tasks[0].describe(None), "t.sim[3f2a]");
        assert!(matches!(said[3], Said::Silent { timeout: true }));
        // Each script prints only events of that shape (the Python's `say(event=...)` calls).
        for event in ["idle", "stopped", "tasks", "silent"] {
            assert!(DRAIN.contains(&format!("say(event=\"{event}\"")), "{event}");
        }
    }
}
