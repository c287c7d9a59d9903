//! EPSM Ops: the pages, the server functions beside them, and (behind the `ssr` feature) the
//! server-side work of each capability. One folder per capability; `shell` is the HTML document.

use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::SsrMode;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod deploy;
pub mod engine;
pub mod environment;
pub mod error;
mod follow;
pub mod health;
mod live;
pub mod overview;
mod pages;
pub mod tone;

#[cfg(feature = "ssr")]
pub mod compose;
#[cfg(feature = "ssr")]
pub mod config;
#[cfg(feature = "ssr")]
pub mod doctor;
#[cfg(feature = "ssr")]
pub mod files;
#[cfg(feature = "ssr")]
pub mod state;
#[cfg(feature = "ssr")]
pub mod store;
#[cfg(feature = "ssr")]
pub mod streams;

/// The HTML document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    content_security_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                // In the server-only shell, not hydrated: the stylesheet never changes per page. Beside
                // the JS and wasm (in the site's versioned folder when the binary carries the site).
                <link
                    rel="stylesheet"
                    id="leptos"
                    href=format!("/{}/{}.css", options.site_pkg_dir, options.output_name)
                />
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// A strict CSP for every page: scripts only from this origin or carrying this response's nonce (the
/// hydration script does), no inline styles, no framing.
#[cfg(feature = "ssr")]
fn content_security_policy() {
    use axum::http::{HeaderValue, header::CONTENT_SECURITY_POLICY};
    leptos::nonce::provide_nonce();
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    // The logout form's answer sends the browser on to the IdP's single logout: browsers hold a
    // form's redirects to `form-action` too, so the IdP's origin is allowed there.
    let idp_logout = use_context::<std::sync::Arc<auth::ssr::ServiceProvider>>()
        .and_then(|sp| sp.slo_url())
        .and_then(|u| url::Url::parse(&u).ok())
        .map(|u| format!(" {}", u.origin().ascii_serialization()))
        .unwrap_or_default();
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; \
         form-action 'self'{idp_logout}"
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response.insert_header(CONTENT_SECURITY_POLICY, value);
    }
}

/// Every page is rendered whole, then sent in one piece: its data is the server's memory (the health
/// monitor's report, the kept audit and change card) or one SQLite read, ready at once. Streamed
/// out of order (Leptos' default), a page went out as the shell, then a chunk and a script per
/// `Suspense`: more bytes, more writes and more wake-ups for the same page, which made a page view
/// 1.2-1.6x dearer under load (`app/benches/pages.rs`).
const RENDERED_WHOLE: SsrMode = SsrMode::Async;

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser: the attribute tells people and browser tests the page is live.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));
    auth::view::provide_login();

    // The navigation is a menu below the phone breakpoint (style/main.css): closed by default and
    // after each navigation, so the page it leads to is what shows.
    let menu_open = RwSignal::new(false);

    view! {
        <Title formatter=|page: String| {
            if page.is_empty() { "EPSM Ops".to_string() } else { format!("{page} · EPSM Ops") }
        }/>
        <Router>
            <a class="skip-link" href="#main">"Skip to content"</a>
            <div class="layout" data-hydrated=move || hydrated.get().to_string()>
                <header class="topbar">
                    <button type="button" class="menu-button" data-testid="menu-button"
                        aria-controls="main-nav" aria-expanded=move || menu_open.get().to_string()
                        on:click=move |_| menu_open.update(|open| *open = !*open)>
                        <span aria-hidden="true">"☰"</span>" Menu"
                    </button>
                    <a class="brand" href="/">"EPSM Ops"</a>
                    <span class="muted tagline">"Energy Performance Simulation Manager — deploy console"</span>
                    <span class="spacer"></span>
                    <engine::view::EngineBadge/>
                    <auth::view::UserBadge/>
                </header>
                // Following one of its links closes the menu (the click bubbles up to here).
                <nav class="sidebar" id="main-nav" aria-label="Main" class:open=move || menu_open.get()
                    on:click=move |_| menu_open.set(false)>
                    <A href="/">"Overview"</A>
                    <A href="/health">"Health"</A>
                    <A href="/deploys">"Deploys"</A>
                    <A href="/environment">"Environment"</A>
                    <A href="/backups">"Backups"</A>
                    <A href="/audit">"Audit log"</A>
                    <A href="/notifications">"Notifications"</A>
                </nav>
                <main class="content" id="main" tabindex="-1">
                    <Routes fallback=pages::NotFound>
                        <Route path=path!("/") ssr=RENDERED_WHOLE view=overview::OverviewPage/>
                        <Route path=path!("/health") ssr=RENDERED_WHOLE view=health::view::HealthPage/>
                        <Route path=path!("/deploys") ssr=RENDERED_WHOLE view=deploy::view::DeploysPage/>
                        <Route path=path!("/deploys/:id") ssr=RENDERED_WHOLE view=deploy::view::DeployPage/>
                        <Route path=path!("/environment") ssr=RENDERED_WHOLE view=environment::view::EnvironmentPage/>
                        <Route path=path!("/backups") ssr=RENDERED_WHOLE view=backup::view::BackupsPage/>
                        <Route path=path!("/audit") ssr=RENDERED_WHOLE view=audit::view::AuditPage/>
                        <Route path=path!("/notifications") ssr=RENDERED_WHOLE view=alerts::view::NotificationsPage/>
                    </Routes>
                </main>
            </div>
        </Router>
    }
}
