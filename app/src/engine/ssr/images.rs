//! Images and clean-ups: the tags a deploy keeps for rollback, and the prunes of the Health page.

use super::*;

impl Engine {
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
}

pub(super) fn freed<T>(deleted: Option<Vec<T>>, space_reclaimed: Option<i64>) -> (usize, u64) {
    (
        deleted.map_or(0, |d| d.len()),
        space_reclaimed.unwrap_or(0).max(0) as u64,
    )
}
