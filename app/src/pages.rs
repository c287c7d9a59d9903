//! The overview and the pages whose capabilities are still to come (each says what it will hold), and
//! the not-found page. A capability that lands gets its own folder and replaces its page here.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::engine::{EngineCard, ProjectCard};

#[component]
pub fn OverviewPage() -> impl IntoView {
    view! {
        <Title text="Overview"/>
        <h1>"Overview"</h1>
        <div class="cards">
            <EngineCard/>
            <ProjectCard/>
        </div>
    }
}

/// A page whose capability has not landed yet: says so plainly instead of showing anything made up.
#[component]
fn ComingPage(title: &'static str, what: &'static str) -> impl IntoView {
    view! {
        <Title text=title/>
        <h1>{title}</h1>
        <section class="card">
            <p>{what}</p>
            <p class="muted" data-testid="not-built">"Not built yet."</p>
        </section>
    }
}

#[component]
pub fn BackupsPage() -> impl IntoView {
    view! {
        <ComingPage
            title="Backups"
            what="One-click pg_dump of the database, verified, listed and downloadable."
        />
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(axum::http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <Title text="Not found"/>
        <h1>"Not found"</h1>
        <p>"There is no page at this address. " <a href="/">"Back to the overview"</a></p>
    }
}
