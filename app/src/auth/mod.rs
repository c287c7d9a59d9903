//! Who is asking, and what they may do. People log in through the Chalmers IdP (SAML, `saml.rs`
//! checks the responses; `ssr.rs` runs login, ACS and logout); their role follows from the
//! configured rules (`role_for`); `gate.rs` keeps the login in the session and makes the checks.
//! Every server function states the role it needs with `require(Role::...)`, every route with the
//! `SignedIn` extractor: the server refuses, the UI only hides.

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub use error::AuthError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[derive(Serialize, Deserialize)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
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
        self.into()
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

/// What every page's frame knows, read once per page load: who (if anyone), whether the development
/// IdP is on, and the engine's state for the top bar's badge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginState {
    pub user: Option<User>,
    pub dev_idp: bool,
    /// The engine as the health monitor's last round saw it; None for nobody logged in (the engine's
    /// state is for viewers and up). In this reply rather than one of its own: every page shows it,
    /// and a page's second server function cost each view a resource, a suspense and its data.
    #[serde(default)]
    pub engine: Option<crate::engine::EngineStatus>,
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

#[cfg(feature = "ssr")]
mod error;
#[cfg(feature = "ssr")]
pub mod gate;
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
#[cfg(feature = "ssr")]
mod store;
pub mod view;

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
