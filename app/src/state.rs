//! What the server holds: each capability's service, built once in `main` with the dependencies it
//! needs, and shared as an `Arc`. The router's routes read them from here; server functions read
//! each service on its own from the Leptos context (`provide_services`), so no service and no page
//! depends on this whole bundle.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;

use crate::alerts::send::Sender;
use crate::auth::gate::Gate;
use crate::auth::ssr::ServiceProvider;
use crate::backup::ssr::Backups;
use crate::config::Config;
use crate::deploy::ssr::Deployer;
use crate::engine::ssr::Engine;
use crate::environment::secrets::Masker;
use crate::environment::ssr::EnvironmentAudit;
use crate::health::maintenance::Maintenance;
use crate::health::ssr::HealthMonitor;
use crate::store::Store;
use crate::streams::StreamLimits;

/// The services, shared: a clone is one reference count (the router clones the state for every
/// request, once per middleware that reads it).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub leptos_options: LeptosOptions,
    pub config: Arc<Config>,
    /// The console's own store (the audit log's reads; `/healthz` pings it).
    pub store: Store,
    pub engine: Arc<Engine>,
    /// Masks secrets with this installation's fingerprint key (live logs pass its scrubber).
    pub masker: Arc<Masker>,
    /// Who a session is and what they may do.
    pub gate: Arc<Gate>,
    /// SAML login: the service provider and the IdP it trusts.
    pub saml: Arc<ServiceProvider>,
    /// The one health monitor every Health page follows.
    pub health: Arc<HealthMonitor>,
    /// The Health page's prunes.
    pub maintenance: Arc<Maintenance>,
    /// Runs deploys, one at a time.
    pub deployer: Arc<Deployer>,
    /// Takes, lists and deletes backups, one at a time.
    pub backups: Arc<Backups>,
    /// The environment audit and its drift check.
    pub environment: Arc<EnvironmentAudit>,
    /// Open live streams, per session and in total.
    pub streams: Arc<StreamLimits>,
    /// Delivers the alerts' outbox; sends the Notifications page's test messages.
    pub alerts: Arc<Sender>,
}

impl AppState {
    /// Gives each service to the server functions of one request, as its own context.
    pub fn provide_services(&self) {
        provide_context(self.config.clone());
        provide_context(self.store.clone());
        provide_context(self.engine.clone());
        provide_context(self.gate.clone());
        provide_context(self.saml.clone());
        provide_context(self.health.clone());
        provide_context(self.maintenance.clone());
        provide_context(self.deployer.clone());
        provide_context(self.backups.clone());
        provide_context(self.environment.clone());
        provide_context(self.alerts.clone());
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
