//! The images a deploy keeps (tagged by deploy, so a rollback can bring them back) and brings back.

use super::*;

impl Deployer {
    /// Every service's image as it runs: the reference compose gave it (`epsm-backend:latest`,
    /// `postgres:15`) and the image id, from one listing of the project's containers.
    pub(super) async fn service_images(&self) -> Vec<ServiceImage> {
        let mut images: Vec<ServiceImage> = self
            .engine
            .project_containers(&self.config.project_name())
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| {
                Some(ServiceImage {
                    service: c.labels.as_ref()?.get(SERVICE_LABEL)?.clone(),
                    reference: with_tag(c.image.as_deref()?),
                    id: c.image_id?,
                })
            })
            .collect();
        images.sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
        images.dedup_by(|a, b| a.service == b.service && a.id == b.id);
        images
    }

    /// Names this deploy's images `<repo>:deploy-<id>` so a rollback finds them, and removes those
    /// names of successful deploys older than the last `deploy.keep_images`.
    pub(super) async fn keep_images(
        &self,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let images = self.service_images().await;
        for ServiceImage {
            service,
            reference,
            id,
        } in &images
        {
            let repo = repo_of(reference);
            let tag = format!("deploy-{}", out.id);
            self.engine
                .tag_image(id, repo, &tag)
                .await
                .map_err(|e| StepFailure::new(e.to_string()))?;
            out.line(position, false, &format!("{service}: kept as {repo}:{tag}"))
                .await;
        }
        let keep = self.config.deploy.keep_images.max(1);
        let older = self
            .store
            .deploys(Some(DeployOutcome::Succeeded), 10_000)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        // This deploy is not recorded as succeeded yet: it is one of the `keep`.
        for old in older.iter().skip(keep - 1).take(20) {
            for (service, _) in &old.images {
                if let Some(now) = images.iter().find(|i| &i.service == service) {
                    let name = format!("{}:deploy-{}", repo_of(&now.reference), old.id);
                    if self.engine.untag_image(&name).await.is_ok() {
                        out.line(position, false, &format!("no longer kept: {name}"))
                            .await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Names the kept images of deploy `id` as the references compose runs, so `up --no-build`
    /// starts exactly those images.
    pub(super) async fn restore_images(
        &self,
        id: i64,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let deploy = self
            .store
            .deploy(id)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?
            .ok_or_else(|| StepFailure::new(format!("there is no deploy #{id}")))?;
        if deploy.outcome != DeployOutcome::Succeeded {
            return Err(StepFailure::new(format!(
                "deploy #{id} {}: only a successful deploy can be brought back",
                deploy.outcome.as_str()
            )));
        }
        // The images carry the code of the commit that deploy checked out; the files stay as they are.
        let commit = deploy.to_commit.as_deref().or(deploy.git_commit.as_deref());
        let now = self.git.head(&out.scrubber).await;
        out.line(
            position,
            false,
            &format!(
                "bringing back the images of deploy #{id}{}; the working tree is left alone{}",
                commit.map_or(String::new(), |c| format!(" (commit {})", short(c))),
                now.map_or(String::new(), |c| format!(" (it stays at {})", short(&c)))
            ),
        )
        .await;
        let running = self.service_images().await;
        let project = &self.config.project_name();
        for (service, image_id) in &deploy.images {
            let reference = running
                .iter()
                .find(|i| &i.service == service)
                .map(|i| i.reference.clone())
                .unwrap_or_else(|| format!("{project}-{service}:latest"));
            let kept = format!("{}:deploy-{id}", repo_of(&reference));
            match self.engine.inspect_image(&kept).await {
                Ok(image) if image.id.as_deref() == Some(image_id.as_str()) => {}
                _ => {
                    return Err(StepFailure::new(format!(
                        "{kept} is no longer kept (the last {} successful deploys are)",
                        self.config.deploy.keep_images
                    )));
                }
            }
            let (repo, tag) = reference.rsplit_once(':').unwrap_or((&reference, "latest"));
            self.engine
                .tag_image(&kept, repo, tag)
                .await
                .map_err(|e| StepFailure::new(e.to_string()))?;
            out.line(
                position,
                false,
                &format!("{service}: {reference} is now {kept} ({image_id})"),
            )
            .await;
        }
        out.line(
            position,
            false,
            "a rollback brings back images, not the database: migrations applied since stay applied",
        )
        .await;
        Ok(())
    }
}

pub(super) struct ServiceImage {
    pub(super) service: String,
    /// The name compose runs it by, with its tag.
    pub(super) reference: String,
    pub(super) id: String,
}

/// `name` with `:latest` when it has no tag (a `:` in its last path segment).
pub(super) fn with_tag(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// `registry:5000/epsm-backend:latest` -> `registry:5000/epsm-backend`.
pub(super) fn repo_of(reference: &str) -> &str {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => &reference[..last_slash + i],
        None => reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn image_references_keep_registry_ports_apart_from_tags() {
        assert_eq!(with_tag("epsm-backend"), "epsm-backend:latest");
        assert_eq!(with_tag("postgres:15"), "postgres:15");
        assert_eq!(
            with_tag("registry:5000/epsm/api"),
            "registry:5000/epsm/api:latest"
        );
        assert_eq!(
            repo_of("registry:5000/epsm/api:latest"),
            "registry:5000/epsm/api"
        );
        assert_eq!(repo_of("postgres:15"), "postgres");
        assert_eq!(repo_of("epsm-backend"), "epsm-backend");
    }
}
