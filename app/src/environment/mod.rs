//! The environment of the compose project: `.env.production` parsed as compose parses it, the
//! `${VAR}` interpolation compose applies, and secrets: what is secret, how it is masked, and the one
//! scrubber all output passes. Pure functions over text; the audit rules and the page build on these.

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod audit;
pub mod envfile;
pub mod interpolate;
#[cfg(feature = "ssr")]
pub mod secrets;
#[cfg(feature = "ssr")]
pub mod ssr;

/// Ordered: `Error` is the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing the audit found. Never carries a value: `message` says what is wrong in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable rule id (`placeholder-secret`, `mismatch`, ...).
    pub rule: String,
    /// The variable concerned, or empty for a finding about a file.
    pub key: String,
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
    pub fix: String,
}
