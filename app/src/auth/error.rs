//! Why a login, a logout or a check did not go through, in words for the person at the browser, and
//! how each maps to the server functions' error.

use super::keys::KeyError;
use super::saml::SamlError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("log in first")]
    NotLoggedIn,
    #[error("this needs the {needed} role; you are {has}")]
    Forbidden {
        needed: &'static str,
        has: &'static str,
    },
    #[error("{0}")]
    Saml(#[from] SamlError),
    #[error("this assertion was already used (replay)")]
    Replayed,
    #[error("{0} is not authorized to use EPSM Ops: no role rule matches")]
    NoRole(String),
    #[error("the session store failed: {0}")]
    Session(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("SAML keys: {0}")]
    Keys(#[from] KeyError),
    #[error("too many logins are being checked at once; try again in a moment")]
    Busy,
    #[error("login unavailable: {0}; retrying")]
    Unavailable(String),
    #[error("IdP metadata {source_name}: {reason}")]
    Metadata { source_name: String, reason: String },
}

impl AuthError {
    pub fn into_app_error(self) -> crate::error::AppError {
        use crate::error::AppError;
        match self {
            AuthError::NotLoggedIn => AppError::Unauthorized(self.to_string()),
            AuthError::Forbidden { .. } | AuthError::NoRole(_) => {
                AppError::Forbidden(self.to_string())
            }
            AuthError::Saml(_) | AuthError::Replayed => AppError::Invalid(self.to_string()),
            _ => AppError::Unavailable(self.to_string()),
        }
    }
}

impl AuthError {
    /// The kind of refusal (for folding repeated ones), never the poster's words.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Saml(e) => e.kind(),
            AuthError::Replayed => "replayed",
            AuthError::NoRole(_) => "no-role",
            AuthError::Busy => "busy",
            _ => "other",
        }
    }
}
