//! Login over SAML and the guards every request passes: `/saml/metadata` (public: what the IdP
//! registers), `/saml/login`, `/saml/acs`, `/saml/logout`; the development IdP (`/dev-idp/*`, only
//! when configured and on loopback); the `SignedIn` extractor of the streaming routes; the page guard
//! (pages need a login, else to the IdP and back); the CSRF guard (a mutating request must come from
//! this console's own origin).

use app::auth::AuthError;
use app::auth::gate::RequestUser;
use app::auth::idp::{AssertionSpec, Shape, TestUser};
use app::auth::saml::xml_escape;
use app::auth::ssr as auth;
use app::auth::{Role, User};
use app::state::AppState;
use axum::Router;
use axum::extract::{Form, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Deserialize;
use tower_sessions::Session;

pub fn routes(limits: &app::config::LimitsConfig) -> Router<AppState> {
    let saml = Router::new()
        .route("/saml/metadata", get(metadata))
        .route("/saml/login", get(login))
        .route(
            "/saml/acs",
            axum::routing::post(acs).layer(axum::extract::DefaultBodyLimit::max(
                app::auth::saml::MAX_ACS_BODY,
            )),
        )
        .route("/saml/logout", axum::routing::post(logout))
        .layer(rate_limit(limits.saml_per_minute));
    Router::new()
        .merge(saml)
        .route("/logged-out", get(logged_out))
        .route("/dev-idp/sso", get(dev_idp_form).post(dev_idp_issue))
}

/// `/saml/*` answers the internet: each client address gets `per_minute` requests a minute (as a
/// burst, refilled evenly), then 429 saying when to try again. (Each login signs with RSA and
/// writes a session row; each refused post an audit entry.)
fn rate_limit(
    per_minute: u32,
) -> tower_governor::GovernorLayer<
    crate::client::ClientKey,
    governor::middleware::NoOpMiddleware,
    axum::body::Body,
> {
    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .key_extractor(crate::client::ClientKey)
        // At least 13 ns for any u32: never zero.
        .period(std::time::Duration::from_nanos(
            60_000_000_000 / u64::from(per_minute.max(1)),
        ))
        .burst_size(per_minute.max(1))
        .finish()
        .expect("period and burst are not zero");
    // The limiter keeps a cell per address it has seen: forget the quiet ones every minute.
    let limiter = config.limiter().clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            limiter.retain_recent();
        }
    });
    tower_governor::GovernorLayer::new(config).error_handler(|e| {
        let wait = match e {
            tower_governor::GovernorError::TooManyRequests { wait_time, .. } => wait_time.max(1),
            _ => 60,
        };
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many login requests from your address: try again in {wait} s"),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    })
}

/// A logged-in person, for routes that are not server functions. Refuses with 401 otherwise.
pub struct SignedIn(pub User);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        RequestUser::of(&parts.extensions)
            .get(&state.gate, &session)
            .await
            .map(SignedIn)
            .ok_or_else(|| (StatusCode::UNAUTHORIZED, "log in first").into_response())
    }
}

/// A logged-in person admitted to a live stream: their place within the stream limits (held while
/// the stream is open) and the session the stream ends with. 401 without a login; 429 with the
/// limit's sentence over one.
pub struct LiveViewer {
    pub ticket: app::streams::StreamTicket,
    pub session: tower_sessions::session::Id,
}

impl FromRequestParts<AppState> for LiveViewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let unauthorized = || (StatusCode::UNAUTHORIZED, "log in first").into_response();
        RequestUser::of(&parts.extensions)
            .get(&state.gate, &session)
            .await
            .ok_or_else(unauthorized)?;
        let id = session.id().ok_or_else(unauthorized)?;
        let ticket = state
            .streams
            .admit(&id.to_string())
            .map_err(|e| (StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response())?;
        Ok(LiveViewer {
            ticket,
            session: id,
        })
    }
}

impl SignedIn {
    /// The user when they hold at least `role`; else 403 (recorded in the audit log).
    pub async fn at_least(
        self,
        state: &AppState,
        role: Role,
        what: &str,
    ) -> Result<User, Response> {
        state
            .gate
            .permit(self.0, role, what)
            .await
            .map_err(|e| (StatusCode::FORBIDDEN, e.to_string()).into_response())
    }
}

/// Paths anyone may open: the login itself, the IdP's side, static files and liveness.
fn public(path: &str) -> bool {
    [
        "/saml/",
        "/dev-idp/",
        "/pkg/",
        "/logged-out",
        "/healthz",
        "/metrics",
        "/favicon.ico",
        "/favicon.svg",
    ]
    .iter()
    .any(|p| path == p.trim_end_matches('/') || path.starts_with(p))
}

/// Pages need a login: a browser without one goes to the IdP and comes back to the same page.
/// (Server functions and streams refuse on their own, with 401.) Every request gets the place where
/// its login is kept once worked out (`RequestUser`).
pub async fn page_guard(
    State(state): State<AppState>,
    session: Session,
    mut request: Request,
    next: Next,
) -> Response {
    let known = RequestUser::default();
    request.extensions_mut().insert(known.clone());
    let path = request.uri().path();
    let is_page = request.method() == Method::GET && !path.starts_with("/api/") && !public(path);
    if is_page && known.get(&state.gate, &session).await.is_none() {
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("return_to", target)
            .finish();
        return Redirect::to(&format!("/saml/login?{query}")).into_response();
    }
    next.run(request).await
}

/// A request that changes something must come from this console's own pages: its Origin is the
/// public URL's. The ACS is the one exception (the IdP's page posts to it; the SAML checks guard it).
pub async fn origin_guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe || request.uri().path() == "/saml/acs" {
        return next.run(request).await;
    }
    let own = state.config.public_url.origin().ascii_serialization();
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    if origin == Some(own.as_str()) {
        return next.run(request).await;
    }
    tracing::warn!(
        ?origin,
        path = request.uri().path(),
        "refused a cross-origin request"
    );
    (
        StatusCode::FORBIDDEN,
        format!("cross-origin request refused: Origin must be {own}"),
    )
        .into_response()
}

async fn metadata(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/samlmetadata+xml"),
        )],
        state.saml.metadata_xml(&state.config),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<LoginQuery>,
) -> Response {
    match state
        .saml
        .login_url(&session, query.return_to.as_deref().unwrap_or("/"))
        .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Login unavailable",
            &e.to_string(),
        ),
    }
}

#[derive(Deserialize)]
struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: String,
}

async fn acs(
    State(state): State<AppState>,
    session: Session,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    Form(form): Form<AcsForm>,
) -> Response {
    let client = crate::client::client_ip(Some(peer), &headers)
        .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    match state
        .saml
        .accept(&session, &form.saml_response, &client)
        .await
    {
        Ok((_, return_to)) => Redirect::to(&return_to).into_response(),
        Err(AuthError::NoRole(who)) => page(
            StatusCode::FORBIDDEN,
            "Not authorized",
            &format!(
                "{who} logged in at the IdP, but no role rule of EPSM Ops admits them. Ask an admin \
                 of EPSM Ops to add you."
            ),
        ),
        Err(e @ (AuthError::Saml(_) | AuthError::Replayed)) => {
            page(StatusCode::BAD_REQUEST, "Login refused", &e.to_string())
        }
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Login failed",
            &e.to_string(),
        ),
    }
}

async fn logout(State(state): State<AppState>, session: Session) -> Response {
    match state.saml.logout(&session).await {
        Ok(next) => Redirect::to(&next).into_response(),
        Err(e) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Logout failed",
            &e.to_string(),
        ),
    }
}

async fn logged_out() -> Response {
    page(
        StatusCode::OK,
        "Logged out",
        "Your EPSM Ops session has ended.",
    )
}

/// A plain page for the login flow (outside the app: no session, no hydration needed).
fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        r#"<h1 data-testid="login-title">{title}</h1><p data-testid="login-message">{message}</p><p><a href="/saml/login" data-testid="login-again">Log in</a></p>"#,
        title = xml_escape(title),
        message = xml_escape(message),
    );
    (status, html_page(title, &body)).into_response()
}

/// The frame of the login flow's and the development IdP's pages; `body` is already escaped.
pub(crate) fn html_page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>{} · EPSM Ops</title><link rel="icon" href="/favicon.svg" type="image/svg+xml"><link rel="stylesheet" href="/pkg/epsm-ops.css"></head><body><main class="login-page">{body}</main></body></html>"#,
        xml_escape(title)
    ))
}

/// People the development IdP offers; the README's run configuration gives each the role its name
/// says, and the outsider none.
fn dev_users() -> [TestUser; 4] {
    let user = |id: &str, name: &str, affiliation: &str| TestUser {
        subject_id: id.into(),
        display_name: name.into(),
        mail: id.into(),
        affiliations: vec![affiliation.into()],
    };
    [
        user("admin@dev.idp", "Ada Admin", "employee@dev.idp"),
        user("deployer@dev.idp", "Dan Deployer", "employee@dev.idp"),
        user("viewer@dev.idp", "Vera Viewer", "student@dev.idp"),
        user(
            "outsider@elsewhere.example",
            "Otto Outsider",
            "member@elsewhere.example",
        ),
    ]
}

#[derive(Deserialize)]
struct DevRequest {
    #[serde(rename = "SAMLRequest")]
    saml_request: String,
}

/// The development IdP's login page: pick who to be.
async fn dev_idp_form(State(state): State<AppState>, Query(query): Query<DevRequest>) -> Response {
    if state.saml.dev_idp.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some((id, acs)) = auth::inflate_request(&query.saml_request)
        .as_deref()
        .and_then(auth::read_authn_request)
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "Development IdP",
            "not a readable AuthnRequest",
        );
    };
    if acs != state.saml.settings.acs_url {
        return page(
            StatusCode::BAD_REQUEST,
            "Development IdP",
            "the request names another ACS",
        );
    }
    let forms: String = dev_users()
        .iter()
        .map(|u| {
            format!(
                r#"<form method="post" action="/dev-idp/sso" class="card"><input type="hidden" name="request_id" value="{id}"><input type="hidden" name="subject_id" value="{sid}"><input type="hidden" name="display_name" value="{name}"><input type="hidden" name="mail" value="{mail}"><input type="hidden" name="affiliations" value="{aff}"><button type="submit" data-testid="dev-login-{sid}">Log in as {name}</button> <span class="muted small">{sid}, {aff}</span></form>"#,
                id = xml_escape(&id),
                sid = xml_escape(&u.subject_id),
                name = xml_escape(&u.display_name),
                mail = xml_escape(&u.mail),
                aff = xml_escape(&u.affiliations.join(",")),
            )
        })
        .collect();
    let body = format!(
        r#"<p class="dev-banner">Development IdP: for local runs and tests only. It logs anybody in as anyone.</p><h1>Who are you?</h1>{forms}<form method="post" action="/dev-idp/sso" class="card"><input type="hidden" name="request_id" value="{id}"><label>subject-id <input name="subject_id"></label><label>displayName <input name="display_name"></label><label>mail <input name="mail"></label><label>affiliations <input name="affiliations" placeholder="employee@chalmers.se,member@chalmers.se"></label><button type="submit">Log in</button></form>"#,
        id = xml_escape(&id),
    );
    html_page("Development IdP", &body).into_response()
}

#[derive(Deserialize)]
struct DevLogin {
    request_id: String,
    subject_id: String,
    display_name: String,
    mail: String,
    #[serde(default)]
    affiliations: String,
}

/// Issues the response ADFS would send (signed assertion, encrypted for the SP) and hands it to the
/// browser as a form posting to the ACS.
async fn dev_idp_issue(State(state): State<AppState>, Form(login): Form<DevLogin>) -> Response {
    let Some(idp) = &state.saml.dev_idp else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let sp = &state.saml.settings;
    let user = TestUser {
        subject_id: login.subject_id,
        display_name: login.display_name,
        mail: login.mail,
        affiliations: login
            .affiliations
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect(),
    };
    // An empty request id: an IdP-initiated (unsolicited) login.
    let request_id = Some(login.request_id.as_str()).filter(|r| !r.is_empty());
    let spec = AssertionSpec::new(
        &idp.entity_id,
        &sp.entity_id,
        &sp.acs_url,
        request_id,
        user,
        Utc::now(),
    );
    match idp.response(&spec, Shape::ADFS_ENCRYPTED, Some(&state.saml.keys.cert)) {
        Ok(response) => html_page(
            "Development IdP",
            &format!(
                r#"<p class="dev-banner">Development IdP</p><form method="post" action="{acs}"><input type="hidden" name="SAMLResponse" value="{response}"><button type="submit" data-testid="dev-continue">Continue to EPSM Ops</button></form>"#,
                acs = xml_escape(&sp.acs_url),
            ),
        )
        .into_response(),
        Err(e) => page(StatusCode::INTERNAL_SERVER_ERROR, "Development IdP", &e.to_string()),
    }
}
