//! Where a deploy's output goes: each line scrubbed, numbered, stored and sent to the live viewers;
//! the bounded history a viewer who joins late is sent; what a cancelled step's guards say.

use super::*;

/// Writes a deploy's lines and steps to the store and to the live viewers.
pub(super) struct Output<'a> {
    pub(super) deployer: &'a Deployer,
    pub(super) id: i64,
    /// The last line's number; shared with work a cancel left running (it writes on after the end).
    pub(super) seq: Arc<AtomicU64>,
    pub(super) scrubber: Arc<Scrubber>,
    /// What preflight resolved for the source step (None: no git checkout, or not resolved yet).
    pub(super) source: Option<SourcePlan>,
    /// What a cancelled step left behind or cleaned up, said by the step's guards as it is dropped.
    pub(super) left: LeftBehind,
    /// The deploy's cancel, for the steps that stop themselves (compose).
    pub(super) cancel: CancellationToken,
}

/// Sentences the guards of a cancelled step leave: what is still running (and where its end will be
/// told), what was stopped and cleaned up.
#[derive(Clone, Default)]
pub(super) struct LeftBehind(pub(super) Arc<Mutex<Vec<String>>>);

impl LeftBehind {
    pub(super) fn say(&self, note: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(note);
    }

    pub(super) fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Says `note` to `LeftBehind` if dropped before `done` (its step's future was dropped: cancelled).
pub(super) struct SayIfDropped {
    pub(super) note: Option<String>,
    pub(super) left: LeftBehind,
}

impl SayIfDropped {
    pub(super) fn done(mut self) {
        self.note = None;
    }
}

impl Drop for SayIfDropped {
    fn drop(&mut self) {
        if let Some(note) = self.note.take() {
            self.left.say(note);
        }
    }
}

impl Output<'_> {
    pub(super) async fn line(&mut self, step: usize, stderr: bool, text: &str) {
        // Lines come cut to MAX_LINE from the splitter; scrubbing may lengthen one a little.
        let text = self.scrubber.scrub(text.trim_end());
        let line = DeployLine {
            seq: self.seq.fetch_add(1, Ordering::SeqCst) + 1,
            step,
            stderr,
            text,
        };
        if let Err(e) = self.deployer.store.append_deploy_line(self.id, &line).await {
            tracing::error!("deploy #{}: cannot store a log line: {e}", self.id);
        }
        self.send(DeployEvent::Line(line));
    }

    pub(super) async fn step(
        &mut self,
        position: usize,
        name: &str,
        status: StepStatus,
        exit_code: Option<i64>,
        started_at: Option<DateTime<Utc>>,
        duration_ms: Option<u64>,
    ) {
        let step = DeployStep {
            name: name.to_string(),
            status,
            exit_code,
            started_at,
            duration_ms,
        };
        if let Err(e) = self
            .deployer
            .store
            .update_deploy_step(self.id, position, &step)
            .await
        {
            tracing::error!("deploy #{}: cannot store a step: {e}", self.id);
        }
        self.send(DeployEvent::Step { position, step });
    }

    pub(super) fn send(&self, event: DeployEvent) {
        let mut running = self
            .deployer
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(r) = running.as_mut().filter(|r| r.id == self.id) {
            r.history.push(&event);
            let _ = r.live.send(event);
        }
    }
}

/// A running deploy's events so far, bounded: each step's latest state, the newest `LOG_WINDOW`
/// lines and how many came before them, and the end once it came.
#[derive(Default)]
pub(super) struct History {
    pub(super) steps: std::collections::BTreeMap<usize, DeployStep>,
    pub(super) lines: std::collections::VecDeque<DeployLine>,
    pub(super) earlier: u64,
    pub(super) finished: Option<DeployEvent>,
}

impl History {
    pub(super) fn push(&mut self, event: &DeployEvent) {
        match event {
            DeployEvent::Line(line) => {
                if self.lines.len() == crate::deploy::LOG_WINDOW {
                    self.lines.pop_front();
                    self.earlier += 1;
                }
                self.lines.push_back(line.clone());
            }
            DeployEvent::Step { position, step } => {
                self.steps.insert(*position, step.clone());
            }
            DeployEvent::Finished { .. } => self.finished = Some(event.clone()),
            DeployEvent::Earlier { .. } => {}
        }
    }

    pub(super) fn events(&self) -> Vec<DeployEvent> {
        let steps = self.steps.iter().map(|(position, step)| DeployEvent::Step {
            position: *position,
            step: step.clone(),
        });
        let earlier = (self.earlier > 0).then_some(DeployEvent::Earlier {
            lines: self.earlier,
        });
        steps
            .chain(earlier)
            .chain(self.lines.iter().cloned().map(DeployEvent::Line))
            .chain(self.finished.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn a_late_viewer_gets_the_steps_the_newest_lines_and_how_many_came_before() {
        let mut history = History::default();
        let step = |status| DeployStep {
            name: "build".into(),
            status,
            exit_code: None,
            started_at: None,
            duration_ms: None,
        };
        history.push(&DeployEvent::Step {
            position: 2,
            step: step(StepStatus::Running),
        });
        for seq in 1..=(crate::deploy::LOG_WINDOW as u64 + 500) {
            history.push(&DeployEvent::Line(DeployLine {
                seq,
                step: 2,
                stderr: false,
                text: "x".into(),
            }));
        }
        history.push(&DeployEvent::Step {
            position: 2,
            step: step(StepStatus::Succeeded),
        });
        let events = history.events();
        assert_eq!(events.len(), 2 + crate::deploy::LOG_WINDOW);
        assert!(
            matches!(&events[0], DeployEvent::Step { step, .. } if step.status == StepStatus::Succeeded)
        );
        assert_eq!(events[1], DeployEvent::Earlier { lines: 500 });
        assert!(matches!(&events[2], DeployEvent::Line(l) if l.seq == 501));
    }
}
