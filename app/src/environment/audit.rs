//! The audit rules: pure functions from what was read (the env file, the compose file's `${VAR}`
//! references, file facts) to findings. No finding carries a value: secrets are compared here, on
//! the server, and only the verdict leaves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use super::envfile::EnvFile;
use super::secrets::{Masker, SecretKind, percent_decode};
use super::{Finding, Severity};

/// One `${VAR...}` or `$VAR` in the compose file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeReference {
    pub name: String,
    pub line: usize,
    /// `-` or `:-` with a default, `?`/`:?` required, `+`/`:+` alternative; None for a plain reference.
    pub operator: Option<String>,
    pub default: Option<String>,
}

static COMPOSE_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)",
    )
    .expect("constant regex")
});

/// Every variable reference of a compose file, with its line (`$$` is an escaped dollar, skipped;
/// comment lines are skipped).
pub fn compose_references(compose: &str) -> Vec<ComposeReference> {
    let mut out = Vec::new();
    for (i, line) in compose.lines().enumerate() {
        if line.trim_start().starts_with('#') {
            continue;
        }
        for caps in COMPOSE_REFERENCE.captures_iter(line) {
            let (name, operator, default) = match (caps.get(1), caps.get(4)) {
                (Some(braced), _) => (
                    braced.as_str(),
                    caps.get(2).map(|m| m.as_str().to_string()),
                    caps.get(3).map(|m| m.as_str().to_string()),
                ),
                (None, Some(plain)) => (plain.as_str(), None, None),
                (None, None) => continue, // `$$`
            };
            out.push(ComposeReference {
                name: name.to_string(),
                line: i + 1,
                operator,
                default,
            });
        }
    }
    out
}

/// What the audit looks at, already read from disk.
pub struct AuditInput<'a> {
    pub env: &'a EnvFile,
    pub env_file_name: &'a str,
    pub compose: &'a [ComposeReference],
    pub compose_file_name: &'a str,
    /// Unix permission bits of the env file, when known.
    pub env_file_mode: Option<u32>,
    /// Retired files present in the project directory (relative names).
    pub retired_files: &'a [String],
    /// What makes a variable secret by name (`secrets::secret_name_parts`).
    pub secret_name_parts: &'a [String],
    /// How the project's git checkout holds the env file (None: not a git checkout).
    pub env_file_in_git: Option<GitTracking>,
}

/// How a git checkout holds the env file: it must be neither committed nor committable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitTracking {
    Tracked,
    NotIgnored,
    Ignored,
}

/// Values shipped in templates that must never reach production: whole values...
const PLACEHOLDER_VALUES: &[&str] = &[
    "secret", "password", "changeme", "example", "todo", "xxx", "test",
];
/// ...and parts of values (compared lowercased).
const PLACEHOLDER_PARTS: &[&str] = &[
    "your-",
    "your_",
    "change-me",
    "change_me",
    "change me",
    "replace-me",
    "replace_me",
];

fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    PLACEHOLDER_VALUES.contains(&lower.as_str())
        || PLACEHOLDER_PARTS.iter().any(|p| lower.contains(p))
}

/// Pairs the guide says must agree: (a, b).
const MUST_AGREE: &[(&str, &str)] = &[
    ("DB_PASSWORD", "POSTGRES_PASSWORD"),
    ("DB_USER", "POSTGRES_USER"),
    ("DB_NAME", "POSTGRES_DB"),
];

/// URLs whose embedded password must be REDIS_PASSWORD.
const REDIS_URLS: &[&str] = &["REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"];

pub fn audit(input: &AuditInput) -> Vec<Finding> {
    let masker = Masker::new(input.secret_name_parts, b"classification only");
    let env = input.env;
    let ef = input.env_file_name;
    let mut out = Vec::new();
    let line_of = |key: &str| env.last(key).map(|e| e.line);

    // Keys defined twice.
    let mut seen: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for e in &env.entries {
        if let Some((first, first_value)) = seen.get(e.key.as_str()) {
            let differs = *first_value != e.value;
            out.push(finding(
                if differs {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                "duplicate-key",
                &e.key,
                ef,
                Some(e.line),
                &format!(
                    "defined again (first on line {first}){}; compose uses the last one",
                    if differs {
                        " with a different value"
                    } else {
                        " with the same value"
                    }
                ),
                "keep one definition",
            ));
        } else {
            seen.insert(&e.key, (e.line, &e.value));
        }
    }

    for (key, value) in env.resolved() {
        let line = line_of(key);
        let kind = masker.classify(key, value);
        if kind == Some(SecretKind::Name) {
            if is_placeholder(value) {
                out.push(finding(
                    Severity::Error,
                    "placeholder-secret",
                    key,
                    ef,
                    line,
                    "is a template placeholder, not a secret",
                    "generate a real value (e.g. `openssl rand -base64 32`)",
                ));
            } else if value.chars().count() < 16 {
                out.push(finding(
                    Severity::Warning,
                    "weak-secret",
                    key,
                    ef,
                    line,
                    &format!("is only {} characters long", value.chars().count()),
                    "use at least 16 random characters",
                ));
            }
        }
        // Written literally, the password can drift from the variable it should come from.
        let literal = env.last(key).is_some_and(|e| e.references.is_empty());
        if kind == Some(SecretKind::UrlPassword) && literal {
            out.push(finding(
                Severity::Info,
                "secret-in-url",
                key,
                ef,
                line,
                "carries a password written literally inside a URL (masked everywhere in the console)",
                "build it from the password variable, e.g. redis://:${REDIS_PASSWORD}@redis:6379/0",
            ));
        }
    }

    // Pairs that must agree.
    for (a, b) in MUST_AGREE {
        if let (Some(va), Some(vb)) = (env.get(a), env.get(b))
            && va != vb
        {
            out.push(finding(
                Severity::Error,
                "mismatch",
                b,
                ef,
                line_of(b),
                &format!("differs from {a}: Django and the database container disagree"),
                &format!("set {b}=${{{a}}}"),
            ));
        }
    }
    if let Some(redis_password) = env.get("REDIS_PASSWORD") {
        for key in REDIS_URLS {
            let Some(url) = env.get(key) else { continue };
            let embedded = url::Url::parse(url)
                .ok()
                .and_then(|u| u.password().map(percent_decode));
            if let Some(embedded) = embedded
                && embedded != redis_password
            {
                out.push(finding(
                    Severity::Error,
                    "mismatch",
                    key,
                    ef,
                    line_of(key),
                    "its password differs from REDIS_PASSWORD: the broker will refuse Celery",
                    &format!("set {key}=redis://:${{REDIS_PASSWORD}}@redis:6379/0"),
                ));
            }
        }
    }

    // Production sanity.
    if let Some(debug) = env.get("DEBUG")
        && !matches!(
            debug.to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "off"
        )
    {
        out.push(finding(
            Severity::Error,
            "debug-on",
            "DEBUG",
            ef,
            line_of("DEBUG"),
            "is not False: Django shows stack traces and settings to visitors",
            "DEBUG=False",
        ));
    }
    for (key, value) in env.resolved() {
        if key.starts_with("VITE_") && (value.starts_with("http://") || value.starts_with("ws://"))
        {
            out.push(finding(
                Severity::Warning,
                "insecure-url",
                key,
                ef,
                line_of(key),
                "is not https/wss: the browser will call the API unencrypted (or be blocked as mixed content)",
                "use https:// (wss:// for web sockets)",
            ));
        }
    }

    // Compose references against the env file.
    let referenced: BTreeSet<&str> = input
        .compose
        .iter()
        .map(|r| r.name.as_str())
        .chain(
            env.entries
                .iter()
                .flat_map(|e| e.references.iter().map(|r| r.name.as_str())),
        )
        .collect();
    let mut reported: BTreeSet<&str> = BTreeSet::new();
    for r in input.compose {
        let value = env.get(&r.name);
        let required = match r.operator.as_deref() {
            None | Some("?") => value.is_none(),
            Some(":?") => value.is_none_or(str::is_empty),
            _ => false,
        };
        if required && reported.insert(&r.name) {
            out.push(finding(
                Severity::Error,
                "missing-variable",
                &r.name,
                input.compose_file_name,
                Some(r.line),
                &format!("is used by the compose file without a default but is not set in {ef}"),
                &format!("add {}=... to {ef}", r.name),
            ));
        }
        let has_default = matches!(r.operator.as_deref(), Some("-" | ":-"));
        let default = r.default.as_deref().unwrap_or("");
        if has_default
            && !default.is_empty()
            && masker.classify(&r.name, default) == Some(SecretKind::Name)
        {
            out.push(finding(
                Severity::Error,
                "secret-default-in-compose",
                &r.name,
                input.compose_file_name,
                Some(r.line),
                "has a default written into the compose file: a missing env value silently becomes a known password",
                &format!("use ${{{}:?{} must be set}} instead", r.name, r.name),
            ));
        }
    }
    for e in &env.entries {
        // COMPOSE_PROJECT_NAME and the like are compose's own settings: compose reads them.
        let compose_setting = e.key.starts_with("COMPOSE_");
        if !compose_setting && !referenced.contains(e.key.as_str()) && reported.insert(&e.key) {
            out.push(finding(
                Severity::Info,
                "unused-variable",
                &e.key,
                ef,
                Some(e.line),
                "is defined but used by nothing in the compose file or the env file",
                "remove it, or reference it from the compose file",
            ));
        }
    }

    // Files.
    if let Some(mode) = input.env_file_mode
        && mode & 0o077 != 0
    {
        out.push(finding(
            Severity::Warning,
            "env-file-permissions",
            "",
            ef,
            None,
            &format!(
                "is readable by others than its owner (mode {:o})",
                mode & 0o777
            ),
            &format!("chmod 600 {ef}"),
        ));
    }
    match input.env_file_in_git {
        Some(GitTracking::Tracked) => out.push(finding(
            Severity::Error,
            "env-file-in-git",
            "",
            ef,
            None,
            "is tracked by the project's git repository: its secrets are in the history, and a deploy's checkout could overwrite it (the console refuses to)",
            &format!("git rm --cached {ef}, add it to .gitignore, and change every secret it held"),
        )),
        Some(GitTracking::NotIgnored) => out.push(finding(
            Severity::Warning,
            "env-file-not-ignored",
            "",
            ef,
            None,
            "is not ignored by the project's git repository: one `git add -A` commits its secrets",
            &format!("add {ef} to .gitignore"),
        )),
        Some(GitTracking::Ignored) | None => {}
    }
    for retired in input.retired_files {
        out.push(finding(
            Severity::Warning,
            "retired-file",
            "",
            retired,
            None,
            "is a file the deployment guide retired: a second source of truth",
            &format!("remove {retired} (keep one env file and one compose file)"),
        ));
    }
    out.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.file.cmp(&b.file))
            .then(a.line.cmp(&b.line))
    });
    out
}

fn finding(
    severity: Severity,
    rule: &str,
    key: &str,
    file: &str,
    line: Option<usize>,
    message: &str,
    fix: &str,
) -> Finding {
    Finding {
        severity,
        rule: rule.to_string(),
        key: key.to_string(),
        file: file.to_string(),
        line,
        message: message.to_string(),
        fix: fix.to_string(),
    }
}

#[cfg(test)]
mod tests;
