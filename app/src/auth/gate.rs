//! The session gate: who a session is and whether they may do a thing. A login lands here
//! (`sign_in`), every server function and route asks here (`check`, `signed_in`), live streams ask
//! again now and then (`session_holds`), and a refusal of a logged-in person is audited here.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tower_sessions::{Session, SessionStore};

use super::error::AuthError;
use super::saml::Identity;
use super::{Actor, Role, User, role_for};
use crate::audit::{AuditEvent, AuditOutcome};
use crate::config::AuthConfig;
use crate::store::Store;

/// Where the session keeps the login.
const USER_KEY: &str = "user";

/// What the session keeps of a login. The role is not believed from here: it is worked out again
/// from the IdP's attributes (`identity`) and the current role rules on every request, so a rule
/// removed takes effect at the person's next request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SessionUser {
    user: User,
    login_at: DateTime<Utc>,
    pub(super) name_id: String,
    pub(super) session_index: Option<String>,
    /// None in sessions of versions that did not keep it: such a session is over.
    #[serde(default)]
    identity: Option<Identity>,
    /// When a request last renewed the session's idle expiry (None: not since the login).
    #[serde(default)]
    seen_at: Option<DateTime<Utc>>,
}

/// Who the request's session belongs to, worked out at most once per request. A page's request asks
/// many times (the page guard, then each server function the page calls while it renders: the top
/// bar, the page's data), and the answer cannot change within the request. The page guard puts an
/// empty one in every request's extensions; whoever asks first fills it.
#[derive(Clone, Default)]
pub struct RequestUser(Arc<tokio::sync::OnceCell<Option<User>>>);

impl RequestUser {
    /// The one in the request's extensions, or a new one (a request the page guard did not see).
    pub fn of(extensions: &axum::http::Extensions) -> Self {
        extensions.get::<Self>().cloned().unwrap_or_default()
    }

    /// The answer, when someone in this request asked already.
    pub fn known(&self) -> Option<Option<User>> {
        self.0.get().cloned()
    }

    /// The logged-in person of `session` (`Gate::signed_in`), asked of the gate once.
    pub async fn get(&self, gate: &Gate, session: &Session) -> Option<User> {
        self.0.get_or_init(|| gate.signed_in(session)).await.clone()
    }
}

/// How often requests renew a session's idle expiry. Renewing writes the session to the store, so a
/// person using the console costs one write a minute, not one per request, and their session ends
/// `auth.session_idle_minutes` after their last minute of use (not after their login).
fn renew_every() -> Duration {
    Duration::minutes(1)
}

impl SessionUser {
    /// The user as the current rules see them: None when the login is past its absolute lifetime
    /// or no rule admits them any more.
    fn current(self, auth: &AuthConfig, now: DateTime<Utc>) -> Option<User> {
        let max = Duration::hours(auth.session_max_hours as i64);
        if now - self.login_at > max {
            return None;
        }
        let role = role_for(self.identity.as_ref()?, auth)?;
        Some(User { role, ..self.user })
    }
}

/// The gate, built once at start: the role rules, the audit log it records refusals in, and the
/// session store it reads when a live stream asks whether its session still holds.
pub struct Gate {
    auth: AuthConfig,
    store: Store,
    sessions: Arc<dyn SessionStore>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

pub(super) fn session_error(e: tower_sessions::session::Error) -> AuthError {
    AuthError::Session(e.to_string())
}

impl Gate {
    pub fn new(auth: AuthConfig, store: Store, sessions: Arc<dyn SessionStore>) -> Gate {
        Gate {
            auth,
            store,
            sessions,
        }
    }

    /// Logs `identity` in on `session` with the role the rules give them (none: refused). The
    /// session gets a new id: one planted before login is worthless after it.
    pub async fn sign_in(
        &self,
        session: &Session,
        identity: Identity,
        name_id: String,
        session_index: Option<String>,
    ) -> Result<User, AuthError> {
        let role = role_for(&identity, &self.auth)
            .ok_or_else(|| AuthError::NoRole(identity.id.clone()))?;
        let user = User {
            display_name: identity
                .display_name
                .clone()
                .unwrap_or_else(|| identity.id.clone()),
            id: identity.id.clone(),
            mail: identity.mail.clone(),
            role,
        };
        session.cycle_id().await.map_err(session_error)?;
        let kept = SessionUser {
            user: user.clone(),
            login_at: Utc::now(),
            name_id,
            session_index,
            identity: Some(identity),
            seen_at: Some(Utc::now()),
        };
        session
            .insert(USER_KEY, kept)
            .await
            .map_err(session_error)?;
        Ok(user)
    }

    /// Ends the session and records the logout. Returns what the session held of the login (for
    /// the IdP's single logout), if anyone was logged in.
    pub(super) async fn sign_out(
        &self,
        session: &Session,
    ) -> Result<Option<SessionUser>, AuthError> {
        let who: Option<SessionUser> = session.get(USER_KEY).await.map_err(session_error)?;
        session.flush().await.map_err(session_error)?;
        if let Some(who) = &who {
            self.store
                .record(AuditEvent {
                    actor: who.user.actor().name,
                    action: "auth.logout".into(),
                    target: "session".into(),
                    outcome: AuditOutcome::Ok,
                    detail: String::new(),
                })
                .await?;
        }
        Ok(who)
    }

    /// The logged-in user of this session with the role the current rules give them, if the login
    /// is still within its absolute lifetime and a rule still admits them (else the session is
    /// ended).
    pub async fn signed_in(&self, session: &Session) -> Option<User> {
        let who: SessionUser = session.get(USER_KEY).await.ok().flatten()?;
        let now = Utc::now();
        let renew = who.seen_at.is_none_or(|seen| now - seen >= renew_every());
        let kept = who.clone();
        let user = who.current(&self.auth, now);
        match &user {
            None => {
                let _ = session.flush().await;
            }
            // The session layer saves a changed session with a new idle expiry: this renews it.
            Some(_) if renew => {
                let renewed = SessionUser {
                    seen_at: Some(now),
                    ..kept
                };
                let _ = session.insert(USER_KEY, renewed).await;
            }
            Some(_) => {}
        }
        user
    }

    /// Whether the session `id` is still a login that holds `role`, read from the session store
    /// (not from a request's copy): what a live stream asks now and then, so it ends with its
    /// session (logout, expiry, a role rule removed).
    pub async fn session_holds(&self, id: &tower_sessions::session::Id, role: Role) -> bool {
        let Ok(Some(record)) = self.sessions.load(id).await else {
            return false;
        };
        if record.expiry_date <= tower_sessions::cookie::time::OffsetDateTime::now_utc() {
            return false;
        }
        record
            .data
            .get(USER_KEY)
            .and_then(|v| serde_json::from_value::<SessionUser>(v.clone()).ok())
            .and_then(|who| who.current(&self.auth, Utc::now()))
            .is_some_and(|user| user.role >= role)
    }

    /// The one check: a logged-in user (`signed_in`, once per request: `RequestUser`) with at least
    /// `role`. A refusal of a logged-in user is recorded.
    pub async fn check(
        &self,
        user: Option<User>,
        role: Role,
        what: &str,
    ) -> Result<User, AuthError> {
        self.permit(user.ok_or(AuthError::NotLoggedIn)?, role, what)
            .await
    }

    /// `user` when they hold at least `role`; else the refusal, recorded in the audit log.
    pub async fn permit(&self, user: User, role: Role, what: &str) -> Result<User, AuthError> {
        if user.role >= role {
            return Ok(user);
        }
        let refusal = AuthError::Forbidden {
            needed: role.as_str(),
            has: user.role.as_str(),
        };
        self.store
            .record(AuditEvent {
                actor: user.actor().name,
                action: "auth.refused".into(),
                target: what.to_string(),
                outcome: AuditOutcome::Refused,
                detail: refusal.to_string(),
            })
            .await?;
        Err(refusal)
    }
}

/// The actor of the current server-function request when they hold at least `role`; 401 when
/// nobody is logged in, 403 (recorded in the audit log) when the role is too low.
pub async fn require(role: Role) -> Result<Actor, crate::error::AppError> {
    let gate = leptos::prelude::expect_context::<Arc<Gate>>();
    let user = request_user(&gate).await?;
    let path = leptos::prelude::use_context::<axum::http::request::Parts>()
        .map(|p| p.uri.path().to_string())
        .unwrap_or_default();
    gate.check(user, role, &path)
        .await
        .map(|user| user.actor())
        .map_err(|e| e.into_app_error().replied())
}

/// The logged-in person of the current server-function request (None: nobody), asked of the gate
/// once per request (`RequestUser`).
pub async fn request_user(gate: &Gate) -> Result<Option<User>, crate::error::AppError> {
    let known = leptos::prelude::use_context::<axum::http::request::Parts>()
        .map(|p| RequestUser::of(&p.extensions))
        .unwrap_or_default();
    if let Some(user) = known.known() {
        return Ok(user);
    }
    let session: tower_sessions::Session = leptos_axum::extract().await.map_err(|_| {
        crate::error::AppError::Unauthorized("log in first (no session)".into()).replied()
    })?;
    Ok(known.get(gate, &session).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditFilter;
    use crate::config::RoleRule;
    use tower_sessions::MemoryStore;

    fn identity(id: &str, affiliation: &str) -> Identity {
        Identity {
            id: id.into(),
            display_name: Some(format!("{id} name")),
            mail: Some(id.into()),
            affiliations: vec![affiliation.into()],
            name_id: format!("nameid-{id}"),
            name_id_format: None,
            session_index: Some("s1".into()),
        }
    }

    fn rules() -> AuthConfig {
        let mut auth = crate::config::Config::default().auth;
        auth.admins = RoleRule {
            ids: vec!["boss@chalmers.se".into()],
            ..Default::default()
        };
        auth.deployers = RoleRule {
            affiliations: vec!["employee@chalmers.se".into()],
            ..Default::default()
        };
        auth.viewers = RoleRule {
            affiliations: vec!["student@chalmers.se".into()],
            ..Default::default()
        };
        auth
    }

    /// A gate over a fresh store and an in-memory session store, and a session of that store.
    async fn gate(auth: AuthConfig) -> (Gate, Session, Arc<MemoryStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let sessions = Arc::new(MemoryStore::default());
        let session = Session::new(None, sessions.clone(), None);
        (
            Gate::new(auth, store, sessions.clone()),
            session,
            sessions,
            dir,
        )
    }

    /// Logs `id` (with one affiliation) in on `session`.
    async fn log_in(gate: &Gate, session: &Session, id: &str, affiliation: &str) -> User {
        gate.sign_in(session, identity(id, affiliation), "n".into(), None)
            .await
            .unwrap()
    }

    async fn refusals(gate: &Gate) -> Vec<(String, String, String)> {
        let filter = AuditFilter {
            action: Some("auth.refused".into()),
            ..Default::default()
        };
        gate.store
            .audit_log(&filter, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.actor, e.target, e.detail))
            .collect()
    }

    #[tokio::test]
    async fn nobody_logged_in_is_told_to_log_in_and_nothing_is_recorded() {
        let (gate, session, _, _dir) = gate(rules()).await;
        let refused = gate
            .check(
                gate.signed_in(&session).await,
                Role::Viewer,
                "/api/health_report",
            )
            .await;
        assert!(
            matches!(refused, Err(AuthError::NotLoggedIn)),
            "{refused:?}"
        );
        assert!(refusals(&gate).await.is_empty());
    }

    #[tokio::test]
    async fn a_login_gets_the_role_of_its_rule_and_passes_up_to_it() {
        let (gate, session, _, _dir) = gate(rules()).await;
        let user = log_in(&gate, &session, "anna@chalmers.se", "employee@chalmers.se").await;
        assert_eq!(user.role, Role::Deployer);
        assert_eq!(user.display_name, "anna@chalmers.se name");
        for role in [Role::Viewer, Role::Deployer] {
            let passed = gate
                .check(gate.signed_in(&session).await, role, "x")
                .await
                .unwrap();
            assert_eq!(passed.id, "anna@chalmers.se");
        }
        assert!(refusals(&gate).await.is_empty());
    }

    #[tokio::test]
    async fn a_role_too_low_is_refused_and_the_refusal_is_in_the_audit_log() {
        let (gate, session, _, _dir) = gate(rules()).await;
        log_in(&gate, &session, "stud@chalmers.se", "student@chalmers.se").await;
        let refused = gate
            .check(
                gate.signed_in(&session).await,
                Role::Admin,
                "/api/backup_delete",
            )
            .await;
        assert!(
            matches!(
                refused,
                Err(AuthError::Forbidden {
                    needed: "admin",
                    has: "viewer"
                })
            ),
            "{refused:?}"
        );
        assert_eq!(
            refusals(&gate).await,
            [(
                "stud@chalmers.se name (stud@chalmers.se)".to_string(),
                "/api/backup_delete".to_string(),
                "this needs the admin role; you are viewer".to_string()
            )]
        );
    }

    #[tokio::test]
    async fn nobody_the_rules_do_not_name_gets_in() {
        let (gate, session, _, _dir) = gate(rules()).await;
        let refused = gate
            .sign_in(
                &session,
                identity("x@gu.se", "employee@gu.se"),
                "n".into(),
                None,
            )
            .await;
        assert!(matches!(refused, Err(AuthError::NoRole(ref id)) if id == "x@gu.se"));
        assert!(gate.signed_in(&session).await.is_none());
    }

    #[tokio::test]
    async fn a_rule_removed_takes_effect_at_the_next_request_and_ends_live_streams() {
        let (gate, session, sessions, _dir) = gate(rules()).await;
        log_in(&gate, &session, "anna@chalmers.se", "employee@chalmers.se").await;
        session.save().await.unwrap();
        let id = session.id().unwrap();
        assert!(gate.session_holds(&id, Role::Deployer).await);
        assert!(!gate.session_holds(&id, Role::Admin).await);

        // The same session and store under rules without the deployers' affiliation.
        let mut fewer = rules();
        fewer.deployers = RoleRule::default();
        let stricter = Gate::new(fewer, gate.store.clone(), sessions);
        assert!(!stricter.session_holds(&id, Role::Viewer).await);
        assert!(stricter.signed_in(&session).await.is_none());
        assert!(matches!(
            stricter
                .check(stricter.signed_in(&session).await, Role::Viewer, "x")
                .await,
            Err(AuthError::NotLoggedIn)
        ));
    }

    #[tokio::test]
    async fn a_request_asks_the_gate_once_and_a_new_request_asks_again() {
        let (gate, session, _, _dir) = gate(rules()).await;
        log_in(&gate, &session, "anna@chalmers.se", "employee@chalmers.se").await;
        let request = RequestUser::default();
        assert_eq!(request.known(), None, "nobody asked yet");
        let first = request.get(&gate, &session).await;
        assert_eq!(
            first.as_ref().map(|u| u.id.as_str()),
            Some("anna@chalmers.se")
        );

        // Logged out within the request: the request keeps its answer...
        session.flush().await.unwrap();
        assert_eq!(request.get(&gate, &session).await, first);
        assert_eq!(request.known(), Some(first));
        // ...and the next request asks the gate, which says nobody.
        assert_eq!(RequestUser::default().get(&gate, &session).await, None);
        // A request the page guard did not see gets its own.
        assert_eq!(
            RequestUser::of(&axum::http::Extensions::new()).known(),
            None
        );
    }

    #[tokio::test]
    async fn a_login_past_its_absolute_lifetime_is_over() {
        let (gate, _, _, _dir) = gate(rules()).await;
        let kept = SessionUser {
            user: User {
                id: "anna@chalmers.se".into(),
                display_name: "Anna".into(),
                mail: None,
                role: Role::Admin,
            },
            login_at: Utc::now(),
            name_id: "n".into(),
            session_index: None,
            identity: Some(identity("anna@chalmers.se", "employee@chalmers.se")),
            seen_at: None,
        };
        let hours = gate.auth.session_max_hours as i64;
        let now = Utc::now();
        let fresh = kept.clone().current(&gate.auth, now).unwrap();
        // The role comes from the rules, not from what the session kept.
        assert_eq!(fresh.role, Role::Deployer);
        let late = now + Duration::hours(hours) + Duration::minutes(1);
        assert!(kept.clone().current(&gate.auth, late).is_none());
        let old = SessionUser {
            identity: None,
            ..kept
        };
        assert!(
            old.current(&gate.auth, now).is_none(),
            "a session without the IdP's attributes"
        );
    }

    #[tokio::test]
    async fn requests_renew_the_idle_expiry_at_most_once_a_minute() {
        let (gate, session, sessions, _dir) = gate(rules()).await;
        log_in(&gate, &session, "anna@chalmers.se", "employee@chalmers.se").await;
        session.save().await.unwrap();
        let id = session.id().unwrap();
        // The next request, seconds after the login: nothing to write.
        let next = Session::new(Some(id), sessions.clone(), None);
        assert!(gate.signed_in(&next).await.is_some());
        assert!(!next.is_modified(), "a request wrote the session again");
        // A request more than a minute after the last renewal writes it, renewing the idle expiry.
        let mut kept: SessionUser = next.get(USER_KEY).await.unwrap().unwrap();
        let then = Utc::now() - Duration::seconds(90);
        kept.seen_at = Some(then);
        next.insert(USER_KEY, kept).await.unwrap();
        next.save().await.unwrap();
        let later = Session::new(Some(id), sessions.clone(), None);
        assert!(gate.signed_in(&later).await.is_some());
        assert!(later.is_modified(), "the idle expiry was not renewed");
        let renewed: SessionUser = later.get(USER_KEY).await.unwrap().unwrap();
        assert!(renewed.seen_at.unwrap() > then);
    }

    #[tokio::test]
    async fn signing_out_ends_the_session_and_records_who() {
        let (gate, session, _, _dir) = gate(rules()).await;
        gate.sign_in(
            &session,
            identity("boss@chalmers.se", "employee@chalmers.se"),
            "nid".into(),
            Some("idx".into()),
        )
        .await
        .unwrap();
        let who = gate.sign_out(&session).await.unwrap().unwrap();
        assert_eq!(
            (who.name_id.as_str(), who.session_index.as_deref()),
            ("nid", Some("idx"))
        );
        assert!(gate.signed_in(&session).await.is_none());
        let logouts = gate
            .store
            .audit_log(
                &AuditFilter {
                    action: Some("auth.logout".into()),
                    ..Default::default()
                },
                10,
            )
            .await
            .unwrap();
        assert_eq!(logouts.len(), 1);
        assert_eq!(logouts[0].actor, "boss@chalmers.se name (boss@chalmers.se)");
        assert!(gate.sign_out(&session).await.unwrap().is_none());
    }
}
