//! The Docker engine as the console sees it: reachability, version and the configured project,
//! shown on the overview and as a badge on every page. Server-side work is in `ssr.rs`.

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod ssr;
pub mod view;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineStatus {
    pub endpoint: String,
    pub state: EngineState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EngineState {
    Reachable(EngineInfo),
    Unreachable { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineInfo {
    pub version: String,
    pub api_version: String,
    pub os: String,
    pub arch: String,
    pub kernel_version: String,
}

/// Where the compose project's name came from, in compose's own order of precedence: what the console
/// is told, else what compose itself would call the project (`docker compose` without `-p`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NameSource {
    /// `project.name` in the console's configuration.
    #[default]
    Configuration,
    /// `COMPOSE_PROJECT_NAME` in the console's own environment.
    ConsoleEnvironment,
    /// `COMPOSE_PROJECT_NAME` in the env file (EPSM's sets `epsm_prod`).
    EnvFile,
    /// The compose file's top-level `name:`.
    ComposeFile,
    /// The project directory's name, as compose normalises it.
    Directory,
}

impl NameSource {
    pub fn describe(self) -> &'static str {
        match self {
            NameSource::Configuration => "project.name in the console's configuration",
            NameSource::ConsoleEnvironment => "COMPOSE_PROJECT_NAME in the console's environment",
            NameSource::EnvFile => "COMPOSE_PROJECT_NAME in the env file",
            NameSource::ComposeFile => "name: in the compose file",
            NameSource::Directory => "the project directory's name",
        }
    }
}

/// The compose project the console is configured for (paths only: nothing from inside the files).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProjectInfo {
    pub name: String,
    pub name_source: NameSource,
    pub dir: String,
    pub compose_file: String,
    pub env_file: String,
    pub compose_file_present: bool,
    pub env_file_present: bool,
}

/// A container on the engine as the project checks read it (from the engine's listing).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SeenContainer {
    /// Without the leading `/`.
    pub name: String,
    pub state: String,
    /// Compose's labels: the project and service it was created for, and the directory it came from.
    pub project: Option<String>,
    pub service: Option<String>,
    pub working_dir: Option<String>,
    /// Published host ports as `127.0.0.1:8080/tcp`.
    pub ports: Vec<String>,
}
