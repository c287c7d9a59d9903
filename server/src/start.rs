//! Start-up and shutdown: the configuration, store, engine and masker opened once, every service
//! built with what it needs, the router served until SIGINT/SIGTERM, then the requests in flight
//! finished.

use std::sync::Arc;

use app::audit::{AuditEvent, AuditOutcome};
use app::auth::gate::Gate;
use app::auth::ssr::ServiceProvider;
use app::backup::ssr::Backups;
use app::config::Config;
use app::deploy::ssr::Deployer;
use app::engine::EngineState;
use app::engine::ssr::Engine;
use app::environment::disk::fingerprint_key;
use app::environment::secrets::{Masker, secret_name_parts};
use app::environment::ssr::EnvironmentAudit;
use app::health::maintenance::Maintenance;
use app::health::ssr::HealthMonitor;
use app::state::{AppState, Services};
use app::store::Store;
use leptos::config::{Env, LeptosOptions};
use tokio_util::sync::CancellationToken;

use crate::StartError;
use crate::cli::ServeArgs;
use crate::router;
use crate::site::Site;

/// What both the server and the command line build first, once.
pub(crate) struct Opened {
    pub(crate) config: Arc<Config>,
    pub(crate) store: Store,
    pub(crate) engine: Arc<Engine>,
    pub(crate) masker: Arc<Masker>,
    pub(crate) backups: Arc<Backups>,
}

/// What both the server and the command line need: the configuration, the store, the engine, the
/// masker and the backups service; backups a stopped process left running are marked interrupted.
pub(crate) async fn open(args: &ServeArgs) -> Result<Opened, StartError> {
    let mut config = Config::load(args.config.as_deref())?;
    app::files::check_private_paths(&config)?;
    let store = Store::open(&config.data_dir).await?;
    let engine = Arc::new(Engine::new(config.docker.host.clone()));
    let key = fingerprint_key(&config.data_dir).map_err(|source| StartError::FingerprintKey {
        path: config.data_dir.clone(),
        source,
    })?;
    let masker = Arc::new(Masker::new(
        secret_name_parts(&config.secrets.extra_name_parts),
        &key,
    ));
    // The project as compose names it (the running stack's containers carry that name).
    let scrubber = masker.scrubber(
        app::environment::disk::env_values(&config)
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let (name, source, problem) = app::compose::resolve_project_name(&config, &scrubber).await;
    if let Some(problem) = problem {
        tracing::warn!("compose could not name the project ({problem}): using {name:?}");
    }
    tracing::info!("compose project {name:?} (from {})", source.describe());
    config.project.name = Some(name);
    config.project.name_source = source;
    let config = Arc::new(config);
    let backups = Backups::new(
        config.clone(),
        store.clone(),
        engine.clone(),
        masker.clone(),
    );
    let interrupted = app::backup::ssr::recover_interrupted(&backups).await?;
    if interrupted > 0 {
        tracing::warn!("{interrupted} backup(s) left running by a stopped process marked failed");
    }
    Ok(Opened {
        config,
        store,
        engine,
        masker,
        backups,
    })
}

pub(crate) async fn serve(args: ServeArgs) -> Result<(), StartError> {
    let Opened {
        config,
        store,
        engine,
        masker,
        backups,
    } = open(&args).await?;
    match engine.status().await.state {
        EngineState::Reachable(info) => {
            tracing::info!(
                endpoint = engine.endpoint(),
                version = info.version,
                "docker engine reachable"
            )
        }
        // Not fatal: the console exists to show this, and finds the engine when it comes back.
        EngineState::Unreachable { reason } => tracing::warn!("{reason}"),
    }
    let site = Site::choose(config.site_root.as_deref());
    match &site {
        Site::Embedded { version } => tracing::info!(version, "site: embedded in this binary"),
        Site::Directory(dir) => {
            tracing::info!(dir = %dir.display(), "site: from site_root");
            let wasm = dir.join("pkg/epsm-ops.wasm");
            if !wasm.is_file() {
                tracing::warn!(
                    "{} not found: pages are served but not interactive (build the site with `cargo leptos build`)",
                    wasm.display()
                );
            }
        }
        Site::Missing => tracing::warn!(
            "this binary was built without the site and no site_root is set: pages are served but \
             not interactive (build the site with `cargo leptos build`, then the binary)"
        ),
    }
    let leptos_options = LeptosOptions::builder()
        .output_name(crate::site::OUTPUT_NAME)
        .site_root(
            site.directory()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        )
        .site_pkg_dir(site.pkg_dir())
        .site_addr(config.listen)
        .env(if cfg!(debug_assertions) {
            Env::DEV
        } else {
            Env::PROD
        })
        .build();
    let addr = config.listen;
    let health = HealthMonitor::start(engine.clone(), config.clone(), masker.clone());
    let deployer = Deployer::new(
        config.clone(),
        store.clone(),
        engine.clone(),
        masker.clone(),
        health.clone(),
        backups.clone(),
    )
    .await?;
    let kept = tower_sessions_sqlx_store::SqliteStore::new(store.pool().clone());
    kept.migrate()
        .await
        .map_err(|e| StartError::Sessions(e.to_string()))?;
    tokio::spawn({
        use tower_sessions::session_store::ExpiredDeletion;
        kept.clone()
            .continuously_delete_expired(std::time::Duration::from_secs(600))
    });
    // Sessions are read from memory and written through to the store (a page view reads no row; a
    // restart keeps everyone logged in). Each cached session goes at its own expiry.
    let sessions = router::Sessions::new(
        tower_sessions_moka_store::MokaStore::new(Some(router::SESSIONS_IN_MEMORY)),
        kept,
    );
    let gate = Arc::new(Gate::new(
        config.auth.clone(),
        store.clone(),
        Arc::new(sessions.clone()),
    ));
    let saml = ServiceProvider::start(&config, gate.clone(), store.clone()).await?;
    tokio::spawn(saml.clone().refresh_metadata(config.clone()));
    if config.auth.dev_idp {
        tracing::warn!("the development IdP is on: anybody can log in as anyone (loopback only)");
    }
    let state = AppState::new(Services {
        leptos_options,
        alerts: app::alerts::send::Sender::new(config.clone(), store.clone()),
        maintenance: Maintenance::new(
            config.clone(),
            store.clone(),
            engine.clone(),
            health.clone(),
        ),
        environment: EnvironmentAudit::new(
            config.clone(),
            masker.clone(),
            engine.clone(),
            store.clone(),
            health.clone(),
        ),
        streams: app::streams::StreamLimits::new(
            config.limits.streams_per_session,
            config.limits.streams_total,
        ),
        config,
        store: store.clone(),
        engine,
        masker,
        gate,
        saml,
        health,
        deployer,
        backups: backups.clone(),
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(prune_audit_log(
        state.store.clone(),
        state.config.audit.keep_days,
    ));
    tokio::spawn(app::backup::ssr::run_schedule(
        backups.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(app::backup::ssr::run_drill_schedule(
        backups,
        shutdown.clone(),
    ));
    // Alerts: the health rounds watched (a deploy's own restarts left out), the outbox sent.
    tokio::spawn(app::alerts::watch::watch(
        state.health.clone(),
        state.config.clone(),
        state.store.clone(),
        {
            let deployer = state.deployer.clone();
            move || deployer.is_running()
        },
        shutdown.clone(),
    ));
    tokio::spawn(app::alerts::conditions::watch(
        state.config.clone(),
        state.store.clone(),
        state.saml.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(state.alerts.clone().run(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let addr = listener.local_addr().map_err(StartError::Serve)?;
    tracing::info!("EPSM Ops listening on http://{addr}");
    record(
        &store,
        AuditEvent::system(
            "console.start",
            AuditOutcome::Ok,
            &format!("listening on {addr}"),
        ),
    )
    .await;

    // axum-server rather than axum::serve: it lets hyper close a connection that does not send its
    // request headers in time (a slow client holding connections open).
    let header_timeout =
        std::time::Duration::from_secs(state.config.limits.header_read_timeout_secs);
    let app = router::build(state, &site, shutdown.clone(), sessions);
    let handle = axum_server::Handle::new();
    // TCP_NODELAY: a reply in several writes (a live stream's events, a download, a page larger than
    // one write) would otherwise wait at each for the client's delayed ACK (40 ms, whatever its work).
    let mut server = axum_server::from_tcp(listener.into_std().map_err(StartError::Serve)?)
        .map_err(StartError::Serve)?
        .acceptor(axum_server::accept::NoDelayAcceptor::new())
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    tokio::spawn(async move {
        shutdown_signal().await;
        // Open streams (live pages) end now, so the requests in flight can finish.
        shutdown.cancel();
        handle.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    server
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
        .map_err(StartError::Serve)?;

    record(
        &store,
        AuditEvent::system("console.stop", AuditOutcome::Ok, "stopped on signal"),
    )
    .await;
    tracing::info!("EPSM Ops stopped");
    Ok(())
}

/// Keeps the audit log to `audit.keep_days`: at start, then daily.
pub(crate) async fn prune_audit_log(store: Store, keep_days: u32) {
    loop {
        match store.prune_audit_log(keep_days).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("audit log: {n} entries older than {keep_days} days deleted"),
            Err(e) => tracing::error!("audit log: pruning failed: {e}"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(24 * 3600)).await;
    }
}

/// The console's own start/stop events must not stop it when the store has trouble: log instead.
pub(crate) async fn record(store: &Store, event: AuditEvent) {
    if let Err(e) = store.record(event).await {
        tracing::error!("audit log: {e}");
    }
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested: finishing requests in flight");
}
