//! The error that crosses from server functions to the pages, and the one template that shows errors.
//! Each capability keeps its own `thiserror` enum on the server and maps it here once.

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// Something the console depends on failed (its store, the Docker engine): the sentence says what.
    #[error("{0}")]
    Unavailable(String),
    /// Nobody is logged in.
    #[error("{0}")]
    Unauthorized(String),
    /// The person asking may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request itself was wrong.
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Transport, encoding and other server-function plumbing.
    #[error("{0}")]
    ServerFn(String),
}

impl AppError {
    /// Gives the server function's HTTP reply the status this error means (400 for a wrong request,
    /// 404 for a missing thing, 403 for a refusal, 503 when a dependency failed), and returns the error.
    #[cfg(feature = "ssr")]
    pub fn replied(self) -> AppError {
        use axum::http::StatusCode;
        let status = match &self {
            AppError::Invalid(_) => StatusCode::BAD_REQUEST,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::ServerFn(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(status);
        }
        self
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::ServerFn(value.to_string())
    }
}

#[cfg(feature = "ssr")]
impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store");
        AppError::Unavailable(e.to_string())
    }
}

/// Lists the errors an `ErrorBoundary` caught, in the operator's words.
#[component]
pub fn ErrorList(errors: ArcRwSignal<Errors>) -> impl IntoView {
    view! {
        <div class="error-box" role="alert" data-testid="error">
            <ul>
                {move || {
                    errors
                        .get()
                        .into_iter()
                        .map(|(_, e)| view! { <li>{e.to_string()}</li> })
                        .collect_view()
                }}
            </ul>
        </div>
    }
}

/// An error's sentence followed by each of its causes' (`a: b: c`): a library's own sentence is
/// often general ("error sending request") and the cause is what says what happened.
pub fn with_causes(e: &dyn std::error::Error) -> String {
    let mut said = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        said.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    said
}
