//! The deploy's source: the project's git checkout fetched, checked and checked out, the change card
//! ("what this deploy changes"), and the registry images a deploy pulls. Methods of `Deployer`, kept
//! apart from the runner in `ssr.rs`.

use std::sync::Arc;

use chrono::Utc;

use super::{CardKey, Deployer, Done, Output, RefsSeen, SourcePlan, StepFailure, short};
use crate::audit::AuditOutcome;
use crate::auth::Actor;
use crate::deploy::DeployOptions;
use crate::deploy::changes::{ChangeCard, SourceView, env_changes};
use crate::deploy::git::some_paths;
use crate::environment::secrets::Scrubber;

impl Deployer {
    /// Fetches the remote and resolves what to deploy; refuses what a checkout would overwrite on the
    /// server (paths, never contents) unless the admin chose to discard it. Sets `out.source`.
    pub(super) async fn check_source(
        &self,
        options: &DeployOptions,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let scrubber = Arc::clone(&out.scrubber);
        if !self.git.is_checkout(&scrubber).await {
            out.line(
                position,
                false,
                &format!(
                    "source: {} is not a git checkout: the deploy builds what is on disk",
                    self.config.project.dir.display()
                ),
            )
            .await;
            return Ok(());
        }
        let git = &self.git;
        let wanted = options.wanted_ref().unwrap_or(&git.branch).to_string();
        out.line(
            position,
            false,
            &format!("$ git fetch {} (branches and tags)", git.remote),
        )
        .await;
        git.fetch(&scrubber)
            .await
            .map_err(|e| StepFailure::new(format!("cannot fetch from {}: {e}", git.remote)))?;
        *self.last_fetch.lock().expect("fetch time") = Some(Utc::now());
        let target = git.resolve(&wanted, &scrubber).await.ok_or_else(|| {
            StepFailure::new(format!(
                "unknown ref {wanted:?}: not a branch of {}, a tag or a commit",
                git.remote
            ))
        })?;
        let from = git.head(&scrubber).await;
        let env_file = self.config.project.env_file.display().to_string();
        if let Some(from) = &from
            && git.tracks(from, &env_file, &scrubber).await
        {
            return Err(StepFailure::new(format!(
                "the checkout on the server tracks {env_file} (at {}): moving to another commit could \
                 delete or overwrite it; remove it from the repository (git rm --cached {env_file}) \
                 and ignore it",
                short(from)
            )));
        }
        if git.tracks(&target, &env_file, &scrubber).await {
            return Err(StepFailure::new(format!(
                "the repository tracks {env_file} at {}: the console never overwrites the env file; \
                 remove it from the repository (git rm --cached {env_file}) and ignore it",
                short(&target)
            )));
        }
        let tree = git
            .working_tree(&scrubber)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        let in_the_way: Vec<String> = match &from {
            Some(from) if !tree.untracked.is_empty() => {
                let changed = git
                    .changed_paths(from, &target, &scrubber)
                    .await
                    .map_err(|e| StepFailure::new(e.to_string()))?;
                tree.untracked
                    .iter()
                    .filter(|p| changed.contains(p))
                    .cloned()
                    .collect()
            }
            _ => vec![],
        };
        if !options.discard_local_changes {
            if !tree.modified.is_empty() {
                return Err(StepFailure::new(format!(
                    "tracked files were changed on the server: {}; commit them to the repository, or \
                     let an admin tick \"discard local changes on the server\"",
                    some_paths(&tree.modified, 10)
                )));
            }
            if !in_the_way.is_empty() {
                return Err(StepFailure::new(format!(
                    "untracked files on the server are in the way of {}: {}; move them, or let an admin \
                     tick \"discard local changes on the server\"",
                    short(&target),
                    some_paths(&in_the_way, 10)
                )));
            }
        } else if !tree.modified.is_empty() || !in_the_way.is_empty() {
            let lost: Vec<String> = tree.modified.iter().chain(&in_the_way).cloned().collect();
            out.line(
                position,
                true,
                &format!(
                    "local changes on the server will be discarded: {}",
                    some_paths(&lost, 20)
                ),
            )
            .await;
        }
        match self
            .card(&wanted, from.clone(), target.clone(), &scrubber)
            .await
        {
            Ok(card) => {
                if card.backup_advised && !options.backup_first {
                    out.line(
                        position,
                        true,
                        "a migration it adds can lose data, and \"back up the database first\" is not ticked",
                    )
                    .await;
                }
                if !card.descends && card.running.is_some() {
                    out.line(
                        position,
                        true,
                        "the target does not contain what production runs (rewritten history, or older)",
                    )
                    .await;
                }
                let _ = self.store.set_change_card(out.id, &card).await;
            }
            Err(e) => {
                out.line(position, true, &format!("change card: {e}")).await;
            }
        }
        let on_branch = options.wanted_ref().is_none_or(|r| r == git.branch);
        out.line(
            position,
            false,
            &format!(
                "source: {wanted} is {} ({}); production runs {}",
                short(&target),
                git.subject(&target, &scrubber).await,
                from.as_deref().map_or("no commit".into(), short)
            ),
        )
        .await;
        out.source = Some(SourcePlan {
            from,
            to: target,
            on_branch,
            force: options.discard_local_changes,
        });
        Ok(())
    }

    /// The env file's keys with their values' fingerprints (never a value).
    pub(super) fn env_fingerprints(&self) -> std::collections::BTreeMap<String, String> {
        crate::environment::disk::env_values(&self.config)
            .into_iter()
            .map(|(k, v)| {
                let fingerprint = self.masker.fingerprint(&v);
                (k, fingerprint)
            })
            .collect()
    }

    /// "What this deploy changes" for `wanted` (the configured branch when None); `fetch` fetches the
    /// remote first ("Check for updates", audited). Nothing is checked out.
    pub async fn change_card(
        &self,
        actor: &Actor,
        wanted: Option<&str>,
        fetch: bool,
    ) -> SourceView {
        let scrubber = self.scrubber();
        let wanted = wanted.unwrap_or(&self.git.branch).to_string();
        // What git answered last, while the refs it read are unchanged (a page view starts no git).
        let stamps = self.git.refs_stamp(&wanted);
        let seen = self
            .refs_seen
            .lock()
            .expect("refs seen")
            .as_ref()
            .filter(|r| !fetch && r.wanted == wanted && Some(&r.stamps) == stamps.as_ref())
            .map(|r| (r.target.clone(), r.running.clone()));
        if let Some((target, running)) = seen {
            return self.card_or_why(&wanted, running, target, &scrubber).await;
        }
        if !self.git.is_checkout(&scrubber).await {
            return SourceView::NotGit {
                dir: self.config.project.dir.display().to_string(),
            };
        }
        if fetch {
            let fetched = self.git.fetch(&scrubber).await;
            let _ = self
                .audit(
                    actor,
                    "deploy.check_updates",
                    &self.git.remote,
                    if fetched.is_ok() {
                        AuditOutcome::Ok
                    } else {
                        AuditOutcome::Failed
                    },
                    &fetched
                        .as_ref()
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default(),
                )
                .await;
            if let Err(e) = fetched {
                return SourceView::Unavailable {
                    reason: format!("cannot fetch from {}: {e}", self.git.remote),
                };
            }
            *self.last_fetch.lock().expect("fetch time") = Some(Utc::now());
        }
        // Stamped before git reads (again after a fetch, which moves refs): a ref that moves while git
        // reads makes the next view ask again.
        let stamps = if fetch {
            self.git.refs_stamp(&wanted)
        } else {
            stamps
        };
        let target = self.git.resolve(&wanted, &scrubber).await;
        let running = self.git.head(&scrubber).await;
        *self.refs_seen.lock().expect("refs seen") = stamps.map(|stamps| RefsSeen {
            wanted: wanted.clone(),
            stamps,
            target: target.clone(),
            running: running.clone(),
        });
        self.card_or_why(&wanted, running, target, &scrubber).await
    }

    /// The card for `running -> target`, or why there is none.
    async fn card_or_why(
        &self,
        wanted: &str,
        running: Option<String>,
        target: Option<String>,
        scrubber: &Scrubber,
    ) -> SourceView {
        let Some(target) = target else {
            return SourceView::Unavailable {
                reason: format!(
                    "unknown ref {wanted:?}: not a branch of {}, a tag or a commit",
                    self.git.remote
                ),
            };
        };
        match self.card(wanted, running, target, scrubber).await {
            Ok(card) => SourceView::Card(Box::new(card)),
            Err(reason) => SourceView::Unavailable { reason },
        }
    }

    /// The card for `running -> target`: git and compose parts from the cache when the pair is the
    /// same, the env keys, the deploy number and the fetch time read now.
    async fn card(
        &self,
        wanted: &str,
        running: Option<String>,
        target: String,
        scrubber: &Scrubber,
    ) -> Result<ChangeCard, String> {
        let key: CardKey = (running.clone(), target.clone());
        let cached = self
            .card_cache
            .lock()
            .expect("card cache")
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, card)| card.clone());
        let mut card = match cached {
            Some(card) => card,
            None => {
                let compose_file = self.config.project.compose_file.display().to_string();
                let card = crate::deploy::changes::ssr::card_for(
                    &self.git,
                    &self.compose,
                    &compose_file,
                    wanted,
                    running.as_deref(),
                    &target,
                    scrubber,
                )
                .await?;
                *self.card_cache.lock().expect("card cache") = Some((key, card.clone()));
                card
            }
        };
        card.wanted = wanted.to_string();
        card.commit_url = self.config.project.git.commit_url.clone();
        card.fetched_at = *self.last_fetch.lock().expect("fetch time");
        let last = self.store.last_env_fingerprints().await.ok().flatten();
        card.running_deploy = last.as_ref().map(|(id, _)| *id);
        card.env = match last {
            Some((id, before)) => env_changes(&before, &self.env_fingerprints(), id),
            None => Default::default(),
        };
        Ok(card)
    }

    /// Pulls each registry image (services without a build, those of `project.profiles` too), one
    /// service at a time so a failure names its image; the running version is not touched.
    pub(super) async fn pull_images(
        &self,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<Done, StepFailure> {
        let profiles = &self.config.project.profiles;
        let model = self
            .compose
            .model_with_profiles(profiles, &out.scrubber)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        if model.registry_images.is_empty() {
            out.line(
                position,
                false,
                "no service runs a registry image: nothing to pull",
            )
            .await;
            return Ok(Done::Skipped);
        }
        for (service, image) in &model.registry_images {
            let mut args: Vec<String> = profiles
                .iter()
                .flat_map(|p| ["--profile".to_string(), p.clone()])
                .collect();
            args.extend(["pull".to_string(), service.clone()]);
            self.compose_step(&args, position, out)
                .await
                .map_err(|failure| StepFailure {
                    reason: format!(
                        "pulling {image} (service {service}) failed: {}",
                        failure.reason
                    ),
                    ..failure
                })?;
        }
        Ok(Done::Code(Some(0)))
    }

    /// Checks out the commit preflight resolved; skipped when the project is not a git checkout.
    pub(super) async fn source(
        &self,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<Done, StepFailure> {
        let Some(plan) = out.source.clone() else {
            out.line(
                position,
                false,
                "skipped: the project directory is not a git checkout",
            )
            .await;
            return Ok(Done::Skipped);
        };
        let scrubber = Arc::clone(&out.scrubber);
        let mode = match (plan.on_branch, plan.force) {
            (true, false) => format!("-B {}", self.git.branch),
            (true, true) => format!("--force -B {}", self.git.branch),
            (false, false) => "--detach".into(),
            (false, true) => "--force --detach".into(),
        };
        out.line(
            position,
            false,
            &format!("$ git checkout {mode} {}", short(&plan.to)),
        )
        .await;
        self.git
            .checkout(&plan.to, plan.on_branch, plan.force, &scrubber)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        let _ = self.store.set_to_commit(out.id, &plan.to).await;
        let moved = match plan.from.as_deref() {
            Some(from) if from == plan.to => format!("already at {}", short(&plan.to)),
            Some(from) => format!("{} -> {}", short(from), short(&plan.to)),
            None => format!("checked out {}", short(&plan.to)),
        };
        out.line(position, false, &format!("source: {moved}")).await;
        Ok(Done::Code(None))
    }
}
