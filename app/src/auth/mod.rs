//! Who is asking, and what they may do. Every server function that changes something states the role
//! it needs with `require(Role::...)`: the one check, in one place.
//!
//! Until SAML login lands (the auth issue), there are no sessions: every request acts as the local
//! operator with the admin role, and is recorded under that name. The login replaces `require`'s body,
//! not its callers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Viewer,
    Deployer,
    Admin,
}

/// The person behind a request, as the audit log names them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub role: Role,
}

/// The actor of the current request when they hold at least `role`, else a refusal.
#[cfg(feature = "ssr")]
pub async fn require(role: Role) -> Result<Actor, crate::error::AppError> {
    let actor = Actor {
        name: "local operator (no login configured)".into(),
        role: Role::Admin,
    };
    if actor.role >= role {
        Ok(actor)
    } else {
        Err(crate::error::AppError::Forbidden(format!(
            "this needs the {role:?} role; you are {:?}",
            actor.role
        ))
        .replied())
    }
}

#[cfg(feature = "ssr")]
pub mod idp;
#[cfg(feature = "ssr")]
pub mod keys;
#[cfg(feature = "ssr")]
pub mod saml;
