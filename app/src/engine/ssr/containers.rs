//! Containers the console itself runs beside the stack (the maintenance page during a deploy's switch,
//! a restore drill's scratch database).

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, RemoveContainerOptions, StopContainerOptions,
};

use super::*;

impl Engine {
    /// Creates the container `name` (not started: ports are bound only at the start).
    pub async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, EngineError> {
        let docker = self.client().await?;
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let what = format!("create container {name}");
        let created = self
            .request(
                &what,
                CALL_TIMEOUT,
                docker.create_container(Some(options), body),
            )
            .await?;
        Ok(created.id)
    }

    pub async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        let docker = self.client().await?;
        let what = format!("start container {name}");
        let options = None::<bollard::query_parameters::StartContainerOptions>;
        self.request(&what, CALL_TIMEOUT, docker.start_container(name, options))
            .await
    }

    /// Stops the container (SIGTERM, SIGKILL after `grace_secs`) and removes it; false when there was
    /// none by that name.
    pub async fn stop_and_remove(&self, name: &str, grace_secs: i32) -> Result<bool, EngineError> {
        let docker = self.client().await?;
        let stop = StopContainerOptions {
            t: Some(grace_secs),
            ..Default::default()
        };
        let what = format!("stop container {}", short_id(name));
        let after = CALL_TIMEOUT + Duration::from_secs(grace_secs.max(0) as u64);
        match self
            .bounded(&what, after, docker.stop_container(name, Some(stop)))
            .await?
        {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(404) => return Ok(false),
            Err(e) => return Err(self.call_error(&what, &e)),
        }
        let what = format!("remove container {}", short_id(name));
        // Its anonymous volumes go with it (a drill's scratch database is one).
        let remove = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match self
            .bounded(
                &what,
                CALL_TIMEOUT,
                docker.remove_container(name, Some(remove)),
            )
            .await?
        {
            Ok(()) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.call_error(&what, &e)),
        }
    }
}

/// The HTTP status of an engine's refusal.
fn status_of(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}
