//! The router: the Leptos pages and server functions, the console's own `/healthz`, static files, and
//! the middleware every response passes (tracing, compression, timeouts, security headers).

use std::time::Duration;

use app::state::AppState;
use app::{App, shell};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use leptos_axum::{LeptosRoutes, generate_route_list};

use crate::site::Site;
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Pages and server functions that take longer than this get 408 instead of hanging a connection.
/// (Streams — live health, logs — are routes outside this layer: `streams.rs`.)
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The session cookie's name; over https with the `__Host-` prefix (the browser then takes it only
/// when Secure, for the whole host and from no other domain).
pub const SESSION_COOKIE: &str = "epsm_ops_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-epsm_ops_session";

/// The session store: memory in front of the SQLite store.
pub type Sessions = tower_sessions::CachingSessionStore<
    tower_sessions_moka_store::MokaStore,
    tower_sessions_sqlx_store::SqliteStore,
>;

/// Sessions held in memory at most (the least recently used go first; they are still in the store).
pub const SESSIONS_IN_MEMORY: u64 = 10_000;

pub fn build(
    state: AppState,
    site: &Site,
    shutdown: tokio_util::sync::CancellationToken,
    sessions: Sessions,
) -> Router {
    use tower_sessions::cookie::SameSite;
    use tower_sessions::{Expiry, SessionManagerLayer};
    let idle = tower_sessions::cookie::time::Duration::minutes(
        state.config.auth.session_idle_minutes as i64,
    );
    let https = state.config.public_url.scheme() == "https";
    let session_layer = SessionManagerLayer::new(sessions)
        .with_name(if https {
            SECURE_SESSION_COOKIE
        } else {
            SESSION_COOKIE
        })
        .with_path("/")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(https)
        .with_expiry(Expiry::OnInactivity(idle));
    let routes = generate_route_list(App);
    let services = {
        let state = state.clone();
        move || state.provide_services()
    };
    let pages = Router::new().leptos_routes_with_context(&state, routes, services.clone(), {
        let options = state.leptos_options.clone();
        move || shell(options.clone())
    });
    // Files: the embedded site's routes, or Leptos' handler of the `site_root` directory. What is
    // neither a page nor a file is the app's "not found" page.
    let pages = match site.directory() {
        Some(_) => pages.fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(services, shell)),
        None => {
            let not_found = leptos_axum::render_app_to_stream_in_order_with_context(
                {
                    let state = state.clone();
                    move || {
                        leptos::context::provide_context(state.clone());
                        services()
                    }
                },
                {
                    let options = state.leptos_options.clone();
                    move || shell(options.clone())
                },
            );
            pages
                .merge(site.routes())
                .fallback(move |request: axum::extract::Request| not_found(request))
        }
    }
    .layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        REQUEST_TIMEOUT,
    ));

    let hsts = https.then(|| {
        SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        )
    });
    Router::new()
        .route("/healthz", get(healthz))
        // Browsers ask for /favicon.ico where a page names no icon (a download, a JSON reply).
        .route(
            "/favicon.ico",
            get(|| async { axum::response::Redirect::permanent("/favicon.svg") }),
        )
        .merge(crate::auth::routes(&state.config.limits))
        .merge(crate::streams::routes(shutdown))
        .merge(pages)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::page_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::origin_guard,
        ))
        .layer(session_layer)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            state.config.limits.request_body_bytes,
        ))
        .layer(axum::middleware::from_fn(crate::refusals::html_for_browsers))
        .layer(axum::middleware::from_fn(no_store))
        .layer(tower::util::option_layer(hsts))
        .layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                // Not downloads: a compressed body would break their Content-Length and ranges.
                .layer(CompressionLayer::new().compress_when(
                    DefaultPredicate::new()
                        .and(NotForContentType::const_new("application/octet-stream")),
                ))
                .layer(header_if_absent(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header_if_absent(header::X_FRAME_OPTIONS, "DENY"))
                .layer(header_if_absent(header::REFERRER_POLICY, "same-origin"))
                .layer(header_if_absent(
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
                )),
        )
        .with_state(state)
}

/// Nothing but the compiled site's files may be kept by a browser or a proxy: pages, server-function
/// replies, streams and downloads carry who is logged in, secrets' fingerprints and database dumps.
async fn no_store(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let static_file = path.starts_with("/pkg/") || path.starts_with("/favicon");
    let mut response = next.run(request).await;
    if !static_file {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn header_if_absent(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// Liveness of the console itself (not of the stack): the process answers and its store works.
async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({ "status": "ok", "store": "ok" })),
        ),
        Err(e) => {
            tracing::error!("healthz: store: {e}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unhealthy", "store": e.to_string() })),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_test_bed_bounds_its_waits_by_this_request_timeout() {
        assert_eq!(super::REQUEST_TIMEOUT, end2end::CONSOLE_REQUEST_TIMEOUT);
    }
}
