//! Who is logged in, as the pages know it: read once per page load (`provide_login`), shown in the
//! top bar (`UserBadge`, and the engine's badge from the same reply), and used to hide what the
//! server would refuse anyway (`RoleGate`).

use super::{LoginState, Role};

/// The login state of this page load: the top bar and the parts of a page that wait for it (the gates
/// read `PageRole`, known at once).
pub type LoginResource = leptos::prelude::Resource<Result<LoginState, crate::error::AppError>>;

/// The role of whoever the page was rendered for (None: nobody, or a page without a login). The
/// server knows it before it renders a page (the page guard asked the session); it is sent with the
/// page and read back when the page hydrates, so a `RoleGate` shows or hides at once, without waiting
/// for a reply. A login or logout loads a new page, so it holds for the page's life.
#[derive(Debug, Clone, Copy)]
struct PageRole(Option<Role>);

/// Reads who is logged in once per page load (blocking: the server renders the page knowing it), and
/// the page's role for the gates.
pub fn provide_login() -> LoginResource {
    use leptos::prelude::*;
    let login: LoginResource = Resource::new_blocking(|| (), |_| current_session());
    provide_context(login);
    let role = leptos::server::SharedValue::new(rendered_for).into_inner();
    provide_context(PageRole(role));
    login
}

/// The role the page guard found for this request (on the server; in the browser the value comes with
/// the page instead).
fn rendered_for() -> Option<Role> {
    #[cfg(feature = "ssr")]
    {
        use leptos::prelude::use_context;
        let parts = use_context::<axum::http::request::Parts>()?;
        let user = super::gate::RequestUser::of(&parts.extensions).known()??;
        Some(user.role)
    }
    #[cfg(not(feature = "ssr"))]
    None
}

/// The role of a login state as the server replied it (None: nobody, or the reply failed).
pub fn role_of(login: Result<LoginState, crate::error::AppError>) -> Option<Role> {
    login.ok().and_then(|s| s.user).map(|u| u.role)
}

/// Shows its children only to people with at least `role`. The server refuses the same actions on
/// its own; this only spares people buttons that would be refused. With `explain` (what the hidden
/// part does: "deploys"), someone logged in with a lower role is told why it is missing and whom to
/// ask, instead of finding nothing.
#[leptos::component]
pub fn RoleGate(
    role: Role,
    #[prop(optional, into)] explain: Option<&'static str>,
    children: leptos::children::Children,
) -> impl leptos::IntoView {
    use leptos::prelude::*;
    match use_context::<PageRole>().and_then(|r| r.0) {
        Some(r) if r >= role => Some(children().into_any()),
        Some(r) => explain.map(|what| {
            view! {
                <p class="role-note" data-testid="role-note" data-needs=role.as_str()>
                    {missing_role_note(what, role, r)}
                </p>
            }
            .into_any()
        }),
        None => None,
    }
}

/// "Deploys need the deployer role (you are a viewer): ask an admin."
pub fn missing_role_note(what: &str, needs: Role, has: Role) -> String {
    let mut what = what.to_string();
    if let Some(first) = what.get(..1) {
        what.replace_range(..1, &first.to_uppercase());
    }
    format!(
        "{what} need the {} role (you are {} {}): ask an admin.",
        needs.as_str(),
        if has.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        },
        has.as_str()
    )
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

/// Who is logged in (for the top bar and for hiding what the server would refuse anyway), and the
/// engine's state for the top bar's badge.
#[leptos::server(endpoint = "login_state")]
pub async fn current_session() -> Result<LoginState, crate::error::AppError> {
    use leptos::prelude::{expect_context, use_context};
    let gate = expect_context::<std::sync::Arc<super::gate::Gate>>();
    let user = super::gate::request_user(&gate).await?;
    let engine = match use_context::<std::sync::Arc<crate::health::ssr::HealthMonitor>>() {
        Some(health) if user.as_ref().is_some_and(|u| u.role >= Role::Viewer) => {
            Some(health.engine_status().await)
        }
        _ => None,
    };
    Ok(LoginState {
        user,
        dev_idp: expect_context::<std::sync::Arc<super::ssr::ServiceProvider>>()
            .dev_idp
            .is_some(),
        engine,
    })
}
