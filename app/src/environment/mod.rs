//! The environment of the compose project and its audit. Pure logic over text: `envfile.rs` parses
//! `.env.production` as compose does, `interpolate.rs` applies compose's `${VAR}` rules, `secrets.rs`
//! says what is secret, masks it and makes the one scrubber all output passes, `audit.rs` and
//! `drift.rs` are the rules. The I/O edge: `disk.rs` reads the files, `ssr.rs` runs the audit as a
//! service; `view.rs` is the page. This file holds the types the page and the server share.

use serde::{Deserialize, Serialize};

#[cfg(feature = "ssr")]
pub mod audit;
#[cfg(feature = "ssr")]
pub mod disk;
#[cfg(feature = "ssr")]
pub mod drift;
pub mod envfile;
pub mod interpolate;
#[cfg(feature = "ssr")]
pub mod secrets;
#[cfg(feature = "ssr")]
pub mod ssr;
pub mod view;

/// A value as it may be shown: the text with every secret part masked, and for a secret its length
/// and fingerprint (equal fingerprints mean equal values, without showing either).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedValue {
    pub shown: String,
    pub secret: bool,
    pub length: usize,
    pub fingerprint: Option<String>,
}

/// Why a value counts as secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretKind {
    /// The variable's name says so (PASSWORD, KEY, ...).
    Name,
    /// A password inside a URL; the rest of the URL is not secret.
    UrlPassword,
    /// A long, random-looking value under an innocent name.
    HighEntropy,
}

/// Ordered: `Error` is the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[derive(Serialize, Deserialize)]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        self.into()
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

/// "2 errors, 1 warning, 0 notes": the audit's verdict in words (the page and the command line).
pub fn finding_counts(errors: usize, warnings: usize, notes: usize) -> String {
    let s = |n: usize| if n == 1 { "" } else { "s" };
    format!(
        "{errors} error{}, {warnings} warning{}, {notes} note{}",
        s(errors),
        s(warnings),
        s(notes)
    )
}

/// One variable of the env file as the page shows it (its final value, masked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub key: String,
    pub line: usize,
    pub value: MaskedValue,
    pub secret_kind: Option<SecretKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentReport {
    /// When the files were read and the containers compared (the report is kept until they change).
    pub checked_at: chrono::DateTime<chrono::Utc>,
    pub env_file: String,
    pub compose_file: String,
    pub variables: Vec<Variable>,
    pub findings: Vec<Finding>,
}
