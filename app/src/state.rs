//! What every server function and route can reach: configuration, store, engine. Built once by the
//! server at start and given to server functions as Leptos context (the router's state).

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use crate::config::Config;
use crate::deploy::ssr::Deployer;
use crate::engine::ssr::Engine;
use crate::environment::secrets::Masker;
use crate::health::ssr::HealthMonitor;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub config: Arc<Config>,
    pub store: Store,
    pub engine: Arc<Engine>,
    /// Masks secrets with this installation's fingerprint key.
    pub masker: Arc<Masker>,
    /// The one health monitor every Health page follows.
    pub health: Arc<HealthMonitor>,
    /// Runs deploys, one at a time.
    pub deployer: Arc<Deployer>,
    /// SAML login: the service provider and the IdP it trusts.
    pub saml: Arc<crate::auth::ssr::ServiceProvider>,
    /// The session store (the same the session layer uses): live streams check their session in it.
    pub sessions: Arc<dyn tower_sessions::SessionStore>,
    /// Open live streams, per session and in total.
    pub streams: Arc<crate::streams::StreamLimits>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
