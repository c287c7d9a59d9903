//! Who is asking, and what they may do. People log in through the Chalmers IdP (SAML, `saml.rs`
//! checks the responses; `ssr.rs` runs login, ACS and logout over tower-sessions); their role follows
//! from the configured rules (`role_for`). Every server function states the role it needs with
//! `require(Role::...)`, every route with the `SignedIn` extractor: the server refuses, the UI only
//! hides.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Sees health, deploy history, backups list and the masked audit.
    Viewer,
    /// Also deploys, takes and downloads backups.
    Deployer,
    /// Also the destructive things: volume recreate, backup delete, prune.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }
}

/// The person behind a request, as the audit log names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

/// A logged-in person, as the session keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The IdP's stable id (subject-id, eduPersonPrincipalName or NameID).
    pub id: String,
    pub display_name: String,
    pub mail: Option<String>,
    pub role: Role,
}

impl User {
    pub fn actor(&self) -> Actor {
        Actor {
            name: if self.display_name == self.id {
                self.id.clone()
            } else {
                format!("{} ({})", self.display_name, self.id)
            },
            role: self.role,
        }
    }
}

/// What the pages know of the session: who (if anyone) and whether the development IdP is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginState {
    pub user: Option<User>,
    pub dev_idp: bool,
}

/// The login state of this page load, shared by the top bar and every `RoleGate`.
pub type LoginResource = leptos::prelude::Resource<Result<LoginState, crate::error::AppError>>;

/// Reads who is logged in once per page load (blocking: the server renders the page knowing it).
pub fn provide_login() -> LoginResource {
    use leptos::prelude::*;
    let login: LoginResource = Resource::new_blocking(|| (), |_| current_session());
    provide_context(login);
    login
}

fn current_role() -> Option<Role> {
    use leptos::prelude::*;
    use_context::<LoginResource>()?.get().and_then(role_of)
}

/// The role of a login state as the server replied it (None: nobody, or the reply failed).
pub fn role_of(login: Result<LoginState, crate::error::AppError>) -> Option<Role> {
    login.ok().and_then(|s| s.user).map(|u| u.role)
}

/// Shows its children only to people with at least `role`. The server refuses the same actions on
/// its own; this only spares people buttons that would be refused.
#[leptos::component]
pub fn RoleGate(role: Role, children: leptos::children::ChildrenFn) -> impl leptos::IntoView {
    use leptos::prelude::*;
    let children = StoredValue::new(children);
    view! {
        <Suspense fallback=|| ()>
            {move || current_role().is_some_and(|r| r >= role).then(|| children.with_value(|c| c()))}
        </Suspense>
    }
}

/// Name, role and the logout button in the top bar; the development IdP's banner while it is on.
#[leptos::component]
pub fn UserBadge() -> impl leptos::IntoView {
    use leptos::prelude::*;
    let login = use_context::<LoginResource>();
    view! {
        <Suspense fallback=|| ()>
            {move || login.and_then(|l| l.get()).and_then(Result::ok).map(|state| view! {
                {state.dev_idp.then(|| view! {
                    <span class="dev-banner" data-testid="dev-idp-banner">"Development IdP: anyone can be anyone"</span>
                })}
                {state.user.map(|u| view! {
                    <span class="user" data-testid="user-name" data-role=u.role.as_str()>
                        {u.display_name.clone()}" · "{u.role.as_str()}
                    </span>
                    <form method="post" action="/saml/logout" class="logout">
                        <button type="submit" class="link" data-testid="logout">"Log out"</button>
                    </form>
                })}
            })}
        </Suspense>
    }
}

/// The role the rules give a person: the highest whose rule matches, or none (not let in).
#[cfg(feature = "ssr")]
pub fn role_for(identity: &saml::Identity, config: &crate::config::AuthConfig) -> Option<Role> {
    let matches = |rule: &crate::config::RoleRule| {
        let mail_domain = identity
            .mail
            .as_deref()
            .and_then(|m| m.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase());
        rule.ids.iter().any(|id| id == &identity.id)
            || identity
                .affiliations
                .iter()
                .any(|a| rule.affiliations.iter().any(|r| r.eq_ignore_ascii_case(a)))
            || mail_domain.is_some_and(|d| {
                rule.mail_domains
                    .iter()
                    .any(|r| r.trim_start_matches('@').eq_ignore_ascii_case(&d))
            })
    };
    [
        (Role::Admin, &config.admins),
        (Role::Deployer, &config.deployers),
        (Role::Viewer, &config.viewers),
    ]
    .into_iter()
    .find(|(_, rule)| matches(rule))
    .map(|(role, _)| role)
}

/// The actor of the current server-function request when they hold at least `role`; 401 when
/// nobody is logged in, 403 (recorded in the audit log) when the role is too low.
#[cfg(feature = "ssr")]
pub async fn require(role: Role) -> Result<Actor, crate::error::AppError> {
    let session: tower_sessions::Session = leptos_axum::extract().await.map_err(|_| {
        crate::error::AppError::Unauthorized("log in first (no session)".into()).replied()
    })?;
    let state = leptos::prelude::expect_context::<crate::state::AppState>();
    let path = leptos::prelude::use_context::<axum::http::request::Parts>()
        .map(|p| p.uri.path().to_string())
        .unwrap_or_default();
    ssr::check(&state, &session, role, &path)
        .await
        .map(|user| user.actor())
        .map_err(|e| e.into_app_error().replied())
}

/// Who is logged in (for the top bar and for hiding what the server would refuse anyway).
#[leptos::server(endpoint = "login_state")]
pub async fn current_session() -> Result<LoginState, crate::error::AppError> {
    let state = leptos::prelude::expect_context::<crate::state::AppState>();
    let session: tower_sessions::Session = leptos_axum::extract()
        .await
        .map_err(|e| crate::error::AppError::ServerFn(e.to_string()))?;
    Ok(LoginState {
        user: ssr::signed_in(&state, &session).await,
        dev_idp: state.config.auth.dev_idp,
    })
}

#[cfg(feature = "ssr")]
pub mod idp;
#[cfg(feature = "ssr")]
pub mod keys;
#[cfg(feature = "ssr")]
pub mod metadata;
#[cfg(feature = "ssr")]
pub mod saml;
#[cfg(feature = "ssr")]
pub mod ssr;

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use crate::config::RoleRule;

    fn identity(id: &str, mail: &str, affiliations: &[&str]) -> saml::Identity {
        saml::Identity {
            id: id.into(),
            display_name: None,
            mail: Some(mail.into()),
            affiliations: affiliations.iter().map(|a| a.to_string()).collect(),
            name_id: String::new(),
            name_id_format: None,
            session_index: None,
        }
    }

    #[test]
    fn the_highest_matching_rule_gives_the_role_and_nobody_else_gets_in() {
        let mut config = crate::config::Config::default().auth;
        config.admins = RoleRule {
            ids: vec!["boss@chalmers.se".into()],
            ..Default::default()
        };
        config.deployers = RoleRule {
            affiliations: vec!["employee@chalmers.se".into()],
            ..Default::default()
        };
        config.viewers = RoleRule {
            mail_domains: vec!["chalmers.se".into()],
            ..Default::default()
        };
        let cases = [
            (
                identity(
                    "boss@chalmers.se",
                    "boss@chalmers.se",
                    &["employee@chalmers.se"],
                ),
                Some(Role::Admin),
            ),
            (
                identity(
                    "anna@chalmers.se",
                    "anna@chalmers.se",
                    &["EMPLOYEE@chalmers.se"],
                ),
                Some(Role::Deployer),
            ),
            (
                identity(
                    "stud@chalmers.se",
                    "stud@Chalmers.SE",
                    &["student@chalmers.se"],
                ),
                Some(Role::Viewer),
            ),
            (identity("x@gu.se", "x@gu.se", &["employee@gu.se"]), None),
            (
                identity("y@evilchalmers.se", "y@evilchalmers.se", &[]),
                None,
            ),
        ];
        for (who, role) in cases {
            assert_eq!(role_for(&who, &config), role, "{}", who.id);
        }
    }
}
